//! `https://host/context.tar.gz`: a tarball streamed from a web server into the context
//! directory, and `--dockerfile https://…` downloaded to a file. TLS is rustls with the
//! system's CA certificates. Every read has a deadline: [`CONNECT_TIMEOUT`] to connect, then
//! [`IDLE_TIMEOUT`] (or `KILN_NETWORK_IDLE_TIMEOUT_SECS`) of silence before the first byte
//! or in the middle of the body, after which the download fails with "timed out"; a body
//! slower than the minimum rate (`crate::network::RateFloor`) fails as "too slow"; a stalled
//! download is not retried here (a context is fetched once, and a new build starts over).

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

/// Streams the tarball at `url` into `dir`.
pub async fn extract_url(url: &str, dir: &Path) -> Result<()> {
    let resp = get(url).await?;
    extract_async(body_reader(resp), dir, url).await
}

/// Downloads `url` (a Dockerfile) to `file`.
pub async fn download_file(url: &str, file: &Path) -> Result<()> {
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
