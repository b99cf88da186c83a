//! The image index of a multi-platform build: one manifest per platform, each descriptor
//! carrying its `platform`, in the OCI index media type (Docker's manifest list when every
//! image is in Docker's family), and the index written into an OCI layout. Building the
//! images is the orchestrator's; pushing the index is the registry's.

use std::path::Path;

use serde_json::{json, Value};

use super::output::{name_in_layout, put_image_blobs, put_layout_blob};
use super::{BuiltImage, Error, Family, Result};
use crate::layer::Digest;
use crate::oci::digest;
use crate::oci::media_type::{DOCKER_MANIFEST_LIST, OCI_INDEX};

/// One platform's image as the index lists it.
pub struct PlatformImage<'a> {
    pub image: &'a BuiltImage,
    pub os: &'a str,
    pub architecture: &'a str,
    pub variant: Option<&'a str>,
}

/// An assembled index: its exact bytes, their digest and media type.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: &'static str,
}

/// The index over `images`, in the order given.
pub fn assemble(images: &[PlatformImage<'_>]) -> Result<BuiltIndex> {
    let docker = images.iter().all(|p| p.image.family == Family::Docker);
    let media_type = if docker {
        DOCKER_MANIFEST_LIST
    } else {
        OCI_INDEX
    };
    let manifests: Vec<Value> = images
        .iter()
        .map(|p| {
            let mut platform = json!({"architecture": p.architecture, "os": p.os});
            if let Some(variant) = p.variant {
                platform["variant"] = json!(variant);
            }
            json!({
                "mediaType": p.image.family.manifest(),
                "digest": p.image.manifest_digest.0,
                "size": p.image.manifest.len(),
                "platform": platform,
            })
        })
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
    let bytes = serde_json::to_vec(&index).map_err(|source| Error::BadConfig {
        what: "the image index".into(),
        source,
    })?;
    Ok(BuiltIndex {
        digest: Digest(digest::of_bytes(&bytes)),
        bytes,
        media_type,
    })
}

/// Writes (or adds to) an OCI layout at `dir`: every image's blobs, the index as a blob,
/// and `ref_name` pointing at the index.
pub fn write_oci_layout(
    index: &BuiltIndex,
    images: &[PlatformImage<'_>],
    ref_name: &str,
    dir: &Path,
) -> Result<()> {
    for p in images {
        put_image_blobs(p.image, dir)?;
    }
    put_layout_blob(dir, index.digest.hex(), None, Some(&index.bytes))?;
    let descriptor = json!({
        "mediaType": index.media_type,
        "digest": index.digest.0,
        "size": index.bytes.len(),
    });
    name_in_layout(dir, descriptor, ref_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(manifest: &[u8], family: Family) -> BuiltImage {
        BuiltImage {
            config: b"{}".to_vec(),
            config_digest: Digest(digest::of_bytes(b"{}")),
            manifest: manifest.to_vec(),
            manifest_digest: Digest(digest::of_bytes(manifest)),
            family,
            layers: Vec::new(),
        }
    }

    #[test]
    fn every_manifest_carries_its_platform() {
        let (amd, arm) = (image(b"a", Family::Oci), image(b"b", Family::Oci));
        let index = assemble(&[
            PlatformImage {
                image: &amd,
                os: "linux",
                architecture: "amd64",
                variant: None,
            },
            PlatformImage {
                image: &arm,
                os: "linux",
                architecture: "arm64",
                variant: Some("v8"),
            },
        ])
        .unwrap();
        assert_eq!(index.media_type, OCI_INDEX);
        assert_eq!(index.digest.0, digest::of_bytes(&index.bytes));
        let v: Value = serde_json::from_slice(&index.bytes).unwrap();
        assert_eq!(v["mediaType"], OCI_INDEX);
        assert_eq!(v["manifests"][0]["digest"], amd.manifest_digest.0);
        assert_eq!(
            v["manifests"][0]["platform"],
            json!({"architecture": "amd64", "os": "linux"})
        );
        assert_eq!(v["manifests"][1]["platform"]["variant"], "v8");
        assert_eq!(v["manifests"][1]["size"], 1);
        let docker = image(b"c", Family::Docker);
        let list = assemble(&[PlatformImage {
            image: &docker,
            os: "linux",
            architecture: "amd64",
            variant: None,
        }])
        .unwrap();
        assert_eq!(list.media_type, DOCKER_MANIFEST_LIST);
    }
}
