//! The sandbox: runs the guest component (kiln's instruction interpreter, built from `guest/`
//! against `wit/`) in wasmtime, with no WASI preopens and no ambient authority.
//!
//! The guest's only file access is the `fs` interface, implemented in `host_fs` on root
//! handles. The component is compiled to native code when kiln is built (build.rs, with the
//! settings in `engine`) and embedded; loading it costs no compile and writes nothing. Generated
//! bindings stay in `bindings`; the rest of kiln sees `GuestInstruction`, `GuestRoots`,
//! `GuestStageState`, `Outcome`, `StageStart` and `Identity`.

mod bindings;
mod engine;
mod host_fs;
mod limits;
mod names;
mod wasi;

use std::sync::Arc;

use serde_json::Value;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::dockerfile::IgnoreRules;
use crate::rootfs::Root;
use bindings::exports::kiln::builder::interpreter as wit;

/// The guest compiled for this target by build.rs.
#[cfg(not(feature = "jit"))]
const GUEST_NATIVE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kiln_guest.cwasm"));
/// The guest component, built by build.rs, compiled when loaded (feature `jit`).
#[cfg(feature = "jit")]
const GUEST_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kiln_guest.wasm"));

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("loading the instruction interpreter: {0:#}")]
    Load(wasmtime::Error),
    #[error("instruction interpreter trapped: {0:#}")]
    Trap(wasmtime::Error),
    #[error("{0}")]
    Instruction(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// An instruction as the guest receives it: arguments already expanded.
#[derive(Debug, Clone)]
pub struct GuestInstruction {
    pub keyword: String,
    pub line: u32,
    pub args: Vec<String>,
    pub flags: Vec<(String, Option<String>)>,
    pub exec_form: bool,
}

/// The roots one instruction may touch.
#[derive(Debug, Clone)]
pub struct GuestRoots {
    pub stage: Arc<Root>,
    pub context: Arc<Root>,
    pub context_ignore: Arc<IgnoreRules>,
    pub from: Option<Arc<Root>>,
}

/// What the guest remembers about a stage between its instructions (whether CMD was given
/// in it, for ENTRYPOINT). Only the guest reads it: the host keeps it for the stage, starting
/// from the default, and hands back what the previous instruction returned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestStageState {
    cmd_set: bool,
}

impl GuestStageState {
    fn to_wit(self) -> wit::StageState {
        wit::StageState {
            cmd_set: self.cmd_set,
        }
    }

    fn from_wit(state: wit::StageState) -> Self {
        GuestStageState {
            cmd_set: state.cmd_set,
        }
    }
}

/// What an instruction did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub config: Value,
    pub touched: Vec<String>,
    /// the stage's state after the instruction
    pub state: GuestStageState,
}

/// Where a stage starts: its base's config without the ONBUILD triggers, and the triggers'
/// texts, to run first.
#[derive(Debug, Clone)]
pub struct StageStart {
    pub config: Value,
    pub triggers: Vec<String>,
}

/// A source path a file instruction reads, found by a dry run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceRead {
    /// read from the `--from` root rather than the context
    pub from: bool,
    /// relative to its root, clean
    pub path: String,
    /// the file's bytes were read (copied or unpacked), not only its metadata
    pub content: bool,
}

/// A RUN user, resolved in the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

/// One root in the table the guest addresses by number.
pub(crate) struct RootEntry {
    pub root: Arc<Root>,
    pub writable: bool,
    /// writes are checked and then skipped (a dry run of a file instruction)
    pub dry_run: bool,
    pub ignore: Option<Arc<IgnoreRules>>,
}

/// Per-call store data.
pub(crate) struct State {
    wasi: WasiCtx,
    limits: limits::GuestLimits,
    table: ResourceTable,
    pub roots: Vec<RootEntry>,
    /// a dry run's reads of source roots: (root index, clean path, content read)
    pub reads: Option<std::collections::BTreeSet<(u32, String, bool)>>,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The loaded interpreter; cheap to call, one store per call.
pub struct Sandbox {
    engine: Engine,
    component: Component,
    linker: Linker<State>,
}

/// The guest, loaded on a thread of its own from the start of a build; the first instruction
/// that needs it waits for it (a few milliseconds; longer with the `jit` feature, which
/// compiles it here).
pub struct LazySandbox {
    loader: std::sync::Mutex<Option<std::thread::JoinHandle<Result<Sandbox>>>>,
    ready: std::sync::OnceLock<std::result::Result<Sandbox, String>>,
}

impl LazySandbox {
    pub fn start() -> LazySandbox {
        LazySandbox {
            loader: std::sync::Mutex::new(Some(std::thread::spawn(Sandbox::load))),
            ready: std::sync::OnceLock::new(),
        }
    }

