//! Steps of one stage: each instruction expanded with the stage's ARG/ENV state, carried out
//! (RUN natively, the rest in the guest), and snapshotted into a layer when it changed the
//! root. History gets one entry per instruction, `empty_layer` for metadata-only ones.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use serde_json::Value;
use tracing::Instrument as _;

use super::images::from_root;
use super::layering::{Snapshots, Touched};
use super::plan::{shell_text, BuildPlan};
use super::results::Finished;
use super::state::{
    after_copy, after_layer, after_workdir, apply_cached, config_str_of, created_by, look_up,
    lookup_of, materialize, snapshot_step, StageState,
};
use super::volumes::Volumes;
use super::{Build, RunFailed, StageResult};
use crate::dockerfile::{expand_word, Args, Instruction, Keyword};
use crate::image::{self, Family};
use crate::layer::LayerBlob;
use crate::rootfs::Root;
use crate::sandbox::{GuestInstruction, GuestRoots, GuestStageState};
use crate::task::blocking;

/// What a stage starts from.
pub(crate) struct StageBase {
    pub root: Arc<Root>,
    pub config: Value,
    pub layers: Vec<LayerBlob>,
    /// the base's layers not yet extracted onto `root` (see `state::materialize`)
    pub pending: Vec<LayerBlob>,
    pub family: Family,
    /// the cache state digest of the base (see `cache`)
    pub cache_state: String,
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
        pending,
        family,
        cache_state,
    } = base;
    let stage = &plan.stages[index];
    let (scan_root, opts) = (root.clone(), build.opts.layers.clone());
    let snapshots = blocking(move || Snapshots::start(&scan_root, &opts)).await??;
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
        pending,
        output: None,
        cached: false,
        ran: None,
        env_cache: Default::default(),
        later_run: false,
    };
    let mut instructions = base_triggers(build, stage, &mut st).await?;
    instructions.extend(stage.instructions.iter().cloned());
    let mut volumes = Volumes::default();
    for (pos, ins) in instructions.iter().enumerate() {
        st.pos = pos;
        st.later_run = instructions[pos + 1..]
            .iter()
            .any(|i| i.keyword == Keyword::Run);
        // BuildKit's `[name step/steps]`, FROM being step 1; what the step logs carries
        // its number and line (fields of the JSON log)
        let number = format!("{}/{}", pos + 2, instructions.len() + 1);
        let span = tracing::info_span!("step", step = %number, line = ins.line);
        span.in_scope(|| {
            let text = crate::redaction::shown(&ins.original);
            tracing::debug!("[{} {number}] {text}", st.stage_name)
        });
        let shown = crate::progress::Step::start(&st.stage_name, &number, &ins.original, ins.line);
        st.output = Some(shown.output());
        st.cached = false;
        if volumes.named_by(ins) {
            // the root must show the earlier steps (a RUN or COPY would materialize it anyway)
            materialize(build, &mut st).await?;
            span.in_scope(|| volumes.warn_missing(&st.root, ins));
        }
        let before = (ins.keyword == Keyword::Volume).then(|| st.config.clone());
        step(build, plan, index, &mut st, ins, done)
            .instrument(span)
            .await
            .map_err(|e| match e.downcast::<RunFailed>() {
                Ok(rf) => anyhow!(rf),
                Err(e) => e.context(format!(
                    "Dockerfile:{}: {}",
                    ins.line,
                    crate::redaction::shown(&ins.original)
                )),
            })?;
        if let Some(before) = before {
            volumes.note(&before, &st.config, ins.line);
        }
        if st.cached {
            shown.cached();
        } else {
            shown.done();
        }
    }
    snapshot_step(build, &mut st, "single snapshot", Touched::StageEnd).await?;
    if index != plan.target && !build.runner.roots_fill_later() {
        // in place the root moves on: a later stage reading this one (COPY --from, RUN
        // --mount from=) gets it rebuilt beside (`base::build_stage`) from what it holds
        materialize(build, &mut st).await?;
    }
    // otherwise a later stage reading this root fills it then (`StageResult::filled_root`)
    Ok(StageResult {
        root: st.root,
        config: st.config,
        layers: st.layers,
        family: st.family,
        cache_state: st.cache_state,
        pending: st.pending,
        filled: Default::default(),
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
    let start =
        blocking(move || -> Result<_> { Ok(sandbox.get()?.start_stage(&config)?) }).await??;
    st.config = start.config;
    st.forget_env();
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
    match ins.keyword {
        Keyword::Arg => {
            declare_args(plan, &mut st.args, &st.config, ins, escape)?;
            st.forget_args();
            Ok(())
        }
        Keyword::Run => super::run_step::run_step(build, plan, index, st, ins, done).await,
        Keyword::From => Err(anyhow!("FROM inside a stage")),
        _ => guest_step(build, plan, index, st, ins, done).await,
    }
}

/// An ARG instruction: each name declared in the stage's scope (`args`), with the build-arg,
/// its default or the global value.
pub(super) fn declare_args(
    plan: &BuildPlan,
    args: &mut Vec<(String, Option<String>)>,
    config: &Value,
    ins: &Instruction,
    escape: char,
) -> Result<()> {
    for (name, default) in ins.arg_decls()? {
        // BuildKit expands the name as well as the default
        let name = expand_word(&name, &lookup_of(args, config), escape)?;
        let value = match plan.build_args.get(&name) {
            Some(v) => Some(v.clone()),
            None => match default {
                Some(d) => Some(expand_word(&d, &lookup_of(args, config), escape)?),
                None => plan.global_args.get(&name).cloned().flatten(),
            },
        };
        args.retain(|(k, _)| k != &name);
        args.push((name, value));
    }
    Ok(())
}

/// A guest instruction's arguments, whether it is in exec form, and its flags, expanded.
pub(super) type GuestWords = (Vec<String>, bool, Vec<(String, Option<String>)>);

/// Arguments and flags as the guest receives them.
pub(super) fn guest_words(
    ins: &Instruction,
    lookup: &HashMap<String, String>,
    escape: char,
) -> Result<GuestWords> {
    let (args, exec_form) = guest_args(ins, lookup, escape)?;
    let mut flags = Vec::new();
    for f in &ins.flags {
        let value = match &f.value {
            Some(v) => Some(expand_word(v, lookup, escape)?),
            None => None,
        };
        flags.push((f.name.clone(), value));
    }
    Ok((args, exec_form, flags))
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
        // COPY/ADD heredoc markers stay as words; `copy_parts::split` picks them out
        _ => expand_all(&ins.words()?, lookup, escape)?,
    };
    Ok((args, exec))
}

