//! The orchestrator: the only place that knows the order of things. It reads and plans the
//! Dockerfile (`load`), prepares the build (blob store, registry, RUN's isolation through
//! `run::Runner`, the layer cache), runs the stages (`stages`: independent ones side by
//! side; `base`: where each starts; `step`: every instruction), assembles the image and
//! writes it to every output (`outputs`).
//!
//! Every other module is a noun with a plain-value API; this one strings them together and
//! turns their errors into messages that name the Dockerfile line, path or reference. It
//! never asks which isolation mode runs: the runner answers what depends on it.

mod attestations;
mod base;
mod chown;
mod copy_parts;
mod dry_run;
mod heredoc;
mod images;
mod layer_stream;
mod layering;
mod lints;
mod options;
mod outputs;
mod plan;
mod platforms;
mod results;
mod run_step;
mod sparse;
mod stages;
mod state;
mod step;
mod volumes;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

pub use options::{BuildOptions, LayerOptions};

use crate::cache::Cache;
use crate::context;
use crate::dockerfile::{self, Dockerfile, IgnoreRules};
use crate::error::DockerfileSource;
use crate::image::{self, BuiltImage, Family};
use crate::layer::{BlobStore, LayerBlob};
use crate::progress::{self, summary, Summary};
use crate::registry::{self, Platform, Registry};
use crate::rootfs::{self, Root};
use crate::run::removal::{Policy, Removal};
use crate::run::{Runner, RunnerOptions};
use crate::sandbox::LazySandbox;
use plan::{Base, BuildPlan};

/// A RUN that failed: kiln exits with the command's code, as kaniko does.
#[derive(Debug, thiserror::Error)]
#[error("Dockerfile:{line}: {instruction}: {how}")]
pub struct RunFailed {
    pub line: usize,
    pub instruction: String,
    pub code: i32,
    /// `command exited with code N` or `command was killed by signal N`
    pub how: String,
}

/// What a finished stage leaves for later stages and the outputs.
#[derive(Clone)]
pub(crate) struct StageResult {
    pub root: Arc<Root>,
    pub config: Value,
    pub layers: Vec<LayerBlob>,
    pub family: Family,
    /// the cache state digest after the stage's last step (see `cache`)
    pub cache_state: String,
    /// layers in `layers` not yet extracted onto `root` (cache hits, the base's): a later
    /// stage that reads the files fills it (`filled_root`), once
    pub pending: Vec<LayerBlob>,
    pub filled: Arc<tokio::sync::OnceCell<()>>,
}

impl StageResult {
    /// The stage's root with every layer on it: the pending ones extracted the first time
    /// a later stage reads its files (`COPY --from` that runs, `RUN --mount from=`).
    pub(crate) async fn filled_root(&self, build: &Build) -> Result<Arc<Root>> {
        if !self.pending.is_empty() {
            self.filled
                .get_or_try_init(|| async {
                    tracing::info!(
                        layers = self.pending.len(),
                        "a later stage reads the files of a stage: extracting {} layer{}",
                        self.pending.len(),
                        if self.pending.len() == 1 { "" } else { "s" }
                    );
                    layer_stream::extract_layers(build, &self.root, &self.pending).await
                })
                .await?;
        }
        Ok(self.root.clone())
    }
}

/// Shared state of one build.
pub(crate) struct Build {
    pub opts: BuildOptions,
    pub store: BlobStore,
    pub registry: Arc<Registry>,
    pub platform: Platform,
    pub sandbox: Arc<LazySandbox>,
    pub context: Arc<Root>,
    pub ignore: Arc<IgnoreRules>,
    pub escape: char,
    pub work: PathBuf,
    pub created: String,
    /// reproducible builds: no layer entry is newer than this
    pub mtime_clamp: Option<i64>,
    /// RUN's isolation: where stage roots live, how commands start
    pub runner: Arc<Runner>,
    /// images named by `COPY --from=<image>`, extracted once (stages may ask at once)
    pub from_images: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Root>>>>>,
    /// the layer cache, with `--cache`
    pub cache: Option<Arc<Cache>>,
    /// every image pulled (bases, `COPY --from`), by digest, for the provenance; `true` for
    /// a base whose platform the Dockerfile pins (`FROM --platform=…`)
    pub pulled: std::sync::Mutex<Vec<(crate::attest::provenance::Material, bool)>>,
}

