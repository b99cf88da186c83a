//! The orchestrator: the only place that knows the order of things. It reads and plans the
//! Dockerfile, prepares each needed stage (base image pulled and extracted into its own root),
//! runs the stages (`stages`: independent ones side by side) and every step (`step`),
//! assembles the image and writes it to every output.
//!
//! Every other module is a noun with a plain-value API; this one strings them together and
//! turns their errors into messages that name the Dockerfile line, path or reference.

mod heredoc;
mod layering;
mod plan;
mod remote;
mod remote_git;
mod sources;
mod stages;
mod step;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::cache::Cache;
use crate::context;
use crate::dockerfile::{self, IgnoreRules};
use crate::image::{self, output, BuiltImage, Family};
use crate::layer::extract;
use crate::layer::{BlobStore, DiffId, Digest, LayerBlob};
use crate::registry::{self, Platform, PushImage, Registry, RegistryOptions};
use crate::rootfs::Root;
use crate::sandbox::LazySandbox;
use plan::{Base, BuildPlan};

/// Validated options of one build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// the context and Dockerfile as given; fetched and resolved when the build starts
    pub context: context::Request,
    pub destinations: Vec<String>,
    pub no_push: bool,
    pub tar_path: Option<PathBuf>,
    pub oci_layout_path: Option<PathBuf>,
    pub digest_file: Option<PathBuf>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub registry: RegistryOptions,
    /// `--reproducible`: timestamps fixed (SOURCE_DATE_EPOCH, else 0), layer mtimes clamped
    pub reproducible: bool,
    /// `--label k=v`: labels added to the final image
    pub labels: Vec<(String, String)>,
    /// kaniko's `--image-name-with-digest-file`: `name@digest` per destination
    pub image_name_with_digest_file: Option<PathBuf>,
    /// kaniko's `--image-name-tag-with-digest-file`: `name:tag@digest` per destination
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// kiln's work dir: blob cache, stage roots, compiled guest
    pub kiln_dir: PathBuf,
    /// RUN isolation, chosen (and logged) by `run::isolation::choose` before the build
    pub isolation: crate::run::Isolation,
    /// `--secret`s for `RUN --mount=type=secret`
    pub secrets: crate::run::Secrets,
    /// in-place isolation: paths never snapshotted nor overwritten
    pub ignore_paths: Vec<PathBuf>,
    /// in-place isolation: leave /var/run alone
    pub ignore_var_run: bool,
    /// in-place isolation: remove what the build wrote to `/`
    pub cleanup: bool,
    /// `--sequential-stages`: one stage at a time, in order (in-place isolation always is)
    pub sequential_stages: bool,
    /// `--run-overlay`: RUN on an overlay where possible (see `run::overlay`)
    pub run_overlay: bool,
    /// snapshots and layers: `--snapshot-mode`, `--single-snapshot`, `--ignore-path`,
    /// `--ignore-var-run`, `--compression`, `--compression-level`
    pub layers: LayerOptions,
    /// `--skip-push-permission-check`
    pub skip_push_permission_check: bool,
    /// `--custom-platform`: the platform to build for, else the host's
    pub platform: Option<Platform>,
    /// the layer cache flags
    pub cache: crate::cache::CacheOptions,
}

/// How stage roots are snapshotted and new layers compressed.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    pub snapshot_mode: crate::snapshot::SnapshotMode,
    /// one layer per stage, taken after its last instruction
    pub single_snapshot: bool,
    /// root paths never snapshotted (absolute, as the user wrote them)
    pub ignore_paths: Vec<String>,
    /// leave `/var/run` out of every layer, as kaniko does (unless the base has it as a link)
    pub ignore_var_run: bool,
    pub codec: crate::layer::Codec,
}

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
pub(crate) struct StageResult {
    pub root: Arc<Root>,
    pub config: Value,
    pub layers: Vec<LayerBlob>,
    pub family: Family,
    /// the cache state digest after the stage's last step (see `cache`)
    pub cache_state: String,
}

