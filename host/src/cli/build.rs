//! `kiln build`'s flags, named as kaniko's executor names them (`CliArgs`), and their
//! validated form (`BuildOptions`). The registry flags are in `registry`, the kaniko and
//! docker extras in `compat`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, ValueEnum};

use super::compat::{self, CompatArgs, ProgressMode};
use super::registry::RegistryArgs;
use super::{LogFormat, LogSettings, Verbosity};
use crate::context;
use crate::pipeline::{BuildOptions, LayerOptions};
use crate::registry::RegistryOptions;

/// `kiln build` flags, named as kaniko's executor names them.
#[derive(Debug, Clone, Args)]
pub struct CliArgs {
    /// Path to the Dockerfile (default: <context>/Dockerfile; a relative path not found
    /// from the working directory is looked up in the context), or an https:// URL
    #[arg(short = 'f', long, visible_alias = "file")]
    pub dockerfile: Option<PathBuf>,
    /// Build context (default .): DIR, dir://DIR, tar://FILE, tar://stdin, gs://BUCKET/OBJECT,
    /// s3://BUCKET/KEY, git://HOST/REPO#REF#COMMIT, https://HOST/REPO.git#REF,
    /// https://HOST/CONTEXT.tar.gz
    #[arg(short = 'c', long)]
    pub context: Option<String>,
    /// The context as `docker build` takes it: PATH, URL, or - for a tar on stdin
    #[arg(value_name = "CONTEXT")]
    pub context_dir: Option<String>,
    /// Image reference to push to (repeatable)
    #[arg(short = 'd', long = "destination")]
    pub destinations: Vec<String>,
    /// Build without pushing (the destination, if any, only names the image)
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL",
        env = "KANIKO_NO_PUSH")]
    pub no_push: bool,
    /// Write the image as a docker-archive (docker load) to this file
    #[arg(long, alias = "tarPath")]
    pub tar_path: Option<PathBuf>,
    /// Write the image into an OCI image layout at this directory
    #[arg(long)]
    pub oci_layout_path: Option<PathBuf>,
    /// Write the image's manifest digest to this file
    #[arg(long)]
    pub digest_file: Option<PathBuf>,
    /// Build argument K=V, or K to take the value from the environment (repeatable)
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Build this stage and the ones it needs, not the last
    #[arg(long)]
    pub target: Option<String>,
    /// Lint the Dockerfile and stop: each finding a warning with its line, exit 1 if any
    /// (a build prints the same warnings and goes on)
    #[arg(long)]
    pub check: bool,
    /// Push to plain-HTTP registries
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub insecure: bool,
    /// Pull from plain-HTTP registries
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub insecure_pull: bool,
    /// Push to registries with invalid TLS certificates
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub skip_tls_verify: bool,
    /// A registry to reach over plain HTTP (repeatable)
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Registries: TLS trust, mirrors, retries, permission check, platform, base-image cache
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Fixed timestamps (SOURCE_DATE_EPOCH, else 0) and layer mtimes clamped to them, so
    /// the same inputs give the same digests
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub reproducible: bool,
    /// Attach an SBOM (SPDX 2.3, read from the image's package databases) as BuildKit does
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub sbom: bool,
    /// Attach a SLSA v1 provenance as BuildKit does: true (mode=min), false, mode=min, mode=max
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "MODE")]
    pub provenance: Option<String>,
    /// A label added to the image, K=V (repeatable)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Write `name@digest` of each destination to this file
    #[arg(long)]
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Write `name:tag@digest` of each destination to this file
    #[arg(long)]
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// Sign every pushed image with this ECDSA P-256 PEM key, as `cosign sign --key` does
    /// (an encrypted key's password from COSIGN_PASSWORD)
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Accepted for kaniko compatibility: kiln always builds only the stages the target needs
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub skip_unused_stages: bool,
    /// Build one stage at a time, in Dockerfile order, instead of every stage whose inputs
    /// are ready at once (less memory and disk at a time; the image is the same)
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub sequential_stages: bool,
    /// Run each RUN on an overlay laid over the stage root where that is possible (root
    /// with CAP_SYS_ADMIN, kiln dir on a filesystem that can hold an overlay's upper dir),
    /// so its snapshot reads only what it changed; `=false` walks the stage root instead
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = true, default_missing_value = "true", value_name = "BOOL")]
    pub run_overlay: bool,
    /// In place, remove what the build wrote to `/`. Stage roots are removed while the push
    /// runs unless `--cleanup=false` is given (a throwaway kiln dir: nothing is removed)
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", value_name = "BOOL", env = "KANIKO_CLEANUP")]
    pub cleanup: Option<bool>,
    /// The most bytes one base-image layer, ADD archive or context tarball may expand to
    /// (512MiB, 64GiB, … ; default 64GiB): a compression bomb stops there with an error
    #[arg(long, env = "KILN_MAX_EXPANDED_BYTES", value_name = "BYTES",
        value_parser = crate::layer::bounds::parse_size)]
    pub max_expanded_bytes: Option<u64>,
    // --- build contexts (context module) ---
    /// A directory inside the context to use as the context
    #[arg(long)]
    pub context_sub_path: Option<String>,
    /// Legacy: the bucket holding context.tar.gz (gs:// unless it names another scheme)
    #[arg(short = 'b', long)]
    pub bucket: Option<String>,
    /// Git context options: branch=…,single-branch=…,recurse-submodules=…,insecure-skip-tls=…
    #[arg(long)]
    pub git: Option<String>,
    // --- end build contexts ---
    // --- layer cache (kaniko's flags) ---
    /// Use the layer cache: steps whose inputs are unchanged take their layer from the store
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_name = "BOOL")]
    pub cache: Option<bool>,
    /// Where cache entries live: a repository (default <first destination>/cache) or
    /// oci:/path for a local OCI layout
    #[arg(long)]
    pub cache_repo: Option<String>,
    /// Cache entries older than this are ignored (Go duration)
    #[arg(long, default_value = "336h")]
    pub cache_ttl: String,
    /// Cache COPY/ADD layers too
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_name = "BOOL")]
    pub cache_copy_layers: Option<bool>,
    /// Cache RUN layers
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_name = "BOOL")]
    pub cache_run_layers: Option<bool>,
    /// Look entries up but store none
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_name = "BOOL")]
    pub no_push_cache: Option<bool>,

    /// Log level: panic, fatal, error, warn, info, debug, trace
    #[arg(short = 'v', long, value_enum, default_value = "info")]
    pub verbosity: Verbosity,
    /// Log format (default: color on a terminal unless NO_COLOR is set, else text)
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Put the time on every text log line
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub log_timestamp: bool,
    // --- RUN: isolation, secrets (host/src/run/) ---
    /// How RUN is isolated: chroot (default as root), rootless (default otherwise: a user
    /// namespace mapping the caller to root), in-place (the stage root is / of this container)
    #[arg(long, value_parser = ["chroot", "rootless", "in-place"])]
    pub isolation: Option<String>,
    /// Allow --isolation=in-place where no container is detected (gVisor)
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub force: bool,
    /// A build secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (repeatable)
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    // --- end RUN ---
    /// kiln's work dir: blob cache, stage roots, compiled guest (default /kiln as root,
    /// ~/.cache/kiln otherwise)
    #[arg(long, env = "KILN_DIR", visible_alias = "kaniko-dir")]
    pub kiln_dir: Option<PathBuf>,

    // --- snapshots and layers ---
    /// What makes a path changed: full (type, mode, owner, size, mtime, ctime, inode),
    /// redo (ctime and inode ignored) or time (type and mtime only)
    #[arg(long, value_enum, default_value = "full", alias = "snapshotMode")]
    pub snapshot_mode: SnapshotModeArg,
    /// One layer per stage, taken after its last instruction
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub single_snapshot: bool,
    /// A path of the stage root left out of every layer, with all below it; in place, also
    /// never overwritten (repeatable)
    #[arg(long = "ignore-path")]
    pub ignore_paths: Vec<String>,
    /// Leave /var/run out of every layer
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
        require_equals = true, default_missing_value = "true", value_name = "BOOL",
        alias = "whitelist-var-run")]
    pub ignore_var_run: bool,
    /// Compression of new layers: gzip or zstd (zstd layers make the image OCI)
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: CompressionArg,
    /// Compression level: 0-9 for gzip (default 6), 1-22 for zstd (default 3); -1 for the
    /// default
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub compression_level: i32,
    /// kaniko's flags that change nothing in kiln, and `docker build`'s flags
    #[command(flatten)]
    pub compat: CompatArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SnapshotModeArg {
    Full,
    Redo,
    Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Gzip,
    Zstd,
}

