//! `--sbom` and `--provenance`: attestations attached as BuildKit's attestation storage lays
//! them out, read back with tools kiln did not write. `skopeo copy --all` fetches the index,
//! the attestation manifest and the statements from a real registry; the SBOM is compared
//! with `dpkg-query` run in the unpacked image under chroot, with the host python's
//! `importlib.metadata` and with a python walk over `node_modules`, and validated by
//! `pyspdxtools` (PyPI `spdx-tools`); the provenance is checked field by field.

// helpers of tests: a malformed answer from a tool is a test failure
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod layout;
mod platforms;
mod provenance;
mod sbom;

use std::path::Path;
use std::process::Command;

use kiln_tests::{require, run_checked};
use serde_json::Value;

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
