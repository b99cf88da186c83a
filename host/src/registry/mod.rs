//! Talking to OCI registries: pull a base image's blobs to disk, push a built image.
//!
//! Owns registry addressing (Docker Hub normalisation, plain HTTP for loopback registries and
//! the `--insecure*` flags, TLS trust from `--skip-tls-verify*` and `--registry-certificate`),
//! credentials (`auth.rs`), bearer tokens for mounts (`token.rs`), mirrors (`mirror.rs`),
//! platform choice in an index (`platform.rs`), blob download with digest checks (`pull.rs`),
//! streaming upload with cross-repository mounts (`push.rs`), the base-image cache of
//! `--cache-dir` (`cache.rs`), and retries of transient failures. It never looks
//! inside configs or layers: building manifests and configs, and unpacking layers, belong to
//! the image and layer modules.
//!
//! The protocol is oci-client's low-level API (raw manifests, one blob at a time); its
//! high-level `pull()`/`push()` keep whole layers in memory and are not used.

mod auth;
pub mod cache;
mod client_cert;
mod ecr;
pub(crate) mod google;
mod mirror;
mod platform;
mod pull;
mod push;
mod token;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference};
use tracing::{debug, warn};

use auth::Credentials;
pub use mirror::parse_registry_map;
pub use platform::{
    set_config_platform, Platform, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};

/// Retries after the first attempt of one request (a manifest or blob transfer) that failed
/// in a transient way; `--push-retry` and `--image-download-retry` retry whole operations on
/// top of these.
const MAX_RETRIES: u32 = 3;
/// Wait before the first retry of a whole push or pull; doubled for each further one.
const FIRST_OPERATION_BACKOFF: Duration = Duration::from_secs(1);
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
    #[error("running credential helper {helper} for {registry}: {reason}")]
    CredentialHelper {
        registry: String,
        helper: String,
        reason: String,
    },
    #[error("authenticating to {registry} for {reference} with {credentials}")]
    Auth {
        registry: String,
        reference: String,
        credentials: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("TLS client certificate for {registry}: {reason}")]
    ClientCert { registry: String, reason: String },
    #[error("getting a token for {reference} from {registry} with {credentials}: {reason}")]
    Mint {
        registry: String,
        reference: String,
        credentials: String,
        reason: String,
    },
    #[error(
        "{registry} denied {action} repository {repository}; credentials tried: {credentials}"
    )]
    Unauthorized {
        registry: String,
        repository: String,
        action: &'static str,
        credentials: String,
        #[source]
        source: Box<Error>,
    },
    #[error("TLS connection to {registry} failed ({hint})")]
    Tls {
        registry: String,
        hint: String,
        #[source]
        source: Box<OciDistributionError>,
    },
    #[error("reading the CA certificate {path} for {registry} (--registry-certificate)")]
    ReadCertificate {
        registry: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid --registry-map {value:?}: expected FROM=TO[;FROM=TO…]")]
    InvalidRegistryMap { value: String },
    #[error(transparent)]
    PushPermission(Box<Error>),
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
            Error::Auth { source, .. } => is_transient(source),
            Error::FetchManifest { source, .. }
            | Error::PullBlob { source, .. }
            | Error::BlobExists { source, .. }
            | Error::PushBlob { source, .. }
            | Error::PushManifest { source, .. } => is_transient(source),
            _ => false,
        }
    }

    /// Whether the registry refused access: HTTP 401 or 403, or an `UNAUTHORIZED` or
    /// `DENIED` error code.
    pub fn is_denied(&self) -> bool {
        match self {
            Error::FetchManifest { source, .. }
            | Error::PullBlob { source, .. }
            | Error::BlobExists { source, .. }
            | Error::PushBlob { source, .. }
            | Error::PushManifest { source, .. } => is_denied(source),
            Error::Unauthorized { .. } => true,
            _ => false,
        }
    }
}

fn is_denied(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::RequestError(e) => e
            .status()
            .is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403),
        OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
        _ => false,
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
async fn with_retries<T, F, Fut>(what: &str, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry(
        what,
        MAX_RETRIES,
        FIRST_BACKOFF,
        Error::is_transient,
        attempt,
    )
    .await
}

