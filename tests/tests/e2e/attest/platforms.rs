//! Attestations of a two-platform build, as BuildKit lays them out: ONE index holding each
//! platform's image manifest followed by its own attestation manifest, pushed (read back
//! with `skopeo inspect --raw` and `skopeo copy --all`) and written into `--oci-layout-path`
//! (read with skopeo's `oci:` transport). Each platform's statements are about its own image,
//! and its provenance names its own base: the multiarch busybox index's manifest for that
//! platform, plus the build platform's one that a shared `FROM --platform=$BUILDPLATFORM`
//! stage pulled once.

use std::collections::BTreeSet;

use kiln_tests::{busybox_multiarch_image, Registry, Scratch};
use serde_json::{json, Value};

use super::{copy_all, oci_index, raw, read_attestation, Attestations};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const SPDX: &str = "https://spdx.dev/Document";
const SLSA: &str = "https://slsa.dev/provenance/v1";

/// The digest (`sha256:…`) of `architecture`'s manifest in the index `index`.
fn manifest_for(index: &Value, architecture: &str) -> String {
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["platform"]["architecture"] == architecture)
        .and_then(|m| m["digest"].as_str())
        .unwrap_or_else(|| panic!("no {architecture} manifest in {index}"))
        .to_string()
}

/// The `sha256:` digests the provenance's `resolvedDependencies` give `pkg:docker/<base>`,
/// with the platform each names.
fn base_dependencies(provenance: &Value, base: &str) -> BTreeSet<(String, String)> {
    let prefix = format!("pkg:docker/{base}?platform=");
    provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies")
        .iter()
        .filter_map(|d| {
            let platform = d["uri"].as_str()?.strip_prefix(&prefix)?;
            Some((
                platform.replace("%2F", "/"),
                format!("sha256:{}", d["digest"]["sha256"].as_str()?),
            ))
        })
        .collect()
}

#[test]
fn two_platforms_each_get_their_attestation_manifest() {
    let registry = Registry::start();
    let base = busybox_multiarch_image(&registry);
    let served = raw(&format!("docker://{base}"));
    let (base_amd, base_arm) = (
        manifest_for(&served, "amd64"),
        manifest_for(&served, "arm64"),
    );
    let scratch = Scratch::new();
    scratch.write("ctx/a.txt", "a");
    let dest = registry.reference("attest-platforms:1");
    let layout = scratch.join("layout");
    scratch
        .build(&format!(
            "FROM --platform=$BUILDPLATFORM {base} AS tools\nCOPY a.txt /tools-a.txt\n\
             FROM {base}\nCOPY --from=tools /tools-a.txt /a.txt\n"
        ))
        .arg("--custom-platform")
        .arg("linux/amd64,linux/arm64")
        .arg("--sbom=true")
        .arg("--provenance")
        .arg("mode=max")
        .arg("--oci-layout-path")
        .arg(&layout)
        .destination(&dest)
        .run_ok();

    let (index, entries) = oci_index(&format!("docker://{dest}"));
    assert_eq!(entries.len(), 4, "two images, two attestations: {index}");
    let repo = dest.rsplit_once(':').unwrap().0;
    let copied = scratch.join("copied");
    assert_eq!(copy_all(&format!("docker://{dest}"), &copied), index);
    let mut per_platform: Vec<(String, Attestations)> = Vec::new();
    for (pair, arch) in entries.chunks(2).zip(["amd64", "arm64"]) {
        let (image, attestation) = (&pair[0], &pair[1]);
        assert_eq!(image["mediaType"], OCI_MANIFEST, "{image}");
        assert_eq!(
            image["platform"],
            json!({"architecture": arch, "os": "linux"}),
            "{image}"
        );
        assert!(image.get("annotations").is_none(), "{image}");
        let image_digest = image["digest"].as_str().unwrap().to_string();
        let image_manifest = raw(&format!("docker://{repo}@{image_digest}"));
        assert_eq!(image_manifest["mediaType"], OCI_MANIFEST);
        assert_eq!(attestation["mediaType"], OCI_MANIFEST, "{attestation}");
        assert_eq!(
            attestation["platform"],
            json!({"architecture": "unknown", "os": "unknown"})
        );
        assert_eq!(
            attestation["annotations"],
            json!({
                "vnd.docker.reference.type": "attestation-manifest",
                "vnd.docker.reference.digest": image_digest,
            }),
            "{arch}'s attestation manifest must name {arch}'s image"
        );
        let digest = attestation["digest"].as_str().unwrap();
        let pushed = raw(&format!("docker://{repo}@{digest}"));
        let got = read_attestation(&copied, index.clone(), digest);
        assert_eq!(got.manifest, pushed);
        let types: Vec<&str> = got.statements.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(types, [SPDX, SLSA], "{arch}");
        for (_, bytes) in &got.statements {
            let s: Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
            assert_eq!(
                s["subject"][0]["digest"]["sha256"],
                image_digest.trim_start_matches("sha256:"),
                "{arch}'s statement is about another image"
            );
        }
        assert_eq!(got.statement(SPDX)["predicate"]["spdxVersion"], "SPDX-2.3");
        per_platform.push((image_digest, got));
    }
    assert_ne!(per_platform[0].0, per_platform[1].0);

    // each provenance: its own platform, its own base, and the shared stage's base once
    for ((_, got), (arch, own_base)) in per_platform
        .iter()
        .zip([("amd64", &base_amd), ("arm64", &base_arm)])
    {
        let provenance = got.statement(SLSA);
        let request = &provenance["predicate"]["buildDefinition"]["externalParameters"]["request"];
        assert_eq!(request["platform"], format!("linux/{arch}"));
        let mut want = BTreeSet::from([("linux/amd64".to_string(), base_amd.clone())]);
        want.insert((format!("linux/{arch}"), own_base.clone()));
        assert_eq!(
            base_dependencies(&provenance, &base),
            want,
            "{arch}'s provenance: {provenance}"
        );
    }

    // the layout: its name points at the same index, complete enough for skopeo to copy
    let layout_ref = format!("oci:{}:1", layout.display());
    assert_eq!(raw(&layout_ref), index);
    let from_layout = scratch.join("from-layout");
    assert_eq!(copy_all(&layout_ref, &from_layout), index);
    for (image_digest, got) in &per_platform {
        let entry = entries
            .iter()
            .find(|e| e["annotations"]["vnd.docker.reference.digest"] == image_digest.as_str())
            .unwrap();
        let in_layout = read_attestation(
            &from_layout,
            index.clone(),
            entry["digest"].as_str().unwrap(),
        );
        assert_eq!(in_layout.manifest, got.manifest);
        assert_eq!(in_layout.statements, got.statements);
    }
}
