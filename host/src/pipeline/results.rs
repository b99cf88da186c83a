//! The results of a build's stages as other stages wait for them: each is published once,
//! when its stage ends; a stage that reads another (its base, `COPY --from`,
//! `RUN --mount from=`) waits here for it. `stages` publishes, every step may wait.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use tokio::sync::watch;

use super::plan::BuildPlan;
use super::StageResult;

/// A stage another one waited for failed; the build reports that stage's own error.
#[derive(Debug, thiserror::Error)]
#[error("stage {name} failed")]
pub(crate) struct StageFailed {
    pub name: String,
}

/// The results of the stages of one build, each published when its stage ends.
pub(crate) struct Finished {
    slots: HashMap<usize, watch::Receiver<Option<Arc<StageResult>>>>,
    names: HashMap<usize, String>,
}

/// Where a stage publishes its result.
pub(crate) type Publisher = watch::Sender<Option<Arc<StageResult>>>;

impl Finished {
    /// One empty slot per stage the plan builds, and the publisher of each, in plan order.
    pub(crate) fn new(plan: &BuildPlan) -> (Finished, Vec<(usize, Publisher)>) {
        let mut senders = Vec::new();
        let mut slots = HashMap::new();
        let mut names = HashMap::new();
        for &index in &plan.order {
            let (tx, rx) = watch::channel(None);
            senders.push((index, tx));
            slots.insert(index, rx);
            names.insert(index, plan.stages[index].display_name());
        }
        (Finished { slots, names }, senders)
    }

    /// The result of stage `index`, once it is built.
    pub(crate) async fn wait(&self, index: usize) -> Result<Arc<StageResult>> {
        let name = self
            .names
            .get(&index)
            .cloned()
            .unwrap_or_else(|| index.to_string());
        let Some(slot) = self.slots.get(&index) else {
            return Err(anyhow!(
                "stage {name} is not built: the target does not need it"
            ));
        };
        let mut slot = slot.clone();
        let published = slot
            .wait_for(Option::is_some)
            .await
            .map_err(|_| StageFailed { name: name.clone() })?;
        published
            .clone()
            .ok_or_else(|| anyhow!(StageFailed { name }))
    }
}