/// Runs `attempt` until it succeeds, fails with an error `should_retry` refuses, or has been
/// retried `max` times, waiting `first` and doubling the wait each time.
async fn retry<T, F, Fut>(
    what: &str,
    max: u32,
    first: Duration,
    should_retry: fn(&Error) -> bool,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = first;
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(e) if retries < max && should_retry(&e) => {
                retries += 1;
                warn!(what, retry = retries, of = max, error = %e, "registry failure, retrying");
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
    /// `None` is [`push::CHUNKED_ABOVE`].
    pub push_chunked_above: Option<u64>,
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
    /// The image manifest's bytes, as stored in the registry.
    pub manifest: Vec<u8>,
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

impl Direction {
    fn verb(self) -> &'static str {
        match self {
            Direction::Pull => "pull from",
            Direction::Push => "push to",
        }
    }
}

/// A registry client for pulls and pushes, shared across a build. Connections and tokens are
/// kept per registry host.
pub struct Registry {
    opts: RegistryOptions,
    clients: Mutex<HashMap<(String, Direction), Client>>,
    /// Credentials looked up so far, by registry host (helpers run once per host).
    credentials: Mutex<HashMap<String, Credentials>>,
    /// A repository known to hold each blob (`sha256:…` → reference), from pulls and pushes,
    /// for cross-repository mounts.
    known_blobs: Mutex<HashMap<String, Reference>>,
    /// Client-certificate forwarders started so far (`client_cert.rs`), by registry and
    /// direction: their `127.0.0.1:PORT`.
    forwarders: tokio::sync::Mutex<HashMap<(String, Direction), String>>,
}

impl Registry {
    pub fn new(opts: RegistryOptions) -> Registry {
        Registry {
            opts,
            clients: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            known_blobs: Mutex::new(HashMap::new()),
            forwarders: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// `reference` routed through its registry's client-certificate forwarder when
    /// `--registry-client-cert` names the registry; otherwise unchanged.
    async fn route(&self, reference: &Reference, direction: Direction) -> Result<Reference> {
        let registry = reference.registry().to_string();
        let Some((_, cert, key)) = self
            .opts
            .registry_client_certs
            .iter()
            .find(|(name, ..)| same_registry(name, &registry))
        else {
            return Ok(reference.clone());
        };
        let upstream = reference.resolve_registry().to_string();
        let mut forwarders = self.forwarders.lock().await;
        let local = match forwarders.get(&(registry.clone(), direction)) {
            Some(local) => local.clone(),
            None => {
                let failed = |reason: String| Error::ClientCert {
                    registry: registry.clone(),
                    reason,
                };
                let identity = client_cert::identity(&registry, cert, key).map_err(failed)?;
                let mut builder = reqwest::Client::builder()
                    .identity(identity)
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .danger_accept_invalid_certs(self.skip_tls_verify(&registry, direction));
                for (name, path) in &self.opts.registry_certificates {
                    if same_registry(name, &registry) {
                        let pem = std::fs::read(path).map_err(|source| Error::ReadCertificate {
                            registry: registry.clone(),
                            path: path.clone(),
                            source,
                        })?;
                        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                            failed(format!("{} is not a PEM certificate: {e}", path.display()))
                        })?;
                        builder = builder.tls_certs_merge([ca]);
                    }
                }
                let http = builder
                    .build()
                    .map_err(|e| failed(format!("setting up TLS: {e}")))?;
                let local = client_cert::start(&upstream, http)
                    .await
                    .map_err(|e| failed(format!("starting the loopback forwarder: {e}")))?;
                forwarders.insert((registry.clone(), direction), local.clone());
                local
            }
        };
        let mut routed = reference.clone();
        routed.set_mirror_registry(local);
        Ok(routed)
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

    /// Whether TLS certificates of `registry` are accepted unchecked in `direction`.
    fn skip_tls_verify(&self, registry: &str, direction: Direction) -> bool {
        let all = match direction {
            Direction::Pull => self.opts.skip_tls_verify_pull,
            Direction::Push => self.opts.skip_tls_verify,
        };
        all || self
            .opts
            .skip_tls_verify_registries
            .iter()
            .any(|r| same_registry(r, registry))
    }

    /// The flags that would change how `registry` is reached, for a TLS error message.
    fn tls_hint(&self, registry: &str, direction: Direction) -> String {
        let all = match direction {
            Direction::Pull => "--skip-tls-verify-pull",
            Direction::Push => "--skip-tls-verify",
        };
        let insecure = match direction {
            Direction::Pull => "--insecure-pull",
            Direction::Push => "--insecure",
        };
        format!(
            "to trust its certificate pass --registry-certificate {registry}=CA.crt, or skip \
             verification with --skip-tls-verify-registry {registry} or {all}; if it asks for a \
             client certificate pass --registry-client-cert {registry}=client.crt,client.key; for \
             a plain-HTTP registry pass --insecure-registry {registry} or {insecure}"
        )
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
        let mut extra_root_certificates = Vec::new();
        for (name, path) in &self.opts.registry_certificates {
            if same_registry(name, &registry) || same_registry(name, reference.registry()) {
                extra_root_certificates.push(read_certificate(&registry, path)?);
            }
        }
        let config = ClientConfig {
            protocol,
            accept_invalid_certificates: self.skip_tls_verify(&registry, direction),
            extra_root_certificates,
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

    /// Credentials for `reference`'s registry from Docker's configuration, looked up once.
    fn credentials(&self, reference: &Reference) -> Result<Credentials> {
        let registry = reference.registry().to_string();
        if let Some(found) = self
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&registry)
        {
            return Ok(found.clone());
        }
        let found = auth::credentials(&registry)?;
        debug!(registry = %registry, credentials = %found.source, "registry credentials");
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registry, found.clone());
        Ok(found)
    }

    /// Creates the client for `reference` and logs in with the stored credentials, so an
    /// authentication failure is reported as such rather than as a later 401.
    async fn connect(
        &self,
        reference: &Reference,
        direction: Direction,
    ) -> Result<(Client, Credentials)> {
        let client = self.client(reference, direction)?;
        let creds = self
            .mint(reference, direction, self.credentials(reference)?)
            .await?;
        let op = match direction {
            Direction::Pull => oci_client::RegistryOperation::Pull,
            Direction::Push => oci_client::RegistryOperation::Push,
        };
        let registry = reference.registry().to_string();
        with_retries("authenticate", || async {
            client
                .auth(reference, &creds.auth, op)
                .await
                .map_err(|source| {
                    if is_tls_failure(&source) {
                        Error::Tls {
                            hint: self.tls_hint(&registry, direction),
                            registry: registry.clone(),
                            source: Box::new(source),
                        }
                    } else {
                        Error::Auth {
                            registry: registry.clone(),
                            reference: reference.whole(),
                            credentials: creds.source.clone(),
                            source: Box::new(source),
                        }
                    }
                })
        })
        .await?;
        Ok((client, creds))
    }

    /// Exchanges credentials that need it (an identity token, Google's credentials) for a
    /// token usable for `reference` in `direction`; other credentials pass unchanged.
    async fn mint(
        &self,
        reference: &Reference,
        direction: Direction,
        creds: Credentials,
    ) -> Result<Credentials> {
        let failed = |reason: String| Error::Mint {
            registry: reference.registry().to_string(),
            reference: reference.whole(),
            credentials: creds.source.clone(),
            reason,
        };
        match &creds.mint {
            None => Ok(creds),
            Some(auth::Mint::Google) => {
                let token = google::access_token().await.map_err(failed)?;
                debug!(registry = %reference.registry(), from = %token.source, "Google access token");
                Ok(Credentials {
                    auth: oci_client::secrets::RegistryAuth::Basic(
                        google::TOKEN_USER.to_string(),
                        token.token,
                    ),
                    source: format!("{} from {}", creds.source, token.source),
                    mint: creds.mint.clone(),
                })
            }
            Some(auth::Mint::Ecr) => {
                let (user, password, from) =
                    ecr::login(reference.registry()).await.map_err(failed)?;
                debug!(registry = %reference.registry(), from = %from, "ECR login");
                Ok(Credentials {
                    auth: oci_client::secrets::RegistryAuth::Basic(user, password),
                    source: format!("{} from {from}", creds.source),
                    mint: creds.mint.clone(),
                })
            }
            Some(auth::Mint::IdentityToken(_)) => {
                let actions = match direction {
                    Direction::Pull => "pull",
                    Direction::Push => "pull,push",
                };
                let scopes = vec![format!("repository:{}:{actions}", reference.repository())];
                let token = self
                    .request_token(&creds, reference, direction, &scopes)
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .ok_or_else(|| {
                        failed("the registry asks for no bearer token, so an identity token cannot be used".into())
                    })?;
                Ok(Credentials {
                    auth: oci_client::secrets::RegistryAuth::Bearer(token),
                    source: creds.source.clone(),
                    mint: creds.mint.clone(),
                })
            }
        }
    }

    /// Turns an error that says access was refused into one naming the registry, repository
    /// and the credentials tried; other errors pass unchanged.
    fn explain_denied(
        &self,
        err: Error,
        reference: &Reference,
        direction: Direction,
        creds: &Credentials,
    ) -> Error {
        if !err.is_denied() {
            return err;
        }
        Error::Unauthorized {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            action: direction.verb(),
            credentials: creds.source.clone(),
            source: Box::new(err),
        }
    }

    /// Remembers that `reference`'s repository holds `digest`.
    fn note_blob(&self, digest: &str, reference: &Reference) {
        self.known_blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.to_string(), reference.clone());
    }

    /// Another repository of `target`'s registry known to hold `digest`.
    fn mount_source(&self, digest: &str, target: &Reference) -> Option<Reference> {
        let known = self.known_blobs.lock().unwrap_or_else(|e| e.into_inner());
        known.get(digest).and_then(|from| {
            (from.resolve_registry() == target.resolve_registry()
                && from.repository() != target.repository())
            .then(|| from.clone())
        })
    }
}

/// Reads a PEM CA certificate file for `registry`.
fn read_certificate(registry: &str, path: &Path) -> Result<Certificate> {
    let data = std::fs::read(path).map_err(|source| Error::ReadCertificate {
        registry: registry.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Certificate {
        encoding: CertificateEncoding::Pem,
        data,
    })
}

/// Whether a request failed in the TLS handshake (an untrusted or invalid certificate, or a
/// server that does not speak TLS).
fn is_tls_failure(err: &OciDistributionError) -> bool {
    let OciDistributionError::RequestError(e) = err else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let text = c.to_string().to_ascii_lowercase();
        if [
            "certificate",
            "handshake",
            "corrupt message",
            "fatal alert",
            "peer is incompatible",
            "peer misbehaved",
        ]
        .iter()
        .any(|needle| text.contains(needle))
        {
            return true;
        }
        cause = c.source();
    }
    false
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