/// Shared state of one build.
pub(crate) struct Build {
    pub opts: BuildOptions,
    pub store: BlobStore,
    pub registry: Registry,
    pub platform: Platform,
    pub sandbox: Arc<LazySandbox>,
    pub context: Arc<Root>,
    pub ignore: Arc<IgnoreRules>,
    pub escape: char,
    pub work: PathBuf,
    pub created: String,
    /// reproducible builds: no layer entry is newer than this
    pub mtime_clamp: Option<i64>,
    /// what every RUN shares: isolation, network files, secrets, cache mounts
    pub run_env: Arc<crate::run::RunEnv>,
    /// root-relative paths snapshots never look at (in-place isolation)
    pub snapshot_skip: Arc<std::collections::BTreeSet<Vec<u8>>>,
    /// images named by `COPY --from=<image>`, extracted once (stages may ask at once)
    pub from_images: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Root>>>>>,
    /// in place: root-relative paths a stage switch keeps besides the skip set (the context,
    /// the Dockerfile, the credentials, the outputs)
    pub in_place_keep: Arc<std::collections::BTreeSet<Vec<u8>>>,
    /// in place: how many stages have been laid over `/` so far (stages run one at a time)
    pub in_place_stages: std::sync::atomic::AtomicUsize,
    /// the layer cache, with `--cache`
    pub cache: Option<Arc<Cache>>,
    /// several stages run at once: RUN output lines carry their stage's name
    pub stages_in_parallel: bool,
}

/// Removes the build's scratch directories however the build ends.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "could not clean up");
            }
        }
    }
}

/// The ignore file of a build: `<Dockerfile>.dockerignore` beside the Dockerfile when there
/// is one (BuildKit's rule), else the context's `.dockerignore`.
fn ignore_file(dockerfile: &std::path::Path, context: &std::path::Path) -> PathBuf {
    if let Some(name) = dockerfile.file_name() {
        let mut own = name.to_os_string();
        own.push(".dockerignore");
        let own = dockerfile.with_file_name(own);
        if own.is_file() {
            return own;
        }
    }
    context.join(".dockerignore")
}

