//! `kiln warm`'s flags, as kaniko's warmer names them, and their validated form.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::registry::RegistryArgs;
use super::{LogFormat, LogSettings, Verbosity};
use crate::registry::{Platform, RegistryOptions};
use crate::warm::WarmOptions;

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
    /// Log format (default: color on a terminal unless NO_COLOR is set, else text)
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Put the time on every text log line
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub log_timestamp: bool,
}

impl WarmArgs {
    pub fn into_options(self) -> Result<WarmOptions> {
        let mut registry = RegistryOptions {
            insecure_pull: self.insecure_pull,
            insecure_registries: self.insecure_registries,
            ..RegistryOptions::default()
        };
        let platforms = self.registry.apply(&mut registry)?;
        if platforms.len() > 1 {
            bail!("kiln warm --custom-platform takes one platform");
        }
        let platform = platforms.into_iter().next().unwrap_or_else(Platform::host);
        let Some(cache_dir) = registry.cache_dir.take() else {
            bail!("kiln warm needs --cache-dir DIR");
        };
        if self.images.is_empty() && self.dockerfile.is_none() {
            bail!("kiln warm needs --image REF or --dockerfile PATH");
        }
        let build_args = super::parse_build_args(&self.build_args)?;
        Ok(WarmOptions {
            images: self.images,
            dockerfile: self.dockerfile,
            build_args,
            registry,
            cache_dir,
            platform,
        })
    }

    /// How logs are written.
    pub fn log_settings(&self) -> LogSettings {
        LogSettings {
            verbosity: self.verbosity,
            format: self.log_format,
            timestamp: self.log_timestamp,
        }
    }
}
