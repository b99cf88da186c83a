//! `gs://bucket/object`: a context tarball in Google Cloud Storage, streamed into the context
//! directory with the `google-cloud-storage` client.
//!
//! Credentials: Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, the gcloud
//! ADC file, the metadata server on GCE/GKE); anonymous when none of those exists (public
//! buckets) or when `STORAGE_EMULATOR_HOST` points at an emulator, whose address the client
//! does not read by itself.

use std::path::Path;

use google_cloud_storage::client::Storage;

use super::{extract_async, metadata_server_reachable, Error, Result};
use crate::error::chain;

/// Streams `gs://bucket/object` into `dir`; returns the `sha256:` of its bytes and the
/// generation read.
pub async fn extract_object(bucket: &str, object: &str, dir: &Path) -> Result<(String, i64)> {
    let url = format!("gs://{bucket}/{object}");
    let client = client(&url).await?;
    let resp = client
        .read_object(format!("projects/_/buckets/{bucket}"), object)
        .send()
        .await
        .map_err(|e| classify(&url, &e))?;
    let generation = resp.object().generation;
    let reader_url = url.clone();
    let stream = futures_util::stream::unfold(resp, move |mut resp| {
        let url = reader_url.clone();
        async move {
            let chunk = resp.next().await?;
            Some((
                chunk.map_err(|e| std::io::Error::other(classify(&url, &e))),
                resp,
            ))
        }
    });
    let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
    let digest = extract_async(reader, dir, &url).await?;
    Ok((digest, generation))
}

async fn client(url: &str) -> Result<Storage> {
    let mut builder = Storage::builder();
    if let Some(host) = std::env::var("STORAGE_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.is_empty())
    {
        let endpoint = if host.contains("://") {
            host
        } else {
            format!("http://{host}")
        };
        tracing::info!(endpoint = %endpoint, "using the storage emulator");
        builder = builder
            .with_endpoint(endpoint)
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
    } else if !has_default_credentials() {
        tracing::info!("no Google credentials found: reading {url} anonymously");
        builder = builder
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build());
    }
    builder.build().await.map_err(|e| Error::Denied {
        url: url.to_string(),
        detail: format!("loading Google credentials: {}", chain(&e)),
    })
}

/// Whether Application Default Credentials have something to work with.
fn has_default_credentials() -> bool {
    if std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some_and(|v| !v.is_empty())
        || std::env::var_os("GCE_METADATA_HOST").is_some_and(|v| !v.is_empty())
    {
        return true;
    }
    let config = std::env::var_os("CLOUDSDK_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config/gcloud")));
    if config.is_some_and(|c| c.join("application_default_credentials.json").is_file()) {
        return true;
    }
    metadata_server_reachable()
}

fn classify(url: &str, e: &google_cloud_storage::Error) -> Error {
    match e.http_status_code() {
        Some(404) => Error::NotFound {
            url: url.to_string(),
        },
        Some(code @ (401 | 403)) => Error::Denied {
            url: url.to_string(),
            detail: format!("HTTP {code}"),
        },
        _ if e.is_authentication() => Error::Denied {
            url: url.to_string(),
            detail: chain(e),
        },
        _ if e
            .status()
            .is_some_and(|s| format!("{:?}", s.code) == "NotFound") =>
        {
            Error::NotFound {
                url: url.to_string(),
            }
        }
        _ => Error::Fetch {
            url: url.to_string(),
            detail: chain(e),
        },
    }
}