/// Runs a whole build and writes its outputs.
pub async fn run(mut opts: BuildOptions) -> Result<BuiltImage> {
    if opts.destinations.is_empty() && !opts.no_push {
        bail!("no destination given: pass --destination REF, or --no-push with --tar-path or --oci-layout-path");
    }
    // a remote context is fetched under the kiln dir and removed when `fetched` drops
    let fetched = context::prepare(&opts.context, &opts.kiln_dir).await?;
    let (dockerfile_path, context_dir) = (fetched.dockerfile.clone(), fetched.dir.clone());
    let text = std::fs::read_to_string(&dockerfile_path)
        .with_context(|| format!("reading dockerfile {}", dockerfile_path.display()))?;
    let df = dockerfile::parse(&text)
        .with_context(|| format!("parsing {}", dockerfile_path.display()))?;
    for w in &df.warnings {
        tracing::warn!("{}: {w}", dockerfile_path.display());
    }
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let plan = plan::plan(&df, &opts.build_args, opts.target.as_deref(), &platform)
        .with_context(|| format!("planning {}", dockerfile_path.display()))?;
    warn_unused_build_args(&plan, &opts.build_args);
    let in_place = opts.isolation == crate::run::Isolation::InPlace;
    // in place, a stage switch empties / but for the skip set and what kiln still reads
    let in_place_keep = if in_place && plan.order.len() > 1 {
        let mut keep = crate::run::in_place::hidden(&opts.kiln_dir);
        keep.extend([context_dir.clone(), dockerfile_path.clone()]);
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
        crate::run::in_place::rel_paths(keep.iter().map(PathBuf::as_path))
    } else {
        std::collections::BTreeSet::new()
    };

    let ignore_path = ignore_file(&dockerfile_path, &context_dir);
    let ignore = match std::fs::read_to_string(&ignore_path) {
        Ok(t) => IgnoreRules::parse(&t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => IgnoreRules::parse(""),
        Err(e) => return Err(e).with_context(|| format!("reading {}", ignore_path.display())),
    };
    let context = Root::open(&context_dir)
        .with_context(|| format!("opening context {}", context_dir.display()))?;
    std::fs::create_dir_all(&opts.kiln_dir)
        .with_context(|| format!("creating kiln dir {}", opts.kiln_dir.display()))?;
    let store = BlobStore::open(&opts.kiln_dir.join("blobs"))?;
    let work = opts.kiln_dir.join(format!("build-{}", std::process::id()));
    let _cleanup = WorkDir(work.clone());
    let (resolv_conf, hosts) = crate::run::network_files(&work.join("etc"))?;
    let cache_dir = opts.kiln_dir.join("cache");
    let namespaces = crate::run::isolation::can_mount();
    // RUN on an overlay needs mounts, the real root (trusted.* xattrs) and an upper
    // directory on the stage roots' filesystem; otherwise each RUN is followed by a walk
    let overlay = namespaces
        && opts.isolation == crate::run::Isolation::Chroot
        && opts.run_overlay
        && crate::run::overlay::probe(&work.join("run"));
    tracing::info!(
        "snapshots after RUN: {}",
        match overlay {
            true => "from an overlay's upper directory",
            false => "by walking the stage root",
        }
    );
    let run_env = Arc::new(crate::run::RunEnv {
        isolation: opts.isolation,
        namespaces,
        overlay,
        resolv_conf,
        hosts,
        scratch: work.join("run"),
        cache_mounts: cache_dir.join("mounts"),
        secrets: opts.secrets.clone(),
        hide: if in_place {
            crate::run::in_place::hidden(&opts.kiln_dir)
        } else {
            Vec::new()
        },
    });
    let snapshot_skip = Arc::new(if in_place {
        crate::run::in_place::skip_set(&opts.kiln_dir, &opts.ignore_paths, opts.ignore_var_run)
    } else {
        std::collections::BTreeSet::new()
    });
    // in place, what kiln must never touch never reaches a layer either
    opts.layers.ignore_paths.extend(
        snapshot_skip
            .iter()
            .map(|p| format!("/{}", String::from_utf8_lossy(p))),
    );
    // in place, `--cleanup` removes what the build adds to /
    let before_build = if in_place && opts.cleanup {
        let skip = snapshot_skip.clone();
        Some(
            tokio::task::spawn_blocking(move || {
                crate::snapshot::Index::scan(std::path::Path::new("/"), &skip_ignore(&skip), None)
            })
            .await??,
        )
    } else {
        None
    };
    let sandbox = LazySandbox::start(cache_dir);
    let epoch = source_date_epoch(&plan.build_args)?;
    let mtime_clamp = opts.reproducible.then(|| epoch.unwrap_or(0));
    let created = mtime_clamp.or(epoch).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    });
    let cache = Cache::new(
        &opts.cache,
        &opts.destinations,
        &opts.registry,
        &platform,
        &store,
    )?
    .map(Arc::new);
    let registry = Registry::new(opts.registry.clone());
    if !opts.no_push && !opts.skip_push_permission_check {
        for dest in &opts.destinations {
            registry
                .check_push_permission(dest)
                .await
                .with_context(|| format!("checking push permission for {dest}"))?;
        }
    }
    let sequential = in_place || opts.sequential_stages;
    let build = Build {
        cache,
        registry,
        opts,
        store,
        platform,
        sandbox: Arc::new(sandbox),
        context: Arc::new(context),
        ignore: Arc::new(ignore),
        escape: df.escape,
        work,
        created: image::rfc3339(created),
        mtime_clamp,
        run_env,
        snapshot_skip: snapshot_skip.clone(),
        from_images: tokio::sync::Mutex::new(HashMap::new()),
        in_place_keep: Arc::new(in_place_keep),
        in_place_stages: std::sync::atomic::AtomicUsize::new(0),
        stages_in_parallel: !sequential && plan.order.len() > 1,
    };

    let build = Arc::new(build);
    let target = plan.target;
    let mut results = stages::build_all(build.clone(), Arc::new(plan), sequential).await?;
    let last = results
        .remove(&target)
        .context("the target stage produced no image")?;
    drop(results);
    let mut last = Arc::try_unwrap(last).unwrap_or_else(|shared| StageResult {
        root: shared.root.clone(),
        config: shared.config.clone(),
        layers: shared.layers.clone(),
        family: shared.family,
        cache_state: shared.cache_state.clone(),
    });
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
    let store = build.store.clone();
    let created = build.created.clone();
    let image = image::assemble(last.config, last.layers, last.family, &created, &store)?;
    let written = write_outputs(&build, &image).await;
    if let Some(before) = before_build {
        let skip = snapshot_skip.clone();
        tokio::task::spawn_blocking(move || remove_added(&before, &skip)).await??;
    }
    written?;
    Ok(image)
}

