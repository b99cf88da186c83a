//! The pulled-blob cache behind `--cache-dir`, filled by `kiln warm` (the layer cache of
//! `--cache` is `crate::cache`, another thing).
//!
//! Layout under the cache directory:
//! - `blobs/sha256/<hex>`: manifests, configs and layers, each stored only after its sha256
//!   was checked while it was written, and checked again when read;
//! - `refs/<sha256 of "reference platform">.json`: which manifest a reference (tag or
//!   digest) resolved to for a platform when it was warmed.
//!
//! A build with `--cache-dir` looks here before the network: a reference found here is not
//! fetched at all (a tag keeps the image it had when warmed, until warmed again). Blob
//! downloads themselves are `pull.rs`'s; [`BlobCache`] only files and finds them, so a
//! later layer cache can store its blobs the same way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tracing::{debug, warn};

use super::address::sha256_hex;
use super::error::{Error, Result};
use super::platform::{Descriptor, Manifest, Platform};
use super::{PulledImage, PulledLayer};
use crate::oci::digest::{self, hash_file};

/// A directory of blobs by digest, plus resolved references.
#[derive(Debug, Clone)]
pub struct BlobCache {
    dir: PathBuf,
}

/// What `refs/<key>.json` holds.
#[derive(Debug, Serialize, Deserialize)]
struct RefEntry {
    reference: String,
    platform: String,
    manifest_digest: String,
    manifest_media_type: String,
}

