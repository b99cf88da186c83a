//! Pushing an image: blobs first (skipping those the registry has), the manifest last.
//!
//! Each blob is first looked for in the target repository; a blob known to be in another
//! repository of the same registry (pulled from it, or pushed there earlier in this run) is
//! mounted from there; anything else is streamed from its file (a blob not downloaded yet,
//! taken by digest from a base image or a cache entry, is fetched first), so no layer is ever
//! held in memory, and the registry checks the digest: in one request up to [`CHUNKED_ABOVE`] bytes
//! (as Docker pushes), larger blobs as a chunked upload session (a `PATCH` per 4 MiB piece,
//! the size oci-client sends, then the closing `PUT`), which proxies and registries with a
//! request-size limit accept. Blobs go up in parallel. The
//! manifest is pushed only after every blob succeeded, so a failed push leaves no tag behind,
//! and a whole failed push is retried `--push-retry` times. The manifest bytes are the
//! caller's and are pushed unchanged; writing them is the image module's job. The permission
//! check run before a build lives here too.

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt as _, TryStreamExt as _};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference};
use tokio::io::AsyncReadExt as _;
use tracing::{debug, info};

use super::address::{parse_reference, sha256_hex};
use super::auth::Credentials;
use super::error::{Error, Result};
use super::retry::{retry, with_retries, FIRST_OPERATION_BACKOFF};
use super::{BlobFile, Direction, PushImage, Registry};
use crate::oci::digest;

/// Blob uploads running at once for one image.
const PARALLEL_UPLOADS: usize = 4;
/// Size of each read from a blob file while uploading in one request.
const UPLOAD_CHUNK: usize = 256 * 1024;
/// Blobs above this size are uploaded in chunks, unless `KILN_PUSH_CHUNKED_ABOVE` says otherwise.
pub(crate) const CHUNKED_ABOVE: u64 = 2 * 1024 * 1024 * 1024;
/// Size of each read (and so each `PATCH`) of a chunked upload; oci-client sends at most
/// 4 MiB per request.
const CHUNKED_PIECE: usize = 4 * 1024 * 1024;

impl Registry {
    /// Pushes `image` to `reference` and returns the manifest digest (`sha256:` of the exact
    /// manifest bytes). The manifest is tagged with the reference's tag, or stored by digest
    /// when the reference has only a digest (which must then be the manifest's).
    pub async fn push(&self, reference: &str, image: &PushImage) -> Result<String> {
        info!(
            reference,
            blobs = image.blobs.len(),
            bytes = image.blobs.iter().map(|b| b.size).sum::<u64>(),
            "pushing image"
        );
        retry(
            "push image",
            self.opts.push_retry,
            FIRST_OPERATION_BACKOFF,
            |e| e.is_transient() || matches!(e, Error::Task { .. }),
            || self.push_once(reference, image),
        )
        .await
    }

