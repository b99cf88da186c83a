//! The command line: what the user typed (`CliArgs`, kaniko's flag names and defaults) and
//! its validated form (`BuildOptions`). Nothing here touches the network or the build.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build::BuildOptions;
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
    /// Accepted for kaniko compatibility: kiln always removes its stage roots after a build
    #[arg(long)]
    pub cleanup: bool,
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
    /// kiln's work dir: blob cache, stage roots, compiled guest (default /kiln as root,
    /// ~/.cache/kiln otherwise)
    #[arg(long, env = "KILN_DIR")]
    pub kiln_dir: Option<PathBuf>,
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
            kiln_dir: self.kiln_dir.unwrap_or_else(default_kiln_dir),
        })
    }
}