impl BlobCache {
    /// The cache at `dir` (created on first write).
    pub fn new(dir: &Path) -> BlobCache {
        BlobCache {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory blobs are downloaded into: `<dir>/blobs` (they land in `sha256/<hex>`).
    pub fn blob_dir(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    /// Where the blob `digest` is (or would be) stored.
    pub fn blob_path(&self, reference: &str, digest: &str) -> Result<PathBuf> {
        Ok(self
            .blob_dir()
            .join("sha256")
            .join(sha256_hex(reference, digest)?))
    }

    /// The path of blob `digest` when it is in the cache with `size` bytes and the right
    /// content; `None` otherwise (a damaged file is removed).
    pub fn verified_blob(
        &self,
        reference: &str,
        digest: &str,
        size: u64,
    ) -> Result<Option<PathBuf>> {
        let path = self.blob_path(reference, digest)?;
        let file_error = |source| Error::BlobFile {
            reference: reference.to_string(),
            digest: digest.to_string(),
            path: path.clone(),
            source,
        };
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == size => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(file_error(e)),
        }
        let hex = sha256_hex(reference, digest)?;
        if hash_file(&path).map_err(file_error)? == hex {
            Ok(Some(path))
        } else {
            warn!(reference, digest, path = %path.display(), "cached blob is damaged, ignoring it");
            let _ = std::fs::remove_file(&path);
            Ok(None)
        }
    }

    /// Stores `bytes` (a manifest) under their digest; returns the digest.
    pub fn put_bytes(&self, reference: &str, bytes: &[u8]) -> Result<String> {
        let digest = digest::of_bytes(bytes);
        let path = self.blob_path(reference, &digest)?;
        write_atomic(reference, &digest, &path, bytes)?;
        Ok(digest)
    }

    /// Records that `reference` resolved to `image` for `platform`; `manifest` is the image
    /// manifest's bytes. The image's blobs must already be in [`BlobCache::blob_dir`].
    pub fn record(
        &self,
        reference: &str,
        platform: &Platform,
        image: &PulledImage,
        manifest: &[u8],
    ) -> Result<()> {
        let digest = self.put_bytes(reference, manifest)?;
        let entry = RefEntry {
            reference: reference.to_string(),
            platform: platform.to_string(),
            manifest_digest: digest,
            manifest_media_type: image.manifest_media_type.clone(),
        };
        let json = serde_json::to_vec_pretty(&entry).map_err(|source| Error::ManifestJson {
            reference: reference.to_string(),
            source,
        })?;
        let path = self.ref_path(reference, platform);
        write_atomic(reference, &entry.manifest_digest, &path, &json)
    }

    /// The image `reference` resolved to for `platform` when it was warmed, with every blob
    /// verified and linked (or copied) into `blob_dir/sha256/`; `None` when anything is
    /// missing or damaged.
    pub fn load(
        &self,
        reference: &str,
        platform: &Platform,
        blob_dir: &Path,
    ) -> Result<Option<PulledImage>> {
        let Ok(text) = std::fs::read(self.ref_path(reference, platform)) else {
            return Ok(None);
        };
        let Ok(entry) = serde_json::from_slice::<RefEntry>(&text) else {
            return Ok(None);
        };
        let manifest_path = self.blob_path(reference, &entry.manifest_digest)?;
        let Ok(manifest) = std::fs::read(&manifest_path) else {
            return Ok(None);
        };
        if digest::of_bytes(&manifest) != entry.manifest_digest {
            warn!(reference, path = %manifest_path.display(), "cached manifest is damaged, ignoring it");
            return Ok(None);
        }
        let Manifest::Image {
            media_type,
            config,
            layers,
        } = Manifest::parse(reference, &manifest)?
        else {
            return Ok(None);
        };
        let sha_dir = blob_dir.join("sha256");
        std::fs::create_dir_all(&sha_dir).map_err(|source| Error::BlobDir {
            reference: reference.to_string(),
            path: sha_dir.clone(),
            source,
        })?;
        let link = |desc: &Descriptor| -> Result<Option<PathBuf>> {
            let Some(cached) = self.verified_blob(reference, &desc.digest, desc.size)? else {
                debug!(reference, digest = %desc.digest, "blob missing from the cache");
                return Ok(None);
            };
            let dest = sha_dir.join(sha256_hex(reference, &desc.digest)?);
            link_or_copy(&cached, &dest).map_err(|source| Error::BlobFile {
                reference: reference.to_string(),
                digest: desc.digest.clone(),
                path: dest.clone(),
                source,
            })?;
            Ok(Some(dest))
        };
        let Some(config_path) = link(&config)? else {
            return Ok(None);
        };
        let mut pulled_layers = Vec::new();
        for desc in &layers {
            let Some(path) = link(desc)? else {
                return Ok(None);
            };
            pulled_layers.push(PulledLayer {
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
                size: desc.size,
                path,
            });
        }
        let config_bytes = std::fs::read(&config_path).map_err(|source| Error::BlobFile {
            reference: reference.to_string(),
            digest: config.digest.clone(),
            path: config_path,
            source,
        })?;
        Ok(Some(PulledImage {
            reference: reference.to_string(),
            manifest_digest: entry.manifest_digest,
            manifest_media_type: media_type,
            config: config_bytes,
            config_digest: config.digest,
            layers: pulled_layers,
            manifest,
        }))
    }

    fn ref_path(&self, reference: &str, platform: &Platform) -> PathBuf {
        let key = hex::encode(Sha256::digest(format!("{reference} {platform}").as_bytes()));
        self.dir.join("refs").join(format!("{key}.json"))
    }
}

/// The extension of a temporary file no other writer uses (stages pull side by side).
fn partial_extension() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("partial.{}.{n}", std::process::id())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see a
/// partial file.
fn write_atomic(reference: &str, digest: &str, path: &Path, bytes: &[u8]) -> Result<()> {
    let file_error = |source| Error::BlobFile {
        reference: reference.to_string(),
        digest: digest.to_string(),
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(file_error)?;
    }
    let temp = path.with_extension(partial_extension());
    std::fs::write(&temp, bytes).map_err(file_error)?;
    std::fs::rename(&temp, path).map_err(file_error)
}

/// Hard-links `from` to `to` (copies across file systems); an existing `to` is kept.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.exists() {
        return Ok(());
    }
    match std::fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => {
            let temp = to.with_extension(partial_extension());
            std::fs::copy(from, &temp)?;
            std::fs::rename(&temp, to)
        }
    }
}