/// The parts of a guest instruction (COPY/ADD sources split by origin), arguments and flags
/// expanded, and whether it is in exec form. The expansion variables are let go on return, so
/// the ENV that follows updates them in place.
async fn guest_parts(
    build: &Build,
    st: &StageState,
    ins: &Instruction,
) -> Result<(Vec<super::copy_parts::Part>, bool)> {
    let lookup = st.lookup();
    let lookup = &*lookup;
    let (args, exec_form, flags) = guest_words(ins, lookup, build.escape)?;
    let is_file_op = matches!(ins.keyword, Keyword::Copy | Keyword::Add);
    let parts = if is_file_op {
        super::copy_parts::split(
            ins,
            args,
            flags,
            lookup,
            &build.work,
            &build.opts.context.git.credential_hosts,
        )
        .await?
    } else {
        vec![super::copy_parts::Part {
            args,
            flags,
            root: None,
            pin: super::copy_parts::Pin::Content,
            material: None,
        }]
    };
    if let Ok(mut materials) = build.pulled.lock() {
        materials.extend(
            parts
                .iter()
                .filter_map(|p| p.material.clone().map(|m| (m, false))),
        );
    }
    Ok((parts, exec_form))
}

#[allow(clippy::too_many_arguments)]
async fn guest_step(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    st: &mut StageState,
    ins: &Instruction,
    done: &Finished,
) -> Result<()> {
    let is_file_op = matches!(ins.keyword, Keyword::Copy | Keyword::Add);
    let is_workdir = ins.keyword == Keyword::Workdir;
    // `--chown=<name>`: resolved for the key in the stage's user databases, read from its
    // layers when its root is not filled (`chown`)
    let chown = match chown_spec(build, st, ins) {
        Some(spec) if is_file_op && build.cache.is_some() => {
            Some(super::chown::for_key(build, st, &spec).await?)
        }
        _ => None,
    };
    let (parts, exec_form) = guest_parts(build, st, ins).await?;
    // each part's instruction and roots first: the cache key covers all of them
    let (mut calls, pins, from_stages) =
        guest_calls(build, plan, index, st, ins, exec_form, parts, done).await?;
    let created_by = created_by(ins, &[]);
    let workdir_key = match is_workdir {
        true => match workdir_cache(build, st, ins, &calls).await? {
            FileCache::Hit => return Ok(()),
            FileCache::Miss(key) => key,
        },
        false => None,
    };
    let copy_key = if is_file_op {
        let keyed = Keyed {
            pins: &pins,
            from_stages: &from_stages,
            chown: chown.as_ref(),
        };
        match file_cache(build, st, ins, &calls, keyed).await? {
            FileCache::Hit => return Ok(()),
            FileCache::Miss(key) => key,
        }
    } else {
        None
    };
    drop(chown);
    // a COPY/ADD/WORKDIR that runs writes into the root: it must show every layer so far,
    // all of them or (with no RUN after it) the paths it can reach (`sparse`)
    let sparse = match is_file_op || is_workdir {
        true => step_root(build, st, is_workdir, &mut calls).await?,
        false => None,
    };
    if is_file_op {
        // it reads the files of the stages it copies from
        for ((_, roots), from) in calls.iter_mut().zip(&from_stages) {
            if let Some(from) = from {
                roots.from = Some(from.filled_root(build).await?);
            }
        }
    }
    let touched = execute_calls(build, st, ins, calls).await?;
    let touched = Touched::Paths(touched);
    if is_file_op || is_workdir {
        let blob = match sparse {
            Some((sparse, before)) => {
                super::sparse::snapshot(build, st, &sparse, before, &created_by, touched).await?
            }
            None => snapshot_step(build, st, &created_by, touched).await?,
        };
        if build.cache.is_none() {
            return Ok(());
        }
        if let Some(key) = &workdir_key {
            let cache = build.cache.clone().context("the cache went away")?;
            let entry = crate::cache::Cache::entry(key, blob.clone(), &created_by);
            cache.store(key, &st.identity(ins), entry).await;
        }
        st.cache_state = match (&copy_key, ins.keyword) {
            // the output of COPY/ADD is a function of its key: later keys chain on it, so a
            // touched mtime in the context does not ripple into later steps
            (Some(key), _) => {
                if let Some(cache) = build.cache.clone().filter(|c| c.copy_layers) {
                    let entry = crate::cache::Cache::entry(key, blob.clone(), &created_by);
                    cache.store(key, &st.identity(ins), entry).await;
                }
                st.ran = Some(format!(
                    "{} at Dockerfile:{}",
                    ins.keyword.as_str(),
                    ins.line
                ));
                after_copy(&st.cache_state, key)
            }
            (None, Keyword::Workdir) => after_workdir(&st.cache_state, &st.config),
            (None, _) => after_layer(&st.cache_state, blob.as_ref()),
        };
        Ok(())
    } else {
        image::add_history(&mut st.config, &build.created, &created_by, true);
        Ok(())
    }
}

