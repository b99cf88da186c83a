//! The one owner of `--isolation` during a build. [`Runner`] is prepared once per build and
//! answers every question whose answer depends on the mode: whether stages may run side by
//! side, which root paths snapshots never look at, where a stage's root is (its own directory,
//! or `/` in place), how a RUN is started, and what is undone at the end (`--cleanup` in
//! place). The orchestrator asks in what order; it never branches on the mode itself.
//!
//! Before the build, [`Isolation::enter_process`](super::Isolation::enter_process) enters the
//! rootless user namespace (the kernel allows it only while kiln has one thread), and
//! [`kill_running`](super::kill_running) stops whatever RUN is still going when kiln is
//! interrupted. In-place mechanics (the skip set, laying a base over `/`, emptying it) are
//! `in_place`'s; the fork and the child's namespaces are `child`'s.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{in_place, isolation, overlay, Error, Isolation, Result, RunEnv, RunSpec, Secrets};
use crate::rootfs::Root;
use crate::snapshot::{Ignore, Index};

/// What the runner needs to know about a build.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub isolation: Isolation,
    /// kiln's work dir (blob cache, compiled guest): never visible to RUN in place
    pub kiln_dir: PathBuf,
    /// the build's scratch dir (network files, RUN scratch)
    pub work: PathBuf,
    /// where cache mounts persist across builds
    pub cache_mounts: PathBuf,
    pub secrets: Secrets,
    /// `--run-overlay`: RUN on an overlay where the machine allows it
    pub run_overlay: bool,
    /// in place: `--ignore-path`s, never snapshotted nor overwritten
    pub ignore_paths: Vec<PathBuf>,
    /// in place: leave /var/run alone
    pub ignore_var_run: bool,
    /// in place: remove what the build added to `/` when it ends
    pub cleanup: bool,
    /// host paths the build reads after the first stage (context, Dockerfile, credentials,
    /// outputs): in place, a stage switch keeps them
    pub keep: Vec<PathBuf>,
    /// how many stages the build runs
    pub stages: usize,
    /// `--sequential-stages`
    pub sequential_stages: bool,
}

/// Where one stage lives.
pub struct StageRoot {
    /// the root its steps work on
    pub root: Arc<Root>,
    /// the stage's own directory when `root` is shared with the machine (in place): a stage
    /// that later stages read is rebuilt there from its layers once it is done
    pub beside: Option<Arc<Root>>,
}

/// In-place state: what `/` must keep, and how far the build has got.
struct InPlace {
    /// root-relative paths never snapshotted nor written
    skip: Arc<BTreeSet<Vec<u8>>>,
    /// what a stage switch keeps besides the skip set
    keep: Arc<BTreeSet<Vec<u8>>>,
    /// how many stages have been laid over `/` (stages run one at a time)
    laid: AtomicUsize,
    /// `--cleanup`: `/` as it was before the build
    before: Option<Index>,
}

/// RUN's isolation for one build.
pub struct Runner {
    env: Arc<RunEnv>,
    in_place: Option<InPlace>,
    parallel: bool,
}

impl Runner {
    /// Prepares the mode chosen by `isolation::choose`: probes for namespaces, readies the
    /// overlay probe (run only once a RUN misses the cache: `expect_run`), writes the network files, and in place computes what `/` keeps.
    pub async fn prepare(opts: RunnerOptions) -> Result<Runner> {
        let (resolv_conf, hosts) = super::network_files(&opts.work.join("etc"))?;
        let scratch = opts.work.join("run");
        let namespaces = isolation::can_mount();
        // RUN on an overlay needs mounts, the real root (trusted.* xattrs) and an upper
        // directory on the stage roots' filesystem; otherwise each RUN is followed by a walk
        let overlay = match namespaces && opts.isolation == Isolation::Chroot && opts.run_overlay {
            true => overlay::Probe::remembered(&opts.kiln_dir, scratch.clone()),
            false => overlay::Probe::known(false),
        };
        let in_place = match opts.isolation {
            Isolation::InPlace => Some(InPlace::prepare(&opts).await?),
            Isolation::Chroot | Isolation::Rootless => None,
        };
        let env = RunEnv {
            isolation: opts.isolation,
            namespaces,
            overlay,
            resolv_conf,
            hosts,
            scratch,
            cache_mounts: opts.cache_mounts.clone(),
            secrets: opts.secrets.clone(),
            seccomp: super::seccomp::compile()?.map(Arc::new),
            hide: match in_place {
                Some(_) => in_place::hidden(&opts.kiln_dir),
                None => Vec::new(),
            },
        };
        Ok(Runner {
            env: Arc::new(env),
            parallel: in_place.is_none() && !opts.sequential_stages && opts.stages > 1,
            in_place,
        })
    }

