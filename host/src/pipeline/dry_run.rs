//! `--dry-run`: the plan printed, nothing built. Each stage in the order it would run with
//! what it depends on, each step with the inputs of its cache key and, with `--cache`,
//! whether the layer cache would answer it: `hit`, `miss`, `-` (not looked up: a metadata
//! step, or a kind of step the cache options leave out) or `?` with the reason a key cannot
//! be known without building (a root to read, a RUN's output to chain on); every later step of
//! that stage is `?` too, so the column is never wrong.
//!
//! Keys are the real build's: the same functions (`step::file_key_of`, `step::part_sources`,
//! `run_step::run_key`, the `state::after_*` chaining) fed from a stage walked without a
//! root. Base images are resolved to their manifest and config only; metadata instructions go
//! through the guest with writes skipped, on an empty directory outside the kiln dir.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use serde_json::Value;

use super::plan::{Base, BuildPlan, Stage};
use super::state::{after_copy, after_layer, after_workdir, created_by, shell_of};
use super::{run_step, step, BuildOptions, Loaded};
use crate::cache::{Cache, Found, Key};
use crate::dockerfile::{Instruction, Keyword};
use crate::image;
use crate::layer::{BlobStore, LayerBlob};
use crate::registry::{Platform, Registry};
use crate::rootfs::Root;
use crate::sandbox::{GuestInstruction, GuestRoots, GuestStageState, LazySandbox};
use crate::task::blocking;

/// What the walk needs of the build, without a root.
struct Walker<'a> {
    plan: &'a BuildPlan,
    escape: char,
    platform: Platform,
    /// shared with the cache: a layer is fetched from the repository it was seen in
    registry: Arc<Registry>,
    store: BlobStore,
    /// where `--chown` names are resolved (`chown::users_root`)
    scratch: std::path::PathBuf,
    cache: Option<Arc<Cache>>,
    sandbox: Arc<LazySandbox>,
    /// the guest's roots for a step: the stage an empty directory (writes are skipped)
    roots: GuestRoots,
    dockerfile: String,
}

/// A stage as far as the walk knows it: its config, its cache state or why it is unknown,
/// and its layers (the base's and cache hits') while each is known.
#[derive(Clone)]
struct Walked {
    config: Value,
    state: Result<String, String>,
    layers: Result<Vec<LayerBlob>, String>,
}

/// One step's line: the answer and the key inputs (or the reason for `?`).
struct Answer {
    column: String,
    detail: String,
}

/// Prints the plan of a loaded Dockerfile.
pub(super) async fn print(opts: &BuildOptions, loaded: &Loaded) -> Result<()> {
    let context = Root::open(&loaded.fetched.dir)?;
    let ignore =
        super::read_ignore_file(&loaded.fetched.dockerfile, &loaded.fetched.dir, &context)?;
    super::private_dir(&opts.kiln_dir)?;
    let store = BlobStore::open(&opts.kiln_dir.join("blobs"))?;
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let registry = Arc::new(Registry::new(opts.registry.clone()));
    let cache = Cache::new(
        &opts.cache,
        &opts.destinations,
        registry.clone(),
        &platform,
        &store,
    )?
    .map(Arc::new);
    // nothing is written to it (the guest's writes are skipped); it is removed on return
    let empty = tempfile::Builder::new().prefix("kiln-dry-run").tempdir()?;
    let users = tempfile::Builder::new().prefix("kiln-dry-run").tempdir()?;
    let walker = Walker {
        plan: &loaded.plan,
        escape: loaded.df.escape,
        platform,
        registry,
        store,
        scratch: users.path().to_path_buf(),
        cache,
        sandbox: Arc::new(LazySandbox::start()),
        roots: GuestRoots {
            stage: Arc::new(Root::open(empty.path())?),
            context: Arc::new(context),
            context_ignore: Arc::new(ignore),
            from: None,
        },
        dockerfile: loaded.fetched.dockerfile.display().to_string(),
    };
    let mut walked: HashMap<usize, Walked> = HashMap::new();
    for &index in &loaded.plan.order {
        let result = walker.stage(index, &walked).await?;
        walked.insert(index, result);
    }
    tracing::info!("dry run: nothing built, nothing pushed");
    Ok(())
}

