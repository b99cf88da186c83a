//! Connection settings: [`RegistryOptions`], how registries are reached as the user set it
//! with kaniko's flags of the same names, and the fixed ones every HTTP client of this module
//! shares (timeouts, overridable through `crate::network`, user agent). Acting on them is the client's (`client.rs`), the mirrors'
//! (`mirror.rs`) and the retries' (`retry.rs`).

use std::path::PathBuf;
use std::time::Duration;

/// Longest wait for a connection to a registry or token server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while waiting for an answer or reading a body (a blob that stalls midway)
/// before the request counts as failed, and is retried; long enough for a registry to hash
/// a large monolithic upload before it answers.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// [`CONNECT_TIMEOUT`], or shorter with `KILN_NETWORK_IDLE_TIMEOUT_SECS` (`crate::network`).
pub(super) fn connect_timeout() -> Duration {
    crate::network::connect_timeout(CONNECT_TIMEOUT)
}

/// [`READ_TIMEOUT`], or `KILN_NETWORK_IDLE_TIMEOUT_SECS` (`crate::network`).
pub(super) fn read_timeout() -> Duration {
    crate::network::idle_timeout(READ_TIMEOUT)
}

pub(super) const USER_AGENT: &str = concat!("kiln/", env!("CARGO_PKG_VERSION"));

/// Connection settings, as kaniko's flags of the same names.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Plain HTTP for pushes to any registry (`--insecure`).
    pub insecure: bool,
    /// Plain HTTP for pulls from any registry (`--insecure-pull`).
    pub insecure_pull: bool,
    /// Registries (host or host:port) spoken to over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    /// Accept invalid TLS certificates when pushing (`--skip-tls-verify`).
    pub skip_tls_verify: bool,
    /// Accept invalid TLS certificates when pulling (`--skip-tls-verify-pull`).
    pub skip_tls_verify_pull: bool,
    /// Registries whose TLS certificates are not checked (`--skip-tls-verify-registry`).
    pub skip_tls_verify_registries: Vec<String>,
    /// Extra CA certificates (PEM) trusted for one registry (`--registry-certificate reg=ca.crt`).
    pub registry_certificates: Vec<(String, PathBuf)>,
    /// TLS client certificate and key (PEM) presented to one registry
    /// (`--registry-client-cert reg=client.crt,client.key`).
    pub registry_client_certs: Vec<(String, PathBuf, PathBuf)>,
    /// Mirrors of a registry, tried in order before it when pulling: `--registry-mirror`
    /// (for Docker Hub) and `--registry-map from=to`.
    pub registry_maps: Vec<(String, String)>,
    /// Do not fall back to the original registry when every mirror failed
    /// (`--skip-default-registry-fallback`).
    pub skip_default_registry_fallback: bool,
    /// Retries of a whole failed push (`--push-retry`).
    pub push_retry: u32,
    /// Retries of a whole failed base-image pull (`--image-download-retry`).
    pub image_download_retry: u32,
    /// Base-image cache looked at before the network (`--cache-dir`, filled by `kiln warm`).
    pub cache_dir: Option<PathBuf>,
    /// Blobs larger than this many bytes are uploaded in chunks (`KILN_PUSH_CHUNKED_ABOVE`);
    /// `None` is [`super::push::CHUNKED_ABOVE`].
    pub push_chunked_above: Option<u64>,
}
