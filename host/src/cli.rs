//! The command line: what the user typed (`CliArgs`, kaniko's flag names and defaults) and
//! its validated form (`BuildOptions`). Nothing here touches the network or the build.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::context;
use crate::pipeline::{BuildOptions, LayerOptions};
use crate::registry::{parse_registry_map, Platform, RegistryOptions};
use crate::warm::WarmOptions;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build OCI images from Dockerfiles, no daemon needed"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference between the two argument sets is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and push it or write it locally
    Build(CliArgs),
    /// Fill a --cache-dir with base images, for builds without network access to them
    Warm(WarmArgs),
    /// Check a command line without running it: the arguments are parsed exactly as
    /// `kiln ARGS…` would parse them (deploy/ manifests are checked this way)
    #[command(hide = true)]
    CheckArgs {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// kaniko's executor takes its flags with no subcommand (`executor --context=… --destination=…`),
/// and pod specs written for it pass them that way: an argument list that starts with a flag
/// other than help or version is a `build`.
pub fn with_default_subcommand<I>(argv: I) -> Vec<std::ffi::OsString>
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    let mut argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let implicit_build = argv.get(1).and_then(|a| a.to_str()).is_some_and(|first| {
        first.starts_with('-') && !matches!(first, "-h" | "--help" | "-V" | "--version")
    });
    if implicit_build {
        argv.insert(1, "build".into());
    }
    argv
}

/// Parses `args` (without the program name) as kiln's command line, for `kiln check-args`.
pub fn check_args(args: &[std::ffi::OsString]) -> Result<()> {
    let argv = with_default_subcommand(std::iter::once("kiln".into()).chain(args.iter().cloned()));
    let cli = Cli::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    if let Command::CheckArgs { .. } = cli.command {
        bail!("error: check-args cannot check itself");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Color,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Verbosity {
    Panic,
    Fatal,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Verbosity {
    pub fn filter(self) -> &'static str {
        match self {
            Verbosity::Panic | Verbosity::Fatal | Verbosity::Error => "error",
            Verbosity::Warn => "warn",
            Verbosity::Info => "info",
            Verbosity::Debug => "debug",
            Verbosity::Trace => "trace",
        }
    }
}

/// `kiln build` flags, named as kaniko's executor names them.
#[derive(Debug, Clone, Args)]
pub struct CliArgs {
    /// Path to the Dockerfile (default: <context>/Dockerfile; a relative path not found
    /// from the working directory is looked up in the context), or an https:// URL
    #[arg(short = 'f', long)]
    pub dockerfile: Option<PathBuf>,
    /// Build context (default .): DIR, dir://DIR, tar://FILE, tar://stdin, gs://BUCKET/OBJECT,
    /// s3://BUCKET/KEY, git://HOST/REPO#REF#COMMIT, https://HOST/REPO.git#REF,
    /// https://HOST/CONTEXT.tar.gz
    #[arg(short = 'c', long)]
    pub context: Option<String>,
    /// Image reference to push to (repeatable)
    #[arg(short = 'd', long = "destination")]
    pub destinations: Vec<String>,
    /// Build without pushing (the destination, if any, only names the image)
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub no_push: bool,
    /// Write the image as a docker-archive (docker load) to this file
    #[arg(long)]
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
    /// A label added to the image, K=V (repeatable)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Write `name@digest` of each destination to this file
    #[arg(long)]
    pub image_name_with_digest_file: Option<PathBuf>,
    /// Write `name:tag@digest` of each destination to this file
    #[arg(long)]
    pub image_name_tag_with_digest_file: Option<PathBuf>,
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
    /// Remove what the build wrote (in-place isolation); kiln always removes its stage roots
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub cleanup: bool,
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
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub cache: Option<bool>,
    /// Where cache entries live: a repository (default <first destination>/cache) or
    /// oci:/path for a local OCI layout
    #[arg(long)]
    pub cache_repo: Option<String>,
    /// Cache entries older than this are ignored (Go duration)
    #[arg(long, default_value = "336h")]
    pub cache_ttl: String,
    /// Cache COPY/ADD layers too
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub cache_copy_layers: Option<bool>,
    /// Cache RUN layers
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub cache_run_layers: Option<bool>,
    /// Look entries up but store none
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub no_push_cache: Option<bool>,

    /// Log level: panic, fatal, error, warn, info, debug, trace
    #[arg(short = 'v', long, value_enum, default_value = "info")]
    pub verbosity: Verbosity,
    /// Log format
    #[arg(long, value_enum, default_value = "color")]
    pub log_format: LogFormat,
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
    #[arg(long, env = "KILN_DIR")]
    pub kiln_dir: Option<PathBuf>,

    // --- snapshots and layers ---
    /// What makes a path changed: full (type, mode, owner, size, mtime, ctime, inode),
    /// redo (ctime and inode ignored) or time (type and mtime only)
    #[arg(long, value_enum, default_value = "full")]
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
        default_missing_value = "true")]
    pub ignore_var_run: bool,
    /// Compression of new layers: gzip or zstd (zstd layers make the image OCI)
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: CompressionArg,
    /// Compression level: 0-9 for gzip (default 6), 1-22 for zstd (default 3); -1 for the
    /// default
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub compression_level: i32,
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
        let spec = match (&self.context, &self.bucket) {
            (Some(c), Some(b)) if c.contains("://") => bucket_context(b),
            (Some(c), _) => c.clone(),
            (None, Some(b)) => bucket_context(b),
            (None, None) => ".".to_string(),
        };
        let source = context::Source::parse(&spec)?;
        let git = match &self.git {
            Some(text) => {
                context::GitOptions::parse(text).map_err(|e| anyhow!("--git {text}: {e}"))?
            }
            None => context::GitOptions::default(),
        };
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

    /// Validates the flags into the options of one build.
    pub fn into_options(self) -> Result<BuildOptions> {
        let layers = self.layer_options()?;
        let context = self.context_request()?;
        let mut build_args = Vec::new();
        for a in &self.build_args {
            match a.split_once('=') {
                Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
                None => match std::env::var(a) {
                    Ok(v) => build_args.push((a.clone(), v)),
                    Err(_) => {
                        tracing::warn!("--build-arg {a}: not set in the environment, ignored")
                    }
                },
            }
        }
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
        let platform = self.registry.apply(&mut registry)?;
        if self.destinations.is_empty() && !self.no_push {
            bail!("no destination given: pass --destination REF, or --no-push with --tar-path or --oci-layout-path");
        }
        Ok(BuildOptions {
            layers,
            context,
            destinations: self.destinations,
            no_push: self.no_push,
            tar_path: self.tar_path,
            oci_layout_path: self.oci_layout_path,
            digest_file: self.digest_file,
            build_args,
            target: self.target,
            registry,
            skip_push_permission_check: self.registry.skip_push_permission_check,
            platform,
            reproducible: self.reproducible,
            cache: crate::cache::CacheOptions {
                enabled: self.cache.unwrap_or(false),
                repo: self.cache_repo,
                ttl: crate::cache::parse_go_duration(&self.cache_ttl)
                    .with_context(|| format!("--cache-ttl {}", self.cache_ttl))?,
                copy_layers: self.cache_copy_layers.unwrap_or(false),
                run_layers: self.cache_run_layers.unwrap_or(true),
                push: !self.no_push_cache.unwrap_or(false),
            },
            labels,
            image_name_with_digest_file: self.image_name_with_digest_file,
            image_name_tag_with_digest_file: self.image_name_tag_with_digest_file,
            // absolute: RUN chroots into stage roots below it from another directory
            kiln_dir: self
                .kiln_dir
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
        })
    }
}