impl Walker<'_> {
    /// Walks and prints one stage.
    async fn stage(&self, index: usize, walked: &HashMap<usize, Walked>) -> Result<Walked> {
        let stage = &self.plan.stages[index];
        let name = stage.display_name();
        let role = if index == self.plan.target {
            " (target)"
        } else {
            ""
        };
        let (base_name, mut at) = self.base(stage, walked).await;
        tracing::info!(
            "stage {name}{role}: FROM {base_name} ({}:{})",
            self.dockerfile,
            stage.line
        );
        let deps = self.dependencies(stage);
        if !deps.is_empty() {
            tracing::info!("  stage {name} depends on: {}", deps.join(", "));
        }
        let steps = stage.instructions.len() + 1;
        let from = match &at.state {
            Ok(state) => answer("-", format!("parent={}", short(state))),
            Err(why) => answer("?", why.clone()),
        };
        self.line(&name, 1, steps, &format!("FROM {base_name}"), &from);
        let mut args = Vec::new();
        let mut guest_state = GuestStageState::default();
        for (pos, ins) in stage.instructions.iter().enumerate() {
            let answer = match &at.state {
                Err(why) => answer("?", why.clone()),
                Ok(_) => self
                    .step(
                        index,
                        pos,
                        ins,
                        &mut at,
                        &mut args,
                        &mut guest_state,
                        walked,
                    )
                    .await
                    .unwrap_or_else(|e| {
                        at.state = Err(format!("after line {}: {e:#}", ins.line));
                        answer("?", format!("{e:#}"))
                    }),
            };
            self.line(&name, pos + 2, steps, &ins.original, &answer);
        }
        Ok(at)
    }

    fn line(&self, stage: &str, number: usize, steps: usize, text: &str, answer: &Answer) {
        let text = crate::redaction::shown(text);
        let column = &answer.column;
        match answer.detail.as_str() {
            "" => tracing::info!("  [{stage} {number}/{steps}] {text}  {column}"),
            detail => tracing::info!("  [{stage} {number}/{steps}] {text}  {column}  {detail}"),
        }
    }

    /// The stages this one reads: its base, `COPY --from` and `RUN --mount from=` stages.
    fn dependencies(&self, stage: &Stage) -> Vec<String> {
        let mut deps = Vec::new();
        if let Base::Stage(dep) = &stage.base {
            deps.push(format!("{} (FROM)", self.plan.stages[*dep].display_name()));
        }
        for ins in &stage.instructions {
            for flag in &ins.flags {
                let from = match (flag.name.as_str(), &flag.value) {
                    ("from", Some(v)) => Some(v.clone()),
                    ("mount", Some(v)) => v
                        .split(',')
                        .find_map(|kv| kv.strip_prefix("from="))
                        .map(String::from),
                    _ => None,
                };
                let Some(from) = from else { continue };
                let shown = match self.plan.stage_named(&from, stage.index) {
                    Some(dep) => format!(
                        "{} ({} line {})",
                        self.plan.stages[dep].display_name(),
                        ins.keyword.as_str(),
                        ins.line
                    ),
                    None => format!("image {from} ({} line {})", ins.keyword.as_str(), ins.line),
                };
                if !deps.contains(&shown) {
                    deps.push(shown);
                }
            }
        }
        deps
    }

    /// The base's name, config and cache state, as `base::start` would find them.
    async fn base(&self, stage: &Stage, walked: &HashMap<usize, Walked>) -> (String, Walked) {
        let scratch = || image::scratch_config(&self.platform.os, &self.platform.architecture);
        let (name, at) = match &stage.base {
            Base::Scratch => (
                "scratch".to_string(),
                Walked {
                    config: scratch(),
                    state: Ok(crate::cache::digest_of(["scratch"])),
                    layers: Ok(Vec::new()),
                },
            ),
            Base::Stage(dep) => (
                self.plan.stages[*dep].display_name(),
                walked.get(dep).cloned().unwrap_or_else(|| Walked {
                    config: scratch(),
                    state: Err("its base stage was not walked".to_string()),
                    layers: Err("its base stage was not walked".to_string()),
                }),
            ),
            Base::Image(reference) => {
                let at = match self.resolve(reference).await {
                    Ok(at) => at,
                    Err(e) => Walked {
                        config: scratch(),
                        state: Err(format!("base image not resolved: {e:#}")),
                        layers: Err("base image not resolved".to_string()),
                    },
                };
                (reference.clone(), at)
            }
        };
        if at.config.pointer("/config/OnBuild").is_some() {
            let why = "the base image's ONBUILD triggers run first".to_string();
            return (
                name,
                Walked {
                    state: Err(why),
                    ..at
                },
            );
        }
        (name, at)
    }

    /// A base image's config and manifest digest, without its layers.
    async fn resolve(&self, reference: &str) -> Result<Walked> {
        let pulled = self
            .registry
            .pull_config(reference, &self.platform, self.store.dir())
            .await?;
        let config = image::parse_config(&pulled.config, reference)?;
        let family = image::Family::of_manifest(&pulled.manifest_media_type);
        let layers = super::images::layer_blobs(&config, pulled.layers, family, reference)?;
        Ok(Walked {
            config,
            state: Ok(crate::cache::digest_of([
                "image",
                pulled.manifest_digest.as_str(),
            ])),
            layers: Ok(layers),
        })
    }

    /// One step: its key and answer; `at` moves on as the real step would move it.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &self,
        index: usize,
        pos: usize,
        ins: &Instruction,
        at: &mut Walked,
        args: &mut Vec<(String, Option<String>)>,
        guest_state: &mut GuestStageState,
        walked: &HashMap<usize, Walked>,
    ) -> Result<Answer> {
        let state = at.state.clone().map_err(|e| anyhow!(e))?;
        let stage_name = self.plan.stages[index].display_name();
        let identity = super::state::step_identity(&stage_name, pos, ins);
        match ins.keyword {
            Keyword::Arg => {
                step::declare_args(self.plan, args, &at.config, ins, self.escape)?;
                Ok(answer("-", String::new()))
            }
            Keyword::Run => self.run(ins, at, args, &state, &identity).await,
            Keyword::Copy | Keyword::Add => {
                let stage = (index, walked);
                self.copy(ins, at, args, &state, &identity, stage).await
            }
            Keyword::From => Err(anyhow!("FROM inside a stage")),
            _ => {
                let lookup = super::state::lookup_of(args, &at.config);
                let (args, exec_form, flags) = step::guest_words(ins, &lookup, self.escape)?;
                let workdir_key = (ins.keyword == Keyword::Workdir).then(|| {
                    let dir = args.first().cloned().unwrap_or_default();
                    super::state::workdir_key(&state, &at.config, &dir)
                });
                let guest_ins = guest_instruction(ins, args, flags, exec_form);
                let (sandbox, roots, config) =
                    (self.sandbox.clone(), self.roots.clone(), at.config.clone());
                let st = *guest_state;
                let outcome = blocking(move || -> Result<_> {
                    Ok(sandbox.get()?.preview(&guest_ins, &config, &roots, st)?)
                })
                .await??;
                at.config = outcome.config;
                *guest_state = outcome.state;
                let Some(key) = workdir_key else {
                    return Ok(answer("-", String::new()));
                };
                at.state = Ok(after_workdir(&state, &at.config));
                let Some(cache) = self.cache.clone() else {
                    // the directory it makes is a layer the dry run does not write
                    at.layers = Err(format!("the WORKDIR at line {} writes a layer", ins.line));
                    return Ok(answer("-", String::new()));
                };
                let unbuilt = format!("the WORKDIR at line {} is not built", ins.line);
                probe_layer(&cache, &key, &identity, at, unbuilt).await
            }
        }
    }

    /// A RUN: its key as `run_step` makes it; after a miss its output is unknown.
    async fn run(
        &self,
        ins: &Instruction,
        at: &mut Walked,
        args: &[(String, Option<String>)],
        state: &str,
        identity: &str,
    ) -> Result<Answer> {
        let binds = ins.flags.iter().any(|f| {
            f.name == "mount"
                && f.value.as_deref().is_some_and(|v| {
                    v.split(',').any(|kv| kv == "type=bind") || !v.contains("type=")
                })
        });
        if binds {
            let why = "a bind mount's inputs are read from a root".to_string();
            at.state = Err(format!("after line {}: {why}", ins.line));
            return Ok(answer("?", why));
        }
        let shell = shell_of(&at.config);
        let created_by = created_by(ins, &shell);
        let env = run_step::command_env(self.plan, args, &at.config);
        let key = run_step::run_key(
            &self.platform,
            state,
            &at.config,
            ins,
            &created_by,
            &env,
            Vec::new(),
        );
        let unknown = format!(
            "after line {}: the RUN's output is not known before it runs",
            ins.line
        );
        let cache = self.cache.clone().filter(|c| c.run_layers);
        let Some(cache) = cache else {
            at.state = Err(unknown.clone());
            at.layers = Err(unknown);
            return Ok(answer("-", inputs(&key)));
        };
        Ok(match cache.probe(&key, identity).await? {
            Found::Hit(entry) => {
                at.state = Ok(after_layer(state, entry.layer.as_ref()));
                if let (Ok(layers), Some(layer)) = (&mut at.layers, entry.layer) {
                    layers.push(layer);
                }
                answer("hit", inputs(&key))
            }
            Found::Miss(reason) => {
                at.state = Err(unknown.clone());
                at.layers = Err(unknown);
                answer("miss", format!("{}  ({reason})", inputs(&key)))
            }
        })
    }

    /// A COPY/ADD of context or stage sources: its key as `step::file_key` makes it (a
    /// `--chown=<name>` resolved in the user databases read from the stage's layers, a
    /// `--from=<stage>` keyed on that stage's layers).
    async fn copy(
        &self,
        ins: &Instruction,
        at: &mut Walked,
        args: &[(String, Option<String>)],
        state: &str,
        identity: &str,
        (index, walked): (usize, &HashMap<usize, Walked>),
    ) -> Result<Answer> {
        let lookup = super::state::lookup_of(args, &at.config);
        let (words, exec_form, flags) = step::guest_words(ins, &lookup, self.escape)?;
        let flag = |name: &str| {
            flags
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.clone())
        };
        if let Some(why) = unpredictable_copy(ins, &words, &flags)? {
            return unknown(at, ins, why);
        }
        let from_stage = match flag("from") {
            None => None,
            Some(from) => match stage_part(self.plan, &from, index, walked) {
                Ok(sources) => Some(sources),
                Err(why) => return unknown(at, ins, why),
            },
        };
        let (users, owner) = match flag("chown").filter(|s| super::chown::by_name(s)) {
            None => (None, None),
            Some(spec) => match self.chown(&spec, at).await? {
                Ok((users, owner)) => (Some(users), Some(owner)),
                Err(why) => return unknown(at, ins, why),
            },
        };
        let guest_ins = guest_instruction(ins, words, flags, exec_form);
        let sources = match from_stage {
            Some(sources) => sources,
            None => {
                let (sandbox, mut roots, config) =
                    (self.sandbox.clone(), self.roots.clone(), at.config.clone());
                if let Some(users) = &users {
                    roots.stage = users.root.clone();
                }
                let part = guest_ins.clone();
                blocking(move || {
                    step::part_sources(
                        sandbox.get()?,
                        &part,
                        &config,
                        &roots,
                        &super::copy_parts::Pin::Content,
                    )
                })
                .await??
            }
        };
        drop(users);
        let key = step::file_key_of(state, &at.config, &[(guest_ins, sources)], owner.as_deref());
        // hit or miss, the state after a COPY is a function of its key
        at.state = Ok(after_copy(state, &key));
        let cache = self.cache.clone().filter(|c| c.copy_layers);
        let Some(cache) = cache else {
            at.layers = Err(format!("the COPY at line {} is not cached", ins.line));
            return Ok(answer("-", inputs(&key)));
        };
        let unbuilt = format!("the COPY at line {} is not built", ins.line);
        probe_layer(&cache, &key, identity, at, unbuilt).await
    }
}

