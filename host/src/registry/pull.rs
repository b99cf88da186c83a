//! Pulling an image: manifest (through an index to one platform), config and layers.
//!
//! Blobs land in `<blob_dir>/sha256/<hex>`: each is streamed into a temporary file beside its
//! final name, checked for size and sha256 while it is written, and renamed into place only
//! when both match. A file already at the final name is reused only after its content has been
//! hashed again. Mirrors (`mirror.rs`) are tried in order before the original registry, and a
//! whole failed pull is retried `--image-download-retry` times. Unpacking layers and reading
//! the config are other modules' jobs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use oci_client::manifest::OciDescriptor;
use oci_client::{Client, Reference};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use super::address::{parse_reference, sha256_hex};
use super::auth::Credentials;
use super::blobfile::{DigestWriter, TempFile};
use super::blobs::BlobCache;
use super::error::{Error, Result};
use super::fetch::MAX_MANIFEST_BYTES;
use super::platform::{
    config_platform, describe_platforms, satisfies, select_entry, Descriptor, Manifest, Platform,
    ACCEPTED_MANIFESTS,
};
use super::retry::{retry, with_retries, FIRST_OPERATION_BACKOFF};
use super::stream::Tee;
use super::{mirror, Direction, PulledImage, PulledLayer, Registry};
use crate::oci::digest::{self, hash_file};

/// The largest image config kiln reads (it is held in memory whole).
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Blob downloads running at once for one image.
const PARALLEL_DOWNLOADS: usize = 4;