    /// The loaded guest (blocks until it is).
    pub fn get(&self) -> anyhow::Result<&Sandbox> {
        let ready = self.ready.get_or_init(|| {
            let loader = self.loader.lock().ok().and_then(|mut l| l.take());
            match loader.map(std::thread::JoinHandle::join) {
                Some(Ok(loaded)) => loaded.map_err(|e| e.to_string()),
                _ => Err("loading the guest: the loader thread failed".to_string()),
            }
        });
        ready.as_ref().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

impl Drop for LazySandbox {
    /// Lets an unfinished load end before the build's resources go.
    fn drop(&mut self) {
        if let Some(loader) = self.loader.lock().ok().and_then(|mut l| l.take()) {
            let _ = loader.join();
        }
    }
}

impl Sandbox {
    /// Loads the guest compiled into kiln.
    pub fn load() -> Result<Sandbox> {
        let engine = Engine::new(&engine::config()).map_err(Error::Load)?;
        let component = load_component(&engine)?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasi::link(&mut linker).map_err(Error::Load)?;
        bindings::Builder::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(Error::Load)?;
        Ok(Sandbox {
            engine,
            component,
            linker,
        })
    }

    fn instantiate(&self, roots: Vec<RootEntry>) -> Result<(Store<State>, bindings::Builder)> {
        // no preopens, no env, no args, no network: the guest sees only kiln's interface
        let wasi = WasiCtx::builder().build();
        let mut store = Store::new(
            &self.engine,
            State {
                wasi,
                limits: limits::GuestLimits::from_env(),
                table: ResourceTable::new(),
                reads: roots.iter().any(|r| r.dry_run).then(Default::default),
                roots,
            },
        );
        store.limiter(|s| &mut s.limits);
        let fuel = store.data().limits.fuel;
        store.set_fuel(fuel).map_err(Error::Load)?;
        let instance = bindings::Builder::instantiate(&mut store, &self.component, &self.linker)
            .map_err(Error::Load)?;
        Ok((store, instance))
    }

    /// Carries out one metadata or file instruction, in a stage whose state so far is `state`.
    pub fn execute(
        &self,
        ins: &GuestInstruction,
        config: &Value,
        roots: &GuestRoots,
        state: GuestStageState,
    ) -> Result<Outcome> {
        self.call_execute(ins, config, roots, state, false)
            .map(|(outcome, _)| outcome)
    }

    /// Carries out an instruction without writing anything to the stage: the config and
    /// state it would leave (`--dry-run` follows ENV, WORKDIR, USER, ... this way).
    pub fn preview(
        &self,
        ins: &GuestInstruction,
        config: &Value,
        roots: &GuestRoots,
        state: GuestStageState,
    ) -> Result<Outcome> {
        self.call_execute(ins, config, roots, state, true)
            .map(|(outcome, _)| outcome)
    }

    /// Runs a file instruction without writing anything and returns what it would read from
    /// the context or the `--from` root: the inputs of its cache key.
    /// File instructions do not read the stage's state, so the dry run needs none.
    pub fn dry_run(
        &self,
        ins: &GuestInstruction,
        config: &Value,
        roots: &GuestRoots,
    ) -> Result<Vec<SourceRead>> {
        let state = GuestStageState::default();
        let (_, reads) = self.call_execute(ins, config, roots, state, true)?;
        Ok(reads)
    }

    fn call_execute(
        &self,
        ins: &GuestInstruction,
        config: &Value,
        roots: &GuestRoots,
        state: GuestStageState,
        dry_run: bool,
    ) -> Result<(Outcome, Vec<SourceRead>)> {
        let mut table = vec![
            RootEntry {
                root: roots.stage.clone(),
                writable: true,
                dry_run,
                ignore: None,
            },
            RootEntry {
                root: roots.context.clone(),
                writable: false,
                dry_run: false,
                // no rules, nothing to decide (nor paths to resolve for it)
                ignore: Some(roots.context_ignore.clone())
                    .filter(|rules| !rules.patterns().is_empty()),
            },
        ];
        if let Some(from) = &roots.from {
            table.push(RootEntry {
                root: from.clone(),
                writable: false,
                dry_run: false,
                ignore: None,
            });
        }
        let (mut store, instance) = self.instantiate(table)?;
        let wins = wit::Instruction {
            keyword: ins.keyword.clone(),
            line: ins.line,
            args: ins.args.clone(),
            flags: ins.flags.clone(),
            exec_form: ins.exec_form,
        };
        let wroots = wit::Roots {
            stage: 0,
            context: 1,
            from: roots.from.as_ref().map(|_| 2),
        };
        let config =
            serde_json::to_string(config).map_err(|e| Error::Instruction(e.to_string()))?;
        let out = instance
            .kiln_builder_interpreter()
            .call_execute(&mut store, &wins, &config, wroots, state.to_wit())
            .map_err(|e| Error::Trap(store.data().limits.explain(e)))?
            .map_err(Error::Instruction)?;
        let config = parse_config(&out.config)?;
        let reads = store
            .data_mut()
            .reads
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|(r, path, content)| SourceRead {
                from: r == 2,
                path,
                content,
            })
            .collect();
        Ok((
            Outcome {
                config,
                touched: out.touched.iter().map(|p| names::for_snapshot(p)).collect(),
                state: GuestStageState::from_wit(out.state),
            },
            reads,
        ))
    }

    /// Starts a stage from its base image's config: the guest takes out the ONBUILD triggers.
    pub fn start_stage(&self, config: &Value) -> Result<StageStart> {
        let (mut store, instance) = self.instantiate(Vec::new())?;
        let config =
            serde_json::to_string(config).map_err(|e| Error::Instruction(e.to_string()))?;
        let start = instance
            .kiln_builder_interpreter()
            .call_start_stage(&mut store, &config)
            .map_err(|e| Error::Trap(store.data().limits.explain(e)))?
            .map_err(Error::Instruction)?;
        Ok(StageStart {
            config: parse_config(&start.config)?,
            triggers: start.triggers,
        })
    }

    /// Resolves a USER value against the stage's /etc/passwd and /etc/group.
    pub fn resolve_user(&self, user: &str, stage: &Arc<Root>) -> Result<Identity> {
        let (mut store, instance) = self.instantiate(vec![RootEntry {
            root: stage.clone(),
            writable: false,
            dry_run: false,
            ignore: None,
        }])?;
        let id = instance
            .kiln_builder_interpreter()
            .call_resolve_user(&mut store, user, 0)
            .map_err(|e| Error::Trap(store.data().limits.explain(e)))?
            .map_err(Error::Instruction)?;
        Ok(Identity {
            uid: id.uid,
            gid: id.gid,
            groups: id.groups,
            home: id.home,
        })
    }
}

/// The config JSON the guest returned.
fn parse_config(json: &str) -> Result<Value> {
    serde_json::from_str(json)
        .map_err(|e| Error::Instruction(format!("interpreter returned a bad config: {e}")))
}

/// Loads the artifact build.rs embedded.
#[cfg(not(feature = "jit"))]
#[allow(unsafe_code)]
fn load_component(engine: &Engine) -> Result<Component> {
    // SAFETY: the bytes are part of this binary: build.rs compiled them from kiln's own guest
    // with the same wasmtime and the settings of `engine::config`, and nothing at run time can
    // replace them. wasmtime still checks the header against this engine before use.
    unsafe { Component::deserialize(engine, GUEST_NATIVE) }.map_err(|e| {
        Error::Load(e.context(
            "the embedded guest does not match this engine; rebuild kiln (or build it with --features jit)",
        ))
    })
}

/// Compiles the embedded component in memory.
#[cfg(feature = "jit")]
fn load_component(engine: &Engine) -> Result<Component> {
    Component::new(engine, GUEST_WASM).map_err(Error::Load)
}
