//! kiln's own GETs to a registry: manifests (by tag or digest) and blobs. oci-client reads a
//! manifest whole and drops the headers of a failed answer; these requests read a manifest
//! with a cap ([`MAX_MANIFEST_BYTES`], stopping at it), stream a blob to the caller, hold every
//! body to the minimum transfer rate (`crate::network::RateFloor`), and keep a 429's or 503's
//! `Retry-After` for the retries (`retry.rs`). Authentication is the session's: the bearer
//! token `connect` obtained, else the credentials' own (`client.rs`, `auth.rs`); scheme, TLS
//! trust, mirrors and the client-certificate forwarder are those of the oci-client client.

use std::time::{Duration, SystemTime};

use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, RETRY_AFTER};
use sha2::{Digest as _, Sha256};

use super::address::same_registry;
use super::auth::Credentials;
use super::error::{Error, Result};
use super::options::{connect_timeout, read_timeout, USER_AGENT};
use super::{Direction, Registry};
use crate::network::RateFloor;

/// The largest manifest or index kiln reads (registries refuse bigger ones to push).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// An answer whose status was a success, its body not read yet.
pub(super) struct Answer {
    pub response: reqwest::Response,
    pub url: String,
}

impl Registry {
    /// The HTTP client for `reference`'s registry in `direction` with the TLS trust the
    /// oci-client client has, created on first use.
    pub(super) async fn http(
        &self,
        reference: &Reference,
        direction: Direction,
    ) -> Result<reqwest::Client> {
        let registry = reference.resolve_registry().to_string();
        let skip_tls_verify = self.skip_tls_verify(&registry, direction);
        let key = (registry.clone(), skip_tls_verify);
        if let Some(client) = self.lock_http().get(&key) {
            return Ok(client.clone());
        }
        let mut builder = super::roots::trust(reqwest::Client::builder())
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout())
            .read_timeout(read_timeout())
            .danger_accept_invalid_certs(skip_tls_verify);
        for (name, path) in &self.opts.registry_certificates {
            if same_registry(name, &registry) || same_registry(name, reference.registry()) {
                let pem = std::fs::read(path).map_err(|source| Error::ReadCertificate {
                    registry: registry.clone(),
                    path: path.clone(),
                    source,
                })?;
                let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| Error::Get {
                    reference: reference.whole(),
                    url: path.display().to_string(),
                    source: e,
                })?;
                builder = builder.tls_certs_merge([ca]);
            }
        }
        let client = builder.build().map_err(|source| Error::Get {
            reference: reference.whole(),
            url: format!("https://{registry}/v2/"),
            source,
        })?;
        self.lock_http().insert(key, client.clone());
        Ok(client)
    }

    fn lock_http(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, bool), reqwest::Client>> {
        self.http.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `https://` or `http://` (as decided for the oci-client client), then the registry.
    pub(super) async fn base_url(&self, reference: &Reference, direction: Direction) -> String {
        let registry = reference.resolve_registry();
        let scheme = if self.plain_http(registry, direction).await {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{registry}")
    }

    /// GETs `/v2/<repository>/<kind>/<name>` of `reference` with the session's credentials;
    /// an answer that is not a success is an error carrying its status and `Retry-After`.
    async fn get(
        &self,
        reference: &Reference,
        creds: &Credentials,
        path: &str,
        accept: &[&str],
    ) -> Result<Answer> {
        let ns = reference
            .namespace()
            .map(|ns| format!("?ns={ns}"))
            .unwrap_or_default();
        let url = format!(
            "{}/v2/{}/{path}{ns}",
            self.base_url(reference, Direction::Pull).await,
            reference.repository()
        );
        let http = self.http(reference, Direction::Pull).await?;
        let mut request = http.get(&url);
        if !accept.is_empty() {
            request = request.header(ACCEPT, accept.join(", "));
        }
        request = match (&creds.bearer, &creds.auth) {
            (Some(token), _) | (None, RegistryAuth::Bearer(token)) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            (None, RegistryAuth::Anonymous) => request,
        };
        let response = request.send().await.map_err(|source| Error::Get {
            reference: reference.whole(),
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(Answer { response, url });
        }
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let body = read_capped(response, 4096, &url)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Err(Error::Status {
            reference: reference.whole(),
            url,
            status: status.as_u16(),
            retry_after,
            message: body.chars().take(500).collect(),
        })
    }

    /// `reference`'s manifest or index, read up to [`MAX_MANIFEST_BYTES`]: a bigger one is
    /// refused as soon as its `Content-Length` or its bytes say so. The body is checked
    /// against the digest in the reference and the `Docker-Content-Digest` header.
    pub(super) async fn get_manifest(
        &self,
        reference: &Reference,
        creds: &Credentials,
        accept: &[&str],
    ) -> Result<bytes::Bytes> {
        let name = reference
            .digest()
            .or_else(|| reference.tag())
            .unwrap_or("latest");
        let answer = self
            .get(reference, creds, &format!("manifests/{name}"), accept)
            .await?;
        let header_digest = answer
            .response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let too_large = |size: String| Error::ManifestTooLarge {
            reference: reference.whole(),
            size,
            limit: MAX_MANIFEST_BYTES,
        };
        if let Some(len) = content_length(answer.response.headers()) {
            if len > MAX_MANIFEST_BYTES {
                return Err(too_large(format!("{len} bytes")));
            }
        }
        let url = answer.url.clone();
        let body = read_capped(answer.response, MAX_MANIFEST_BYTES, &url)
            .await
            .map_err(|e| match e {
                Capped::Over(read) => too_large(format!("over {read} bytes")),
                Capped::Failed(source) => Error::Get {
                    reference: reference.whole(),
                    url: url.clone(),
                    source,
                },
                Capped::Slow(why) => Error::Slow {
                    reference: reference.whole(),
                    url: url.clone(),
                    why,
                },
            })?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        for expected in [reference.digest(), header_digest.as_deref()]
            .into_iter()
            .flatten()
        {
            if expected.starts_with("sha256:") && expected != actual {
                return Err(Error::ManifestDigestMismatch {
                    reference: reference.whole(),
                    expected: expected.to_string(),
                    actual: actual.clone(),
                });
            }
        }
        Ok(bytes::Bytes::from(body))
    }

    /// The answer to a GET of blob `digest` of `reference`, its body still to be read.
    pub(super) async fn get_blob(
        &self,
        reference: &Reference,
        creds: &Credentials,
        digest: &str,
    ) -> Result<Answer> {
        self.get(reference, creds, &format!("blobs/{digest}"), &[])
            .await
    }
}

/// Why a capped read stopped.
pub(super) enum Capped {
    /// More than the cap arrived (this many bytes read).
    Over(u64),
    /// The connection failed, stalled or was cut.
    Failed(reqwest::Error),
    /// The body came slower than the minimum rate.
    Slow(String),
}

/// Reads `response`'s body, stopping as soon as more than `cap` bytes arrived.
async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    url: &str,
) -> std::result::Result<Vec<u8>, Capped> {
    let mut body = Vec::new();
    let mut floor = RateFloor::from_env();
    while let Some(chunk) = response.chunk().await.map_err(Capped::Failed)? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > cap {
            return Err(Capped::Over(body.len() as u64));
        }
        floor
            .note(chunk.len() as u64)
            .map_err(|why| Capped::Slow(format!("{}: {why}", crate::redaction::redact(url))))?;
    }
    Ok(body)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The wait a `Retry-After` header asks for: seconds, or an HTTP date (RFC 9110 §10.2.3)
/// measured from `now`; a date in the past is no wait.
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = crate::network::parse_http_date(value)?;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(when).ok()?);
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, value.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            retry_after(&headers("2"), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
