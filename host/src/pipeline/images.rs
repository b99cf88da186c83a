//! Images a stage reads: a `FROM` base or a `COPY --from=<image>` / `RUN --mount from=<image>`
//! source, resolved to its config and layer descriptors (the layers' bytes fetched only when
//! a root needs them and extracted, layer by layer, into a root: `layer_stream`).

use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::layer_stream::extract_layers;
use super::plan::BuildPlan;
use super::results::Finished;
use super::Build;
use crate::image::{self, Family};
use crate::layer::{DiffId, Digest, LayerBlob};
use crate::registry::Platform;
use crate::rootfs::Root;

/// Pulls an image for `platform` into the blob store: its config, its layers in `family`'s
/// media types and its manifest digest. The provenance notes it for `platform`, and as
/// `pinned` when the stage names its platform (`FROM --platform=…`), so a multi-platform
/// build credits a shared stage's base to every platform.
pub(crate) async fn pull_image(
    build: &Build,
    reference: &str,
    platform: &Platform,
    pinned: bool,
) -> Result<(Value, Vec<LayerBlob>, Family, String)> {
    let started = std::time::Instant::now();
    // the manifest and config only: a layer's bytes are fetched when a root needs them
    // (`layer_stream`) or a push cannot do without them
    let pulled = build
        .registry
        .pull_config(reference, platform, build.store.dir())
        .await
        .with_context(|| format!("pulling {reference}"))?;
    crate::progress::summary::time(crate::progress::summary::Phase::Pull, started.elapsed());
    crate::progress::summary::note_base_layers(pulled.layers.iter().map(|l| l.digest.as_str()));
    let family = Family::of_manifest(&pulled.manifest_media_type);
    let config = image::parse_config(&pulled.config, reference)?;
    let layers = layer_blobs(&config, pulled.layers.clone(), family, reference)?;
    let manifest_digest = pulled.manifest_digest.clone();
    if let Ok(mut pulled_images) = build.pulled.lock() {
        pulled_images.push((
            crate::attest::provenance::Material::image(
                reference,
                &platform.to_string(),
                &manifest_digest,
            ),
            pinned,
        ));
    }
    Ok((config, layers, family, manifest_digest))
}

/// An image's layers as descriptors, each with the diff_id its config lists.
pub(super) fn layer_blobs(
    config: &Value,
    pulled: Vec<crate::registry::PulledLayer>,
    family: Family,
    reference: &str,
) -> Result<Vec<LayerBlob>> {
    let diff_ids: Vec<String> = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != pulled.len() {
        bail!(
            "image {reference}: config lists {} diff_ids for {} layers",
            diff_ids.len(),
            pulled.len()
        );
    }
    Ok(pulled
        .into_iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| LayerBlob {
            digest: Digest(l.digest),
            diff_id: DiffId(diff_id),
            size: l.size,
            media_type: family.convert_layer(&l.media_type),
            path: l.path,
        })
        .collect())
}

/// The root a `--from` names (`COPY --from`, `RUN --mount from=`): an earlier stage, once it
/// is built, else an image.
pub(super) async fn from_root(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    done: &Finished,
    from: &str,
) -> Result<Arc<Root>> {
    Ok(match plan.stage_named(from, index) {
        Some(dep) => done.wait(dep).await?.filled_root(build).await?,
        None => from_image(build, from).await?,
    })
}

/// `COPY --from=<image>`: the image pulled and extracted once per build, however many
/// stages ask for it at once.
async fn from_image(build: &Build, reference: &str) -> Result<Arc<Root>> {
    let cell = {
        let mut images = build.from_images.lock().await;
        let next = images.len();
        let cell = images
            .entry(reference.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::OnceCell::new()));
        (cell.clone(), next)
    };
    let (cell, next) = cell;
    let root = cell
        .get_or_try_init(|| async {
            let (_, layers, _, _) = pull_image(build, reference, &build.platform, false).await?;
            let dir = build.work.join(format!("image-{next}"));
            let root = Arc::new(Root::create(&dir)?);
            extract_layers(build, &root, &layers).await?;
            Ok::<_, anyhow::Error>(root)
        })
        .await?;
    Ok(root.clone())
}