/// A COPY/ADD's `--chown` value, expanded, when it names a user or group (see `chown`).
fn chown_spec(build: &Build, st: &StageState, ins: &Instruction) -> Option<String> {
    let flag = ins.flags.iter().find(|f| f.name == "chown")?;
    let lookup = st.lookup();
    let value = flag.value.as_ref()?;
    let chown = expand_word(value, &*lookup, build.escape).unwrap_or_else(|_| value.clone());
    super::chown::by_name(&chown).then_some(chown)
}

/// Runs each part of a guest instruction in the guest; returns the paths they touched. The
/// guest sees only what the instruction needs of the config (`StageState::guest_view`).
async fn execute_calls(
    build: &Build,
    st: &mut StageState,
    ins: &Instruction,
    calls: Vec<(GuestInstruction, GuestRoots)>,
) -> Result<Vec<String>> {
    let mut touched = Vec::new();
    for (guest_ins, roots) in calls {
        let keys: Vec<String> = match ins.keyword {
            Keyword::Env => guest_ins.args.iter().step_by(2).cloned().collect(),
            _ => Vec::new(),
        };
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (view, positions) = st.guest_view(&keys);
        let sandbox = build.sandbox.clone();
        let state = st.guest_state;
        let outcome = blocking(move || -> Result<_> {
            Ok(sandbox.get()?.execute(&guest_ins, &view, &roots, state)?)
        })
        .await??;
        st.absorb(outcome.config, &positions);
        st.guest_state = outcome.state;
        touched.extend(outcome.touched);
    }
    touched.sort();
    touched.dedup();
    Ok(touched)
}

