//! Why a registry could not be used, in words a person acts on: the host name does not
//! resolve, nothing listens, TLS failed, the request timed out, access was refused (401/403),
//! or the repository, tag or blob does not exist (404). `main` puts the cause first in a
//! failed build's message; the chain after it says where it happened.

use std::fmt;

use oci_client::errors::{OciDistributionError, OciErrorCode};

use super::error::{is_denied, is_tls_failure, Error};

/// What went wrong talking to a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Dns,
    Refused,
    Tls,
    Timeout,
    Denied,
    NotFound,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cause::Dns => "DNS lookup failed: the registry's host name does not resolve",
            Cause::Refused => "connection refused: nothing listens at the registry's address",
            Cause::Tls => {
                "TLS failed: the registry's certificate is not trusted, or it does not speak TLS"
            }
            Cause::Timeout => "timed out waiting for the registry",
            Cause::Denied => {
                "access denied (HTTP 401/403): credentials missing, wrong, or without permission"
            }
            Cause::NotFound => "not found (HTTP 404): no such repository, tag or blob",
        })
    }
}

/// The cause of the registry failure in `err`'s chain, the deepest one found; None when the
/// chain holds no registry error (a context download's failure is not the registry's) or none
/// kiln can name.
pub fn cause(err: &(dyn std::error::Error + 'static)) -> Option<Cause> {
    let mut found = None;
    let mut registry = false;
    let mut link = Some(err);
    while let Some(e) = link {
        registry |= e.is::<Error>() || e.is::<OciDistributionError>();
        if let Some(c) = cause_of(e) {
            found = Some(c);
        }
        link = e.source();
    }
    found.filter(|_| registry)
}

/// The cause one link of a chain names by itself.
fn cause_of(e: &(dyn std::error::Error + 'static)) -> Option<Cause> {
    if let Some(e) = e.downcast_ref::<Error>() {
        return match e {
            Error::Tls { .. } => Some(Cause::Tls),
            Error::Unauthorized { .. } => Some(Cause::Denied),
            Error::Status { status: 404, .. } => Some(Cause::NotFound),
            Error::Status {
                status: 401 | 403, ..
            } => Some(Cause::Denied),
            Error::Get { source, .. } if source.is_timeout() => Some(Cause::Timeout),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<OciDistributionError>() {
        return oci_cause(e);
    }
    if let Some(cause) = e.downcast_ref::<std::io::Error>().and_then(io_cause) {
        return Some(cause);
    }
    // the HTTP stack's own errors (hyper, its resolver) are known only by their text
    let text = e.to_string().to_ascii_lowercase();
    if text.starts_with("dns error") || text.contains("failed to lookup address") {
        Some(Cause::Dns)
    } else if text.contains("connection refused") {
        Some(Cause::Refused)
    } else {
        None
    }
}

fn io_cause(e: &std::io::Error) -> Option<Cause> {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Some(Cause::Refused),
        std::io::ErrorKind::TimedOut => Some(Cause::Timeout),
        _ => None,
    }
}

fn oci_cause(e: &OciDistributionError) -> Option<Cause> {
    if is_denied(e) {
        return Some(Cause::Denied);
    }
    if is_tls_failure(e) {
        return Some(Cause::Tls);
    }
    let not_found = match e {
        // transparent: the I/O error is not a link of its own in the chain
        OciDistributionError::IoError(io) => return io_cause(io),
        OciDistributionError::RequestError(r) if r.is_timeout() => return Some(Cause::Timeout),
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RequestError(r) => r.status().is_some_and(|s| s.as_u16() == 404),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
            )
        }),
        _ => false,
    };
    not_found.then_some(Cause::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_from_the_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = anyhow::Error::new(OciDistributionError::IoError(refused)).context("pulling x");
        assert_eq!(cause(&*e), Some(Cause::Refused));
        // not from a registry: no registry cause
        let e = anyhow::anyhow!("dns error: failed to lookup address information").context("x");
        assert_eq!(cause(&*e), None);
        let e = anyhow::Error::new(OciDistributionError::ServerError {
            code: 404,
            url: "http://r/v2/x/manifests/1".into(),
            message: String::new(),
        })
        .context("pulling r/x:1");
        assert_eq!(cause(&*e), Some(Cause::NotFound));
        let e = anyhow::Error::new(OciDistributionError::ServerError {
            code: 403,
            url: "http://r/v2/x/manifests/1".into(),
            message: String::new(),
        });
        assert_eq!(cause(&*e), Some(Cause::Denied));
        assert_eq!(cause(&*anyhow::anyhow!("disk full")), None);
    }
}
