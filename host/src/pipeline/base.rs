//! Where a stage starts: `scratch`, an earlier stage's result, or an image resolved to its
//! config and layer descriptors. The runner gives the stage its root (in place, the base
//! extracted and laid over `/`); otherwise the root stays empty, the base's layers pending,
//! until a step needs the filesystem (`state::materialize`). Pulling and extracting images is
//! `images`'.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::images::pull_image;
use super::layer_stream::extract_layers;
use super::plan::{Base, BuildPlan};
use super::results::Finished;
use super::{step, Build, StageResult};
use crate::image::{self, Family};
use crate::layer::LayerBlob;
use crate::rootfs::Root;

/// A stage's base as its steps find it.
struct Start {
    config: Value,
    layers: Vec<LayerBlob>,
    family: Family,
    cache_state: String,
}

/// Builds stage `index` of the plan: its base, then its steps.
pub(crate) async fn build_stage(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    done: &Finished,
) -> Result<StageResult> {
    let stage = &plan.stages[index];
    let base_name = match &stage.base {
        Base::Scratch => "scratch".to_string(),
        Base::Stage(dep) => plan.stages[*dep].display_name(),
        Base::Image(reference) => reference.clone(),
    };
    let number = format!("1/{}", stage.instructions.len() + 1);
    let from = format!("FROM {base_name}");
    tracing::debug!("[{} {number}] {from}", stage.display_name());
    let shown = crate::progress::Step::start(&stage.display_name(), &number, &from, stage.line);
    let dir = Arc::new(Root::create(&build.work.join(format!("stage-{index}")))?);
    let start = start(build, plan, index, &base_name, done).await?;
    // the root is filled when a step first needs the filesystem (`state::materialize`): a
    // stage whose every step hits the cache never extracts its base
    let pending = match build.runner.roots_fill_later() {
        true => start.layers.clone(),
        false => {
            extract_layers(build, &dir, &start.layers)
                .await
                .with_context(|| format!("Dockerfile:{}: extracting {base_name}", stage.line))?;
            Vec::new()
        }
    };
    let laid = build.runner.lay_out(dir).await?;
    shown.done();
    let base_layers = start.layers.len();
    let base = step::StageBase {
        root: laid.root,
        config: start.config,
        layers: start.layers,
        pending,
        family: start.family,
        cache_state: start.cache_state,
    };
    let mut result = step::run_stage(build, plan, index, base, done).await?;
    if let (Some(dir), true) = (laid.beside, index != plan.target) {
        // the stage's root is shared (in place) and moves on to the next stage, but a later
        // stage reads this one (COPY --from, RUN --mount from=): its filesystem is rebuilt
        // in its own directory, from the extracted base and the layers it added
        extract_layers(build, &dir, &result.layers[base_layers..])
            .await
            .with_context(|| format!("keeping stage {} for later stages", stage.display_name()))?;
        result.root = dir;
    }
    Ok(result)
}

/// The stage's base config and layers (nothing extracted yet).
async fn start(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    base_name: &str,
    done: &Finished,
) -> Result<Start> {
    let stage = &plan.stages[index];
    let platform = stage.platform.as_ref().unwrap_or(&build.platform);
    Ok(match &stage.base {
        Base::Scratch => Start {
            config: image::scratch_config(&platform.os, &platform.architecture),
            layers: Vec::new(),
            family: Family::Oci,
            cache_state: crate::cache::digest_of(["scratch"]),
        },
        Base::Stage(dep) => {
            let dep = done
                .wait(*dep)
                .await
                .with_context(|| format!("Dockerfile:{}: FROM {base_name}", stage.line))?;
            Start {
                config: dep.config.clone(),
                layers: dep.layers.clone(),
                family: dep.family,
                cache_state: dep.cache_state.clone(),
            }
        }
        Base::Image(reference) => {
            let (config, layers, family, manifest_digest) =
                pull_image(build, reference, platform, stage.platform.is_some())
                    .await
                    .with_context(|| format!("Dockerfile:{}: FROM {reference}", stage.line))?;
            Start {
                config,
                layers,
                family,
                cache_state: crate::cache::digest_of(["image", manifest_digest.as_str()]),
            }
        }
    })
}