/// Looks a WORKDIR up in the cache (with `--cache`): on a hit its layer is taken and the
/// guest only says what the config becomes; on a miss, the key to store its layer under.
async fn workdir_cache(
    build: &Build,
    st: &mut StageState,
    ins: &Instruction,
    calls: &[(GuestInstruction, GuestRoots)],
) -> Result<FileCache> {
    let Some(cache) = build.cache.clone() else {
        return Ok(FileCache::Miss(None));
    };
    let dir = calls
        .first()
        .and_then(|(g, _)| g.args.first())
        .cloned()
        .unwrap_or_default();
    let key = super::state::workdir_key(&st.cache_state, &st.config, &dir);
    match look_up(&cache, &key, st, ins).await? {
        Some(entry) => {
            preview_calls(build, st, calls.to_vec()).await?;
            apply_cached(build, st, entry);
            st.cache_state = after_workdir(&st.cache_state, &st.config);
            Ok(FileCache::Hit)
        }
        None => Ok(FileCache::Miss(Some(key))),
    }
}

/// Where a COPY/ADD/WORKDIR that runs writes: a root that shows every layer so far, the
/// stage's own filled (`None`) or, with no RUN after the step, a scratch root with the paths
/// it can reach (`sparse`, the calls pointed at it, with its snapshot baseline).
async fn step_root(
    build: &Build,
    st: &mut StageState,
    is_workdir: bool,
    calls: &mut [(GuestInstruction, GuestRoots)],
) -> Result<Option<(super::sparse::Sparse, Snapshots)>> {
    let mut sparse = None;
    if super::sparse::applies(build, st, st.later_run) {
        let dests: Vec<String> = calls
            .iter()
            .filter_map(|(g, _)| match is_workdir {
                true => g.args.first().cloned(),
                false => g.args.last().cloned(),
            })
            .collect();
        let dests = super::sparse::absolute(&st.config, &dests);
        sparse = super::sparse::prepare(build, st, &dests).await?;
    }
    match sparse {
        Some(sparse) => {
            let before = beside(st, &sparse, calls).await?;
            Ok(Some((sparse, before)))
        }
        None => materialize(build, st).await.map(|()| None),
    }
}

