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
    /// layers already in the image but not yet extracted onto the root (the base's, cached
    /// ones): only a step that has to run (or a later stage) needs them there
    pub(super) pending: Vec<LayerBlob>,
    /// the step's position in the stage and the stage's name: a step's identity across
    /// builds, for the cache's miss reasons
    pub(super) pos: usize,
    pub(super) stage_name: String,
    /// where the running step's command writes its output (`progress`)
    pub(super) output: Option<crate::progress::StepOutput>,
    /// the running step was taken from the layer cache
    pub(super) cached: bool,
    /// the last step of the stage that missed the cache and changed its state (`RUN at
    /// Dockerfile:5`): why the steps after it miss
    pub(super) ran: Option<String>,
    /// what `lookup` and `guest_view` would otherwise rebuild from `config.Env` for every
    /// instruction; `forget_env` drops it whenever `config` or `args` change other than
    /// through `absorb`
    pub(super) env_cache: std::sync::Mutex<EnvCache>,
    /// a RUN follows the running step in this stage (it will need the whole root)
    pub(super) later_run: bool,
}

/// Indexes over `config.Env`, kept up to date as ENV instructions change it, so an
/// instruction costs what it sets, not what the image already has.
#[derive(Default)]
pub(super) struct EnvCache {
    /// variables for expansion: ARGs in scope, overridden by ENV
    lookup: Option<Arc<HashMap<String, String>>>,
    /// each variable's first position in `config.Env` (the one ENV replaces)
    index: Option<HashMap<String, usize>>,
}

/// The name of an `Env` entry (`NAME=value`, or a bare `NAME`).
fn env_key(entry: &Value) -> Option<&str> {
    let s = entry.as_str()?;
    Some(s.split_once('=').map_or(s, |(k, _)| k))
}

/// The array at `pointer` taken out (an empty one left in its place); empty when there is
/// none.
fn take_array(v: &mut Value, pointer: &str) -> Vec<Value> {
    match v.pointer_mut(pointer) {
        Some(Value::Array(a)) => std::mem::take(a),
        _ => Vec::new(),
    }
}

/// Puts `items` back at `pointer` (a slot the guest kept) or, when the slot is gone, adds it.
fn put_array(v: &mut Value, parent: &str, key: &str, items: Vec<Value>) {
    if let Some(slot) = v.pointer_mut(&format!("{parent}/{key}")) {
        *slot = Value::Array(items);
        return;
    }
    let target = if parent.is_empty() {
        Some(v)
    } else {
        if v.pointer(parent).is_none() {
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    parent.trim_start_matches('/').into(),
                    Value::Object(Default::default()),
                );
            }
        }
        v.pointer_mut(parent)
    };
    if let Some(Value::Object(obj)) = target {
        obj.insert(key.to_string(), Value::Array(items));
    }
}

impl StageState {
    /// Variables for expansion: ARGs in scope, overridden by ENV (built once, then kept).
    pub(super) fn lookup(&self) -> Arc<HashMap<String, String>> {
        let mut cache = self.env_cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .lookup
            .get_or_insert_with(|| Arc::new(lookup_of(&self.args, &self.config)))
            .clone()
    }

    /// Drops what was derived from `config.Env` and the ARGs; call after changing either
    /// directly.
    pub(super) fn forget_env(&mut self) {
        *self.env_cache.get_mut().unwrap_or_else(|e| e.into_inner()) = EnvCache::default();
    }

    /// Drops the expansion variables, after the ARGs in scope changed.
    pub(super) fn forget_args(&mut self) {
        self.env_cache
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .lookup = None;
    }

    /// The config the guest is shown for an instruction setting the variables `keys` (none
    /// but ENV's), and the positions in `config.Env` of the entries it is shown. The guest
    /// reads `Env` only for ENV and never reads the history, so it gets the entries ENV may
    /// replace and an empty history: an instruction costs what it sets, not the image's size.
    /// `absorb` puts its answer back together.
    pub(super) fn guest_view(&mut self, keys: &[&str]) -> (Value, Vec<usize>) {
        let cache = self.env_cache.get_mut().unwrap_or_else(|e| e.into_inner());
        guest_view(&mut self.config, cache, keys)
    }