impl CliArgs {
    /// `--snapshot-mode`, `--ignore-*`, `--compression*` as `LayerOptions`.
    fn layer_options(&self) -> Result<LayerOptions> {
        use crate::layer::{Codec, Compression};
        use crate::snapshot::SnapshotMode;
        let compression = match self.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        };
        let level = match self.compression_level {
            -1 => compression.default_level(),
            l if compression.levels().contains(&l) => l,
            l => bail!(
                "--compression-level {l}: {} takes {}..={}",
                format!("{compression:?}").to_lowercase(),
                compression.levels().start(),
                compression.levels().end()
            ),
        };
        for p in &self.ignore_paths {
            if !p.starts_with('/') {
                bail!("--ignore-path {p}: expected an absolute path in the image");
            }
        }
        Ok(LayerOptions {
            snapshot_mode: match self.snapshot_mode {
                SnapshotModeArg::Full => SnapshotMode::Full,
                SnapshotModeArg::Redo => SnapshotMode::Redo,
                SnapshotModeArg::Time => SnapshotMode::Time,
            },
            single_snapshot: self.single_snapshot,
            ignore_paths: self.ignore_paths.clone(),
            ignore_var_run: self.ignore_var_run,
            codec: Codec { compression, level },
        })
    }
}

/// kaniko's `--bucket`: a bare name is a GCS bucket.
fn bucket_context(bucket: &str) -> String {
    if bucket.contains("://") {
        bucket.to_string()
    } else {
        format!("gs://{bucket}")
    }
}

