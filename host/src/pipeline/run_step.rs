//! One `RUN` of a stage: its command line (shell form through the stage's SHELL, heredoc
//! scripts), its environment (ENV, ARGs in scope, proxy build-args, PATH, HOME), its user,
//! its `--mount`s and `--network`, its layer-cache key, and the command itself, started by
//! the build's runner. A failed command becomes a `RunFailed` with the Dockerfile line.

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::images::from_root;
use super::layering::Touched;
use super::plan::BuildPlan;
use super::results::Finished;
use super::state::{
    after_layer, apply_cached, config_str_of, created_by, env_of, look_up, materialize, shell_of,
    snapshot_step, StageState,
};
use super::{Build, RunFailed};
use crate::dockerfile::{expand_word, Args, Instruction};
use crate::image;
use crate::registry::Platform;
use crate::run::{self, RunSpec};
use crate::task::blocking;

/// Runs (or takes from the cache) one RUN instruction.
pub(super) async fn run_step(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    st: &mut StageState,
    ins: &Instruction,
    done: &Finished,
) -> Result<()> {
    let (mounts, network) = run_flags(build, plan, index, st, ins, done).await?;
    let shell = shell_of(&st.config);
    let mut env = command_env(plan, &st.args, &st.config);
    let cwd = workdir_of(&st.config);
    let created_by = created_by(ins, &shell);
    let cache = build.cache.clone().filter(|c| c.run_layers);
    let key = match &cache {
        Some(_) => match mount_inputs(plan, index, done, &mounts).await? {
            Some(inputs) => Some(run_key(
                platform_of(build, plan, index),
                &st.cache_state,
                &st.config,
                ins,
                &created_by,
                &env,
                inputs,
            )),
            None => {
                tracing::info!("cache: not cacheable: a bind mount of an image");
                None
            }
        },
        None => None,
    };
    if let (Some(cache), Some(key)) = (&cache, &key) {
        if let Some(entry) = look_up(cache, key, st, ins).await? {
            let layer = apply_cached(build, st, entry);
            st.cache_state = after_layer(&st.cache_state, layer.as_ref());
            return Ok(());
        }
    }
    run::binfmt::require_runnable(platform_of(build, plan, index), ins.line)?;
    build.runner.expect_run();
    // the command runs: the root must hold every layer so far (and before a heredoc script
    // is written into it, so the snapshot baseline never includes the script)
    materialize(build, st).await?;
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
    let (uid, gid, groups) = user_ids(build, st).await?;
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
            .runner
            .stages_in_parallel()
            .then(|| format!("[{}] ", st.stage_name)),
        output: st.output.clone().filter(|_| crate::progress::active()),
    };
    let (root, runner) = (st.root.clone(), build.runner.clone());
    let result = blocking(move || runner.run(&root, &spec)).await?;
    if let Some(file) = script_file {
        file.remove()?;
    }
    let touched = outcome(result, ins)?;
    let blob = snapshot_step(build, st, &created_by, touched).await?;
    if let (Some(cache), Some(key)) = (&cache, &key) {
        let entry = crate::cache::Cache::entry(key, blob.clone(), &created_by);
        cache.store(key, &st.identity(ins), entry).await;
    }
    let state = after_layer(&st.cache_state, blob.as_ref());
    if state != st.cache_state {
        st.ran = Some(format!("RUN at Dockerfile:{}", ins.line));
    }
    st.cache_state = state;
    Ok(())
}

/// The platform stage `index` runs as: its `FROM --platform`, else the build's.
fn platform_of<'a>(build: &'a Build, plan: &'a BuildPlan, index: usize) -> &'a Platform {
    plan.stages[index]
        .platform
        .as_ref()
        .unwrap_or(&build.platform)
}

