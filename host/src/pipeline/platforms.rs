//! Multi-platform builds (`--custom-platform linux/amd64,linux/arm64`): each platform
//! built in turn with a plan of its own (`TARGETPLATFORM` and friends set for it, base
//! images picked from their indexes for it), in a work directory of its own; the stages
//! that do not depend on the target platform built once, for the first platform, and
//! reused by the others; the images gathered into one index (`image::index`) and written
//! to every output (`outputs::write_index`). With `--sbom`/`--provenance` each platform's
//! image gets its own statements (its provenance naming that platform's bases), all in the
//! one index, each image followed by its attestation manifest (`attestations::make_all`).
//!
//! A stage is platform-free when its base is `scratch`, a platform-free stage, or an image
//! pinned by `FROM --platform=…` (`$BUILDPLATFORM` or a fixed one); when no instruction of
//! it (its FROM included) mentions a `TARGET…` ARG; and when every stage it reads
//! (`COPY --from`, `RUN --mount from=`) is platform-free (an image it reads is pulled per
//! platform, so it is not). A global ARG that mentions `TARGET` makes no stage
//! platform-free. Only the target platform's analysis is textual: a stage that reaches
//! the target platform some other way is not seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};

use super::plan::{self, Base, BuildPlan};
use super::{attestations, outputs, private_dir, stages, summary, Build, Loaded, StageResult};
use crate::attest::provenance::Material;
use crate::dockerfile::{Dockerfile, Instruction, Keyword};
use crate::image::BuiltImage;
use crate::registry::Platform;

/// Refuses, before anything is built, the outputs that hold one image when several
/// platforms are asked for (`--tar-path`, `--oci-archive-path`).
pub(super) fn check_outputs(opts: &super::BuildOptions) -> Result<()> {
    if opts.platforms.len() < 2 {
        return Ok(());
    }
    let list = opts
        .platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    for (given, flag) in [
        (opts.tar_path.is_some(), "--tar-path"),
        (opts.oci_archive_path.is_some(), "--oci-archive-path"),
    ] {
        if given {
            bail!(
                "{flag} holds one image, but --custom-platform {list} builds an index: write it \
                 with --oci-layout-path or push it, or build one platform for {flag}"
            );
        }
    }
    Ok(())
}

/// Builds every platform of `build.opts.platforms`, one after the other, and writes their
/// index to the build's outputs; returns the index digest.
pub(super) async fn build_each(
    mut build: Build,
    loaded: &Loaded,
    started: Instant,
    context: Duration,
) -> Result<String> {
    let platforms = build.opts.platforms.clone();
    let shared_work = build.work.clone();
    let free = platform_free(&loaded.df, &loaded.plan);
    let mut shared: HashMap<usize, Arc<StageResult>> = HashMap::new();
    let mut images: Vec<(Platform, BuiltImage)> = Vec::new();
    let request = attestations::request(loaded);
    // what each platform's provenance names; a base pinned by `FROM --platform=…` (a shared
    // stage's, pulled once) is credited to every platform after the one that pulled it
    let mut materials: Vec<Vec<Material>> = Vec::new();
    let mut pinned: Vec<Material> = Vec::new();
    let steps_started = Instant::now();
    for platform in platforms {
        tracing::info!(platform = %platform, "building for {platform}");
        let plan = plan::plan(
            &loaded.df,
            &build.opts.build_args,
            build.opts.target.as_deref(),
            &platform,
        )
        .map_err(|e| e.context(loaded.source.clone()))?;
        let target = plan.target;
        build.work = shared_work.join(platform.to_string().replace('/', "-"));
        private_dir(&build.work).with_context(|| format!("creating {}", build.work.display()))?;
        build.platform = platform.clone();
        build.from_images = tokio::sync::Mutex::new(HashMap::new());
        let arc = Arc::new(build);
        let mut results = stages::build_all(arc.clone(), Arc::new(plan), shared.clone())
            .await
            .with_context(|| format!("building for {platform}"))?;
        for index in &free {
            if let Some(result) = results.get(index) {
                shared.entry(*index).or_insert_with(|| result.clone());
            }
        }
        let last = results
            .remove(&target)
            .context("the target stage produced no image")?;
        drop(results);
        let last = Arc::try_unwrap(last).unwrap_or_else(|kept| (*kept).clone());
        let image = super::assemble(&arc, last).await?;
        build = Arc::try_unwrap(arc)
            .map_err(|_| anyhow!("building for {platform}: a stage outlived its build"))?;
        let mut own = pinned.clone();
        for (material, is_pinned) in attestations::take_pulled(&build) {
            if is_pinned {
                pinned.push(material.clone());
            }
            own.push(material);
        }
        materials.push(own);
        images.push((platform, image));
    }
    let steps = steps_started.elapsed();
    let attached = attestations::make_all(&build, &images, materials, &request).await?;
    let push_started = Instant::now();
    let written = outputs::write_index(&build, &images, attached.as_ref()).await;
    let push = push_started.elapsed();
    build.runner.tear_down().await?;
    let digest = written?;
    let walls = summary::Walls {
        context,
        steps,
        push,
        total: started.elapsed(),
    };
    let built: Vec<&BuiltImage> = images.iter().map(|(_, image)| image).collect();
    crate::progress::report_summary(&super::summarize_images(
        &build.opts,
        &digest,
        &built,
        &walls,
    ));
    Ok(digest)
}

