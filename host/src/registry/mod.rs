//! Talking to OCI registries: pull a base image's blobs to disk, push a built image.
//!
//! Owns registry addressing (Docker Hub normalisation, plain HTTP for loopback registries and
//! the `--insecure*` flags), credentials (`auth.rs`), platform choice in an index
//! (`platform.rs`), blob download with digest checks (`pull.rs`) and streaming upload
//! (`push.rs`), and retries of transient failures. It never looks inside configs or layers:
//! building manifests and configs, and unpacking layers, belong to the image and layer modules.
//!
//! The protocol is oci-client's low-level API (raw manifests, one blob at a time); its
//! high-level `pull()`/`push()` keep whole layers in memory and are not used. Credential
//! helpers (`credsStore`, `credHelpers`) are not read yet; see `auth.rs`.

mod auth;
mod platform;
mod pull;
mod push;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tracing::debug;

pub use platform::{Platform, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// Retries after the first attempt of a manifest or blob transfer.
const MAX_RETRIES: u32 = 3;
/// Wait before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while reading a response before the transfer counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(300);
const USER_AGENT: &str = concat!("kiln/", env!("CARGO_PKG_VERSION"));

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}")]
    InvalidReference {
        reference: String,
        #[source]
        source: oci_client::ParseError,
    },
    #[error("invalid platform {platform:?}: expected os/arch or os/arch/variant")]
    InvalidPlatform { platform: String },
    #[error("setting up a registry client for {registry}")]
    Client {
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("reading registry credentials from {path}")]
    ReadDockerConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing registry credentials in {path}")]
    ParseDockerConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("credentials for {registry} in {path}: {reason}")]
    BadCredentials {
        path: PathBuf,
        registry: String,
        reason: String,
    },
    #[error("authenticating to the registry for {reference}")]
    Auth {
        reference: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("fetching manifest {reference}")]
    FetchManifest {
        reference: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("manifest of {reference} is not valid JSON")]
    ManifestJson {
        reference: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest of {reference} has unsupported media type {media_type}")]
    UnsupportedManifest {
        reference: String,
        media_type: String,
    },
    #[error("manifest of {reference} has no config descriptor")]
    ManifestWithoutConfig { reference: String },
    #[error("image index {reference} points to another index for {platform}")]
    NestedIndex { reference: String, platform: String },
    #[error("image index {reference} has no image for {platform} (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("{reference} refers to blob {digest:?}, which is not a sha256 digest kiln can store")]
    UnsupportedDigest { reference: String, digest: String },
    #[error("creating blob directory {path} for {reference}")]
    BlobDir {
        reference: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("downloading blob {digest} of {reference}")]
    PullBlob {
        reference: String,
        digest: String,
        #[source]
        source: OciDistributionError,
    },
    #[error(
        "blob {digest} of {reference}: downloaded {actual} bytes, the manifest says {expected}"
    )]
    BlobSize {
        reference: String,
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} of {reference}: downloaded content has digest {actual}")]
    BlobDigest {
        reference: String,
        digest: String,
        actual: String,
    },
    #[error("{path} (blob {digest} of {reference})")]
    BlobFile {
        reference: String,
        digest: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("blob {digest} for {reference}: {path} is {actual} bytes, expected {expected}")]
    BlobFileSize {
        reference: String,
        digest: String,
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("checking whether {reference} has blob {digest}")]
    BlobExists {
        reference: String,
        digest: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("uploading blob {digest} to {reference}")]
    PushBlob {
        reference: String,
        digest: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("manifest media type {media_type:?} for {reference} is not a valid header value")]
    ManifestMediaType {
        reference: String,
        media_type: String,
    },
    #[error(
        "pushing to {reference}: the manifest's digest is {actual}, not the one in the reference"
    )]
    ManifestDigest { reference: String, actual: String },
    #[error("pushing manifest {reference}")]
    PushManifest {
        reference: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{reference}: blob {digest} task did not finish")]
    Task {
        reference: String,
        digest: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Error {
    /// Whether retrying the operation may succeed: connection failures, timeouts, broken
    /// transfers, HTTP 5xx, 408 and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Auth { source, .. }
            | Error::FetchManifest { source, .. }
            | Error::PullBlob { source, .. }
            | Error::BlobExists { source, .. }
            | Error::PushBlob { source, .. }
            | Error::PushManifest { source, .. } => is_transient(source),
            _ => false,
        }
    }
}