    /// Whether stages run side by side (in place there is one `/`, so never).
    pub fn stages_in_parallel(&self) -> bool {
        self.parallel
    }

    /// Root paths (absolute) that no snapshot looks at and no layer holds.
    pub fn unsnapshotted(&self) -> Vec<String> {
        self.in_place.as_ref().map_or_else(Vec::new, |p| {
            p.skip
                .iter()
                .map(|rel| format!("/{}", String::from_utf8_lossy(rel)))
                .collect()
        })
    }

    /// Whether a stage's root may be filled after `lay_out` (it is the stage's own
    /// directory); in place the base must be in `dir` before it is laid over `/`.
    pub fn roots_fill_later(&self) -> bool {
        self.in_place.is_none()
    }

    /// Gives a stage its root, its base already extracted into `dir`. In place the base is
    /// laid over `/` (emptied first when an earlier stage was there) and `/` is the root.
    pub async fn lay_out(&self, dir: Arc<Root>) -> Result<StageRoot> {
        let Some(p) = &self.in_place else {
            return Ok(StageRoot {
                root: dir,
                beside: None,
            });
        };
        let (skip, keep) = (p.skip.clone(), p.keep.clone());
        let after_a_stage = p.laid.fetch_add(1, Ordering::SeqCst) > 0;
        let base = dir.path().to_path_buf();
        blocking(move || -> Result<()> {
            if after_a_stage {
                // the previous stage leaves /: what later stages read of it is beside
                let removed = in_place::clear(&skip, &keep)?;
                tracing::info!(removed, "in place: / emptied for the next stage");
            }
            in_place::populate(&base, &skip)
        })
        .await?;
        tracing::info!("in place: the base image is laid over /");
        Ok(StageRoot {
            root: Arc::new(Root::open(Path::new("/"))?),
            beside: Some(dir),
        })
    }

    /// A RUN will run (it missed the cache): work out now, while its root is made, what
    /// running it needs that a build of cache hits never does (the overlay probe).
    pub fn expect_run(&self) {
        self.env.overlay.start();
    }

    /// Runs one command in `root` (see [`super::run`]).
    pub fn run(&self, root: &Root, spec: &RunSpec) -> Result<super::Ran> {
        super::run(root, spec, &self.env)
    }

    /// The end of the build: in place with `--cleanup`, removes every path under `/` that
    /// was not there before it.
    pub async fn tear_down(&self) -> Result<()> {
        let Some(InPlace {
            skip,
            before: Some(before),
            ..
        }) = &self.in_place
        else {
            return Ok(());
        };
        let after = scan_slash(skip.clone()).await?;
        let root = Root::open(Path::new("/"))?;
        for path in after.entries.keys().rev() {
            if before.entries.contains_key(path) {
                continue;
            }
            let rel = String::from_utf8_lossy(path).into_owned();
            root.remove(&rel, true).map_err(|source| Error::Cleanup {
                path: format!("/{rel}"),
                source,
            })?;
        }
        Ok(())
    }
}

impl InPlace {
    async fn prepare(opts: &RunnerOptions) -> Result<InPlace> {
        let skip = Arc::new(in_place::skip_set(
            &opts.kiln_dir,
            &opts.ignore_paths,
            opts.ignore_var_run,
        ));
        // a stage switch empties / but for the skip set and what kiln still reads
        let keep = if opts.stages > 1 {
            let mut keep = in_place::hidden(&opts.kiln_dir);
            keep.extend(opts.keep.iter().cloned());
            in_place::rel_paths(keep.iter().map(PathBuf::as_path))
        } else {
            BTreeSet::new()
        };
        let before = match opts.cleanup {
            true => Some(scan_slash(skip.clone()).await?),
            false => None,
        };
        Ok(InPlace {
            skip,
            keep: Arc::new(keep),
            laid: AtomicUsize::new(0),
            before,
        })
    }
}

/// An index of `/` without the skipped paths.
async fn scan_slash(skip: Arc<BTreeSet<Vec<u8>>>) -> Result<Index> {
    blocking(move || {
        let ignore = Ignore::new(skip.iter().map(|p| String::from_utf8_lossy(p).into_owned()));
        Index::scan(Path::new("/"), &ignore, None).map_err(|source| Error::Scan {
            what: "/",
            source: Box::new(source),
        })
    })
    .await
}

/// Blocking work on tokio's pool, inside the caller's span.
async fn blocking<F, R>(f: F) -> Result<R>
where
    F: FnOnce() -> Result<R> + Send + 'static,
    R: Send + 'static,
{
    crate::task::blocking(f)
        .await
        .map_err(|e| Error::Task { why: e.to_string() })?
}