fn default_kiln_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/kiln");
    }
    match std::env::var_os("XDG_CACHE_HOME")
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache").into()))
    {
        Some(dir) => Path::new(&dir).join("kiln"),
        None => std::env::temp_dir().join("kiln"),
    }
}

impl CliArgs {
    /// `--context`, `--bucket`, `--context-sub-path`, `--dockerfile` and `--git` as one
    /// request. As kaniko: `--bucket` replaces a remote (`://`) or absent context, never a
    /// plain path.
    fn context_request(&self) -> Result<context::Request> {
        let positional = self.context_dir.as_deref().map(|c| match c {
            "-" => "tar://stdin".to_string(),
            c => c.to_string(),
        });
        let given = self.context.clone().or(positional);
        let spec = match (&given, &self.bucket) {
            (Some(c), Some(b)) if c.contains("://") => bucket_context(b),
            (Some(c), _) => c.clone(),
            (None, Some(b)) => bucket_context(b),
            (None, None) => ".".to_string(),
        };
        let mut source = context::Source::parse(&spec)?;
        if let context::Source::Dir(dir) = &mut source {
            // kaniko's documented pods write `dir://workspace` for the volume at /workspace
            let rooted = Path::new("/").join(&*dir);
            if spec.starts_with("dir://") && dir.is_relative() && !dir.is_dir() && rooted.is_dir() {
                tracing::info!(
                    "context {spec}: no {} here; using {}",
                    dir.display(),
                    rooted.display()
                );
                *dir = rooted;
            }
        }
        let git = match &self.git {
            Some(text) => {
                context::GitOptions::parse(text).map_err(|e| anyhow!("--git {text}: {e}"))?
            }
            None => context::GitOptions::default(),
        };
        let mut git = git;
        git.credential_hosts = context::git::credential_hosts(match &source {
            context::Source::Git(src) => Some(src),
            _ => None,
        });
        if let context::Source::Dir(dir) = &source {
            if !dir.is_dir() {
                bail!("context {}: not a directory", dir.display());
            }
        }
        Ok(context::Request {
            spec,
            source,
            sub_path: self.context_sub_path.clone(),
            dockerfile: self
                .dockerfile
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            git,
        })
    }

    /// What `build` refuses before doing anything: checked by `kiln check-args` too.
    pub fn check(&self) -> Result<()> {
        self.compat.check()?;
        self.layer_options()?;
        super::parse_build_args(&self.build_args)?;
        if self.context.is_some() && self.context_dir.is_some() {
            bail!("the context is given twice: --context and a CONTEXT argument");
        }
        if let Some(t) = &self.target {
            if t.contains(',') {
                bail!("--target {t}: kiln builds one target stage (and the stages it needs)");
            }
        }
        let outputs = self.compat.outputs(self.kaniko_outputs())?;
        if outputs.destinations.is_empty() && !outputs.no_push && !self.check {
            bail!("no destination given: pass --destination REF, or --no-push with --tar-path or --oci-layout-path");
        }
        Ok(())
    }

    fn kaniko_outputs(&self) -> compat::Outputs {
        compat::Outputs {
            destinations: self.destinations.clone(),
            no_push: self.no_push,
            tar_path: self.tar_path.clone(),
            oci_layout_path: self.oci_layout_path.clone(),
            oci_archive_path: None,
        }
    }