/// Distinguishes temporary files of concurrent downloads in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Registry {
    /// Resolves `reference`, follows an index to `platform`, and downloads the config and every
    /// layer into `blob_dir/sha256/<hex>`, reusing blobs already there with the right content.
    /// Mirrors of the reference's registry are tried first, in order.
    pub async fn pull(
        &self,
        reference: &str,
        platform: &Platform,
        blob_dir: &Path,
    ) -> Result<PulledImage> {
        let reference = parse_reference(reference)?;
        if let Some(dir) = &self.opts.cache_dir {
            let cache = BlobCache::new(dir);
            let (name, platform_owned, blobs) =
                (reference.whole(), platform.clone(), blob_dir.to_path_buf());
            let cached =
                tokio::task::spawn_blocking(move || cache.load(&name, &platform_owned, &blobs))
                    .await
                    .map_err(|source| Error::Task {
                        reference: reference.whole(),
                        digest: String::new(),
                        source,
                    })??;
            if let Some(image) = cached {
                info!(reference = %image.reference, digest = %image.manifest_digest, cache = %dir.display(), "base image from the cache");
                return Ok(image);
            }
            debug!(reference = %reference.whole(), cache = %dir.display(), "not in the cache");
        }
        self.pull_network(&reference, platform, blob_dir).await
    }

    /// `reference`'s manifest digest and config, as `pull` would find them, with no layer
    /// downloaded (`layers` says where each would be): what `--dry-run` needs of a base image.
    /// A `--cache-dir` copy is used when there is one; mirrors are not tried.
    pub async fn pull_config(
        &self,
        reference: &str,
        platform: &Platform,
        blob_dir: &Path,
    ) -> Result<PulledImage> {
        let parsed = parse_reference(reference)?;
        if let Some(dir) = &self.opts.cache_dir {
            let cache = BlobCache::new(dir);
            let (name, platform_owned, blobs) =
                (parsed.whole(), platform.clone(), blob_dir.to_path_buf());
            let cached =
                tokio::task::spawn_blocking(move || cache.load(&name, &platform_owned, &blobs))
                    .await
                    .map_err(|source| Error::Task {
                        reference: parsed.whole(),
                        digest: String::new(),
                        source,
                    })??;
            if let Some(image) = cached {
                info!(reference = %image.reference, digest = %image.manifest_digest, cache = %dir.display(), "base image from the cache");
                return Ok(image);
            }
        }
        let candidates = mirror::candidates(&self.opts, &parsed);
        let mut last_error = None;
        for (i, candidate) in candidates.iter().enumerate() {
            let result = retry(
                "pull image",
                self.opts.image_download_retry,
                FIRST_OPERATION_BACKOFF,
                |e| !e.is_denied(),
                || self.pull_config_from(&parsed, candidate, platform, blob_dir),
            )
            .await;
            match result {
                Ok(image) => return Ok(image),
                Err(e) if i + 1 < candidates.len() => {
                    warn!(
                        reference = %candidate.whole(),
                        error = %e,
                        next = %candidates[i + 1].whole(),
                        "pull failed, trying the next registry"
                    );
                    last_error = Some(e);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::NoMatchingPlatform {
            reference: parsed.whole(),
            platform: platform.to_string(),
            available: String::new(),
        }))
    }

    /// `pull_config` from one registry (a mirror or the reference's own); the repository it
    /// came from is remembered for every blob, so a layer can be fetched (`fetch_blob`) or
    /// mounted (`push`) later.
    async fn pull_config_from(
        &self,
        parsed: &Reference,
        candidate: &Reference,
        platform: &Platform,
        blob_dir: &Path,
    ) -> Result<PulledImage> {
        let routed = &self.route(candidate, Direction::Pull).await?;
        let (client, creds) = self.connect(routed, Direction::Pull).await?;
        let manifest = self
            .resolve_manifest(&creds, routed, platform)
            .await
            .map_err(|e| self.explain_denied(e, routed, Direction::Pull, &creds))?;
        let sha_dir = blob_dir.join("sha256");
        tokio::fs::create_dir_all(&sha_dir)
            .await
            .map_err(|source| Error::BlobDir {
                reference: parsed.whole(),
                path: sha_dir.clone(),
                source,
            })?;
        let name = parsed.whole();
        let fetcher = BlobFetcher {
            registry: self,
            client: &client,
            creds: &creds,
            reference: &manifest.reference,
            name: &name,
            sha_dir: &sha_dir,
            tee: None,
        };
        let config = fetcher.fetch_config(&manifest.config, platform).await?;
        self.note_blob(&manifest.config.digest, &manifest.reference);
        for layer in &manifest.layers {
            self.note_blob(&layer.digest, &manifest.reference);
        }
        let layers = manifest
            .layers
            .iter()
            .map(|l| PulledLayer {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
                path: sha_dir.join(l.digest.strip_prefix("sha256:").unwrap_or(&l.digest)),
            })
            .collect();
        Ok(PulledImage {
            reference: name,
            manifest_digest: digest::of_bytes(&manifest.body),
            manifest_media_type: manifest.media_type,
            config,
            config_digest: manifest.config.digest.clone(),
            layers,
            manifest: manifest.body.to_vec(),
        })
    }

    /// Makes `path` (`<blob_dir>/sha256/<hex>`) hold the blob `digest` of `size` bytes,
    /// downloading it from a repository known to have it (one an image or a cache entry was
    /// resolved from without its layers). False when no repository is known for it.
    pub async fn fetch_blob(&self, digest: &str, size: u64, path: &Path) -> Result<bool> {
        self.fetch_blob_teed(digest, size, path, None).await
    }

    /// [`Registry::fetch_blob`], with every byte also handed to `tee`'s reader as it arrives
    /// (and the reader's end only after the blob was verified: `stream.rs`).
    pub async fn fetch_blob_streamed(
        &self,
        digest: &str,
        size: u64,
        path: &Path,
        tee: Tee,
    ) -> Result<bool> {
        self.fetch_blob_teed(digest, size, path, Some(tee)).await
    }

    async fn fetch_blob_teed(
        &self,
        digest: &str,
        size: u64,
        path: &Path,
        tee: Option<Tee>,
    ) -> Result<bool> {
        let tee = tee.map(Mutex::new);
        let known = self
            .known_blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
            .cloned();
        let Some(reference) = known else {
            return Ok(false);
        };
        let name = reference.whole();
        let sha_dir = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(sha_dir)
            .await
            .map_err(|source| Error::BlobDir {
                reference: name.clone(),
                path: sha_dir.to_path_buf(),
                source,
            })?;
        let routed = self.route(&reference, Direction::Pull).await?;
        let (client, creds) = self.connect(&routed, Direction::Pull).await?;
        let fetcher = BlobFetcher {
            registry: self,
            client: &client,
            creds: &creds,
            reference: &routed,
            name: &name,
            sha_dir,
            tee: tee.as_ref(),
        };
        let desc = Descriptor {
            media_type: String::new(),
            digest: digest.to_string(),
            size,
            urls: None,
            data: None,
        };
        let shown = crate::progress::Transfer::start(format!("pull {name}"), size);
        let stored = fetcher
            .fetch(&desc)
            .await
            .map_err(|e| self.explain_denied(e, &routed, Direction::Pull, &creds))?;
        if let Some(tee) = tee {
            tee.into_inner().done(stored).await;
        }
        shown.add(size);
        info!(reference = %name, %digest, size, "fetched blob");
        Ok(true)
    }

    /// Pulls `reference` from its mirrors, then its own registry.
    async fn pull_network(
        &self,
        reference: &Reference,
        platform: &Platform,
        blob_dir: &Path,
    ) -> Result<PulledImage> {
        let candidates = mirror::candidates(&self.opts, reference);
        let mut last_error = None;
        for (i, candidate) in candidates.iter().enumerate() {
            let result = retry(
                "pull image",
                self.opts.image_download_retry,
                FIRST_OPERATION_BACKOFF,
                |e| !e.is_denied(),
                || self.pull_from(candidate, platform, blob_dir),
            )
            .await;
            match result {
                Ok(mut image) => {
                    image.reference = reference.whole();
                    return Ok(image);
                }
                Err(e) if i + 1 < candidates.len() => {
                    warn!(
                        reference = %candidate.whole(),
                        error = %e,
                        next = %candidates[i + 1].whole(),
                        "pull failed, trying the next registry"
                    );
                    last_error = Some(e);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::NoMatchingPlatform {
            reference: reference.whole(),
            platform: platform.to_string(),
            available: String::new(),
        }))
    }

    /// Pulls `reference` from the network into `cache` and records it there, for builds
    /// with `--cache-dir` (`kiln warm`).
    pub async fn warm(
        &self,
        reference: &str,
        platform: &Platform,
        cache: &BlobCache,
    ) -> Result<PulledImage> {
        let parsed = parse_reference(reference)?;
        let image = self
            .pull_network(&parsed, platform, &cache.blob_dir())
            .await?;
        cache.record(&parsed.whole(), platform, &image, &image.manifest)?;
        Ok(image)
    }

    /// One attempt at pulling `reference` from its own registry.
    async fn pull_from(
        &self,
        reference: &Reference,
        platform: &Platform,
        blob_dir: &Path,
    ) -> Result<PulledImage> {
        let reference = &self.route(reference, Direction::Pull).await?;
        let (client, creds) = self.connect(reference, Direction::Pull).await?;
        self.pull_with(&client, &creds, reference, platform, blob_dir)
            .await
            .map_err(|e| self.explain_denied(e, reference, Direction::Pull, &creds))
    }

    async fn pull_with(
        &self,
        client: &Client,
        creds: &Credentials,
        reference: &Reference,
        platform: &Platform,
        blob_dir: &Path,
    ) -> Result<PulledImage> {
        let name = reference.whole();
        let ImageManifest {
            body,
            reference: manifest_ref,
            media_type,
            config,
            layers,
        } = self.resolve_manifest(creds, reference, platform).await?;
        let manifest_digest = digest::of_bytes(&body);

        let sha_dir = blob_dir.join("sha256");
        tokio::fs::create_dir_all(&sha_dir)
            .await
            .map_err(|source| Error::BlobDir {
                reference: name.clone(),
                path: sha_dir.clone(),
                source,
            })?;

        let fetcher = BlobFetcher {
            registry: self,
            client,
            creds,
            reference: &manifest_ref,
            name: &name,
            sha_dir: &sha_dir,
            tee: None,
        };
        let config_bytes = fetcher.fetch_config(&config, platform).await?;
        let layers = fetcher.fetch_layers(layers).await?;
        self.note_blob(&config.digest, &manifest_ref);
        for layer in &layers {
            self.note_blob(&layer.digest, &manifest_ref);
        }

        info!(
            reference = %name,
            digest = %manifest_digest,
            layers = layers.len(),
            "pulled image"
        );
        Ok(PulledImage {
            reference: name,
            manifest_digest,
            manifest_media_type: media_type,
            config: config_bytes,
            config_digest: config.digest,
            layers,
            manifest: body.to_vec(),
        })
    }
}

/// The blob a descriptor carries in its `data` field, when that decodes to exactly the size
/// and digest the descriptor names (anything else is ignored: the blob is then downloaded).
fn embedded(desc: &Descriptor) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = desc.data.as_deref()?;
    if text.len() as u64 > desc.size.saturating_mul(4) / 3 + 4 {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    (bytes.len() as u64 == desc.size && digest::of_bytes(&bytes) == desc.digest).then_some(bytes)
}

/// An image manifest as fetched, with the reference it was fetched by (the index entry's
/// digest when the image's reference named an index).
struct ImageManifest {
    body: bytes::Bytes,
    reference: Reference,
    media_type: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

impl Registry {
    /// Fetches `reference`'s manifest and, when it is an index, the manifest of its entry for
    /// `platform`.
    async fn resolve_manifest(
        &self,
        creds: &Credentials,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<ImageManifest> {
        let name = reference.whole();
        let (mut body, mut manifest_ref) = (
            self.fetch_manifest(creds, reference).await?,
            reference.clone(),
        );
        let mut manifest = Manifest::parse(&name, &body)?;
        if let Manifest::Index { entries } = &manifest {
            let entry =
                select_entry(entries, platform).ok_or_else(|| Error::NoMatchingPlatform {
                    reference: name.clone(),
                    platform: platform.to_string(),
                    available: describe_platforms(entries),
                })?;
            debug!(reference = %name, %platform, digest = %entry.digest, "selected index entry");
            if entry.size > MAX_MANIFEST_BYTES {
                return Err(Error::TooLarge {
                    reference: name,
                    what: "manifest",
                    digest: entry.digest.clone(),
                    size: entry.size,
                    limit: MAX_MANIFEST_BYTES,
                });
            }
            manifest_ref = reference.clone_with_digest(entry.digest.clone());
            body = self.fetch_manifest(creds, &manifest_ref).await?;
            manifest = Manifest::parse(&manifest_ref.whole(), &body)?;
        }
        let Manifest::Image {
            media_type,
            config,
            layers,
        } = manifest
        else {
            return Err(Error::NestedIndex {
                reference: name,
                platform: platform.to_string(),
            });
        };
        Ok(ImageManifest {
            body,
            reference: manifest_ref,
            media_type,
            config,
            layers,
        })
    }

    /// Fetches a manifest or index (at most `MAX_MANIFEST_BYTES`, `fetch.rs`), retrying
    /// transient failures. The body is checked against the reference's digest and the
    /// `Docker-Content-Digest` header when present.
    async fn fetch_manifest(
        &self,
        creds: &Credentials,
        reference: &Reference,
    ) -> Result<bytes::Bytes> {
        with_retries("fetch manifest", || {
            self.get_manifest(reference, creds, ACCEPTED_MANIFESTS)
        })
        .await
    }
}

/// Downloads the blobs of one image into one directory.
struct BlobFetcher<'a> {
    registry: &'a Registry,
    /// For blobs with `urls` (foreign layers), which oci-client fetches from there.
    client: &'a Client,
    creds: &'a Credentials,
    /// The repository to fetch from.
    reference: &'a Reference,
    /// The reference the user asked for, for messages.
    name: &'a str,
    sha_dir: &'a Path,
    /// Where a blob's bytes also go as they arrive (`fetch_blob_streamed`).
    tee: Option<&'a Mutex<Tee>>,
}

impl BlobFetcher<'_> {
    /// Downloads the config blob and returns its bytes. Docker pulls a single-platform image
    /// whatever it was built for, with a warning; so does this.
    /// A config larger than `MAX_CONFIG_BYTES` is refused before any of it is downloaded (the
    /// download is held to the size its descriptor says).
    async fn fetch_config(&self, config: &Descriptor, platform: &Platform) -> Result<Vec<u8>> {
        if config.size > MAX_CONFIG_BYTES {
            return Err(Error::TooLarge {
                reference: self.name.to_string(),
                what: "image config",
                digest: config.digest.clone(),
                size: config.size,
                limit: MAX_CONFIG_BYTES,
            });
        }
        let config_bytes = match embedded(config) {
            Some(bytes) => {
                debug!(reference = %self.name, digest = %config.digest, "config embedded in the manifest");
                bytes
            }
            None => {
                let config_path = self.fetch(config).await?;
                tokio::fs::read(&config_path)
                    .await
                    .map_err(|source| Error::BlobFile {
                        reference: self.name.to_string(),
                        digest: config.digest.clone(),
                        path: config_path.clone(),
                        source,
                    })?
            }
        };
        if let Some(have) = config_platform(&config_bytes) {
            if !satisfies(&have, platform) {
                warn!(
                    reference = %self.name,
                    image = %have,
                    wanted = %platform,
                    "image platform differs from the one asked for"
                );
            }
        }
        Ok(config_bytes)
    }

    /// Downloads `layers` (each digest once, several at a time) and returns them in manifest
    /// order.
    async fn fetch_layers(&self, layers: Vec<Descriptor>) -> Result<Vec<PulledLayer>> {
        // An image may list the same layer twice; download each digest once.
        let mut unique: Vec<&Descriptor> = Vec::new();
        for layer in &layers {
            if !unique.iter().any(|d| d.digest == layer.digest) {
                unique.push(layer);
            }
        }
        let total = unique.iter().map(|d| d.size).sum();
        let shown = crate::progress::Transfer::start(format!("pull {}", self.name), total);
        stream::iter(unique)
            .map(|layer| async {
                let path = self.fetch(layer).await?;
                shown.add(layer.size);
                Ok(path)
            })
            // Boxing keeps the future `Send` (rust-lang/rust#104382).
            .boxed()
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .try_collect::<Vec<PathBuf>>()
            .await?;
        layers
            .into_iter()
            .map(|d| {
                let hex = sha256_hex(self.name, &d.digest)?;
                Ok(PulledLayer {
                    path: self.sha_dir.join(hex),
                    digest: d.digest,
                    media_type: d.media_type,
                    size: d.size,
                })
            })
            .collect()
    }

    /// Makes `<sha_dir>/<hex>` hold the blob `desc` and returns that path.
    async fn fetch(&self, desc: &Descriptor) -> Result<PathBuf> {
        let hex = sha256_hex(self.name, &desc.digest)?;
        let path = self.sha_dir.join(&hex);
        if self.cached(desc, &hex, &path).await? {
            debug!(reference = %self.name, digest = %desc.digest, "blob already present");
            return Ok(path);
        }
        with_retries("download blob", || self.download(desc, &hex, &path)).await?;
        debug!(reference = %self.name, digest = %desc.digest, size = desc.size, "downloaded blob");
        Ok(path)
    }

    /// Whether `path` already holds the blob. A file with other content is removed.
    async fn cached(&self, desc: &Descriptor, hex: &str, path: &Path) -> Result<bool> {
        let file_error = |source| Error::BlobFile {
            reference: self.name.to_string(),
            digest: desc.digest.clone(),
            path: path.to_path_buf(),
            source,
        };
        let size = match tokio::fs::metadata(path).await {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(file_error(e)),
        };
        let intact = size == desc.size && {
            let owned = path.to_path_buf();
            tokio::task::spawn_blocking(move || hash_file(&owned))
                .await
                .map_err(|source| Error::Task {
                    reference: self.name.to_string(),
                    digest: desc.digest.clone(),
                    source,
                })?
                .map_err(file_error)?
                == hex
        };
        if !intact {
            warn!(
                reference = %self.name,
                digest = %desc.digest,
                path = %path.display(),
                "blob on disk does not match its digest, downloading it again"
            );
            tokio::fs::remove_file(path).await.map_err(file_error)?;
        }
        Ok(intact)
    }

    /// One download attempt into a fresh temporary file, renamed to `path` once verified.
    async fn download(&self, desc: &Descriptor, hex: &str, path: &Path) -> Result<()> {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = TempFile(
            self.sha_dir
                .join(format!(".{hex}.{}.{n}.partial", std::process::id())),
        );
        let file_error = |path: &Path, source| Error::BlobFile {
            reference: self.name.to_string(),
            digest: desc.digest.clone(),
            path: path.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::create(&temp.0)
            .await
            .map_err(|e| file_error(&temp.0, e))?;
        let mut writer = DigestWriter::new(file, desc.size);
        let result = if desc.urls.as_ref().is_some_and(|u| !u.is_empty()) {
            self.pull_foreign(desc, &mut writer).await
        } else {
            self.stream(desc, &mut writer, &temp.0).await
        };
        if writer.overflow || (result.is_ok() && writer.written != desc.size) {
            return Err(Error::BlobSize {
                reference: self.name.to_string(),
                digest: desc.digest.clone(),
                expected: desc.size,
                actual: writer.written,
            });
        }
        result?;
        let actual = hex::encode(writer.hasher.finalize());
        if actual != hex {
            return Err(Error::BlobDigest {
                reference: self.name.to_string(),
                digest: desc.digest.clone(),
                actual: format!("sha256:{actual}"),
            });
        }
        tokio::fs::rename(&temp.0, path)
            .await
            .map_err(|e| file_error(path, e))?;
        temp.keep();
        Ok(())
    }
}

impl BlobFetcher<'_> {
    /// Streams blob `desc` from the registry into `writer`, held to the minimum rate.
    async fn stream(
        &self,
        desc: &Descriptor,
        writer: &mut DigestWriter<tokio::fs::File>,
        file: &Path,
    ) -> Result<()> {
        let mut tee = match self.tee {
            Some(tee) => Some(tee.lock().await),
            None => None,
        };
        if let Some(tee) = tee.as_mut() {
            tee.attempt();
        }
        let answer = self
            .registry
            .get_blob(self.reference, self.creds, &desc.digest)
            .await?;
        let (mut response, url) = (answer.response, answer.url);
        let mut floor = crate::network::RateFloor::from_env();
        let failed = |source| Error::Get {
            reference: self.name.to_string(),
            url: url.clone(),
            source,
        };
        let write_failed = |source| Error::BlobFile {
            reference: self.name.to_string(),
            digest: desc.digest.clone(),
            path: file.to_path_buf(),
            source,
        };
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if let Err(e) = writer.write_all(&chunk).await {
                if writer.overflow {
                    return Ok(());
                }
                return Err(write_failed(e));
            }
            if let Some(tee) = tee.as_mut() {
                // the time the reader keeps the download waiting is not the network's
                floor.pause(tee.feed(&chunk).await);
            }
            floor.note(chunk.len() as u64).map_err(|why| Error::Slow {
                reference: self.name.to_string(),
                url: url.clone(),
                why: format!("{}: {why}", crate::redaction::redact(&url)),
            })?;
        }
        writer.flush().await.map_err(write_failed)
    }

    /// Fetches a blob that names `urls` (a foreign layer) through oci-client, which tries
    /// them, unauthenticated, when the registry does not serve it.
    async fn pull_foreign(
        &self,
        desc: &Descriptor,
        writer: &mut DigestWriter<tokio::fs::File>,
    ) -> Result<()> {
        let oci_desc = OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.clone(),
            size: i64::try_from(desc.size).unwrap_or(i64::MAX),
            urls: desc.urls.clone(),
            ..OciDescriptor::default()
        };
        let result = self
            .client
            .pull_blob(self.reference, &oci_desc, &mut *writer)
            .await;
        if writer.overflow {
            return Ok(());
        }
        result.map_err(|source| Error::PullBlob {
            reference: self.name.to_string(),
            digest: desc.digest.clone(),
            source,
        })
    }
}
