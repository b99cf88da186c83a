//! The index and attestation manifest field by field against BuildKit's documented
//! attestation storage (docs/attestations/attestation-storage.md), read with
//! `skopeo inspect --raw`; the same index in `--oci-layout-path`, whose platform image
//! skopeo copies out and umoci unpacks; `--tar-path` keeps the plain image.

use std::process::Command;

use kiln_tests::{busybox_image, require, run_checked, Registry, Scratch};
use serde_json::{json, Value};

use super::{oci_index, raw};

#[test]
fn index_follows_buildkit_attestation_storage() {
    let registry = Registry::start();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/a.txt", "a");
    let dest = registry.reference("laid:1");
    let layout = scratch.join("layout");
    let archive = scratch.join("plain.tar");
    scratch
        .build(&format!("FROM {base}\nCOPY a.txt /a.txt\n"))
        .arg("--sbom=true")
        .arg("--provenance=true")
        .arg("--oci-layout-path")
        .arg(&layout)
        .arg("--tar-path")
        .arg(&archive)
        .destination(&dest)
        .run_ok();

    let (index, entries) = oci_index(&format!("docker://{dest}"));
    assert_eq!(entries.len(), 2, "{index}");
    let (image, attestation) = (&entries[0], &entries[1]);
    assert_eq!(
        image["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(image["platform"]["os"], "linux");
    assert!(image["platform"]["architecture"].is_string());
    assert_eq!(
        attestation["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        attestation["platform"],
        json!({"architecture": "unknown", "os": "unknown"})
    );
    assert_eq!(
        attestation["annotations"],
        json!({
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": image["digest"],
        })
    );
    let repo = dest.rsplit_once(':').unwrap().0;
    let manifest = raw(&format!(
        "docker://{repo}@{}",
        attestation["digest"].as_str().unwrap()
    ));
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().expect("layers");
    let types: Vec<&str> = layers
        .iter()
        .map(|l| {
            assert_eq!(l["mediaType"], "application/vnd.in-toto+json");
            l["annotations"]["in-toto.io/predicate-type"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        types,
        [
            "https://spdx.dev/Document",
            "https://slsa.dev/provenance/v1"
        ]
    );
    let got = super::fetch(&dest, scratch.path());
    assert_eq!(got.manifest, manifest);
    let diff_ids: Vec<Value> = layers.iter().map(|l| l["digest"].clone()).collect();
    assert_eq!(
        got.config,
        json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
    );
    for (_, bytes) in &got.statements {
        let s: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(
            s["subject"][0]["digest"]["sha256"],
            image["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
        );
    }

    // the layout: index.json names the same index, umoci unpacks the platform image
    let top: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let named = &top["manifests"][0];
    assert_eq!(
        named["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let in_layout: Value = serde_json::from_slice(
        &std::fs::read(
            layout.join("blobs/sha256").join(
                named["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            ),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(in_layout, index);
    // umoci resolves a name to one manifest: skopeo takes the platform image out of the
    // index (as a runtime would), umoci unpacks it
    let platform_only = scratch.join("platform");
    run_checked(
        Command::new(require("skopeo", "skopeo"))
            .args(["copy", "--quiet"])
            .arg(format!("oci:{}:1", layout.display()))
            .arg(format!("oci:{}:1", platform_only.display())),
    );
    let unpacked = kiln_tests::umoci_unpack(&format!("oci:{}:1", platform_only.display()));
    assert_eq!(unpacked.read("/a.txt"), "a");

    // the docker archive is the plain image
    let listing = run_checked(
        Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("manifest.json"),
    );
    let archived: Value = serde_json::from_str(&listing).unwrap();
    assert!(archived[0]["Config"].is_string(), "{archived}");
}