fn is_transient(err: &OciDistributionError) -> bool {
    let transient_status = |code: u16| code >= 500 || code == 408 || code == 429;
    match err {
        OciDistributionError::RequestError(e) => {
            e.is_connect()
                || e.is_timeout()
                || e.is_body()
                || e.is_request()
                || e.status().is_some_and(|s| transient_status(s.as_u16()))
        }
        OciDistributionError::ServerError { code, .. } => transient_status(*code),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Toomanyrequests),
        OciDistributionError::IoError(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::TimedOut
        ),
        _ => false,
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or has been retried [`MAX_RETRIES`]
/// times, doubling the wait each time. `what` names the operation in debug logs.
async fn with_retries<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = FIRST_BACKOFF;
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(e) if retries < MAX_RETRIES && e.is_transient() => {
                retries += 1;
                debug!(what, retry = retries, error = %e, "transient registry failure, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            result => return result,
        }
    }
}

/// Connection settings, as kaniko's flags of the same names.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Plain HTTP for pushes to any registry (`--insecure`).
    pub insecure: bool,
    /// Plain HTTP for pulls from any registry (`--insecure-pull`).
    pub insecure_pull: bool,
    /// Accept invalid TLS certificates for pushes and pulls (`--skip-tls-verify`).
    pub skip_tls_verify: bool,
    /// Registries (host or host:port) spoken to over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
}

/// An image whose blobs are now in the blob directory.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference after normalisation, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// Digest of the image manifest (the platform's manifest when the reference is an index).
    pub manifest_digest: String,
    pub manifest_media_type: String,
    /// The raw config JSON, digest verified.
    pub config: Vec<u8>,
    pub config_digest: String,
    /// Layers in manifest order.
    pub layers: Vec<PulledLayer>,
}

#[derive(Debug, Clone)]
pub struct PulledLayer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// `<blob_dir>/sha256/<hex>`, content verified.
    pub path: PathBuf,
}

/// An image to push: the manifest bytes as they are to be stored, and the files of the blobs
/// it refers to (config and layers).
#[derive(Debug, Clone)]
pub struct PushImage {
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub blobs: Vec<BlobFile>,
}

#[derive(Debug, Clone)]
pub struct BlobFile {
    /// `sha256:<hex>` of the file's content.
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    Pull,
    Push,
}

/// A registry client for pulls and pushes, shared across a build. Connections and tokens are
/// kept per registry host.
pub struct Registry {
    opts: RegistryOptions,
    clients: Mutex<HashMap<(String, Direction), Client>>,
}

