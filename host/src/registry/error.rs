//! The registry module's errors and their classification: which failures are worth retrying
//! (`is_transient`), which mean access was refused (`is_denied`), and which happened in the
//! TLS handshake. Retrying is `retry.rs`'s; turning a refusal into a message that names the
//! credentials is the client's (`client.rs`).

use std::path::PathBuf;

use oci_client::errors::{OciDistributionError, OciErrorCode};

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
    #[error("GET {url} for {reference}")]
    Get {
        reference: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "GET {url} for {reference}: the registry answered {status}{}",
        show_message(message)
    )]
    Status {
        reference: String,
        url: String,
        status: u16,
        /// The wait a 429's or 503's `Retry-After` asked for.
        retry_after: Option<std::time::Duration>,
        message: String,
    },
    #[error(
        "the manifest of {reference} is {size}; kiln reads at most {limit} bytes (as registries do)"
    )]
    ManifestTooLarge {
        reference: String,
        size: String,
        limit: u64,
    },
    #[error("the manifest of {reference} has digest {actual}, not {expected}")]
    ManifestDigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("reading from the registry for {reference}: {why}")]
    Slow {
        reference: String,
        url: String,
        why: String,
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
    #[error(
        "{what} {digest} of {reference} is {size} bytes; kiln reads at most {limit} (as registries do)"
    )]
    TooLarge {
        reference: String,
        what: &'static str,
        digest: String,
        size: u64,
        limit: u64,
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
            // a blob cut short or damaged on the way: downloaded again from the start
            Error::BlobSize { .. }
            | Error::BlobDigest { .. }
            | Error::ManifestDigestMismatch { .. }
            | Error::Slow { .. } => true,
            Error::Get { source, .. } => is_transient_request(source),
            Error::Status { status, .. } => is_transient_status(*status),
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
            Error::Status { status, .. } => *status == 401 || *status == 403,
            _ => false,
        }
    }
}

pub(super) fn is_denied(err: &OciDistributionError) -> bool {
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

impl Error {
    /// The wait the registry asked for before a retry (`Retry-After` of a 429 or 503).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn show_message(message: &str) -> String {
    if message.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", message.trim())
    }
}

fn is_transient_status(code: u16) -> bool {
    code >= 500 || code == 408 || code == 429
}

fn is_transient_request(e: &reqwest::Error) -> bool {
    e.is_connect()
        || e.is_timeout()
        || e.is_body()
        // a body cut short or reset while it streamed
        || e.is_decode()
        || e.is_request()
        || e.status().is_some_and(|s| is_transient_status(s.as_u16()))
}

fn is_transient(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::RequestError(e) => is_transient_request(e),
        OciDistributionError::ServerError { code, .. } => is_transient_status(*code),
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Toomanyrequests),
        OciDistributionError::DigestError(_) => true,
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

/// Whether a request failed in the TLS handshake (an untrusted or invalid certificate, or a
/// server that does not speak TLS).
pub(super) fn is_tls_failure(err: &OciDistributionError) -> bool {
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