    /// Checks, before anything is built, that the credentials for `reference` may push to
    /// its repository: starts a blob upload there, which needs push access, and leaves it
    /// unfinished (the registry discards it).
    pub async fn check_push_permission(&self, reference: &str) -> Result<()> {
        let parsed = self
            .route(&parse_reference(reference)?, Direction::Push)
            .await?;
        let (client, creds) = self
            .connect(&parsed, Direction::Push)
            .await
            .map_err(|e| Error::PushPermission(Box::new(e)))?;
        // The digest of nothing: a mount of it from the repository itself cannot succeed, so
        // the registry answers 202 (an upload started) when pushing is allowed.
        let probe = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let result = with_retries("check push permission", || async {
            client
                .mount_blob(&parsed, &parsed, probe)
                .await
                .map_err(|source| Error::PushBlob {
                    reference: parsed.whole(),
                    digest: probe.to_string(),
                    source,
                })
        })
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(Error::PushBlob {
                source: OciDistributionError::SpecViolationError(_),
                ..
            }) => Ok(()),
            Err(e) => Err(Error::PushPermission(Box::new(self.explain_denied(
                e,
                &parsed,
                Direction::Push,
                &creds,
            )))),
        }
    }

    async fn push_once(&self, reference: &str, image: &PushImage) -> Result<String> {
        let parsed = parse_reference(reference)?;
        let name = parsed.whole();
        let manifest_digest = digest::of_bytes(&image.manifest);
        // With both a tag and a digest, the tag is what gets pushed; with only a digest, the
        // manifest must have that digest.
        let target = match (parsed.tag(), parsed.digest()) {
            (Some(tag), _) => Reference::with_tag(
                parsed.registry().to_string(),
                parsed.repository().to_string(),
                tag.to_string(),
            ),
            (None, Some(digest)) if digest == manifest_digest => parsed.clone(),
            (None, _) => {
                return Err(Error::ManifestDigest {
                    reference: name,
                    actual: manifest_digest,
                })
            }
        };
        let media_type_error = || Error::ManifestMediaType {
            reference: name.clone(),
            media_type: image.manifest_media_type.clone(),
        };
        // The header value rules, checked before any upload so a bad type fails early.
        let media_type = image.manifest_media_type.as_str();
        if media_type.is_empty() || !media_type.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(media_type_error());
        }
        for blob in &image.blobs {
            sha256_hex(&name, &blob.digest)?;
        }
        let target = self.route(&target, Direction::Push).await?;
        let (client, creds) = self.connect(&target, Direction::Push).await?;
        self.push_with(&client, &creds, &target, &name, image, &manifest_digest)
            .await
            .map_err(|e| self.explain_denied(e, &target, Direction::Push, &creds))
    }

    async fn push_with(
        &self,
        client: &Client,
        creds: &Credentials,
        target: &Reference,
        name: &str,
        image: &PushImage,
        manifest_digest: &str,
    ) -> Result<String> {
        let media_type_error = || Error::ManifestMediaType {
            reference: name.to_string(),
            media_type: image.manifest_media_type.clone(),
        };
        let media_type = image.manifest_media_type.as_str();

        let mut unique: Vec<&BlobFile> = Vec::new();
        for blob in &image.blobs {
            if !unique.iter().any(|b| b.digest == blob.digest) {
                unique.push(blob);
            }
        }
        let mut sources: Vec<Reference> = Vec::new();
        for blob in &unique {
            if let Some(from) = self.mount_source(&blob.digest, target) {
                if !sources.iter().any(|s| s.repository() == from.repository()) {
                    sources.push(from);
                }
            }
        }
        self.authorize_mounts(client, creds, target, &sources).await;
        let total = unique.iter().map(|b| b.size).sum();
        let shown = crate::progress::Transfer::start(format!("push {name}"), total);
        let uploaded = stream::iter(unique)
            .map(|blob| async {
                let sent = self.push_blob(client, target, name, blob).await?;
                shown.add(blob.size);
                Ok(sent)
            })
            // Boxing keeps the future `Send` (rust-lang/rust#104382).
            .boxed()
            .buffer_unordered(PARALLEL_UPLOADS)
            .try_collect::<Vec<Sent>>()
            .await?;
        let count = |kind| uploaded.iter().filter(|s| **s == kind).count();

        let manifest = Bytes::from(image.manifest.clone());
        with_retries("push manifest", || async {
            let content_type = media_type.parse().map_err(|_| media_type_error())?;
            client
                .push_manifest_raw(target, manifest.clone(), content_type)
                .await
                .map_err(|source| Error::PushManifest {
                    reference: name.to_string(),
                    source,
                })
        })
        .await?;
        info!(
            reference = %name,
            digest = %manifest_digest,
            uploaded = count(Sent::Uploaded),
            mounted = count(Sent::Mounted),
            skipped = count(Sent::Present),
            "pushed image"
        );
        for blob in &image.blobs {
            self.note_blob(&blob.digest, target);
        }
        Ok(manifest_digest.to_string())
    }
}

/// What pushing one blob took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The repository had it already.
    Present,
    /// Mounted from another repository of the registry.
    Mounted,
    /// Its bytes were uploaded.
    Uploaded,
}