/// The in-place skip set as the snapshot walk's ignore list.
fn skip_ignore(skip: &std::collections::BTreeSet<Vec<u8>>) -> crate::snapshot::Ignore {
    crate::snapshot::Ignore::new(skip.iter().map(|p| String::from_utf8_lossy(p).into_owned()))
}

/// `--cleanup` in place: removes every path under `/` that was not there before the build.
fn remove_added(
    before: &crate::snapshot::Index,
    skip: &std::collections::BTreeSet<Vec<u8>>,
) -> Result<()> {
    let after = crate::snapshot::Index::scan(std::path::Path::new("/"), &skip_ignore(skip), None)?;
    let root = Root::open(std::path::Path::new("/"))?;
    for path in after.entries.keys().rev() {
        if before.entries.contains_key(path) {
            continue;
        }
        let rel = String::from_utf8_lossy(path).into_owned();
        root.remove(&rel, true)
            .with_context(|| format!("--cleanup: removing /{rel}"))?;
    }
    Ok(())
}

/// The images a Dockerfile's `FROM` lines name (stages and `scratch` left out), for
/// `kiln warm --dockerfile`.
pub fn base_images(
    dockerfile: &std::path::Path,
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

async fn build_stage(
    build: &Build,
    plan: &BuildPlan,
    index: usize,
    done: &stages::Finished,
) -> Result<StageResult> {
    let stage = &plan.stages[index];
    let base_name = match &stage.base {
        Base::Scratch => "scratch".to_string(),
        Base::Stage(dep) => plan.stages[*dep].display_name(),
        Base::Image(reference) => reference.clone(),
    };
    tracing::info!(
        "[{} 1/{}] FROM {base_name}",
        stage.display_name(),
        stage.instructions.len() + 1
    );
    let root_dir = build.work.join(format!("stage-{index}"));
    let in_place = build.opts.isolation == crate::run::Isolation::InPlace;
    // in place the base is extracted beside and laid over / around the skipped paths
    let root = Arc::new(Root::create(&root_dir)?);
    let dir_root = root.clone();
    let (config, layers, family, cache_state) = match &stage.base {
        Base::Scratch => (
            image::scratch_config(&build.platform.os, &build.platform.architecture),
            Vec::new(),
            Family::Oci,
            crate::cache::digest_of(["scratch"]),
        ),
        Base::Stage(dep) => {
            let dep = done
                .wait(*dep)
                .await
                .with_context(|| format!("Dockerfile:{}: FROM {base_name}", stage.line))?;
            extract_layers(&root, &dep.layers).await?;
            (
                dep.config.clone(),
                dep.layers.clone(),
                dep.family,
                dep.cache_state.clone(),
            )
        }
        Base::Image(reference) => {
            let (config, layers, family, manifest_digest) = pull_image(build, reference)
                .await
                .with_context(|| format!("Dockerfile:{}: FROM {reference}", stage.line))?;
            extract_layers(&root, &layers)
                .await
                .with_context(|| format!("Dockerfile:{}: extracting {reference}", stage.line))?;
            let state = crate::cache::digest_of(["image", manifest_digest.as_str()]);
            (config, layers, family, state)
        }
    };
    let root = if in_place {
        let (skip, keep) = (build.snapshot_skip.clone(), build.in_place_keep.clone());
        let after_a_stage = build
            .in_place_stages
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            > 0;
        let base = root.path().to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<()> {
            if after_a_stage {
                // the previous stage leaves /: what later stages read of it is beside
                let removed = crate::run::in_place::clear(&skip, &keep)?;
                tracing::info!(removed, "in place: / emptied for the next stage");
            }
            crate::run::in_place::populate(&base, &skip)?;
            Ok(())
        })
        .await??;
        tracing::info!("in place: the base image is laid over /");
        Arc::new(Root::open(std::path::Path::new("/"))?)
    } else {
        root
    };
    let base_layers = layers.len();
    let base = step::StageBase {
        root,
        config,
        layers,
        family,
        cache_state,
    };
    let mut result = step::run_stage(build, plan, index, base, done).await?;
    if in_place && index != plan.target {
        // a later stage reads this one (COPY --from, RUN --mount from=) after / has moved on:
        // its filesystem is rebuilt beside, from the extracted base and the layers it added
        extract_layers(&dir_root, &result.layers[base_layers..])
            .await
            .with_context(|| {
                format!(
                    "in place: keeping stage {} for later stages",
                    stage.display_name()
                )
            })?;
        result.root = dir_root;
    }
    Ok(result)
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

/// BuildKit's warning for `--build-arg`s no built stage (nor the global scope) declares.
fn warn_unused_build_args(plan: &BuildPlan, build_args: &[(String, String)]) {
    let declared = |name: &str| {
        plan.global_args.contains_key(name)
            || plan::PROXY_ARGS.contains(&name)
            || name == "SOURCE_DATE_EPOCH"
            || plan.order.iter().any(|&i| {
                plan.stages[i].instructions.iter().any(|ins| {
                    ins.keyword == dockerfile::Keyword::Arg
                        && ins
                            .arg_decls()
                            .is_ok_and(|d| d.iter().any(|(n, _)| n == name))
                })
            })
    };
    let unused: Vec<&str> = build_args
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !declared(k))
        .collect();
    if !unused.is_empty() {
        tracing::warn!(
            "build-args not consumed by any built stage: {}",
            unused.join(", ")
        );
    }
}

