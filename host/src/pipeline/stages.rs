//! Stage scheduling. Every stage the plan needs runs as a task of its own, all started at
//! once; a stage that reads another (its base, `COPY --from`, `RUN --mount from=`) waits for
//! that stage's result at the step that reads it. So independent stages build side by side,
//! and a stage runs its first steps while a stage it copies from later is still building.
//! References only ever point to earlier stages, so the waits cannot form a cycle.
//!
//! Each task owns its stage's state (root, config, layers); only the finished result is
//! published, through `results::Finished`. Nothing in an image depends on the schedule: timestamps
//! come from the build, not the clock, and each stage's layers from its own root. With
//! `--sequential-stages`, or where RUN's isolation allows one stage at a time (in place, whose
//! root is `/`), each stage is awaited before the next one starts.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use tracing::Instrument as _;

use super::plan::BuildPlan;
use super::results::{Finished, StageFailed};
use super::{Build, StageResult};

/// Builds every stage of `plan.order`, concurrently unless `sequential`; returns their
/// results. A stage in `prebuilt` (built once for every platform, see `platforms`) is not
/// run again: its result is published as it is. The first stage to fail ends the build
/// with its error.
pub(crate) async fn build_all(
    build: Arc<Build>,
    plan: Arc<BuildPlan>,
    prebuilt: HashMap<usize, Arc<StageResult>>,
) -> Result<HashMap<usize, Arc<StageResult>>> {
    let (finished, senders) = Finished::new(&plan);
    let finished = Arc::new(finished);
    let sequential = !build.runner.stages_in_parallel();
    let mut results = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, tx) in senders {
        if let Some(result) = prebuilt.get(&index) {
            let name = plan.stages[index].display_name();
            tracing::info!(stage = %name, "stage {name}: built once for every platform, reused");
            tx.send_replace(Some(result.clone()));
            results.insert(index, result.clone());
            continue;
        }
        let (build, plan, finished) = (build.clone(), plan.clone(), finished.clone());
        let span = tracing::info_span!("stage", name = %plan.stages[index].display_name());
        let task = async move {
            let result = Arc::new(super::base::build_stage(&build, &plan, index, &finished).await?);
            tx.send_replace(Some(result.clone()));
            Ok::<_, anyhow::Error>((index, result))
        }
        .instrument(span);
        if sequential {
            let (index, result) = task.await?;
            results.insert(index, result);
        } else {
            tasks.spawn(task);
        }
    }
    // a stage that waited for a failed one fails too: report the failed stage's own error
    let mut waited_on_failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok((index, result)) => {
                results.insert(index, result);
            }
            Err(e) if e.downcast_ref::<StageFailed>().is_some() => {
                waited_on_failure.get_or_insert(e);
            }
            Err(e) => {
                tasks.abort_all();
                // RUNs of the other stages go with the build
                crate::run::kill_running();
                return Err(e);
            }
        }
    }
    match waited_on_failure {
        Some(e) => Err(e),
        None => Ok(results),
    }
}