/// The command's environment: the image's ENV, then ARGs in scope that ENV does not set,
/// the predefined proxy ARGs given as build-args, and a default PATH.
pub(super) fn command_env(
    plan: &BuildPlan,
    args: &[(String, Option<String>)],
    config: &Value,
) -> Vec<(String, String)> {
    let mut env = env_of(config);
    for (k, v) in args {
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
    env
}

/// The uid, gid and supplementary groups USER names, resolved in the stage's root by the
/// guest (root when no USER is set).
async fn user_ids(build: &Build, st: &StageState) -> Result<(u32, u32, Vec<u32>)> {
    let Some(user) = st.config_str("User") else {
        return Ok((0, 0, Vec::new()));
    };
    let sandbox = build.sandbox.clone();
    let root = st.root.clone();
    let id =
        blocking(move || -> Result<_> { Ok(sandbox.get()?.resolve_user(&user, &root)?) }).await??;
    Ok((id.uid, id.gid, id.groups))
}

/// What the runner reported, as the paths to snapshot, or the build's error: a command that
/// failed is a `RunFailed` with its exit code (128 + the signal when killed).
fn outcome(result: run::Result<run::Ran>, ins: &Instruction) -> Result<Touched> {
    match result {
        Ok(run::Ran {
            upper: Some(upper), ..
        }) => Ok(Touched::Upper(upper)),
        Ok(run::Ran { settled, .. }) => Ok(Touched::Walk(settled)),
        Err(e @ (run::Error::NonZeroExit { .. } | run::Error::Signal { .. })) => {
            let code = match e {
                run::Error::NonZeroExit { code } => code,
                run::Error::Signal { signal } => 128 + signal,
                _ => 1,
            };
            Err(RunFailed {
                line: ins.line,
                instruction: ins.original.clone(),
                code,
                how: e.to_string(),
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
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
                let digest = blocking(move || -> Result<String> {
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
pub(super) fn run_key(
    platform: &Platform,
    state: &str,
    config: &Value,
    ins: &Instruction,
    created_by: &str,
    env: &[(String, String)],
    mounts: Vec<String>,
) -> crate::cache::Key {
    let cwd = workdir_of(config);
    let mut env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    env.sort();
    let flags: Vec<String> = ins
        .flags
        .iter()
        .map(|f| format!("{}={}", f.name, f.value.as_deref().unwrap_or("")))
        .collect();
    let mut k = crate::cache::KeyBuilder::new();
    k.digest("parent", state.to_string())
        .component(
            "instruction",
            std::iter::once(created_by.to_string()).chain(flags),
        )
        .component("env", env)
        .component("user", [config_str_of(config, "User").unwrap_or_default()])
        .component("workdir", [cwd])
        .component("mounts", mounts)
        .component(
            "platform",
            [platform.os.as_str(), platform.architecture.as_str()],
        );
    if !ins.heredocs.is_empty() {
        // the bodies are not in `created_by` (the command line only): a changed body re-runs
        k.component(
            "heredocs",
            ins.heredocs.iter().map(|h| {
                let fd = h.fd.map(|fd| fd.to_string()).unwrap_or_default();
                let chomp = if h.chomp { "-" } else { "" };
                format!("{fd}<<{chomp}{} expand={}\n{}", h.name, h.expand, h.content)
            }),
        );
    }
    k.finish()
}

/// The directory a RUN starts in: WORKDIR, else `/`.
pub(super) fn workdir_of(config: &Value) -> String {
    config_str_of(config, "WorkingDir").unwrap_or_else(|| "/".into())
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
            Some(v) => expand_word(v, &*lookup, build.escape)?,
            None => String::new(),
        };
        match flag.name.as_str() {
            "network" => network = run::Network::parse(&value)?,
            "mount" => {
                let spec = run::MountSpec::parse(&value)?;
                let from = match (&spec.from, spec.kind) {
                    (Some(from), run::MountKind::Bind | run::MountKind::Cache) => {
                        Some(from_root(build, plan, index, done, from).await?)
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
