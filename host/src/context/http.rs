//! `https://host/context.tar.gz`: a tarball streamed from a web server into the context
//! directory, and `--dockerfile https://…` downloaded to a file. TLS is rustls with the
//! system's CA certificates. Every read has a deadline: [`CONNECT_TIMEOUT`] to connect, then
//! [`IDLE_TIMEOUT`] (or `KILN_NETWORK_IDLE_TIMEOUT_SECS`) of silence before the first byte
//! or in the middle of the body, after which the download fails with "timed out"; a body
//! slower than the minimum rate (`crate::network::RateFloor`) fails as "too slow". A failed
//! download (timeout, reset, cut short, too slow, 5xx) is started again from its first byte,
//! [`ATTEMPTS`] times in all ([`retrying`], also used by `ADD <url>`); the last error names
//! the URL and says how many attempts were made.

use std::path::Path;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio::io::AsyncWriteExt;

use super::{extract_async, Error, Result};
use crate::error::chain as error_chain;

/// Longest wait for a connection to the server of a context or Dockerfile URL.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence from the server (before the answer or within the body).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Attempts at one download (the first and the retries after a timeout, a reset, a body cut
/// short or too slow, or a 5xx).
pub(crate) const ATTEMPTS: u32 = 3;
/// Wait before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Runs `attempt` (one whole download, from its first byte) until it succeeds, fails in a
/// way another attempt would not change (`permanent`: a 4xx, a refused checksum), or has run
/// [`ATTEMPTS`] times. Each retry is logged with the URL (redacted) and the cause.
pub(crate) async fn retrying<T, E, F, Fut>(
    url: &str,
    permanent: impl Fn(&E) -> bool,
    mut attempt: F,
) -> std::result::Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let mut wait = FIRST_BACKOFF;
    let mut tried = 1;
    loop {
        match attempt().await {
            Err(e) if tried < ATTEMPTS && !permanent(&e) => {
                tracing::warn!(
                    url = %crate::redaction::redact(url),
                    attempt = tried,
                    of = ATTEMPTS,
                    error = %e,
                    "download failed, starting it again"
                );
                tokio::time::sleep(wait).await;
                wait *= 2;
                tried += 1;
            }
            result => return result,
        }
    }
}

/// Whether a context or Dockerfile download failed for good (another attempt would get the
/// same answer).
fn is_permanent(e: &Error) -> bool {
    match e {
        Error::NotFound { .. } | Error::Denied { .. } => true,
        Error::Fetch { detail, .. } => {
            detail.starts_with("HTTP 4")
                && !detail.starts_with("HTTP 408")
                && !detail.starts_with("HTTP 429")
        }
        _ => false,
    }
}

/// The last error of a download that was retried, saying how many attempts were made.
fn after_attempts(url: &str, e: Error) -> Error {
    if is_permanent(&e) {
        return e;
    }
    Error::Fetch {
        url: url.to_string(),
        detail: format!("{} (gave up after {ATTEMPTS} attempts)", error_chain(&e)),
    }
}

/// The idle timeout in force: [`IDLE_TIMEOUT`] unless the environment shortens it.
pub(crate) fn idle_timeout() -> Duration {
    crate::network::idle_timeout(IDLE_TIMEOUT)
}

/// An HTTP client with kiln's connect and idle timeouts, configured further by `tune`.
pub(crate) fn timed_client(
    tune: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> reqwest::Result<reqwest::Client> {
    tune(
        reqwest::Client::builder()
            .connect_timeout(crate::network::connect_timeout(CONNECT_TIMEOUT))
            .read_timeout(idle_timeout()),
    )
    .build()
}

/// What a failed request says: "timed out" with the wait when it timed out, else its chain.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!(
            "timed out: no data from the server for {:?} ({})",
            idle_timeout(),
            error_chain(e)
        )
    } else {
        error_chain(e)
    }
}

fn client(url: &str) -> Result<reqwest::Client> {
    timed_client(|b| b.user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))).map_err(|e| {
        Error::Fetch {
            url: url.to_string(),
            detail: format!("http client: {e}"),
        }
    })
}

/// GETs `url` and turns HTTP failures into errors naming it.
async fn get(url: &str) -> Result<reqwest::Response> {
    let resp = client(url)?
        .get(url)
        .send()
        .await
        .map_err(|e| Error::Fetch {
            url: url.to_string(),
            detail: describe(&e),
        })?;
    let status = resp.status();
    match status.as_u16() {
        200..=299 => Ok(resp),
        404 | 410 => Err(Error::NotFound {
            url: url.to_string(),
        }),
        401 | 403 => Err(Error::Denied {
            url: url.to_string(),
            detail: format!("HTTP {status}"),
        }),
        _ => Err(Error::Fetch {
            url: url.to_string(),
            detail: format!("HTTP {status}"),
        }),
    }
}

/// A response body as an `AsyncRead`, held to the minimum rate (`crate::network::RateFloor`).
fn body_reader(resp: reqwest::Response) -> impl tokio::io::AsyncRead + Unpin + Send + 'static {
    let mut floor = crate::network::RateFloor::from_env();
    let stream = resp.bytes_stream().map_err(|e| {
        if e.is_timeout() {
            std::io::Error::new(std::io::ErrorKind::TimedOut, describe(&e))
        } else {
            std::io::Error::other(e)
        }
    });
    tokio_util::io::StreamReader::new(stream.and_then(move |chunk| {
        let checked = floor
            .note(chunk.len() as u64)
            .map(|()| chunk)
            .map_err(|why| std::io::Error::new(std::io::ErrorKind::TimedOut, why));
        std::future::ready(checked)
    }))
}

/// Streams the tarball at `url` into `dir`; a failed download is started again from zero
/// into an emptied `dir`. Returns the `sha256:` of the bytes of the attempt that succeeded.
pub async fn extract_url(url: &str, dir: &Path) -> Result<String> {
    let tries = std::sync::atomic::AtomicU32::new(0);
    retrying(url, is_permanent, || async {
        if tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
            empty_dir(dir).map_err(|source| Error::Io {
                url: url.to_string(),
                op: "emptying the context for another attempt",
                source,
            })?;
        }
        let resp = get(url).await?;
        extract_async(body_reader(resp), dir, url).await
    })
    .await
    .map_err(|e| after_attempts(url, e))
}

/// Removes everything in `dir`, keeping `dir`.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Downloads `url` (a Dockerfile) to `file`, starting again from zero after a failure.
pub async fn download_file(url: &str, file: &Path) -> Result<()> {
    retrying(url, is_permanent, || download_once(url, file))
        .await
        .map_err(|e| after_attempts(url, e))
}

async fn download_once(url: &str, file: &Path) -> Result<()> {
    let resp = get(url).await?;
    let io = |op| {
        move |source| Error::Io {
            url: url.to_string(),
            op,
            source,
        }
    };
    let mut out = tokio::fs::File::create(file).await.map_err(io("create"))?;
    let mut body = body_reader(resp);
    tokio::io::copy(&mut body, &mut out)
        .await
        .map_err(io("download"))?;
    out.flush().await.map_err(io("write"))?;
    Ok(())
}