/// Points the calls at the scratch root and takes its snapshot baseline.
async fn beside(
    st: &mut StageState,
    sparse: &super::sparse::Sparse,
    calls: &mut [(GuestInstruction, GuestRoots)],
) -> Result<Snapshots> {
    for (_, roots) in calls.iter_mut() {
        roots.stage = sparse.root.clone();
    }
    let root = sparse.root.clone();
    let snapshots = st.snapshots.take().context("snapshot state lost")?;
    let (snapshots, before) = blocking(move || {
        let before = snapshots.beside(&root);
        (snapshots, before)
    })
    .await?;
    st.snapshots = Some(snapshots);
    before
}

/// What a guest instruction does to the config and the stage's state, nothing written (its
/// files come from a cached layer).
async fn preview_calls(
    build: &Build,
    st: &mut StageState,
    calls: Vec<(GuestInstruction, GuestRoots)>,
) -> Result<()> {
    for (guest_ins, roots) in calls {
        let (view, positions) = st.guest_view(&[]);
        let sandbox = build.sandbox.clone();
        let state = st.guest_state;
        let outcome = blocking(move || -> Result<_> {
            Ok(sandbox.get()?.preview(&guest_ins, &view, &roots, state)?)
        })
        .await??;
        st.absorb(outcome.config, &positions);
        st.guest_state = outcome.state;
    }
    Ok(())
}

/// Each part of a guest instruction as the guest receives it, with its roots (a `--from`
/// image pulled, a `--from` stage waited for) and its pin. With the cache, a `--from` stage's
/// root is left out (`None`, its result given beside): the key needs only its layers, and
/// its root is filled when the step runs.
#[allow(clippy::too_many_arguments)]
async fn guest_calls(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    st: &StageState,
    ins: &Instruction,
    exec_form: bool,
    parts: Vec<super::copy_parts::Part>,
    done: &Finished,
) -> Result<GuestCalls> {
    let is_file_op = matches!(ins.keyword, Keyword::Copy | Keyword::Add);
    let mut calls = Vec::new();
    let mut pins = Vec::new();
    let mut from_stages = Vec::new();
    for part in parts {
        let mut source_root = part.root;
        let mut from_stage = None;
        if is_file_op && source_root.is_none() {
            if let Some((_, Some(from))) = part.flags.iter().find(|(n, _)| n == "from") {
                match plan.stage_named(from, index) {
                    Some(dep) if build.cache.is_some() => from_stage = Some(done.wait(dep).await?),
                    _ => source_root = Some(from_root(build, plan, index, done, from).await?),
                }
            }
        }
        from_stages.push(from_stage);
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
            from: source_root,
        };
        calls.push((guest_ins, roots));
        pins.push(part.pin);
    }
    Ok((calls, pins, from_stages))
}

/// A guest instruction's calls with their roots, each part's pin, and the `--from` stage a
/// part copies from when its root is left to fill (see `guest_calls`).
type GuestCalls = (
    Vec<(GuestInstruction, GuestRoots)>,
    Vec<super::copy_parts::Pin>,
    Vec<Option<Arc<StageResult>>>,
);

/// What a COPY/ADD's key reads beside its calls.
struct Keyed<'a> {
    pins: &'a [super::copy_parts::Pin],
    /// per part: the `--from` stage keyed on its layers
    from_stages: &'a [Option<Arc<StageResult>>],
    /// `--chown=<name>`: the root it is resolved in for the key (when not the stage's) and
    /// the owner it gives
    chown: Option<&'a (Option<super::chown::UsersRoot>, String)>,
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
    keyed: Keyed<'_>,
) -> Result<FileCache> {
    let Some(cache) = build.cache.clone() else {
        return Ok(FileCache::Miss(None));
    };
    if keyed.pins.contains(&super::copy_parts::Pin::Unpinned) {
        tracing::info!("cache: not cacheable: a downloaded source");
        return Ok(FileCache::Miss(None));
    }
    let key = file_key(build, st, calls, keyed).await?;
    if cache.copy_layers {
        if let Some(entry) = look_up(&cache, &key, st, ins).await? {
            apply_cached(build, st, entry);
            st.cache_state = after_copy(&st.cache_state, &key);
            return Ok(FileCache::Hit);
        }
    }
    Ok(FileCache::Miss(Some(key)))
}

