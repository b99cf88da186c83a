//! A root's layers applied in order, the first one the blob store lacks extracted while it
//! downloads: its bytes go to the store (hashed, for the push and later builds) and, through
//! `registry::stream`, to the extraction on a blocking thread at the same time, while the
//! layers after it are fetched into the store. The extraction only sees the end of its
//! stream once the download verified the blob's size and digest; when either side fails the
//! download's error comes first (it names the image and the digest), and the root is not
//! used (the stage fails with it).

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use futures_util::stream::{self as items, StreamExt as _, TryStreamExt as _};

use super::Build;
use crate::layer::{extract, LayerBlob};
use crate::registry::stream;
use crate::rootfs::Root;
use crate::task::blocking;

/// Layer downloads running at once when a root needs layers taken by digest.
const PARALLEL_FETCHES: usize = 4;

/// Applies `layers`, in order, to `root`, each checked against its diff_id.
pub(crate) async fn extract_layers(
    build: &Build,
    root: &Arc<Root>,
    layers: &[LayerBlob],
) -> Result<()> {
    let Some(first) = layers.iter().position(|l| !l.path.exists()) else {
        return from_store(root, layers).await;
    };
    from_store(root, &layers[..first]).await?;
    let streamed = &layers[first];
    // the same blob listed again later is in the store by the time it is reached
    let rest: Vec<LayerBlob> = layers[first + 1..]
        .iter()
        .filter(|l| l.digest != streamed.digest)
        .cloned()
        .collect();
    let (extracted, fetched) =
        tokio::join!(streaming(build, root, streamed), fetch_layers(build, &rest));
    if let Streamed::Again(e) = extracted? {
        // the bytes extracted are not all the verified blob's: the root starts over from
        // the store, where the blob now is whole and checked
        tracing::warn!(layer = %streamed.digest, error = %format!("{e:#}"), "the registry's first answer was not the blob it names: extracting the verified blob again");
        let emptied = root.clone();
        blocking(move || emptied.remove_children(""))
            .await?
            .with_context(|| format!("emptying {}", root.path().display()))?;
        from_store(root, &layers[..=first]).await?;
    }
    fetched?;
    from_store(root, &layers[first + 1..]).await
}

/// How a streamed extraction ended when its download did not fail.
enum Streamed {
    Done,
    /// The extraction failed after the download had to start again past bytes the
    /// extraction already read (a body cut and damaged, then sent right): the layer is
    /// extracted again, from the store.
    Again(anyhow::Error),
}

/// One layer extracted from the bytes of its download.
async fn streaming(build: &Build, root: &Arc<Root>, layer: &LayerBlob) -> Result<Streamed> {
    let started = std::time::Instant::now();
    let (tee, reader) = stream::channel();
    let resent = tee.resent();
    tracing::debug!(layer = %layer.digest, size = layer.size, "extracting as it downloads");
    let download =
        build
            .registry
            .fetch_blob_streamed(&layer.digest.0, layer.size, &layer.path, tee);
    let shown = root.path().display().to_string();
    let (root, owned) = (root.clone(), layer.clone());
    let extraction = blocking(move || {
        extract::extract_layer(&root, reader, &owned.digest.0, &owned.diff_id.0)
            .with_context(|| format!("extracting layer {}", owned.digest))
    });
    let (downloaded, extracted) = tokio::join!(download, extraction);
    let found = downloaded.with_context(|| format!("downloading layer {}", layer.digest))?;
    if !found {
        bail!(
            "layer {}: not in the blob store, and no repository is known to hold it",
            layer.digest
        );
    }
    let written = match extracted? {
        Ok(written) => written,
        Err(e) if resent.load(std::sync::atomic::Ordering::Relaxed) => {
            return Ok(Streamed::Again(e))
        }
        Err(e) => return Err(e),
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!(layer = %layer.digest, root = %shown, entries = written.len(), ms, streamed = true, "layer extracted");
    Ok(Streamed::Done)
}

/// Layers already in the blob store, extracted in order from their files.
async fn from_store(root: &Arc<Root>, layers: &[LayerBlob]) -> Result<()> {
    if layers.is_empty() {
        return Ok(());
    }
    let root = root.clone();
    let layers = layers.to_vec();
    blocking(move || -> Result<()> {
        for layer in &layers {
            let started = std::time::Instant::now();
            let file = std::fs::File::open(&layer.path)
                .with_context(|| format!("opening layer {}", layer.digest))?;
            let written = extract::extract_layer(&root, file, &layer.digest.0, &layer.diff_id.0)
                .with_context(|| format!("extracting layer {}", layer.digest))?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            tracing::debug!(layer = %layer.digest, root = %root.path().display(), entries = written.len(), ms, "layer extracted");
        }
        Ok(())
    })
    .await?
}

/// Brings the bytes of every layer taken by digest only (a base image's, a cache hit's) into
/// the blob store, a few at a time, from the repository it was found in.
pub(crate) async fn fetch_layers(build: &Build, layers: &[LayerBlob]) -> Result<()> {
    let missing: Vec<&LayerBlob> = layers.iter().filter(|l| !l.path.exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    items::iter(missing)
        .map(|layer| async move {
            let found = build
                .registry
                .fetch_blob(&layer.digest.0, layer.size, &layer.path)
                .await
                .with_context(|| format!("downloading layer {}", layer.digest))?;
            if !found {
                bail!(
                    "layer {}: not in the blob store, and no repository is known to hold it",
                    layer.digest
                );
            }
            Ok(())
        })
        .boxed()
        .buffer_unordered(PARALLEL_FETCHES)
        .try_collect::<Vec<()>>()
        .await?;
    crate::progress::summary::time(crate::progress::summary::Phase::Pull, started.elapsed());
    Ok(())
}