/// A step whose state after it is known hit or miss (COPY, WORKDIR) looked up: a hit's layer
/// joins the layers followed; after a miss they are unknown (`unbuilt` says why).
async fn probe_layer(
    cache: &Cache,
    key: &Key,
    identity: &str,
    at: &mut Walked,
    unbuilt: String,
) -> Result<Answer> {
    Ok(match cache.probe(key, identity).await? {
        Found::Hit(entry) => {
            if let (Ok(layers), Some(layer)) = (&mut at.layers, entry.layer) {
                layers.push(layer);
            }
            answer("hit", inputs(key))
        }
        Found::Miss(reason) => {
            at.layers = Err(unbuilt);
            answer("miss", format!("{}  ({reason})", inputs(key)))
        }
    })
}

impl Walker<'_> {
    /// `--chown=<name>` resolved in the user databases read from the stage's layers (their
    /// bytes fetched as the real build would): the scratch root and the owner, or why not.
    async fn chown(
        &self,
        spec: &str,
        at: &Walked,
    ) -> Result<Result<(super::chown::UsersRoot, String), String>> {
        let layers = match &at.layers {
            Ok(layers) => layers.clone(),
            Err(why) => {
                return Ok(Err(format!(
                    "--chown={spec} needs the stage's /etc/passwd: {why}"
                )))
            }
        };
        let fetch = |layer: LayerBlob| async move {
            if !layer.path.exists()
                && !self
                    .registry
                    .fetch_blob(&layer.digest.0, layer.size, &layer.path)
                    .await?
            {
                return Err(anyhow!(
                    "layer {}: no repository is known to hold it",
                    layer.digest
                ));
            }
            Ok(())
        };
        Ok(match super::chown::read_databases(&layers, fetch).await? {
            Ok(found) => {
                let users = super::chown::users_root(&self.scratch, &found)?;
                let owner = super::chown::owner(&self.sandbox, spec, &users.root).await?;
                Ok((users, owner))
            }
            Err(why) => Err(format!("--chown={spec}: {why}: a root is needed")),
        })
    }
}