impl Registry {
    /// Uploads one blob unless the repository already has it or it can be mounted.
    async fn push_blob(
        &self,
        client: &Client,
        target: &Reference,
        name: &str,
        blob: &BlobFile,
    ) -> Result<Sent> {
        let exists = with_retries("check blob", || async {
            client
                .blob_exists(target, &blob.digest)
                .await
                .map_err(|source| Error::BlobExists {
                    reference: name.to_string(),
                    digest: blob.digest.clone(),
                    source,
                })
        })
        .await?;
        if exists {
            debug!(reference = %name, digest = %blob.digest, "blob already in registry");
            return Ok(Sent::Present);
        }
        if let Some(from) = self.mount_source(&blob.digest, target) {
            // 201 means mounted; anything else (a 202 that starts an upload, when the source is
            // not readable with these credentials) falls back to uploading.
            match client.mount_blob(target, &from, &blob.digest).await {
                Ok(()) => {
                    debug!(reference = %name, digest = %blob.digest, from = %from.whole(), "mounted blob");
                    return Ok(Sent::Mounted);
                }
                Err(e) => {
                    debug!(reference = %name, digest = %blob.digest, from = %from.whole(), error = %e, "mount refused, uploading");
                }
            }
        }
        if !blob.path.exists() {
            // a blob the build never needed the bytes of (a base layer or a cache entry's,
            // taken by digest): downloaded only now that neither the target has it nor a mount
            // brought it
            self.fetch_blob(&blob.digest, blob.size, &blob.path).await?;
        }
        let chunked = blob.size > self.opts.push_chunked_above.unwrap_or(CHUNKED_ABOVE);
        let push_error = |source| Error::PushBlob {
            reference: name.to_string(),
            digest: blob.digest.clone(),
            source,
        };
        with_retries("upload blob", || async {
            if chunked {
                let body = open_blob(name, blob, CHUNKED_PIECE).await?;
                let sent = client
                    .push_blob_stream_chunked(target, body)
                    .await
                    .map_err(push_error)?;
                if sent.blob_digest != blob.digest {
                    return Err(push_error(OciDistributionError::GenericError(Some(
                        format!(
                            "{} changed while it was uploaded: its bytes hash to {}",
                            blob.path.display(),
                            sent.blob_digest
                        ),
                    ))));
                }
                return Ok(());
            }
            let body = open_blob(name, blob, UPLOAD_CHUNK).await?;
            client
                .push_blob_stream(target, body, &blob.digest, Some(blob.size))
                .await
                .map(drop)
                .map_err(push_error)
        })
        .await?;
        debug!(reference = %name, digest = %blob.digest, size = blob.size, chunked, "uploaded blob");
        Ok(Sent::Uploaded)
    }
}

/// Opens a blob file, checks its size, and turns it into a stream of chunks. A read error
/// ends the stream with that error.
async fn open_blob(
    name: &str,
    blob: &BlobFile,
    piece: usize,
) -> Result<impl Stream<Item = std::result::Result<Bytes, OciDistributionError>> + Send + 'static> {
    let file_error = |source| Error::BlobFile {
        reference: name.to_string(),
        digest: blob.digest.clone(),
        path: blob.path.clone(),
        source,
    };
    let file = tokio::fs::File::open(&blob.path)
        .await
        .map_err(file_error)?;
    let actual = file.metadata().await.map_err(file_error)?.len();
    if actual != blob.size {
        return Err(Error::BlobFileSize {
            reference: name.to_string(),
            digest: blob.digest.clone(),
            path: blob.path.clone(),
            expected: blob.size,
            actual,
        });
    }
    Ok(stream::try_unfold(file, move |mut file| async move {
        // fill the piece: a chunked upload sends each item as one PATCH
        let mut buf = vec![0u8; piece];
        let mut n = 0;
        while n < piece {
            let read = file.read(&mut buf[n..]).await?;
            if read == 0 {
                break;
            }
            n += read;
        }
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    }))
}