    /// Takes the guest's answer to a `guest_view`: its `Env` entries replace the entries at
    /// `positions` in order, the rest are appended (as ENV does), and the history comes back.
    pub(super) fn absorb(&mut self, answer: Value, positions: &[usize]) {
        let cache = self.env_cache.get_mut().unwrap_or_else(|e| e.into_inner());
        self.config = absorb(&mut self.config, cache, answer, positions);
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

/// `StageState::guest_view` on a config and its cache.
fn guest_view(config: &mut Value, cache: &mut EnvCache, keys: &[&str]) -> (Value, Vec<usize>) {
    let env = take_array(config, "/config/Env");
    let history = take_array(config, "/history");
    let index = cache.index.get_or_insert_with(|| {
        let mut index = HashMap::new();
        for (i, e) in env.iter().enumerate() {
            if let Some(k) = env_key(e) {
                index.entry(k.to_string()).or_insert(i);
            }
        }
        index
    });
    let mut positions: Vec<usize> = keys.iter().filter_map(|k| index.get(*k).copied()).collect();
    positions.sort_unstable();
    positions.dedup();
    let mut view = config.clone();
    if let Some(Value::Array(shown)) = view.pointer_mut("/config/Env") {
        *shown = positions.iter().map(|i| env[*i].clone()).collect();
    }
    if !env.is_empty() {
        put_array(config, "/config", "Env", env);
    }
    if !history.is_empty() {
        put_array(config, "", "history", history);
    }
    (view, positions)
}

/// `StageState::absorb` on a config and its cache; returns the new config.
fn absorb(
    config: &mut Value,
    cache: &mut EnvCache,
    mut answer: Value,
    positions: &[usize],
) -> Value {
    let mut env = take_array(config, "/config/Env");
    let history = take_array(config, "/history");
    let shown = take_array(&mut answer, "/config/Env");
    for (i, entry) in shown.into_iter().enumerate() {
        let key = env_key(&entry).unwrap_or_default().to_string();
        let value = entry
            .as_str()
            .and_then(|s| s.split_once('='))
            .map_or("", |(_, v)| v);
        if let Some(lookup) = &mut cache.lookup {
            Arc::make_mut(lookup).insert(key.clone(), value.to_string());
        }
        match positions.get(i) {
            Some(&p) => env[p] = entry,
            None => {
                if let Some(index) = &mut cache.index {
                    index.entry(key).or_insert(env.len());
                }
                env.push(entry);
            }
        }
    }
    if !env.is_empty() {
        put_array(&mut answer, "/config", "Env", env);
    }
    if !history.is_empty() {
        put_array(&mut answer, "", "history", history);
    }
    answer
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

/// The cache's entry for a step's key (a miss logged with the step that ran before it).
pub(super) async fn look_up(
    cache: &crate::cache::Cache,
    key: &crate::cache::Key,
    st: &StageState,
    ins: &Instruction,
) -> Result<Option<crate::cache::Entry>> {
    let what = format!(
        "Dockerfile:{}: {}",
        ins.line,
        crate::redaction::shown(&ins.original)
    );
    let identity = st.identity(ins);
    cache.lookup(key, &identity, &what, st.ran.as_deref()).await
}

/// A WORKDIR's key: the state it starts from, the directory made absolute against the
/// working directory, and the USER that would own what it creates.
pub(super) fn workdir_key(state: &str, config: &Value, dir: &str) -> crate::cache::Key {
    let wd = config_str_of(config, "WorkingDir").unwrap_or_default();
    let absolute = match dir.starts_with('/') {
        true => crate::rootfs::clean(dir),
        false => crate::rootfs::clean(&format!("{wd}/{dir}")),
    };
    let mut k = crate::cache::KeyBuilder::new();
    k.digest("parent", state.to_string())
        .component("instruction", ["WORKDIR".to_string(), absolute])
        .component("user", [config_str_of(config, "User").unwrap_or_default()]);
    k.finish()
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

/// Extracts the layers the root still lacks (the base's, cached ones: their bytes fetched
/// first when only their digests were taken) and takes the result as the snapshot baseline
/// (what they brought is already in the image).
pub(super) async fn materialize(build: &Build, st: &mut StageState) -> Result<()> {
    if st.pending.is_empty() {
        return Ok(());
    }
    let layers = std::mem::take(&mut st.pending);
    let started = std::time::Instant::now();
    tracing::info!(
        layers = layers.len(),
        "{}: the stage's root is needed: extracting {} layer{}",
        st.stage_name,
        layers.len(),
        if layers.len() == 1 { "" } else { "s" }
    );
    super::layer_stream::extract_layers(build, &st.root, &layers).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What the guest's ENV does to a config: each pair replaces the first entry of its name,
    /// or is appended.
    fn guest_env(mut config: Value, pairs: &[(&str, &str)]) -> Value {
        let mut env = take_array(&mut config, "/config/Env");
        for (k, v) in pairs {
            let entry = Value::String(format!("{k}={v}"));
            match env.iter().position(|e| env_key(e) == Some(k)) {
                Some(i) => env[i] = entry,
                None => env.push(entry),
            }
        }
        put_array(&mut config, "/config", "Env", env);
        config
    }

    #[test]
    fn the_guest_view_gives_what_the_whole_config_would() {
        let start = json!({
            "os": "linux",
            "config": {"Env": ["PATH=/bin", "A=1", "A=dup", "B=2"], "User": "u"},
            "history": [{"created_by": "base"}],
        });
        let steps: [&[(&str, &str)]; 4] = [
            &[("A", "x"), ("C", "3")],
            &[("C", "4"), ("C", "5"), ("D", "6")],
            &[],
            &[("PATH", "/usr/bin"), ("E", "7")],
        ];
        let mut whole = start.clone();
        let mut config = start.clone();
        let mut cache = EnvCache {
            lookup: Some(Arc::new(HashMap::new())),
            index: None,
        };
        for pairs in steps {
            whole = guest_env(whole, pairs);
            let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
            let (view, positions) = guest_view(&mut config, &mut cache, &keys);
            assert_eq!(view["history"], json!([]), "the guest is shown no history");
            assert!(view["config"]["Env"].as_array().unwrap().len() <= keys.len());
            let answer = guest_env(view, pairs);
            config = absorb(&mut config, &mut cache, answer, &positions);
            assert_eq!(config, whole);
        }
        let lookup = cache.lookup.unwrap();
        assert_eq!(lookup.get("C").map(String::as_str), Some("5"));
        assert_eq!(lookup.get("PATH").map(String::as_str), Some("/usr/bin"));
    }

    #[test]
    fn a_config_without_env_gets_one() {
        let mut config = json!({"os": "linux"});
        let mut cache = EnvCache::default();
        let (view, positions) = guest_view(&mut config, &mut cache, &["A"]);
        let answer = guest_env(view, &[("A", "1")]);
        let config = absorb(&mut config, &mut cache, answer, &positions);
        assert_eq!(config, json!({"os": "linux", "config": {"Env": ["A=1"]}}));
    }
}