/// A Dockerfile read from a fetched context, and its plan.
struct Loaded {
    /// the remote context's download, removed when dropped
    fetched: context::Prepared,
    df: Dockerfile,
    plan: BuildPlan,
    /// the Dockerfile's name as given and its text, for errors that quote a line
    source: DockerfileSource,
}

/// Runs a whole build and writes its outputs; returns the digest pushed (the manifest's, or
/// the index's of a multi-platform build).
pub async fn run(opts: BuildOptions) -> Result<String> {
    if opts.destinations.is_empty() && !opts.no_push {
        bail!("no destination given: pass --destination REF, or --no-push with --tar-path or --oci-layout-path");
    }
    platforms::check_outputs(&opts)?;
    let started = Instant::now();
    let kiln_dir = opts.kiln_dir.clone();
    let loaded = load(&opts)
        .await
        .map_err(|e| name_full_disk(e, &kiln_dir))?;
    let context = started.elapsed();
    lints::warn(&loaded.source.name, &loaded.df, opts.target.as_deref());
    let source = loaded.source.clone();
    build_loaded(opts, loaded, started, context)
        .await
        .map_err(|e| name_full_disk(e, &kiln_dir).context(source))
}

/// `err` with the kiln dir named when a write failed for want of space (ENOSPC), since the
/// path in the error may be one inside an image's root.
fn name_full_disk(err: anyhow::Error, kiln_dir: &Path) -> anyhow::Error {
    let full = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
            || e.to_string().contains("(os error 28)")
    });
    if full {
        err.context(format!(
            "no space left on the file system of the kiln dir {}",
            kiln_dir.display()
        ))
    } else {
        err
    }
}

/// The build after `load`: prepare, run the stages, assemble, write the outputs.
async fn build_loaded(
    opts: BuildOptions,
    loaded: Loaded,
    started: Instant,
    context: std::time::Duration,
) -> Result<String> {
    let work = opts.kiln_dir.join(format!("build-{}", std::process::id()));
    // however the build ends, its scratch directory goes (unless `--cleanup=false`)
    let mut removal = Removal::new(work.clone(), Policy::of_flag(opts.cleanup));
    // one left by an earlier build of the same process id (`--cleanup=false`, a crash) and
    // an earlier build's unfinished removal
    removal.clear_stale();
    let build = prepare(opts, &loaded, work).await?;
    if build.opts.platforms.len() > 1 {
        return platforms::build_each(build, &loaded, started, context).await;
    }
    let build = Arc::new(build);
    let request = attestations::request(&loaded);
    let target = loaded.plan.target;
    let steps_started = Instant::now();
    let mut results =
        stages::build_all(build.clone(), Arc::new(loaded.plan), HashMap::new()).await?;
    let steps = steps_started.elapsed();
    let last = results
        .remove(&target)
        .context("the target stage produced no image")?;
    drop(results);
    let last = Arc::try_unwrap(last).unwrap_or_else(|shared| (*shared).clone());
    let image = assemble(&build, last).await?;
    let attached = attestations::make(&build, &image, &request).await?;
    // nothing reads the stage roots now: they go while the push runs
    removal.start();
    let push_started = Instant::now();
    let written = outputs::write(&build, &image, attached.as_ref()).await;
    let push = push_started.elapsed();
    build.runner.tear_down().await?;
    written?;
    let removing = Instant::now();
    // what is not removed yet goes on in a process of its own: the result is not held up
    removal.finish();
    tracing::debug!(waited = ?removing.elapsed(), "scratch directory removal");
    let walls = summary::Walls {
        context,
        steps,
        push,
        total: started.elapsed(),
    };
    progress::report_summary(&summarize(&build.opts, &image, &walls));
    Ok(image.manifest_digest.to_string())
}

/// The summary of a finished build (see `progress::summary`).
fn summarize(opts: &BuildOptions, image: &BuiltImage, walls: &summary::Walls) -> Summary {
    summarize_images(opts, &image.manifest_digest.0, &[image], walls)
}

