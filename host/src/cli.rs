//! The command line: what the user typed (`CliArgs`, kaniko's flag names and defaults) and
//! its validated form (`BuildOptions`). Nothing here touches the network or the build.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build::{BuildOptions, LayerOptions};
use crate::registry::RegistryOptions;

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and push it or write it locally
    Build(CliArgs),
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
    /// from the working directory is looked up in the context)
    #[arg(short = 'f', long)]
    pub dockerfile: Option<PathBuf>,
    /// Build context: a directory, optionally written dir://DIR
    #[arg(short = 'c', long, default_value = ".")]
    pub context: String,
    /// Image reference to push to (repeatable)
    #[arg(short = 'd', long = "destination")]
    pub destinations: Vec<String>,
    /// Build without pushing (the destination, if any, only names the image)
    #[arg(long)]
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
    #[arg(long)]
    pub insecure: bool,
    /// Pull from plain-HTTP registries
    #[arg(long)]
    pub insecure_pull: bool,
    /// Accept registries' invalid TLS certificates
    #[arg(long)]
    pub skip_tls_verify: bool,
    /// A registry to reach over plain HTTP (repeatable)
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Fixed timestamps (SOURCE_DATE_EPOCH, else 0) and layer mtimes clamped to them, so
    /// the same inputs give the same digests
    #[arg(long)]
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
    #[arg(long)]
    pub skip_unused_stages: bool,
    /// Remove what the build wrote (in-place isolation); kiln always removes its stage roots
    #[arg(long)]
    pub cleanup: bool,
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
    #[arg(long)]
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
    #[arg(long)]
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
    /// Validates the flags into the options of one build.
    pub fn into_options(self) -> Result<BuildOptions> {
        let layers = self.layer_options()?;
        let context = match self.context.split_once("://") {
            None => PathBuf::from(&self.context),
            Some(("dir", path)) => PathBuf::from(path),
            Some((scheme, _)) => bail!(
                "context {}: {scheme}:// contexts are not supported yet",
                self.context
            ),
        };
        if !context.is_dir() {
            bail!("context {}: not a directory", context.display());
        }
        let dockerfile = match self.dockerfile {
            None => context.join("Dockerfile"),
            Some(p) if p.is_relative() && !p.exists() && context.join(&p).exists() => {
                context.join(p)
            }
            Some(p) => p,
        };
        if !dockerfile.is_file() {
            bail!("dockerfile {}: not found", dockerfile.display());
        }
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
        if self.destinations.is_empty() && !self.no_push {
            bail!("no destination given: pass --destination REF, or --no-push with --tar-path or --oci-layout-path");
        }
        Ok(BuildOptions {
            layers,
            dockerfile,
            context,
            destinations: self.destinations,
            no_push: self.no_push,
            tar_path: self.tar_path,
            oci_layout_path: self.oci_layout_path,
            digest_file: self.digest_file,
            build_args,
            target: self.target,
            registry: RegistryOptions {
                insecure: self.insecure,
                insecure_pull: self.insecure_pull,
                skip_tls_verify: self.skip_tls_verify,
                insecure_registries: self.insecure_registries,
            },
            reproducible: self.reproducible,
            labels,
            image_name_with_digest_file: self.image_name_with_digest_file,
            image_name_tag_with_digest_file: self.image_name_tag_with_digest_file,
            kiln_dir: self.kiln_dir.unwrap_or_else(default_kiln_dir),
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
        })
    }
}
