//! Steps of one stage: each instruction expanded with the stage's ARG/ENV state, carried out
//! (RUN natively, the rest in the guest), and snapshotted into a layer when it changed the
//! root. History gets one entry per instruction, `empty_layer` for metadata-only ones.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use serde_json::Value;

use super::layering::{layer_format, Snapshots, Step};
use super::plan::{shell_text, BuildPlan};
use super::stages::Finished;
use super::{Build, RunFailed, StageResult};
use crate::dockerfile::{expand_word, Args, Instruction, Keyword};
use crate::image::{self, Family};
use crate::layer::LayerBlob;
use crate::rootfs::Root;
use crate::run::{self, RunSpec};
use crate::sandbox::{GuestInstruction, GuestRoots, GuestStageState};

/// What a stage starts from.
pub(crate) struct StageBase {
    pub root: Arc<Root>,
    pub config: Value,
    pub layers: Vec<LayerBlob>,
    pub family: Family,
    /// the cache state digest of the base (see `cache`)
    pub cache_state: String,
}

/// The mutable state of a stage between steps.
struct StageState {
    root: Arc<Root>,
    config: Value,
    layers: Vec<LayerBlob>,
    family: Family,
    /// ARGs declared in this stage (None: declared without a value)
    args: Vec<(String, Option<String>)>,
    /// what the guest remembers about the stage between instructions (CMD given in it)
    guest_state: GuestStageState,
    snapshots: Option<Snapshots>,
    /// the cache state digest: the base, then what each filesystem step produced
    cache_state: String,
    /// cached layers already in the image but not yet extracted onto the root: only a step
    /// that has to run (or a later stage) needs them there
    pending: Vec<LayerBlob>,
    /// the step's position in the stage and the stage's name: a step's identity across
    /// builds, for the cache's miss reasons
    pos: usize,
    stage_name: String,
}

impl StageState {
    fn env(&self) -> Vec<(String, String)> {
        self.config
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

    /// Variables for expansion: ARGs in scope, overridden by ENV.
    fn lookup(&self) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .collect();
        m.extend(self.env());
        m
    }