/// A `--from=<stage>` part's sources as the real build keys them (the stage's layers), or
/// why they are not known.
fn stage_part(
    plan: &BuildPlan,
    from: &str,
    index: usize,
    walked: &HashMap<usize, Walked>,
) -> Result<String, String> {
    match plan.stage_named(from, index).and_then(|d| walked.get(&d)) {
        Some(Walked {
            state: Ok(_),
            layers: Ok(layers),
            ..
        }) => Ok(step::stage_sources(layers)),
        Some(_) => Err(format!(
            "--from={from}: that stage's layers are not known before it is built"
        )),
        None => Err(format!(
            "--from={from} reads an image the dry run does not pull"
        )),
    }
}

/// A step whose key cannot be known: `?` with the reason, and every later step of the stage
/// unknown too.
fn unknown(at: &mut Walked, ins: &Instruction, why: String) -> Result<Answer> {
    at.state = Err(format!("after line {}: {why}", ins.line));
    Ok(answer("?", why))
}

/// Why a COPY/ADD's key cannot be known without building, if it cannot (a `--from` or a
/// `--chown=<name>` is decided by the caller, which knows the layers).
fn unpredictable_copy(
    ins: &Instruction,
    words: &[String],
    flags: &[(String, Option<String>)],
) -> Result<Option<String>> {
    let flag = |name: &str| {
        flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if !ins.heredocs.is_empty() {
        return Ok(Some(
            "a heredoc source is written to a scratch root first".to_string(),
        ));
    }
    let sources = words.split_last().map(|(_, s)| s).unwrap_or_default();
    if !super::copy_parts::all_local(ins, sources)? || flag("keep-git-dir").is_some() {
        return Ok(Some("a downloaded source".to_string()));
    }
    Ok(None)
}

fn guest_instruction(
    ins: &Instruction,
    args: Vec<String>,
    flags: Vec<(String, Option<String>)>,
    exec_form: bool,
) -> GuestInstruction {
    GuestInstruction {
        keyword: ins.keyword.as_str().to_string(),
        line: ins.line as u32,
        args,
        flags,
        exec_form,
    }
}

fn answer(column: &str, detail: String) -> Answer {
    Answer {
        column: column.to_string(),
        detail,
    }
}

/// A key's components as `name=digest` with short digests, then the key itself.
fn inputs(key: &Key) -> String {
    let mut parts: Vec<String> = key
        .components
        .iter()
        .map(|(name, digest)| format!("{name}={}", short(digest)))
        .collect();
    parts.push(format!("key={}", short(&key.hex)));
    parts.join(" ")
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}