/// The summary of a build that made `images`, pushed as `digest`.
fn summarize_images(
    opts: &BuildOptions,
    digest: &str,
    images: &[&BuiltImage],
    walls: &summary::Walls,
) -> Summary {
    let mut destinations: Vec<String> = Vec::new();
    if !opts.no_push {
        destinations.extend(opts.destinations.iter().cloned());
    }
    let files = [
        &opts.tar_path,
        &opts.oci_layout_path,
        &opts.oci_archive_path,
    ];
    destinations.extend(files.into_iter().flatten().map(|p| p.display().to_string()));
    let size = images
        .iter()
        .map(|image| {
            image.layers.iter().map(|l| l.size).sum::<u64>()
                + image.config.len() as u64
                + image.manifest.len() as u64
        })
        .sum();
    let layers: Vec<&str> = images
        .iter()
        .flat_map(|image| image.layers.iter().map(|l| l.digest.0.as_str()))
        .collect();
    Summary::of(digest.to_string(), destinations, size, &layers, walls)
}

/// `--dryrun`: fetches the context and plans the build, then prints the stages in the order
/// they would run, their dependencies and each step with its cache key inputs and, with
/// `--cache`, whether it would hit (`dry_run`). Nothing is extracted, run or pushed.
pub async fn dry_run(opts: &BuildOptions) -> Result<()> {
    let loaded = load(opts).await?;
    lints::warn(&loaded.source.name, &loaded.df, opts.target.as_deref());
    let source = loaded.source.clone();
    dry_run::print(opts, &loaded)
        .await
        .map_err(|e| e.context(source))
}