    fn config_str(&self, key: &str) -> Option<String> {
        self.config
            .pointer(&format!("/config/{key}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    }
}

pub(crate) async fn run_stage(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    base: StageBase,
    done: &Finished,
) -> Result<StageResult> {
    let StageBase {
        root,
        config,
        layers,
        family,
        cache_state,
    } = base;
    let stage = &plan.stages[index];
    let (scan_root, opts) = (root.clone(), build.opts.layers.clone());
    let snapshots = super::blocking(move || Snapshots::start(&scan_root, &opts)).await??;
    let mut st = StageState {
        root,
        config,
        layers,
        family,
        args: Vec::new(),
        guest_state: GuestStageState::default(),
        snapshots: Some(snapshots),
        cache_state,
        pos: 0,
        stage_name: stage.display_name().to_string(),
        pending: Vec::new(),
    };
    let mut instructions = base_triggers(build, stage, &mut st).await?;
    instructions.extend(stage.instructions.iter().cloned());
    for (pos, ins) in instructions.iter().enumerate() {
        st.pos = pos;
        // BuildKit's `[name step/steps]`, FROM being step 1
        tracing::info!(
            line = ins.line,
            "[{} {}/{}] {}",
            st.stage_name,
            pos + 2,
            instructions.len() + 1,
            ins.original
        );
        step(build, plan, index, &mut st, ins, done)
            .await
            .map_err(|e| match e.downcast::<RunFailed>() {
                Ok(rf) => anyhow!(rf),
                Err(e) => e.context(format!("Dockerfile:{}: {}", ins.line, ins.original)),
            })?;
    }
    snapshot_step(build, &mut st, "single snapshot", Touched::StageEnd).await?;
    if index != plan.target {
        // a later stage may read this root (COPY --from, RUN --mount from=)
        materialize(&mut st).await?;
    }
    Ok(StageResult {
        root: st.root,
        config: st.config,
        layers: st.layers,
        family: st.family,
        cache_state: st.cache_state,
    })
}

/// The base image's ONBUILD triggers, parsed, to run first as if written right after FROM
/// (on FROM's line). The guest takes them out of the config, so the new image does not
/// inherit them; only a base that has `config.OnBuild` is handed to it, so a stage without
/// triggers never waits for the guest to load.
async fn base_triggers(
    build: &Build,
    stage: &super::plan::Stage,
    st: &mut StageState,
) -> Result<Vec<Instruction>> {
    if st.config.pointer("/config/OnBuild").is_none() {
        return Ok(Vec::new());
    }
    let sandbox = build.sandbox.clone();
    let config = st.config.clone();
    let start = super::blocking(move || -> Result<_> { Ok(sandbox.get()?.start_stage(&config)?) })
        .await??;
    st.config = start.config;
    let mut instructions = Vec::new();
    for trigger in &start.triggers {
        let parsed = crate::dockerfile::parse(trigger).with_context(|| {
            format!(
                "Dockerfile:{}: ONBUILD trigger of the base image: {trigger}",
                stage.line
            )
        })?;
        for mut ins in parsed.instructions {
            if matches!(
                ins.keyword,
                Keyword::From | Keyword::Onbuild | Keyword::Maintainer
            ) {
                return Err(anyhow!(
                    "Dockerfile:{}: the base image's ONBUILD trigger {trigger:?} is not allowed",
                    stage.line
                ));
            }
            ins.line = stage.line;
            ins.end_line = stage.line;
            instructions.push(ins);
        }
    }
    Ok(instructions)
}

fn expand_all(
    words: &[String],
    lookup: &HashMap<String, String>,
    escape: char,
) -> Result<Vec<String>> {
    words
        .iter()
        .map(|w| expand_word(w, lookup, escape).map_err(anyhow::Error::from))
        .collect()
}

async fn step(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    st: &mut StageState,
    ins: &Instruction,
    done: &Finished,
) -> Result<()> {
    let escape = build.escape;
    let lookup = st.lookup();
    match ins.keyword {
        Keyword::Arg => {
            for (name, default) in ins.arg_decls()? {
                let value = match plan.build_args.get(&name) {
                    Some(v) => Some(v.clone()),
                    None => match default {
                        Some(d) => Some(expand_word(&d, &st.lookup(), escape)?),
                        None => plan.global_args.get(&name).cloned().flatten(),
                    },
                };
                st.args.retain(|(k, _)| k != &name);
                st.args.push((name, value));
            }
            Ok(())
        }
        Keyword::Run => run_step(build, plan, index, st, ins, done).await,
        Keyword::From => Err(anyhow!("FROM inside a stage")),
        _ => guest_step(build, plan, index, st, ins, &lookup, done).await,
    }
}

fn created_by(ins: &Instruction, shell: &[String]) -> String {
    match (ins.keyword, &ins.args) {
        (Keyword::Run, Args::Shell(t)) => format!("RUN {} {t}", shell.join(" ")),
        (Keyword::Run, Args::Exec(v)) => format!("RUN {}", v.join(" ")),
        _ => ins.original.clone(),
    }
}

fn shell_of(st: &StageState) -> Vec<String> {
    st.config
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

async fn run_step(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    st: &mut StageState,
    ins: &Instruction,
    done: &Finished,
) -> Result<()> {
    let (mounts, network) = run_flags(build, plan, index, st, ins, done).await?;
    let shell = shell_of(st);
    if !ins.heredocs.is_empty() {
        // a heredoc script may be written into the root below: the root must be complete
        // before it, so the snapshot baseline never includes the script
        materialize(st).await?;
    }
    // a `RUN <<EOF` script starting with `#!`, removed before the snapshot
    let mut script_file = None;
    let argv = match &ins.args {
        Args::Exec(v) => v.clone(),
        Args::Shell(text) => {
            let (script, file) = super::heredoc::run_script(ins, text, &st.root)?;
            script_file = file;
            let mut argv = shell.clone();
            argv.push(script);
            argv
        }
    };
    let mut env = st.env();
    for (k, v) in &st.args {
        if let Some(v) = v {
            if !env.iter().any(|(ek, _)| ek == k) {
                env.push((k.clone(), v.clone()));
            }
        }
    }
    // predefined proxy ARGs reach RUN when given, declared or not
    for name in super::plan::PROXY_ARGS {
        if let Some(v) = plan.build_args.get(name) {
            if !env.iter().any(|(k, _)| k == name) {
                env.push((name.to_string(), v.clone()));
            }
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), image::DEFAULT_PATH.into()));
    }
    let cwd = st.config_str("WorkingDir").unwrap_or_else(|| "/".into());
    let created_by = created_by(ins, &shell);
    let cache = build.cache.clone().filter(|c| c.run_layers);
    let key = match &cache {
        Some(_) => match mount_inputs(plan, index, done, &mounts).await? {
            Some(inputs) => Some(run_key(build, st, ins, &created_by, &env, &cwd, inputs)),
            None => {
                tracing::info!("cache: not cacheable: a bind mount of an image");
                None
            }
        },
        None => None,
    };
    if let (Some(cache), Some(key)) = (&cache, &key) {
        let what = format!("Dockerfile:{}: {}", ins.line, ins.original);
        if let Some(entry) = cache.lookup(key, &step_identity(st, ins), &what).await? {
            if let Some(file) = script_file {
                file.remove()?;
            }
            let layer = apply_cached(build, st, entry);
            st.cache_state = after_layer(&st.cache_state, layer.as_ref());
            return Ok(());
        }
    }
    // the command runs: the root must hold every layer so far
    materialize(st).await?;
    let (uid, gid, groups) = match st.config_str("User") {
        None => (0, 0, Vec::new()),
        Some(user) => {
            let sandbox = build.sandbox.clone();
            let root = st.root.clone();
            let id = super::blocking(move || -> Result<_> {
                Ok(sandbox.get()?.resolve_user(&user, &root)?)
            })
            .await??;
            (id.uid, id.gid, id.groups)
        }
    };
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), run::default_home(&st.root, uid)));
    }
    let spec = RunSpec {
        argv,
        env,
        cwd,
        uid,
        gid,
        groups,
        mounts,
        network,
        output_prefix: build
            .stages_in_parallel
            .then(|| format!("[{}] ", st.stage_name)),
    };
    let root = st.root.clone();
    let run_env = build.run_env.clone();
    let result = super::blocking(move || run::run(&root, &spec, &run_env)).await?;
    if let Some(file) = script_file {
        file.remove()?;
    }
    let touched = match result {
        Ok(Some(upper)) => Touched::Upper(upper),
        Ok(None) => Touched::Walk,
        Err(e @ (run::Error::NonZeroExit { .. } | run::Error::Signal { .. })) => {
            let code = match e {
                run::Error::NonZeroExit { code } => code,
                run::Error::Signal { signal } => 128 + signal,
                _ => 1,
            };
            return Err(RunFailed {
                line: ins.line,
                instruction: ins.original.clone(),
                code,
                how: e.to_string(),
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    let blob = snapshot_step(build, st, &created_by, touched).await?;
    if let (Some(cache), Some(key)) = (&cache, &key) {
        let entry = crate::cache::Cache::entry(key, blob.clone(), &created_by);
        cache.store(key, &step_identity(st, ins), entry).await;
    }
    st.cache_state = after_layer(&st.cache_state, blob.as_ref());
    Ok(())
}

/// The cache state after a step that produced `layer` (or no change).
fn after_layer(state: &str, layer: Option<&LayerBlob>) -> String {
    let produced = layer.map_or("none", |l| l.diff_id.0.as_str());
    crate::cache::digest_of([state, "layer", produced])
}

/// A step's identity across builds: stage, position, keyword.
fn step_identity(st: &StageState, ins: &Instruction) -> String {
    crate::cache::digest_of([
        st.stage_name.as_str(),
        &st.pos.to_string(),
        ins.keyword.as_str(),
    ])
}

/// What a RUN's bind mounts let it read, for its key: a stage's cache state, or the digest
/// of the context directory it binds (every entry below it, contents included). Cache, tmpfs
/// and secret mounts are not inputs, as in BuildKit. None when a bind reads an image, whose
/// content kiln does not pin.
async fn mount_inputs(
    plan: &BuildPlan,
    index: usize,
    done: &Finished,
    mounts: &[run::MountRequest],
) -> Result<Option<Vec<String>>> {
    let mut inputs = Vec::new();
    for m in mounts {
        if m.spec.kind != run::MountKind::Bind {
            continue;
        }
        let source = m.spec.source.clone().unwrap_or_default();
        match (&m.spec.from, &m.from) {
            (Some(from), _) => match plan.stage_named(from, index) {
                Some(dep) => {
                    let dep = done.wait(dep).await?;
                    inputs.push(format!("stage {} {source}", dep.cache_state));
                }
                None => return Ok(None),
            },
            (None, Some(context)) => {
                let context = context.clone();
                let dir = source.clone();
                let digest = super::blocking(move || -> Result<String> {
                    let mut reads = Vec::new();
                    let mut todo = vec![crate::rootfs::clean(&dir)];
                    while let Some(path) = todo.pop() {
                        reads.push(crate::sandbox::SourceRead {
                            from: false,
                            path: path.clone(),
                            content: true,
                        });
                        if context.lstat(&path)?.kind == crate::rootfs::Kind::Dir {
                            for name in context.read_dir(&path)? {
                                todo.push(crate::rootfs::join(&path, &name.to_string_lossy()));
                            }
                        }
                    }
                    crate::cache::sources_digest(&reads, &context, None)
                })
                .await??;
                inputs.push(format!("context {source} {digest}"));
            }
            (None, None) => return Ok(None),
        }
    }
    Ok(Some(inputs))
}

/// A RUN's key: the state it starts from, the command with its flags, and everything of the
/// process it observes: its environment (ENV, ARGs in scope, proxy build-args, PATH), the USER
/// it runs as (ids and HOME follow from it and the state's /etc/passwd), the working
/// directory and the platform.
fn run_key(
    build: &Build,
    st: &StageState,
    ins: &Instruction,
    created_by: &str,
    env: &[(String, String)],
    cwd: &str,
    mounts: Vec<String>,
) -> crate::cache::Key {
    let mut env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    let flags: Vec<String> = ins
        .flags
        .iter()
        .map(|f| format!("{}={}", f.name, f.value.as_deref().unwrap_or("")))
        .collect();
    let mut k = crate::cache::KeyBuilder::new();
    k.digest("parent", st.cache_state.clone())
        .component(
            "instruction",
            std::iter::once(created_by.to_string()).chain(flags),
        )
        .component("env", env)
        .component("user", [st.config_str("User").unwrap_or_default()])
        .component("workdir", [cwd])
        .component("mounts", mounts)
        .component(
            "platform",
            [
                build.platform.os.as_str(),
                build.platform.architecture.as_str(),
            ],
        );
    k.finish()
}

/// Takes a cache hit: the entry's layer goes into the image and onto the list of layers the
/// root still lacks (see `materialize`); returns it.
fn apply_cached(
    build: &Build,
    st: &mut StageState,
    entry: crate::cache::Entry,
) -> Option<LayerBlob> {
    match entry.layer {
        Some(mut layer) => {
            layer.media_type = st.family.convert_layer(&layer.media_type);
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
async fn materialize(st: &mut StageState) -> Result<()> {
    if st.pending.is_empty() {
        return Ok(());
    }
    let layers = std::mem::take(&mut st.pending);
    let started = std::time::Instant::now();
    super::extract_layers(&st.root, &layers).await?;
    let root = st.root.clone();
    let mut snapshots = st.snapshots.take().context("snapshot state lost")?;
    let (snapshots, resynced) = super::blocking(move || {
        let r = snapshots.resync(&root);
        (snapshots, r)
    })
    .await?;
    st.snapshots = Some(snapshots);
    resynced?;
    tracing::debug!(
        layers = layers.len(),
        ms = started.elapsed().as_millis() as u64,
        "cached layers extracted"
    );
    Ok(())
}

/// `RUN --mount` and `--network`, expanded and parsed, each mount with the root its
/// contents come from (a bind's default is the context).
async fn run_flags(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    st: &StageState,
    ins: &Instruction,
    done: &Finished,
) -> Result<(Vec<run::MountRequest>, run::Network)> {
    let lookup = st.lookup();
    let mut mounts = Vec::new();
    let mut network = run::Network::Default;
    for flag in &ins.flags {
        let value = match &flag.value {
            Some(v) => expand_word(v, &lookup, build.escape)?,
            None => String::new(),
        };
        match flag.name.as_str() {
            "network" => network = run::Network::parse(&value)?,
            "mount" => {
                let spec = run::MountSpec::parse(&value)?;
                let from = match (&spec.from, spec.kind) {
                    (Some(from), run::MountKind::Bind | run::MountKind::Cache) => {
                        Some(match plan.stage_named(from, index) {
                            Some(dep) => done.wait(dep).await?.root.clone(),
                            None => from_image(build, from).await?,
                        })
                    }
                    (None, run::MountKind::Bind) => Some(build.context.clone()),
                    _ => None,
                };
                mounts.push(run::MountRequest { spec, from });
            }
            "security" if value == "sandbox" => {}
            other => {
                return Err(anyhow!(
                    "RUN --{other}={value} is not supported (BuildKit needs an entitlement for it)"
                ))
            }
        }
    }
    Ok((mounts, network))
}

/// What a step reports about the paths it changed.
enum Touched {
    /// RUN: anything may have changed
    Walk,
    /// RUN on an overlay: what its upper directory held
    Upper(Vec<crate::snapshot::Touch>),
    /// COPY/ADD/WORKDIR: the guest's list
    Paths(Vec<String>),
    /// after the last instruction (`--single-snapshot` takes its layer here)
    StageEnd,
}

/// Snapshots the root after a step; a change becomes a layer and a history entry. Returns
/// the layer.
async fn snapshot_step(
    build: &Build,
    st: &mut StageState,
    created_by: &str,
    touched: Touched,
) -> Result<Option<LayerBlob>> {
    let root = st.root.clone();
    let mut snapshots = st.snapshots.take().context("snapshot state lost")?;
    let store = build.store.clone();
    let format = layer_format(
        &build.opts.layers,
        st.family.layer_gzip(),
        build.mtime_clamp,
    );
    let end = matches!(touched, Touched::StageEnd);
    let (snapshots, blob) = super::blocking(move || {
        let blob = match &touched {
            Touched::Walk => snapshots.after_step(&root, Step::Walk, &store, &format),
            Touched::Upper(u) => snapshots.after_step(&root, Step::Upper(u), &store, &format),
            Touched::Paths(p) => snapshots.after_step(&root, Step::Paths(p), &store, &format),
            Touched::StageEnd => snapshots.finish(&root, &store, &format),
        };
        (snapshots, blob)
    })
    .await?;
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

/// Arguments as the guest receives them, expanded where Docker expands.
fn guest_args(
    ins: &Instruction,
    lookup: &HashMap<String, String>,
    escape: char,
) -> Result<(Vec<String>, bool)> {
    let exec = matches!(ins.args, Args::Exec(_));
    let args = match ins.keyword {
        Keyword::Env | Keyword::Label => {
            let mut out = Vec::new();
            for (k, v) in ins.key_values()? {
                out.push(expand_word(&k, lookup, escape)?);
                out.push(expand_word(&v, lookup, escape)?);
            }
            out
        }
        // HEALTHCHECK: the items of `CMD [...]`, or the text as written (the guest reads
        // its type word)
        Keyword::Cmd | Keyword::Entrypoint | Keyword::Shell | Keyword::Healthcheck => {
            match &ins.args {
                Args::Exec(v) => v.clone(),
                Args::Shell(t) => vec![t.clone()],
            }
        }
        Keyword::Onbuild | Keyword::Maintainer => {
            vec![shell_text(ins).unwrap_or_default().to_string()]
        }
        Keyword::Workdir | Keyword::User | Keyword::Stopsignal => {
            let text = match &ins.args {
                Args::Shell(t) => t.clone(),
                Args::Exec(v) => v.join(" "),
            };
            vec![expand_word(text.trim(), lookup, escape)?]
        }
        // COPY/ADD heredoc markers stay as words; `sources::split` picks them out
        _ => expand_all(&ins.words()?, lookup, escape)?,
    };
    Ok((args, exec))
}

#[allow(clippy::too_many_arguments)]
async fn guest_step(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    st: &mut StageState,
    ins: &Instruction,
    lookup: &HashMap<String, String>,
    done: &Finished,
) -> Result<()> {
    let (args, exec_form) = guest_args(ins, lookup, build.escape)?;
    let mut flags = Vec::new();
    for f in &ins.flags {
        let value = match &f.value {
            Some(v) => Some(expand_word(v, lookup, build.escape)?),
            None => None,
        };
        flags.push((f.name.clone(), value));
    }
    let is_file_op = matches!(ins.keyword, Keyword::Copy | Keyword::Add);
    if is_file_op || ins.keyword == Keyword::Workdir {
        // these read and write the root
        materialize(st).await?;
    }
    let parts = if is_file_op {
        super::sources::split(ins, args, flags, lookup, &build.work).await?
    } else {
        vec![super::sources::Part {
            args,
            flags,
            root: None,
            pin: super::sources::Pin::Content,
        }]
    };
    // each part's instruction and roots first: the cache key covers all of them
    let (calls, pins) = guest_calls(build, plan, index, st, ins, exec_form, parts, done).await?;
    let created_by = created_by(ins, &[]);
    let copy_key = if is_file_op {
        match file_cache(build, st, ins, &calls, &pins).await? {
            FileCache::Hit => return Ok(()),
            FileCache::Miss(key) => key,
        }
    } else {
        None
    };
    let mut touched_all: Vec<String> = Vec::new();
    for (guest_ins, roots) in calls {
        let sandbox = build.sandbox.clone();
        let (config, state) = (st.config.clone(), st.guest_state);
        let outcome = super::blocking(move || -> Result<_> {
            Ok(sandbox.get()?.execute(&guest_ins, &config, &roots, state)?)
        })
        .await??;
        st.config = outcome.config;
        st.guest_state = outcome.state;
        touched_all.extend(outcome.touched);
    }
    touched_all.sort();
    touched_all.dedup();
    let touched = Touched::Paths(touched_all);
    if is_file_op || ins.keyword == Keyword::Workdir {
        let blob = snapshot_step(build, st, &created_by, touched).await?;
        if build.cache.is_none() {
            return Ok(());
        }
        st.cache_state = match (&copy_key, ins.keyword) {
            // the output of COPY/ADD is a function of its key: later keys chain on it, so a
            // touched mtime in the context does not ripple into later steps
            (Some(key), _) => {
                if let Some(cache) = build.cache.clone().filter(|c| c.copy_layers) {
                    let entry = crate::cache::Cache::entry(key, blob.clone(), &created_by);
                    cache.store(key, &step_identity(st, ins), entry).await;
                }
                crate::cache::digest_of([st.cache_state.as_str(), "copy", &key.hex])
            }
            (None, Keyword::Workdir) => crate::cache::digest_of([
                st.cache_state.as_str(),
                "workdir",
                &st.config_str("WorkingDir").unwrap_or_default(),
                &st.config_str("User").unwrap_or_default(),
            ]),
            (None, _) => after_layer(&st.cache_state, blob.as_ref()),
        };
        Ok(())
    } else {
        image::add_history(&mut st.config, &build.created, &created_by, true);
        Ok(())
    }
}

/// Each part of a guest instruction as the guest receives it, with its roots (a `--from`
/// stage waited for, or an image pulled) and its pin.
#[allow(clippy::too_many_arguments)]
async fn guest_calls(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    st: &StageState,
    ins: &Instruction,
    exec_form: bool,
    parts: Vec<super::sources::Part>,
    done: &Finished,
) -> Result<(
    Vec<(GuestInstruction, GuestRoots)>,
    Vec<super::sources::Pin>,
)> {
    let is_file_op = matches!(ins.keyword, Keyword::Copy | Keyword::Add);
    let mut calls = Vec::new();
    let mut pins = Vec::new();
    for part in parts {
        let mut from_root = part.root;
        if is_file_op && from_root.is_none() {
            if let Some((_, Some(from))) = part.flags.iter().find(|(n, _)| n == "from") {
                from_root = Some(match plan.stage_named(from, index) {
                    Some(dep) => done.wait(dep).await?.root.clone(),
                    None => from_image(build, from).await?,
                });
            }
        }
        let guest_ins = GuestInstruction {
            keyword: ins.keyword.as_str().to_string(),
            line: ins.line as u32,
            args: part.args,
            flags: part.flags,
            exec_form,
        };
        let roots = GuestRoots {
            stage: st.root.clone(),
            context: build.context.clone(),
            context_ignore: build.ignore.clone(),
            from: from_root,
        };
        calls.push((guest_ins, roots));
        pins.push(part.pin);
    }
    Ok((calls, pins))
}

/// What the layer cache says about a COPY/ADD before it runs.
enum FileCache {
    /// found: its layer is applied and the step is done
    Hit,
    /// to run; the key to store its layer under (none when not cacheable)
    Miss(Option<crate::cache::Key>),
}

/// Keys a COPY/ADD and looks it up: on a hit the cached layer is applied.
async fn file_cache(
    build: &Build,
    st: &mut StageState,
    ins: &Instruction,
    calls: &[(GuestInstruction, GuestRoots)],
    pins: &[super::sources::Pin],
) -> Result<FileCache> {
    let Some(cache) = build.cache.clone() else {
        return Ok(FileCache::Miss(None));
    };
    if pins.contains(&super::sources::Pin::Unpinned) {
        tracing::info!("cache: not cacheable: a downloaded source");
        return Ok(FileCache::Miss(None));
    }
    let key = file_key(build, st, calls, pins).await?;
    if cache.copy_layers {
        let what = format!("Dockerfile:{}: {}", ins.line, ins.original);
        if let Some(entry) = cache.lookup(&key, &step_identity(st, ins), &what).await? {
            apply_cached(build, st, entry);
            st.cache_state = crate::cache::digest_of([st.cache_state.as_str(), "copy", &key.hex]);
            return Ok(FileCache::Hit);
        }
    }
    Ok(FileCache::Miss(Some(key)))
}

/// A COPY/ADD key: the state it starts from, the instruction with its flags, the working
/// directory (relative destinations) and exactly the sources it would read, found by a dry run
/// of the instruction in the guest; a part pinned by an id (a git commit) is keyed on the id.
async fn file_key(
    build: &Build,
    st: &StageState,
    calls: &[(GuestInstruction, GuestRoots)],
    pins: &[super::sources::Pin],
) -> Result<crate::cache::Key> {
    let mut instruction = Vec::new();
    let mut sources = Vec::new();
    for ((guest_ins, roots), pin) in calls.iter().zip(pins) {
        instruction.push(guest_ins.keyword.clone());
        instruction.extend(guest_ins.args.iter().cloned());
        instruction.extend(
            guest_ins
                .flags
                .iter()
                .map(|(n, v)| format!("--{n}={}", v.as_deref().unwrap_or(""))),
        );
        if let super::sources::Pin::Id(id) = pin {
            sources.push(crate::cache::digest_of(["pinned", id.as_str()]));
            continue;
        }
        let sandbox = build.sandbox.clone();
        let config = st.config.clone();
        let (ins, roots) = (guest_ins.clone(), roots.clone());
        sources.push(
            super::blocking(move || -> Result<String> {
                let reads = sandbox.get()?.dry_run(&ins, &config, &roots)?;
                crate::cache::sources_digest(&reads, &roots.context, roots.from.as_deref())
            })
            .await??,
        );
    }
    let mut k = crate::cache::KeyBuilder::new();
    k.digest("parent", st.cache_state.clone())
        .component("instruction", instruction)
        .component("workdir", [st.config_str("WorkingDir").unwrap_or_default()])
        .component("sources", sources);
    Ok(k.finish())
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
            let (_, layers, _, _) = super::pull_image(build, reference).await?;
            let dir = build.work.join(format!("image-{next}"));
            let root = Arc::new(Root::create(&dir)?);
            super::extract_layers(&root, &layers).await?;
            Ok::<_, anyhow::Error>(root)
        })
        .await?;
    Ok(root.clone())
}
