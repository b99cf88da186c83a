//! The state of one stage between its steps: root, config, layers, ARGs in scope, snapshot
//! baseline and cache state; and what every kind of step does with it afterwards: take a
//! cached layer (`apply_cached`, extracted later by `materialize`), snapshot the root into a
//! layer and a history entry (`snapshot_step`), chain the cache state (`after_layer`).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::layering::{layer_format, Snapshots, Touched};
use super::Build;
use crate::dockerfile::{Args, Instruction, Keyword};
use crate::image::{self, Family};
use crate::layer::LayerBlob;
use crate::rootfs::Root;
use crate::sandbox::GuestStageState;
use crate::task::blocking;

/// The mutable state of a stage between steps.
pub(super) struct StageState {
    pub(super) root: Arc<Root>,
    pub(super) config: Value,
    pub(super) layers: Vec<LayerBlob>,
    pub(super) family: Family,
    /// ARGs declared in this stage (None: declared without a value)
    pub(super) args: Vec<(String, Option<String>)>,
    /// what the guest remembers about the stage between instructions (CMD given in it)
    pub(super) guest_state: GuestStageState,
    pub(super) snapshots: Option<Snapshots>,
    /// the cache state digest: the base, then what each filesystem step produced
    pub(super) cache_state: String,
    /// cached layers already in the image but not yet extracted onto the root: only a step
    /// that has to run (or a later stage) needs them there
    pub(super) pending: Vec<LayerBlob>,
    /// the step's position in the stage and the stage's name: a step's identity across
    /// builds, for the cache's miss reasons
    pub(super) pos: usize,
    pub(super) stage_name: String,
    /// where the running step's command writes its output (`progress`)
    pub(super) output: Option<crate::progress::StepOutput>,
    /// the running step was taken from the layer cache
    pub(super) cached: bool,
}

impl StageState {
    /// Variables for expansion: ARGs in scope, overridden by ENV.
    pub(super) fn lookup(&self) -> HashMap<String, String> {
        lookup_of(&self.args, &self.config)
    }

    pub(super) fn config_str(&self, key: &str) -> Option<String> {
        config_str_of(&self.config, key)
    }

    /// The step's identity across builds (see `step_identity`).
    pub(super) fn identity(&self, ins: &Instruction) -> String {
        step_identity(&self.stage_name, self.pos, ins)
    }
}

/// A config's ENV as pairs.
pub(super) fn env_of(config: &Value) -> Vec<(String, String)> {
    config
        .pointer("/config/Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Variables for expansion: ARGs in scope (`args`), overridden by the config's ENV.
pub(super) fn lookup_of(
    args: &[(String, Option<String>)],
    config: &Value,
) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = args
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        .collect();
    m.extend(env_of(config));
    m
}

/// A non-empty string of the config's `config` object.
pub(super) fn config_str_of(config: &Value, key: &str) -> Option<String> {
    config
        .pointer(&format!("/config/{key}"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

pub(super) fn created_by(ins: &Instruction, shell: &[String]) -> String {
    let text = match (ins.keyword, &ins.args) {
        (Keyword::Run, Args::Shell(t)) => format!("RUN {} {t}", shell.join(" ")),
        (Keyword::Run, Args::Exec(v)) => format!("RUN {}", v.join(" ")),
        _ => ins.original.clone(),
    };
    // the history is public: no credentials from URLs in it
    crate::redaction::redact(&text).into_owned()
}

pub(super) fn shell_of(config: &Value) -> Vec<String> {
    config
        .pointer("/config/Shell")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
}

/// The cache state after a step that produced `layer` (or no change).
pub(super) fn after_layer(state: &str, layer: Option<&LayerBlob>) -> String {
    let produced = layer.map_or("none", |l| l.diff_id.0.as_str());
    crate::cache::digest_of([state, "layer", produced])
}

/// A step's identity across builds: stage, position, keyword.
pub(super) fn step_identity(stage_name: &str, pos: usize, ins: &Instruction) -> String {
    crate::cache::digest_of([stage_name, &pos.to_string(), ins.keyword.as_str()])
}

/// The cache state after a COPY/ADD with `key` (hit or not: its output is a function of it).
pub(super) fn after_copy(state: &str, key: &crate::cache::Key) -> String {
    crate::cache::digest_of([state, "copy", &key.hex])
}

/// The cache state after a WORKDIR, from the config it left.
pub(super) fn after_workdir(state: &str, config: &Value) -> String {
    crate::cache::digest_of([
        state,
        "workdir",
        &config_str_of(config, "WorkingDir").unwrap_or_default(),
        &config_str_of(config, "User").unwrap_or_default(),
    ])
}

/// Takes a cache hit: the entry's layer goes into the image and onto the list of layers the
/// root still lacks (see `materialize`); returns it.
pub(super) fn apply_cached(
    build: &Build,
    st: &mut StageState,
    entry: crate::cache::Entry,
) -> Option<LayerBlob> {
    st.cached = true;
    match entry.layer {
        Some(mut layer) => {
            layer.media_type = st.family.convert_layer(&layer.media_type);
            crate::progress::summary::note_cached_layer(&layer.digest.0);
            st.pending.push(layer.clone());
            st.layers.push(layer.clone());
            image::add_history(&mut st.config, &build.created, &entry.created_by, false);
            Some(layer)
        }
        None => {
            image::add_history(&mut st.config, &build.created, &entry.created_by, true);
            None
        }
    }
}

/// Extracts the cached layers the root still lacks and takes the result as the snapshot
/// baseline (what they brought is already in the image).
pub(super) async fn materialize(st: &mut StageState) -> Result<()> {
    if st.pending.is_empty() {
        return Ok(());
    }
    let layers = std::mem::take(&mut st.pending);
    let started = std::time::Instant::now();
    super::images::extract_layers(&st.root, &layers).await?;
    let root = st.root.clone();
    let mut snapshots = st.snapshots.take().context("snapshot state lost")?;
    let (snapshots, resynced) = blocking(move || {
        let r = snapshots.resync(&root);
        (snapshots, r)
    })
    .await?;
    st.snapshots = Some(snapshots);
    resynced?;
    tracing::debug!(
        layers = layers.len(),
        took = %crate::progress::human(started.elapsed()),
        "cached layers extracted"
    );
    Ok(())
}

/// Snapshots the root after a step; a change becomes a layer and a history entry. Returns
/// the layer.
pub(super) async fn snapshot_step(
    build: &Build,
    st: &mut StageState,
    created_by: &str,
    touched: Touched,
) -> Result<Option<LayerBlob>> {
    let root = st.root.clone();
    let mut snapshots = st.snapshots.take().context("snapshot state lost")?;
    let store = build.store.clone();
    let mut format = layer_format(
        &build.opts.layers,
        st.family.layer_gzip(),
        build.mtime_clamp,
    );
    format.shown_as = st.output.as_ref().map(|o| format!("layer {}", o.label()));
    let end = matches!(touched, Touched::StageEnd);
    let started = std::time::Instant::now();
    let (snapshots, blob) = blocking(move || {
        let blob = snapshots.after_step(&root, &touched, &store, &format);
        (snapshots, blob)
    })
    .await?;
    crate::progress::summary::time(crate::progress::summary::Phase::Layer, started.elapsed());
    st.snapshots = Some(snapshots);
    let blob = blob?;
    match &blob {
        Some(blob) => {
            st.layers.push(blob.clone());
            image::add_history(&mut st.config, &build.created, created_by, false);
        }
        None if !end => image::add_history(&mut st.config, &build.created, created_by, true),
        None => {}
    }
    Ok(blob)
}
