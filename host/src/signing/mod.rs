//! `--sign-key`: a cosign-compatible signature of every pushed image, so `cosign verify --key`
//! accepts it.
//!
//! After a destination is pushed, the digest its tag now points at is signed: the
//! simple-signing payload naming the repository and that digest (`manifest.rs`), signed with
//! ECDSA-SHA256 by the key read once before the build (`key.rs`), pushed as one more layer of
//! the image under `<repository>:sha256-<hex>.sig`. Signatures already under that tag are kept
//! (their layers carried over unchanged, the config rewritten for the longer layer list, as
//! cosign appends); the same signature twice is pushed once. The key and its password never
//! leave this module: not in logs, layers, errors or provenance. The registry protocol is
//! `registry`'s; when to sign is the pipeline's (`pipeline/outputs`).

mod key;
mod manifest;

use std::path::{Path, PathBuf};

use tracing::info;

use crate::registry::{self, BlobFile, PushImage, Registry};
pub use key::{Key, KeyError, PASSWORD_VAR};
pub use manifest::{SIGNATURE_ANNOTATION, SIMPLE_SIGNING};

/// Why a pushed image could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{reference}: the pushed digest {digest} is not a sha256 digest")]
    Digest { reference: String, digest: String },
    #[error("reading the signatures already at {reference}")]
    Existing {
        reference: String,
        #[source]
        source: registry::Error,
    },
    #[error("{reference} holds something that is not a signature image manifest")]
    NotSignatures { reference: String },
    #[error("writing the signature's blobs under {path}")]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pushing signature {reference}")]
    Push {
        reference: String,
        #[source]
        source: registry::Error,
    },
}

/// Signs `digest`, just pushed to `destination`, with `key`, and pushes the signature next to
/// it; returns the reference of the signature tag. Blob files are written in a temporary
/// directory under `scratch`.
pub async fn sign_pushed(
    registry: &Registry,
    key: &Key,
    destination: &str,
    digest: &str,
    scratch: &Path,
) -> Result<String, Error> {
    let (repository, docker_reference) = repository_of(destination);
    let tag = manifest::signature_tag(digest).ok_or_else(|| Error::Digest {
        reference: destination.to_string(),
        digest: digest.to_string(),
    })?;
    let reference = format!("{repository}:{tag}");
    let payload = manifest::payload(&docker_reference, digest);
    let layer = manifest::Descriptor::signature_layer(&payload, &key.sign(&payload));
    let existing = registry
        .existing_manifest(&reference)
        .await
        .map_err(|source| Error::Existing {
            reference: reference.clone(),
            source,
        })?;
    let mut layers = match existing {
        None => Vec::new(),
        Some(bytes) => manifest::existing_layers(&bytes).ok_or_else(|| Error::NotSignatures {
            reference: reference.clone(),
        })?,
    };
    if layers.contains(&layer) {
        info!(destination, %digest, signature = %reference, "already signed with this key");
        return Ok(reference);
    }
    layers.push(layer);
    let config = manifest::config(&layers);
    let sig_manifest = manifest::manifest(&config, &layers);
    let scratch_error = |source| Error::Scratch {
        path: scratch.to_path_buf(),
        source,
    };
    let dir = tempfile::tempdir_in(scratch).map_err(scratch_error)?;
    let mut blobs = Vec::new();
    for (name, bytes) in [("config.json", &config), ("payload.json", &payload)] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).map_err(scratch_error)?;
        blobs.push(BlobFile {
            digest: crate::oci::digest::of_bytes(bytes),
            size: bytes.len() as u64,
            path,
        });
    }
    let image = PushImage {
        manifest: sig_manifest,
        manifest_media_type: crate::oci::media_type::OCI_MANIFEST.to_string(),
        blobs,
    };
    registry
        .push(&reference, &image)
        .await
        .map_err(|source| Error::Push {
            reference: reference.clone(),
            source,
        })?;
    info!(destination, %digest, signature = %reference, signatures = layers.len(), key = %key.path().display(), "signed");
    Ok(reference)
}

/// A destination's repository as written (tag and digest removed) and as
/// go-containerregistry names it in a payload's `docker-reference` (Docker Hub as
/// `index.docker.io`, its official images under `library/`).
fn repository_of(destination: &str) -> (String, String) {
    let name = destination.split('@').next().unwrap_or(destination);
    let repository = match name.rsplit_once('/') {
        Some((head, last)) => match last.split_once(':') {
            Some((last, _tag)) => format!("{head}/{last}"),
            None => name.to_string(),
        },
        None => name.split(':').next().unwrap_or(name).to_string(),
    };
    let first = repository.split('/').next().unwrap_or("");
    let has_registry = repository.contains('/')
        && (first.contains('.') || first.contains(':') || first == "localhost");
    let docker_reference = if !has_registry {
        if repository.contains('/') {
            format!("index.docker.io/{repository}")
        } else {
            format!("index.docker.io/library/{repository}")
        }
    } else if let Some(rest) = repository.strip_prefix("docker.io/") {
        if rest.contains('/') {
            format!("index.docker.io/{rest}")
        } else {
            format!("index.docker.io/library/{rest}")
        }
    } else {
        repository.clone()
    };
    (repository, docker_reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories() {
        for (destination, written, claimed) in [
            (
                "127.0.0.1:5000/app:1",
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app",
            ),
            (
                "localhost:5000/a/b@sha256:00",
                "localhost:5000/a/b",
                "localhost:5000/a/b",
            ),
            (
                "reg.example/team/app:v1@sha256:00",
                "reg.example/team/app",
                "reg.example/team/app",
            ),
            ("busybox:1", "busybox", "index.docker.io/library/busybox"),
            ("me/app", "me/app", "index.docker.io/me/app"),
            (
                "docker.io/app:2",
                "docker.io/app",
                "index.docker.io/library/app",
            ),
        ] {
            assert_eq!(
                repository_of(destination),
                (written.to_string(), claimed.to_string()),
                "{destination}"
            );
        }
    }
}