/// `--check`: the Dockerfile's lints as warnings, nothing built; an error when there is any.
pub async fn check(opts: &BuildOptions) -> Result<()> {
    let loaded = load(opts).await?;
    let found = lints::warn(&loaded.source.name, &loaded.df, opts.target.as_deref());
    if found > 0 {
        bail!(
            "{}: {found} lint warning{}",
            loaded.source.name,
            if found == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Fetches the context, reads and parses the Dockerfile and plans the build.
async fn load(opts: &BuildOptions) -> Result<Loaded> {
    // a remote context is fetched under the kiln dir and removed when `fetched` drops
    let fetched = context::prepare(&opts.context, &opts.kiln_dir).await?;
    let dockerfile_path = &fetched.dockerfile;
    let text = std::fs::read_to_string(dockerfile_path)
        .with_context(|| format!("reading dockerfile {}", dockerfile_path.display()))?;
    let source = DockerfileSource {
        name: dockerfile_name(opts, &fetched),
        text,
    };
    let attach = |e: anyhow::Error| e.context(source.clone());
    let df = dockerfile::parse(&source.text).map_err(|e| attach(e.into()))?;
    for w in &df.warnings {
        tracing::warn!("{}: {w}", source.name);
    }
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let plan =
        plan::plan(&df, &opts.build_args, opts.target.as_deref(), &platform).map_err(attach)?;
    warn_unused_build_args(&plan, &opts.build_args);
    Ok(Loaded {
        fetched,
        df,
        plan,
        source,
    })
}

/// The Dockerfile's name in messages: `--dockerfile` as typed for a local file, else where
/// kiln found it (a local context's `Dockerfile`), else `Dockerfile` (a fetched context's).
fn dockerfile_name(opts: &BuildOptions, fetched: &context::Prepared) -> String {
    match &opts.context.dockerfile {
        Some(given) => given.clone(),
        None if matches!(opts.context.source, context::Source::Dir(_)) => {
            fetched.dockerfile.display().to_string()
        }
        None => "Dockerfile".to_string(),
    }
}

/// Everything a build needs before its first stage: the context root and its ignore rules,
/// the blob store, RUN's isolation, the guest, the layer cache and the registry (with the
/// push permission checked).
/// Creates `dir` (and its missing parents) readable by kiln's user only; an existing `dir`
/// made by an earlier kiln is left as it is, a new one is 0700.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

async fn prepare(mut opts: BuildOptions, loaded: &Loaded, work: PathBuf) -> Result<Build> {
    let (dockerfile_path, context_dir) = (&loaded.fetched.dockerfile, &loaded.fetched.dir);
    let context = Root::open(context_dir)
        .with_context(|| format!("opening context {}", context_dir.display()))?;
    let ignore = read_ignore_file(dockerfile_path, context_dir, &context)?;
    private_dir(&opts.kiln_dir)
        .with_context(|| format!("creating kiln dir {}", opts.kiln_dir.display()))?;
    // stage roots live below the build's dir: no other user may reach (or run) what is in them
    private_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    let store = BlobStore::open(&opts.kiln_dir.join("blobs"))?;
    let cache_dir = opts.kiln_dir.join("cache");
    let runner = Runner::prepare(runner_options(&opts, loaded, &work, &cache_dir)).await?;
    // what RUN's isolation keeps out of snapshots never reaches a layer either
    opts.layers.ignore_paths.extend(runner.unsnapshotted());
    let sandbox = LazySandbox::start();
    let epoch = source_date_epoch(&loaded.plan.build_args)?;
    let mtime_clamp = opts.reproducible.then(|| epoch.unwrap_or(0));
    let created = mtime_clamp.or(epoch).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    // one client for the build and the cache: a blob seen in the cache repository or a base
    // image's is fetched (or mounted) from there when it is needed
    let registry = Arc::new(Registry::new(opts.registry.clone()));
    let cache = Cache::new(
        &opts.cache,
        &opts.destinations,
        registry.clone(),
        &platform,
        &store,
    )?
    .map(Arc::new);
    if !opts.no_push && !opts.skip_push_permission_check {
        for dest in &opts.destinations {
            registry
                .check_push_permission(dest)
                .await
                .with_context(|| format!("checking push permission for {dest}"))?;
        }
    }
    Ok(Build {
        cache,
        registry,
        opts,
        store,
        platform,
        sandbox: Arc::new(sandbox),
        context: Arc::new(context),
        ignore: Arc::new(ignore),
        escape: loaded.df.escape,
        work,
        created: image::rfc3339(created),
        mtime_clamp,
        runner: Arc::new(runner),
        from_images: tokio::sync::Mutex::new(HashMap::new()),
        pulled: std::sync::Mutex::new(Vec::new()),
    })
}

/// What RUN's isolation is told about the build.
fn runner_options(
    opts: &BuildOptions,
    loaded: &Loaded,
    work: &Path,
    cache_dir: &Path,
) -> RunnerOptions {
    let mut keep = vec![
        loaded.fetched.dir.clone(),
        loaded.fetched.dockerfile.clone(),
    ];
    keep.extend(
        [
            &opts.tar_path,
            &opts.oci_layout_path,
            &opts.digest_file,
            &opts.image_name_with_digest_file,
            &opts.image_name_tag_with_digest_file,
        ]
        .into_iter()
        .flatten()
        .cloned(),
    );
    keep.extend(
        opts.registry
            .registry_certificates
            .iter()
            .map(|(_, p)| p.clone()),
    );
    RunnerOptions {
        isolation: opts.isolation,
        kiln_dir: opts.kiln_dir.clone(),
        work: work.to_path_buf(),
        cache_mounts: cache_dir.join("mounts"),
        secrets: opts.secrets.clone(),
        run_overlay: opts.run_overlay,
        ignore_paths: opts.ignore_paths.clone(),
        ignore_var_run: opts.ignore_var_run,
        cleanup: opts.cleanup == Some(true),
        keep,
        stages: loaded.plan.order.len(),
        sequential_stages: opts.sequential_stages,
    }
}

/// The target stage's result as the image: `--custom-platform` and `--label`s written into
/// its config, the layer cache flushed, config and manifest assembled.
async fn assemble(build: &Build, mut last: StageResult) -> Result<BuiltImage> {
    if build.opts.platform.is_some() {
        registry::set_config_platform(&mut last.config, &build.platform);
    }
    if !build.opts.labels.is_empty() {
        let config = image::object(&mut last.config)
            .entry("config")
            .or_insert_with(|| serde_json::json!({}));
        let labels = image::object(config)
            .entry("Labels")
            .or_insert_with(|| serde_json::json!({}));
        for (k, v) in &build.opts.labels {
            image::object(labels).insert(k.clone(), Value::String(v.clone()));
        }
    }
    if let Some(cache) = &build.cache {
        cache.finish().await;
    }
    let mut asked = build.opts.manifest.clone();
    // an index with attestations holds OCI manifests, as BuildKit writes them
    if build.opts.attest.any() && asked.family.is_none() {
        asked.family = Some(Family::Oci);
    }
    Ok(image::assemble(
        last.config,
        last.layers,
        last.family,
        &build.created,
        &build.store,
        &asked,
    )?)
}

/// The ignore rules of a build: `<Dockerfile>.dockerignore` beside the Dockerfile when there
/// is one (BuildKit's rule), else the context's `.dockerignore`. A file in the context is
/// read through the context root, so a link to a host file reads the context's path instead.
fn read_ignore_file(dockerfile: &Path, context_dir: &Path, context: &Root) -> Result<IgnoreRules> {
    let mut candidates = Vec::new();
    if let Some(name) = dockerfile.file_name() {
        let mut own = name.to_os_string();
        own.push(".dockerignore");
        candidates.push(dockerfile.with_file_name(own));
    }
    candidates.push(context_dir.join(".dockerignore"));
    for path in candidates {
        let read = match path.strip_prefix(context_dir) {
            Ok(rel) => match context.open_read(rel.as_os_str().as_encoded_bytes()) {
                Ok(file) => Ok(file),
                Err(rootfs::Error::NotFound { .. } | rootfs::Error::IsDirectory { .. }) => continue,
                Err(e) => Err(std::io::Error::other(e)),
            },
            // beside a Dockerfile the user named outside the context
            Err(_) if !path.is_file() => continue,
            Err(_) => std::fs::File::open(&path),
        };
        let mut text = String::new();
        read.and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut text))
            .with_context(|| format!("reading {}", path.display()))?;
        return Ok(IgnoreRules::parse(&text));
    }
    Ok(IgnoreRules::parse(""))
}

/// The images a Dockerfile's `FROM` lines name (stages and `scratch` left out), for
/// `kiln warm --dockerfile`.
pub fn base_images(
    dockerfile: &Path,
    build_args: &[(String, String)],
    platform: &Platform,
) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(dockerfile)
        .with_context(|| format!("reading dockerfile {}", dockerfile.display()))?;
    let df =
        dockerfile::parse(&text).with_context(|| format!("parsing {}", dockerfile.display()))?;
    let plan = plan::plan(&df, build_args, None, platform)
        .with_context(|| format!("planning {}", dockerfile.display()))?;
    let mut images: Vec<String> = Vec::new();
    for stage in &plan.stages {
        if let Base::Image(reference) = &stage.base {
            if !images.contains(reference) {
                images.push(reference.clone());
            }
        }
    }
    Ok(images)
}

