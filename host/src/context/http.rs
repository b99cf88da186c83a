//! `https://host/context.tar.gz`: a tarball streamed from a web server into the context
//! directory, and `--dockerfile https://…` downloaded to a file. TLS is rustls with the
//! system's CA certificates.

use std::path::Path;

use futures_util::TryStreamExt;
use tokio::io::AsyncWriteExt;

use super::{extract_async, Error, Result};
use crate::error::chain as error_chain;

fn client(url: &str) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Fetch {
            url: url.to_string(),
            detail: format!("http client: {e}"),
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
            detail: error_chain(&e),
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

/// A response body as an `AsyncRead`.
fn body_reader(resp: reqwest::Response) -> impl tokio::io::AsyncRead + Unpin + Send + 'static {
    tokio_util::io::StreamReader::new(resp.bytes_stream().map_err(std::io::Error::other))
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