/// A COPY/ADD key: the state it starts from, the instruction with its flags, the working
/// directory (relative destinations) and exactly the sources it would read, found by a dry run
/// of the instruction in the guest; a part pinned by an id (a git commit) is keyed on the id,
/// a part copied from a stage on that stage's layers (`stage_sources`); a `--chown=<name>` on
/// the owner it resolves to.
async fn file_key(
    build: &Build,
    st: &StageState,
    calls: &[(GuestInstruction, GuestRoots)],
    keyed: Keyed<'_>,
) -> Result<crate::cache::Key> {
    let mut parts = Vec::new();
    let users = keyed.chown.and_then(|(users, _)| users.as_ref());
    for (((guest_ins, roots), pin), from) in calls.iter().zip(keyed.pins).zip(keyed.from_stages) {
        if let Some(from) = from {
            parts.push((guest_ins.clone(), stage_sources(&from.layers)));
            continue;
        }
        let (sandbox, config) = (build.sandbox.clone(), st.config.clone());
        let (ins, mut roots, pin) = (guest_ins.clone(), roots.clone(), pin.clone());
        if let Some(users) = users {
            // the guest resolves `--chown` in the stage's user databases alone
            roots.stage = users.root.clone();
        }
        let sources =
            blocking(move || part_sources(sandbox.get()?, &ins, &config, &roots, &pin)).await??;
        parts.push((guest_ins.clone(), sources));
    }
    let owner = keyed.chown.map(|(_, owner)| owner.as_str());
    Ok(file_key_of(&st.cache_state, &st.config, &parts, owner))
}

/// What a part copied from a stage reads, for its key: the stage's filesystem, named by its
/// layers' diff_ids (the paths and flags are the instruction's, keyed beside).
pub(super) fn stage_sources(layers: &[LayerBlob]) -> String {
    crate::cache::digest_of(
        std::iter::once("stage layers").chain(layers.iter().map(|l| l.diff_id.0.as_str())),
    )
}

/// The digest of what one part of a COPY/ADD reads (its pin's id when it has one).
pub(super) fn part_sources(
    sandbox: &crate::sandbox::Sandbox,
    ins: &GuestInstruction,
    config: &Value,
    roots: &GuestRoots,
    pin: &super::copy_parts::Pin,
) -> Result<String> {
    if let super::copy_parts::Pin::Id(id) = pin {
        return Ok(crate::cache::digest_of(["pinned", id.as_str()]));
    }
    let reads = sandbox.dry_run(ins, config, roots)?;
    crate::cache::sources_digest(&reads, &roots.context, roots.from.as_deref())
}

/// A COPY/ADD key from its parts, each with the digest of its sources (`part_sources`), and
/// the owner a `--chown=<name>` resolved to.
pub(super) fn file_key_of(
    state: &str,
    config: &Value,
    parts: &[(GuestInstruction, String)],
    owner: Option<&str>,
) -> crate::cache::Key {
    let mut instruction = Vec::new();
    let mut sources = Vec::new();
    for (guest_ins, digest) in parts {
        instruction.push(guest_ins.keyword.clone());
        instruction.extend(guest_ins.args.iter().cloned());
        instruction.extend(
            guest_ins
                .flags
                .iter()
                .map(|(n, v)| format!("--{n}={}", v.as_deref().unwrap_or(""))),
        );
        sources.push(digest.clone());
    }
    let mut k = crate::cache::KeyBuilder::new();
    k.digest("parent", state.to_string())
        .component("instruction", instruction)
        .component(
            "workdir",
            [config_str_of(config, "WorkingDir").unwrap_or_default()],
        )
        .component("sources", sources);
    if let Some(owner) = owner {
        k.component("owner", [owner]);
    }
    k.finish()
}
