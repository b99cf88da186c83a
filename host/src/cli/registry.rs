//! Registry flags `build` and `warm` share, named as kaniko names them: TLS trust, mirrors,
//! retries, the push permission check, the platform and the base-image cache.

use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::registry::{parse_registry_map, Platform, RegistryOptions};

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
    #[arg(long = "registry-mirror", env = "KANIKO_REGISTRY_MIRROR")]
    pub registry_mirrors: Vec<String>,
    /// FROM=TO[;FROM=TO…]: registries to pull from instead of FROM, tried in order
    /// (repeatable)
    #[arg(long = "registry-map", env = "KANIKO_REGISTRY_MAP")]
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
    /// Build for this platform, os/arch[/variant], or for each of a comma-separated list
    /// (pushed as one OCI index): picks it from base-image indexes and writes it into the
    /// image config
    #[arg(long, visible_alias = "platform", alias = "customPlatform")]
    pub custom_platform: Option<String>,
    /// Base-image cache (filled by `kiln warm`), looked at before the network
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

impl RegistryArgs {
    /// Validates these flags into `opts`; returns the `--custom-platform` list (empty when
    /// not given).
    pub fn apply(&self, opts: &mut RegistryOptions) -> Result<Vec<Platform>> {
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
        let mut platforms: Vec<Platform> = Vec::new();
        for p in self.custom_platform.iter().flat_map(|list| list.split(',')) {
            let p = p.trim().parse::<Platform>()?;
            if platforms.contains(&p) {
                bail!("--custom-platform: {p} is listed twice");
            }
            platforms.push(p);
        }
        Ok(platforms)
    }
}