/// Pulls an image into the blob store: its config, its layers in `family`'s media types and
/// its manifest digest.
pub(crate) async fn pull_image(
    build: &Build,
    reference: &str,
) -> Result<(Value, Vec<LayerBlob>, Family, String)> {
    let pulled = build
        .registry
        .pull(reference, &build.platform, build.store.dir())
        .await
        .with_context(|| format!("pulling {reference}"))?;
    let family = Family::of_manifest(&pulled.manifest_media_type);
    let config = image::parse_config(&pulled.config, reference)?;
    let diff_ids: Vec<String> = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != pulled.layers.len() {
        bail!(
            "image {reference}: config lists {} diff_ids for {} layers",
            diff_ids.len(),
            pulled.layers.len()
        );
    }
    let manifest_digest = pulled.manifest_digest.clone();
    let layers = pulled
        .layers
        .into_iter()
        .zip(diff_ids)
        .map(|(l, diff_id)| LayerBlob {
            digest: Digest(l.digest),
            diff_id: DiffId(diff_id),
            size: l.size,
            media_type: family.convert_layer(&l.media_type),
            path: l.path,
        })
        .collect();
    Ok((config, layers, family, manifest_digest))
}

/// `spawn_blocking` inside the caller's span: the stage's log lines name it from any thread.
pub(crate) fn blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

/// Applies layers, in order, to a root.
pub(crate) async fn extract_layers(root: &Arc<Root>, layers: &[LayerBlob]) -> Result<()> {
    let root = root.clone();
    let layers = layers.to_vec();
    blocking(move || -> Result<()> {
        for layer in &layers {
            let file = std::fs::File::open(&layer.path)
                .with_context(|| format!("opening layer {}", layer.digest))?;
            extract::extract(&root, "", file, extract::Whiteouts::Apply, &layer.digest.0)
                .with_context(|| format!("extracting layer {}", layer.digest))?;
        }
        Ok(())
    })
    .await?
}