/// SOURCE_DATE_EPOCH from a build-arg or the environment (the build-arg wins, as BuildKit).
fn source_date_epoch(build_args: &HashMap<String, String>) -> Result<Option<i64>> {
    let value = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .with_context(|| format!("SOURCE_DATE_EPOCH {v:?}: not a number of seconds")),
    }
}

/// BuildKit's warning for `--build-arg`s no built stage (nor the global scope) declares,
/// with the declared ARG each is likely a typo of.
fn warn_unused_build_args(plan: &BuildPlan, build_args: &[(String, String)]) {
    let mut declared: Vec<String> = plan.global_args.keys().cloned().collect();
    declared.sort();
    for &i in &plan.order {
        for ins in &plan.stages[i].instructions {
            if ins.keyword == dockerfile::Keyword::Arg {
                let decls = ins.arg_decls().unwrap_or_default();
                declared.extend(decls.into_iter().map(|(name, _)| name));
            }
        }
    }
    let is_declared = |name: &str| {
        declared.iter().any(|d| d == name)
            || plan::PROXY_ARGS.contains(&name)
            || name == "SOURCE_DATE_EPOCH"
    };
    let unused: Vec<String> = build_args
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !is_declared(k))
        .map(
            |k| match dockerfile::closest(k, declared.iter().map(String::as_str)) {
                Some(near) => format!("{k} (did you mean {near}?)"),
                None => k.to_string(),
            },
        )
        .collect();
    if !unused.is_empty() {
        tracing::warn!(
            "build-args not consumed by any built stage: {}",
            unused.join(", ")
        );
    }
}
