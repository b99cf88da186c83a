//! The command line: what the user typed (`CliArgs`, kaniko's flag names and defaults) and
//! its validated form (`BuildOptions`). Nothing here touches the network or the build.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build::BuildOptions;
use crate::context;
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
        if self.destinations.is_empty() && !self.no_push {
            bail!("no destination given: pass --destination REF, or --no-push with --tar-path or --oci-layout-path");
        }
        Ok(BuildOptions {
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
        })
    }
}
