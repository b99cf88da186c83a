//! The OCI image index a tag points at when attestations ride along, laid out as BuildKit's
//! attestation storage: each platform's image manifest (with its platform) followed by its
//! attestation manifest (platform `unknown/unknown`, `vnd.docker.reference.type:
//! attestation-manifest`, `vnd.docker.reference.digest: <image manifest digest>`). Built from
//! plain descriptors, one image per platform, so a multi-platform build adds entries the same
//! way. Making the attestation manifests is `attest`'s; pushing them is the pipeline's.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::{Error, Result};
use crate::oci::media_type::OCI_INDEX;

/// Annotation naming what an index entry is (`attestation-manifest`).
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Annotation naming the manifest an attestation manifest is about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The value of `REFERENCE_TYPE` on an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// A blob or manifest as an index or manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    /// `sha256:<hex>`
    pub digest: String,
    pub size: u64,
}

/// One platform's image and, when there is one, its attestation manifest.
#[derive(Debug, Clone)]
pub struct PlatformImage {
    pub manifest: Descriptor,
    /// `{"architecture": …, "os": …}` (and `variant` when the platform has one)
    pub platform: Value,
    pub attestation: Option<Descriptor>,
}

/// The index entries of `images`: each image manifest followed by its attestation manifest.
pub fn index_entries(images: &[PlatformImage]) -> Vec<Value> {
    let mut entries = Vec::new();
    for image in images {
        entries.push(json!({
            "mediaType": image.manifest.media_type,
            "digest": image.manifest.digest,
            "size": image.manifest.size,
            "platform": image.platform,
        }));
        if let Some(a) = &image.attestation {
            entries.push(json!({
                "mediaType": a.media_type,
                "digest": a.digest,
                "size": a.size,
                "annotations": {
                    REFERENCE_DIGEST: image.manifest.digest,
                    REFERENCE_TYPE: ATTESTATION_MANIFEST,
                },
                "platform": {"architecture": "unknown", "os": "unknown"},
            }));
        }
    }
    entries
}

/// The index document holding `entries`.
pub fn index(entries: Vec<Value>) -> Result<Vec<u8>> {
    let doc = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
    serde_json::to_vec(&doc).map_err(|source| Error::BadConfig {
        what: "the image index".into(),
        source,
    })
}

/// The platform object of an image config (`architecture`, `os`, `variant`).
pub fn platform_of(config: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(config).unwrap_or_default();
    let mut p = Map::new();
    for key in ["architecture", "os", "variant"] {
        if let Some(s) = v.get(key).and_then(Value::as_str) {
            p.insert(key.into(), Value::String(s.into()));
        }
    }
    Value::Object(p)
}

/// Makes `name` in the OCI layout `dir` point at an index: its blobs (`(digest, bytes)`)
/// written beside the image's (which `output::write_oci_layout` wrote), the entry of `name`
/// in `index.json` replaced.
pub fn point_layout_at_index(dir: &Path, name: &str, blobs: &[(String, Vec<u8>)]) -> Result<()> {
    let io = |path: &Path, op: &'static str| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, op, source }
    };
    let store = dir.join("blobs/sha256");
    for (digest, bytes) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        let target = store.join(hex);
        std::fs::write(&target, bytes).map_err(io(&target, "write blob"))?;
    }
    let Some((index_digest, index_bytes)) = blobs.last() else {
        return Ok(());
    };
    let index_path = dir.join("index.json");
    let mut top: Value = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}));
    if let Some(Value::Array(manifests)) = top.get_mut("manifests") {
        manifests.retain(|m| {
            m.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(Value::as_str)
                != Some(name)
        });
        manifests.push(json!({
            "mediaType": OCI_INDEX,
            "digest": index_digest,
            "size": index_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": name},
        }));
    }
    let bytes = serde_json::to_vec(&top).map_err(|source| Error::BadConfig {
        what: "the layout index".into(),
        source,
    })?;
    let tmp = dir.join(".index.json.partial");
    std::fs::write(&tmp, bytes).map_err(io(&tmp, "write"))?;
    std::fs::rename(&tmp, &index_path).map_err(io(&index_path, "rename into place"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_then_its_attestation() {
        let d = |digest: &str| Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: digest.into(),
            size: 10,
        };
        let entries = index_entries(&[PlatformImage {
            manifest: d("sha256:aa"),
            platform: json!({"architecture": "amd64", "os": "linux"}),
            attestation: Some(d("sha256:bb")),
        }]);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["platform"]["architecture"], "amd64");
        assert_eq!(entries[1]["platform"]["os"], "unknown");
        assert_eq!(entries[1]["annotations"][REFERENCE_DIGEST], "sha256:aa");
        assert_eq!(
            entries[1]["annotations"][REFERENCE_TYPE],
            ATTESTATION_MANIFEST
        );
    }
}