/// A destination without its digest, and without its tag unless `with_tag` (then with
/// `:latest` when it names none).
fn image_name(reference: &str, with_tag: bool) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    let (repo, has_tag) = match name.rsplit_once('/') {
        Some((host, last)) => match last.split_once(':') {
            Some((repo_last, _)) => (format!("{host}/{repo_last}"), true),
            None => (name.to_string(), false),
        },
        None => match name.split_once(':') {
            Some((repo, _)) => (repo.to_string(), true),
            None => (name.to_string(), false),
        },
    };
    if with_tag {
        if has_tag {
            name.to_string()
        } else {
            format!("{name}:{}", tag_of(reference))
        }
    } else {
        repo
    }
}

/// The tag part of a reference (`latest` when it has none or is pinned by digest).
fn tag_of(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag.to_string(),
        _ => "latest".to_string(),
    }
}

async fn write_outputs(build: &Build, image: &BuiltImage) -> Result<()> {
    let opts = &build.opts;
    if let Some(path) = &opts.tar_path {
        let tags: Vec<String> = opts
            .destinations
            .iter()
            .map(|d| image_name(d, true))
            .collect();
        output::write_docker_archive(image, &tags, path)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(path = %path.display(), "wrote docker archive");
    }
    if let Some(dir) = &opts.oci_layout_path {
        let name = opts
            .destinations
            .first()
            .map_or_else(|| "latest".to_string(), |d| tag_of(d));
        output::write_oci_layout(image, &name, dir)
            .with_context(|| format!("writing OCI layout {}", dir.display()))?;
        tracing::info!(path = %dir.display(), "wrote OCI layout");
    }
    if !opts.no_push {
        let mut blobs = vec![registry::BlobFile {
            digest: image.config_digest.0.clone(),
            size: image.config.len() as u64,
            path: build.store.path(&image.config_digest),
        }];
        blobs.extend(image.layers.iter().map(|l| registry::BlobFile {
            digest: l.digest.0.clone(),
            size: l.size,
            path: l.path.clone(),
        }));
        let push = PushImage {
            manifest: image.manifest.clone(),
            manifest_media_type: image.family.manifest().to_string(),
            blobs,
        };
        for dest in &opts.destinations {
            let digest = build
                .registry
                .push(dest, &push)
                .await
                .with_context(|| format!("pushing {dest}"))?;
            tracing::info!(destination = %dest, %digest, "pushed");
        }
    }
    if let Some(path) = &opts.digest_file {
        output::write_digest_file(&image.manifest_digest.0, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for (path, with_tag) in [
        (&opts.image_name_with_digest_file, false),
        (&opts.image_name_tag_with_digest_file, true),
    ] {
        let Some(path) = path else { continue };
        let lines: String = opts
            .destinations
            .iter()
            .map(|d| format!("{}@{}\n", image_name(d, with_tag), image.manifest_digest))
            .collect();
        output::write_digest_file(&lines, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        for (r, bare, tagged) in [
            (
                "127.0.0.1:5000/app:1",
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app:1",
            ),
            (
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app:latest",
            ),
            ("app:v2", "app", "app:v2"),
            ("reg.io/a/b@sha256:abc", "reg.io/a/b", "reg.io/a/b:latest"),
        ] {
            assert_eq!(image_name(r, false), bare, "{r}");
            assert_eq!(image_name(r, true), tagged, "{r}");
        }
    }

    #[test]
    fn tag_of_references() {
        for (r, want) in [
            ("127.0.0.1:5000/app:1", "1"),
            ("127.0.0.1:5000/app", "latest"),
            ("app@sha256:abc", "latest"),
            ("reg.io/a/b:v2", "v2"),
        ] {
            assert_eq!(tag_of(r), want, "{r}");
        }
    }
}