impl Registry {
    pub fn new(opts: RegistryOptions) -> Registry {
        Registry {
            opts,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether requests to `registry` in `direction` go over plain HTTP.
    fn plain_http(&self, registry: &str, direction: Direction) -> bool {
        let all = match direction {
            Direction::Pull => self.opts.insecure_pull,
            Direction::Push => self.opts.insecure,
        };
        all || is_local_registry(registry)
            || self
                .opts
                .insecure_registries
                .iter()
                .any(|r| same_registry(r, registry))
    }

    /// The client for `reference`'s registry, created on first use.
    fn client(&self, reference: &Reference, direction: Direction) -> Result<Client> {
        let registry = reference.resolve_registry().to_string();
        let key = (registry.clone(), direction);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let protocol = if self.plain_http(&registry, direction) {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            accept_invalid_certificates: self.opts.skip_tls_verify,
            // One PUT per blob with a streamed body, rather than sequential 4 MiB PATCHes.
            use_monolithic_push: true,
            // Indexes are resolved here, with the variant taken into account.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|source| Error::Client {
            registry: registry.clone(),
            source,
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Credentials for `reference`'s registry from Docker's config file.
    fn credentials(&self, reference: &Reference) -> Result<RegistryAuth> {
        match auth::config_path() {
            Some(path) => auth::credentials_from_file(&path, reference.registry()),
            None => Ok(RegistryAuth::Anonymous),
        }
    }

    /// Creates the client for `reference` and logs in with the stored credentials, so an
    /// authentication failure is reported as such rather than as a later 401.
    async fn connect(
        &self,
        reference: &Reference,
        direction: Direction,
    ) -> Result<(Client, RegistryAuth)> {
        let client = self.client(reference, direction)?;
        let auth = self.credentials(reference)?;
        let op = match direction {
            Direction::Pull => oci_client::RegistryOperation::Pull,
            Direction::Push => oci_client::RegistryOperation::Push,
        };
        with_retries("authenticate", || async {
            client
                .auth(reference, &auth, op)
                .await
                .map_err(|source| Error::Auth {
                    reference: reference.whole(),
                    source,
                })
        })
        .await?;
        Ok((client, auth))
    }
}

/// Whether `host` (with or without a port) is this machine: `localhost`, `127.0.0.0/8` or
/// `::1`. Docker talks plain HTTP to these without being told to.
pub fn is_local_registry(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1] or [::1]:5000
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else if host.matches(':').count() > 1 {
        // a bare IPv6 address, no port
        host
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// Compares a user-given registry name (maybe with a scheme or trailing slash) with a host.
fn same_registry(given: &str, host: &str) -> bool {
    let given = given.trim();
    let given = given
        .strip_prefix("https://")
        .or_else(|| given.strip_prefix("http://"))
        .unwrap_or(given);
    let given = given.trim_end_matches('/');
    given.eq_ignore_ascii_case(host) || (given == "docker.io" && host == "index.docker.io")
}

/// Parses an image reference, with Docker's defaults: `docker.io` and `library/` for bare
/// names, `latest` when neither tag nor digest is given.
fn parse_reference(reference: &str) -> Result<Reference> {
    let invalid = |source| Error::InvalidReference {
        reference: reference.to_string(),
        source,
    };
    let parsed = reference.trim().parse::<Reference>().map_err(invalid)?;
    // oci-spec takes an uppercase first component for a Docker Hub name; Docker refuses it.
    if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid(oci_client::ParseError::NameContainsUppercase));
    }
    Ok(parsed)
}

/// The hex part of a `sha256:` digest, refused unless it is exactly 64 lowercase hex digits
/// (it becomes a file name).
fn sha256_hex(reference: &str, digest: &str) -> Result<String> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(hex.to_string())
        }
        _ => Err(Error::UnsupportedDigest {
            reference: reference.to_string(),
            digest: digest.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_references() {
        let d = "sha256:3fc9b689459d738f8c88a3a48aa9e33542016b7a4052e001aaa536fca74813cb";
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest".to_string()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_string()),
            (
                "library/busybox",
                "docker.io/library/busybox:latest".to_string(),
            ),
            ("user/app:v1", "docker.io/user/app:v1".to_string()),
            (
                "index.docker.io/library/debian:bookworm",
                "docker.io/library/debian:bookworm".to_string(),
            ),
            (
                &format!("debian@{d}"),
                format!("docker.io/library/debian@{d}"),
            ),
            (
                "127.0.0.1:5000/library/busybox:latest",
                "127.0.0.1:5000/library/busybox:latest".to_string(),
            ),
            ("localhost/x", "localhost/x:latest".to_string()),
            ("ghcr.io/o/r/img", "ghcr.io/o/r/img:latest".to_string()),
        ] {
            assert_eq!(parse_reference(input).unwrap().whole(), want, "{input}");
        }
        let hub = parse_reference("busybox").unwrap();
        assert_eq!(hub.resolve_registry(), "index.docker.io");
        for bad in ["", "UPPER/case", "a@sha256:123", ":tag"] {
            let err = parse_reference(bad).unwrap_err();
            assert!(
                err.to_string().contains("invalid image reference"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let registry = Registry::new(RegistryOptions::default());
        let platform = Platform::host();
        let pull = registry.pull("busybox", &platform, std::path::Path::new("/nonexistent"));
        assert_send(&pull);
        let image = PushImage {
            manifest: Vec::new(),
            manifest_media_type: String::new(),
            blobs: Vec::new(),
        };
        let push = registry.push("busybox", &image);
        assert_send(&push);
    }

    #[test]
    fn recognises_local_registries() {
        for (host, want) in [
            ("localhost", true),
            ("localhost:5000", true),
            ("LOCALHOST:5000", true),
            ("127.0.0.1", true),
            ("127.0.0.1:5000", true),
            ("127.1.2.3:80", true),
            ("[::1]", true),
            ("[::1]:5000", true),
            ("::1", true),
            ("128.0.0.1:5000", false),
            ("10.0.0.1:5000", false),
            ("localhost.example.com", false),
            ("docker.io", false),
            ("[::2]:5000", false),
        ] {
            assert_eq!(is_local_registry(host), want, "{host}");
        }
    }

    #[test]
    fn chooses_plain_http() {
        let opts = RegistryOptions {
            insecure_registries: vec!["http://reg.lan:5000/".to_string(), "docker.io".to_string()],
            ..RegistryOptions::default()
        };
        let registry = Registry::new(opts);
        for (host, direction, want) in [
            ("127.0.0.1:5000", Direction::Push, true),
            ("reg.lan:5000", Direction::Pull, true),
            ("reg.lan", Direction::Pull, false),
            ("index.docker.io", Direction::Pull, true),
            ("quay.io", Direction::Push, false),
        ] {
            assert_eq!(registry.plain_http(host, direction), want, "{host}");
        }
        let registry = Registry::new(RegistryOptions {
            insecure_pull: true,
            ..RegistryOptions::default()
        });
        assert!(registry.plain_http("quay.io", Direction::Pull));
        assert!(!registry.plain_http("quay.io", Direction::Push));
    }

    #[test]
    fn validates_blob_digests() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert!(sha256_hex("r", &good).is_ok());
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha512:{}", "ab".repeat(64)),
            format!("sha256:{}", "ab".repeat(31)),
        ] {
            assert!(sha256_hex("r", &bad).is_err(), "{bad}");
        }
    }
}