/// The stages of `plan` whose result is the same for every target platform (see the
/// module's comment), in build order.
fn platform_free(df: &Dockerfile, plan: &BuildPlan) -> BTreeSet<usize> {
    let mut free = BTreeSet::new();
    let global_target = df
        .instructions
        .iter()
        .take_while(|ins| ins.keyword != Keyword::From)
        .any(mentions_target);
    if global_target {
        return free;
    }
    for &index in &plan.order {
        let stage = &plan.stages[index];
        let from = df
            .instructions
            .iter()
            .find(|ins| ins.keyword == Keyword::From && ins.line == stage.line);
        let base_free = match &stage.base {
            Base::Scratch => true,
            Base::Stage(dep) => free.contains(dep),
            Base::Image(_) => stage.platform.is_some(),
        };
        let reads_free = stage.instructions.iter().all(|ins| {
            !mentions_target(ins)
                && read_stages(ins).iter().all(|name| {
                    plan.stage_named(name, index)
                        .is_some_and(|d| free.contains(&d))
                })
        });
        if base_free && reads_free && !from.is_some_and(mentions_target) {
            free.insert(index);
        }
    }
    free
}

fn mentions_target(ins: &Instruction) -> bool {
    ins.original.contains("TARGET")
}

/// The names an instruction reads another stage or an image by: `--from=` and each
/// `--mount`'s `from=`.
fn read_stages(ins: &Instruction) -> Vec<String> {
    let mut names: Vec<String> = ins
        .flag("from")
        .and_then(|f| f.value.clone())
        .into_iter()
        .collect();
    for mount in ins.flags_named("mount") {
        let value = mount.value.as_deref().unwrap_or_default();
        names.extend(
            value
                .split(',')
                .filter_map(|field| field.trim().strip_prefix("from="))
                .map(str::to_string),
        );
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::parse;

    #[test]
    fn only_stages_that_ignore_the_target_platform_are_shared() {
        for (text, want) in [
            (
                "FROM --platform=$BUILDPLATFORM img AS tools\nRUN make\n\
                 FROM img\nCOPY --from=tools /x /x\n",
                vec![0],
            ),
            ("FROM scratch AS a\nCOPY f /f\nFROM a\n", vec![0, 1]),
            (
                "FROM --platform=$BUILDPLATFORM img AS a\nARG TARGETARCH\nRUN x\nFROM a\n",
                vec![],
            ),
            (
                "FROM --platform=$TARGETPLATFORM img AS a\nFROM scratch\n",
                vec![1],
            ),
            ("FROM scratch AS a\nCOPY --from=img:1 /x /x\n", vec![]),
            (
                "FROM img AS a\nFROM scratch\nRUN --mount=type=bind,from=a,target=/a x\n",
                vec![],
            ),
            ("ARG B=$TARGETARCH\nFROM scratch\n", vec![]),
        ] {
            let df = parse(text).unwrap();
            let plan = plan::plan(&df, &[], None, &Platform::host()).unwrap();
            let got: Vec<usize> = platform_free(&df, &plan).into_iter().collect();
            assert_eq!(got, want, "{text}");
        }
    }
}