// --- Registries: TLS trust, mirrors, retries, permission check, platform, base-image cache ---

/// Registry flags beyond the plain-HTTP ones, named as kaniko names them.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Pull from registries with invalid TLS certificates
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub skip_tls_verify_pull: bool,
    /// A registry whose TLS certificate is not checked (repeatable)
    #[arg(long = "skip-tls-verify-registry")]
    pub skip_tls_verify_registries: Vec<String>,
    /// REGISTRY=CA.crt: trust this PEM CA certificate for the registry (repeatable)
    #[arg(long = "registry-certificate")]
    pub registry_certificates: Vec<String>,
    /// REGISTRY=client.crt,client.key: present this PEM client certificate and key to the
    /// registry (repeatable)
    #[arg(long = "registry-client-cert")]
    pub registry_client_certs: Vec<String>,
    /// A mirror of Docker Hub, host[/prefix], tried before it when pulling (repeatable)
    #[arg(long = "registry-mirror")]
    pub registry_mirrors: Vec<String>,
    /// FROM=TO[;FROM=TO…]: registries to pull from instead of FROM, tried in order
    /// (repeatable)
    #[arg(long = "registry-map")]
    pub registry_maps: Vec<String>,
    /// Fail when every mirror failed instead of pulling from the original registry
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub skip_default_registry_fallback: bool,
    /// Retries of a failed push, with exponential backoff
    #[arg(long, default_value_t = 0)]
    pub push_retry: u32,
    /// Retries of a failed base-image pull, with exponential backoff
    #[arg(long, default_value_t = 0)]
    pub image_download_retry: u32,
    /// Do not check that every destination accepts pushes before building
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub skip_push_permission_check: bool,
    /// Build for this platform, os/arch[/variant]: picks it from base-image indexes and
    /// writes it into the image config
    #[arg(long)]
    pub custom_platform: Option<String>,
    /// Base-image cache (filled by `kiln warm`), looked at before the network
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

