//! Pushing an image: blobs first (skipping those the registry has), the manifest last.
//!
//! Each blob is streamed from its file in one monolithic upload, so no layer is ever held in
//! memory; the registry checks the digest. The manifest is pushed only after every blob
//! succeeded, so a failed push leaves no tag behind. The manifest bytes are the caller's and
//! are pushed unchanged; writing them is the image module's job.

use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt as _, TryStreamExt as _};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;
use tracing::{debug, info};

use super::{
    parse_reference, sha256_hex, with_retries, BlobFile, Direction, Error, PushImage, Registry,
    Result,
};

/// Blob uploads running at once for one image.
const PARALLEL_UPLOADS: usize = 4;
/// Size of each read from a blob file while uploading.
const UPLOAD_CHUNK: usize = 256 * 1024;

impl Registry {
    /// Pushes `image` to `reference` and returns the manifest digest (`sha256:` of the exact
    /// manifest bytes). The manifest is tagged with the reference's tag, or stored by digest
    /// when the reference has only a digest (which must then be the manifest's).
    pub async fn push(&self, reference: &str, image: &PushImage) -> Result<String> {
        let parsed = parse_reference(reference)?;
        let name = parsed.whole();
        let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&image.manifest)));
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
        let (client, _auth) = self.connect(&target, Direction::Push).await?;

        let mut unique: Vec<&BlobFile> = Vec::new();
        for blob in &image.blobs {
            if !unique.iter().any(|b| b.digest == blob.digest) {
                unique.push(blob);
            }
        }
        let uploaded = stream::iter(unique)
            .map(|blob| push_blob(&client, &target, &name, blob))
            // Boxing keeps the future `Send` (rust-lang/rust#104382).
            .boxed()
            .buffer_unordered(PARALLEL_UPLOADS)
            .try_collect::<Vec<bool>>()
            .await?;
        let skipped = uploaded.iter().filter(|u| !**u).count();

        let manifest = Bytes::from(image.manifest.clone());
        with_retries("push manifest", || async {
            let content_type = media_type.parse().map_err(|_| media_type_error())?;
            client
                .push_manifest_raw(&target, manifest.clone(), content_type)
                .await
                .map_err(|source| Error::PushManifest {
                    reference: name.clone(),
                    source,
                })
        })
        .await?;
        info!(
            reference = %name,
            digest = %manifest_digest,
            uploaded = uploaded.len() - skipped,
            skipped,
            "pushed image"
        );
        Ok(manifest_digest)
    }
}

/// Uploads one blob unless the repository already has it. Returns whether it was uploaded.
async fn push_blob(
    client: &Client,
    target: &Reference,
    name: &str,
    blob: &BlobFile,
) -> Result<bool> {
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
        return Ok(false);
    }
    with_retries("upload blob", || async {
        let body = open_blob(name, blob).await?;
        client
            .push_blob_stream(target, body, &blob.digest, Some(blob.size))
            .await
            .map_err(|source| Error::PushBlob {
                reference: name.to_string(),
                digest: blob.digest.clone(),
                source,
            })
    })
    .await?;
    debug!(reference = %name, digest = %blob.digest, size = blob.size, "uploaded blob");
    Ok(true)
}

/// Opens a blob file, checks its size, and turns it into a stream of chunks. A read error
/// ends the stream with that error.
async fn open_blob(
    name: &str,
    blob: &BlobFile,
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
    Ok(stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; UPLOAD_CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    }))
}
