//! `--sbom` and `--provenance`: attestations attached as BuildKit's attestation storage lays
//! them out, read back with tools kiln did not write. `skopeo copy --all` fetches the index,
//! the attestation manifest and the statements from a real registry; the SBOM is compared
//! with `dpkg-query` run in the unpacked image under chroot, with the host python's
//! `importlib.metadata` and with a python walk over `node_modules` (`sbom`), with `go
//! version -m`, pyelftools and the apk database kiln was given (`readers`), and every SBOM is
//! validated twice: by `pyspdxtools` (PyPI `spdx-tools`, the SPDX model) and by
//! `tests/attest/spdx_schema.py` (PyPI `jsonschema` against the SPDX 2.3 JSON schema that PyPI's
//! `lib4sbom` ships); the provenance is checked field by field.

// helpers of tests: a malformed answer from a tool is a test failure
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod layout;
mod platforms;
mod provenance;
mod readers;
mod sbom;

use std::path::Path;
use std::process::{Command, Output};

use kiln_tests::{require, require_py, run_checked, workspace_root};
use serde_json::Value;

/// Validates the SPDX document `doc` both ways, written to `dir/name`: `pyspdxtools -i` (the
/// SPDX model, with its own messages) and the SPDX 2.3 JSON schema (`spdx_schema`).
pub(crate) fn validate_spdx(doc: &Value, dir: &Path, name: &str) {
    let file = dir.join(name);
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let pyspdxtools = require_py("pyspdxtools", "spdx-tools");
    let out = Command::new(pyspdxtools)
        .arg("-i")
        .arg(&file)
        .output()
        .expect("running pyspdxtools");
    let said = said(&out);
    assert!(out.status.success(), "pyspdxtools -i: {said}");
    assert!(
        !said.contains("ValidationMessage"),
        "pyspdxtools -i: {said}"
    );
    let out = spdx_schema(&file);
    assert!(out.status.success(), "spdx_schema.py: {}", self::said(&out));
}

/// `tests/attest/spdx_schema.py FILE` run by the test venv's python: exit 0 when the file
/// validates against the SPDX 2.3 JSON schema, 1 with each violation as `PATH: MESSAGE`.
pub(crate) fn spdx_schema(file: &Path) -> Output {
    let python = require_py("python3", "jsonschema lib4sbom");
    Command::new(python)
        .arg(workspace_root().join("tests/attest/spdx_schema.py"))
        .arg(file)
        .output()
        .expect("running spdx_schema.py")
}

/// A tool's stdout and stderr as one text.
pub(crate) fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The index, the attestation manifest and the statements (by predicate type) a tag
/// points at, copied with `skopeo copy --all` into an OCI layout under `dir`.
pub(crate) struct Attestations {
    pub index: Value,
    pub manifest: Value,
    pub config: Value,
    pub statements: Vec<(String, Vec<u8>)>,
}

impl Attestations {
    pub fn statement(&self, predicate_type: &str) -> Value {
        let (_, bytes) = self
            .statements
            .iter()
            .find(|(t, _)| t == predicate_type)
            .unwrap_or_else(|| panic!("no {predicate_type} statement"));
        serde_json::from_slice(bytes).expect("statement is JSON")
    }
}

/// `skopeo inspect --raw` of `reference` (`docker://…` or `oci:…`).
pub(crate) fn raw(reference: &str) -> Value {
    let out = run_checked(
        Command::new(require("skopeo", "skopeo"))
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(reference),
    );
    serde_json::from_str(&out).expect("skopeo printed JSON")
}

/// The OCI index pushed under `reference` (`docker://…`), checked to be one, and its
/// manifests.
pub(crate) fn oci_index(reference: &str) -> (Value, Vec<Value>) {
    let index = raw(reference);
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().expect("manifests").clone();
    (index, entries)
}

/// An image config's layer diff_ids, bottom first.
pub(crate) fn diff_ids(config: &Value) -> Vec<&str> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .expect("rootfs.diff_ids")
        .iter()
        .map(|d| d.as_str().expect("a diff_id"))
        .collect()
}

pub(crate) fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("reading blob")).expect("blob is JSON")
}

pub(crate) fn blob(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// `skopeo copy --all` of `source` (`docker://…` or `oci:…`) into the OCI layout `layout`
/// (tag `t`); returns the index it copied.
pub(crate) fn copy_all(source: &str, layout: &Path) -> Value {
    let skopeo = require("skopeo", "skopeo");
    let mut cmd = Command::new(skopeo);
    cmd.args(["copy", "--all", "--quiet"]);
    if source.starts_with("docker://") {
        cmd.arg("--src-tls-verify=false");
    }
    run_checked(cmd.arg(source).arg(format!("oci:{}:t", layout.display())));
    let top = read_json(&layout.join("index.json"));
    read_json(&blob(
        layout,
        top["manifests"][0]["digest"].as_str().unwrap(),
    ))
}

/// What `reference` (pushed by kiln) carries, as skopeo copies it.
pub(crate) fn fetch(reference: &str, dir: &Path) -> Attestations {
    std::fs::create_dir_all(dir).expect("creating the copy's directory");
    let layout = dir.join("all");
    let index = copy_all(&format!("docker://{reference}"), &layout);
    let entry = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .expect("an attestation manifest in the index")
        .clone();
    read_attestation(&layout, index, entry["digest"].as_str().unwrap())
}

/// The attestation manifest `digest` of `index`, its config and statements, from `layout`.
pub(crate) fn read_attestation(layout: &Path, index: Value, digest: &str) -> Attestations {
    let layout = layout.to_path_buf();
    let manifest = read_json(&blob(&layout, digest));
    let config = read_json(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let statements = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["annotations"]["in-toto.io/predicate-type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                std::fs::read(blob(&layout, l["digest"].as_str().unwrap())).expect("statement"),
            )
        })
        .collect();
    Attestations {
        index,
        manifest,
        config,
        statements,
    }
}