    /// Validates the flags into the options of one build.
    pub fn into_options(self) -> Result<BuildOptions> {
        self.check()?;
        self.compat.log_ignored();
        if let Some(bytes) = self.max_expanded_bytes {
            crate::layer::bounds::set_max_expanded_bytes(bytes);
        }
        let layers = self.layer_options()?;
        let attest = self.attest_options()?;
        let context = self.context_request()?;
        let build_args = super::parse_build_args(&self.build_args)?;
        let outputs = self.compat.outputs(self.kaniko_outputs())?;
        let mut labels = Vec::new();
        for l in &self.labels {
            match l.split_once('=') {
                Some((k, v)) if !k.is_empty() => labels.push((k.to_string(), v.to_string())),
                _ => bail!("--label {l}: expected KEY=VALUE"),
            }
        }
        let mut registry = RegistryOptions {
            insecure: self.insecure,
            insecure_pull: self.insecure_pull,
            skip_tls_verify: self.skip_tls_verify,
            insecure_registries: self.insecure_registries,
            ..RegistryOptions::default()
        };
        let platforms = self.registry.apply(&mut registry)?;
        // read (and decrypted) before anything is built: a bad key fails first
        let sign_key = self
            .sign_key
            .as_deref()
            .map(crate::signing::Key::load)
            .transpose()?;
        Ok(BuildOptions {
            layers,
            context,
            destinations: outputs.destinations,
            no_push: outputs.no_push,
            tar_path: outputs.tar_path,
            oci_layout_path: outputs.oci_layout_path,
            oci_archive_path: outputs.oci_archive_path,
            digest_file: self.digest_file,
            iidfile: self.compat.iidfile.clone(),
            metadata_file: self.compat.metadata_file.clone(),
            build_args,
            target: self.target,
            registry,
            skip_push_permission_check: self.registry.skip_push_permission_check,
            platform: platforms.first().cloned(),
            platforms,
            reproducible: self.reproducible,
            attest,
            cache: crate::cache::CacheOptions {
                enabled: self.cache.unwrap_or(false),
                read: !self.compat.no_cache,
                repo: self.cache_repo,
                ttl: crate::cache::parse_go_duration(&self.cache_ttl)
                    .with_context(|| format!("--cache-ttl {}", self.cache_ttl))?,
                copy_layers: self.cache_copy_layers.unwrap_or(false),
                run_layers: self.cache_run_layers.unwrap_or(true),
                push: !self.no_push_cache.unwrap_or(false),
            },
            labels,
            manifest: crate::image::ManifestOptions {
                annotations: self.compat.annotations()?,
                family: self.compat.image_format.map(|f| match f {
                    compat::ImageFormatArg::Docker => crate::image::Family::Docker,
                    compat::ImageFormatArg::Oci => crate::image::Family::Oci,
                }),
            },
            dry_run: self.compat.dryrun,
            check: self.check,
            push_ignore_immutable_tag_errors: self.compat.push_ignore_immutable_tag_errors,
            image_name_with_digest_file: self.image_name_with_digest_file,
            image_name_tag_with_digest_file: self.image_name_tag_with_digest_file,
            // absolute: RUN chroots into stage roots below it from another directory
            kiln_dir: self
                .kiln_dir
                .or_else(|| {
                    std::env::var_os("KANIKO_DIR")
                        .filter(|d| !d.is_empty())
                        .map(PathBuf::from)
                })
                .map(|d| std::path::absolute(&d).unwrap_or(d))
                .unwrap_or_else(default_kiln_dir),
            isolation: crate::run::isolation::choose(
                self.isolation
                    .as_deref()
                    .and_then(crate::run::Isolation::parse),
                self.force,
            )?,
            secrets: crate::run::Secrets::from_flags(&self.secrets)?,
            ignore_paths: self.ignore_paths.iter().map(PathBuf::from).collect(),
            ignore_var_run: self.ignore_var_run,
            cleanup: self.cleanup,
            sequential_stages: self.sequential_stages,
            run_overlay: self.run_overlay,
            sign_key: sign_key.map(std::sync::Arc::new),
        })
    }

    /// `--sbom` and `--provenance` as the attestations to write.
    fn attest_options(&self) -> Result<crate::attest::AttestOptions> {
        Ok(crate::attest::AttestOptions {
            sbom: self.sbom,
            provenance: match &self.provenance {
                Some(v) => crate::attest::parse_provenance(v)?,
                None => None,
            },
        })
    }

    /// How progress is shown, given the logs' settings; below the default verbosity only
    /// logs show.
    pub fn progress(&self, logs: &LogSettings) -> (crate::progress::Mode, bool) {
        let json_logs = crate::logging::resolve(logs) == LogFormat::Json;
        let requested = self.compat.progress.unwrap_or(ProgressMode::Auto);
        let quiet = matches!(
            self.verbosity,
            Verbosity::Panic | Verbosity::Fatal | Verbosity::Error | Verbosity::Warn
        );
        (crate::progress::resolve(requested, json_logs), quiet)
    }

    /// How logs are written.
    pub fn log_settings(&self) -> LogSettings {
        let format = match self.compat.progress {
            Some(ProgressMode::Json | ProgressMode::Rawjson) => Some(LogFormat::Json),
            _ => self.log_format,
        };
        LogSettings {
            verbosity: self.verbosity,
            format,
            timestamp: self.log_timestamp,
        }
    }
}