impl RegistryArgs {
    /// Validates these flags into `opts`; returns the `--custom-platform`, if any.
    pub fn apply(&self, opts: &mut RegistryOptions) -> Result<Option<Platform>> {
        for c in &self.registry_certificates {
            match c.split_once('=') {
                Some((reg, path)) if !reg.is_empty() && !path.is_empty() => opts
                    .registry_certificates
                    .push((reg.to_string(), PathBuf::from(path))),
                _ => bail!("--registry-certificate {c}: expected REGISTRY=CA.crt"),
            }
        }
        for c in &self.registry_client_certs {
            match c
                .split_once('=')
                .map(|(reg, files)| (reg, files.split_once(',')))
            {
                Some((reg, Some((cert, key))))
                    if !reg.is_empty() && !cert.is_empty() && !key.is_empty() =>
                {
                    opts.registry_client_certs.push((
                        reg.to_string(),
                        PathBuf::from(cert),
                        PathBuf::from(key),
                    ))
                }
                _ => bail!("--registry-client-cert {c}: expected REGISTRY=client.crt,client.key"),
            }
        }
        for mirror in &self.registry_mirrors {
            if mirror.trim().is_empty() {
                bail!("--registry-mirror: empty value");
            }
            opts.registry_maps
                .push(("index.docker.io".to_string(), mirror.trim().to_string()));
        }
        for map in &self.registry_maps {
            opts.registry_maps.extend(parse_registry_map(map)?);
        }
        opts.skip_tls_verify_pull = self.skip_tls_verify_pull;
        opts.skip_tls_verify_registries = self.skip_tls_verify_registries.clone();
        opts.skip_default_registry_fallback = self.skip_default_registry_fallback;
        opts.push_retry = self.push_retry;
        opts.image_download_retry = self.image_download_retry;
        opts.cache_dir = self.cache_dir.clone();
        if let Some(value) = std::env::var("KILN_PUSH_CHUNKED_ABOVE")
            .ok()
            .filter(|v| !v.is_empty())
        {
            let bytes = value.parse().with_context(|| {
                format!("KILN_PUSH_CHUNKED_ABOVE={value}: expected a number of bytes")
            })?;
            opts.push_chunked_above = Some(bytes);
        }
        Ok(match &self.custom_platform {
            Some(p) => Some(p.parse::<Platform>()?),
            None => None,
        })
    }
}

/// `kiln warm` flags, as kaniko's warmer names them.
#[derive(Debug, Clone, Args)]
pub struct WarmArgs {
    /// An image to cache (repeatable)
    #[arg(short = 'i', long = "image")]
    pub images: Vec<String>,
    /// Cache every base image this Dockerfile names in FROM
    #[arg(short = 'f', long)]
    pub dockerfile: Option<PathBuf>,
    /// Build argument K=V for the Dockerfile's FROM lines (repeatable)
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Pull from plain-HTTP registries
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub insecure_pull: bool,
    /// A registry to reach over plain HTTP (repeatable)
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Log level: panic, fatal, error, warn, info, debug, trace
    #[arg(short = 'v', long, value_enum, default_value = "info")]
    pub verbosity: Verbosity,
    /// Log format
    #[arg(long, value_enum, default_value = "color")]
    pub log_format: LogFormat,
}

impl WarmArgs {
    pub fn into_options(self) -> Result<WarmOptions> {
        let mut registry = RegistryOptions {
            insecure_pull: self.insecure_pull,
            insecure_registries: self.insecure_registries,
            ..RegistryOptions::default()
        };
        let platform = self
            .registry
            .apply(&mut registry)?
            .unwrap_or_else(Platform::host);
        let Some(cache_dir) = registry.cache_dir.take() else {
            bail!("kiln warm needs --cache-dir DIR");
        };
        if self.images.is_empty() && self.dockerfile.is_none() {
            bail!("kiln warm needs --image REF or --dockerfile PATH");
        }
        let mut build_args = Vec::new();
        for a in &self.build_args {
            match a.split_once('=') {
                Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
                None => {
                    if let Ok(v) = std::env::var(a) {
                        build_args.push((a.clone(), v));
                    }
                }
            }
        }
        Ok(WarmOptions {
            images: self.images,
            dockerfile: self.dockerfile,
            build_args,
            registry,
            cache_dir,
            platform,
        })
    }
}
