//! `s3://bucket/key`: a context tarball in S3 or an S3-compatible store, streamed into the
//! context directory with `object_store`'s S3 client.
//!
//! Configuration follows kaniko and the AWS tools: `S3_ENDPOINT` (a custom endpoint, plain
//! HTTP allowed), `S3_FORCE_PATH_STYLE=true` (path-style requests; virtual-hosted otherwise),
//! the `AWS_*` variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`/`AWS_DEFAULT_REGION`, web identity and container credentials), the shared
//! credentials file for `AWS_PROFILE`, the instance metadata service, and anonymous access
//! when none of those exists.

use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{extract_async, metadata_server_reachable, Error, Result};
use crate::error::chain as error_chain;

/// Streams `s3://bucket/key` into `dir`; returns the `sha256:` of its bytes and the ETag
/// the store gave.
pub async fn extract_object(
    bucket: &str,
    key: &str,
    dir: &Path,
) -> Result<(String, Option<String>)> {
    let url = format!("s3://{bucket}/{key}");
    let store = store(bucket, &url)?;
    let got = store
        .get(&object_store::path::Path::from(key))
        .await
        .map_err(|e| classify(&url, e))?;
    let etag = got.meta.e_tag.clone();
    let stream_url = url.clone();
    let stream = got
        .into_stream()
        .map_err(move |e| std::io::Error::other(classify(&stream_url, e)));
    let digest = extract_async(tokio_util::io::StreamReader::new(stream), dir, &url).await?;
    Ok((digest, etag))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn store(bucket: &str, url: &str) -> Result<impl ObjectStore> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    builder = builder.with_region(&region);
    let path_style = env("S3_FORCE_PATH_STYLE").is_some_and(|v| v == "true" || v == "1");
    if let Some(endpoint) = env("S3_ENDPOINT") {
        let endpoint = if endpoint.contains("://") {
            endpoint
        } else {
            format!("https://{endpoint}")
        };
        let endpoint = endpoint.trim_end_matches('/').to_string();
        builder = builder.with_allow_http(endpoint.starts_with("http://"));
        builder = if path_style {
            builder.with_endpoint(endpoint)
        } else {
            // virtual-hosted style: the bucket is part of the host
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", &endpoint));
            builder
                .with_endpoint(format!("{scheme}://{bucket}.{host}"))
                .with_virtual_hosted_style_request(true)
        };
    } else {
        builder = builder.with_virtual_hosted_style_request(!path_style);
    }
    let env_keys = env("AWS_ACCESS_KEY_ID").is_some();
    if !env_keys {
        if let Some((id, secret, token)) = shared_credentials() {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
        } else if env("AWS_WEB_IDENTITY_TOKEN_FILE").is_none()
            && env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_none()
            && env("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_none()
            && !metadata_server_reachable()
        {
            tracing::info!("no AWS credentials found: reading {url} anonymously");
            builder = builder.with_skip_signature(true);
        }
    }
    builder.build().map_err(|e| Error::Fetch {
        url: url.to_string(),
        detail: format!("S3 client: {}", error_chain(&e)),
    })
}

/// `aws_access_key_id`, `aws_secret_access_key` and `aws_session_token` of `AWS_PROFILE`
/// (else `default`) in the shared credentials file.
pub(crate) fn shared_credentials() -> Option<(String, String, Option<String>)> {
    let file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    parse_credentials(&text, &profile)
}

fn parse_credentials(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut in_profile = false;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some((id?, secret?, token))
}

fn classify(url: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound {
            url: url.to_string(),
        },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Error::Denied {
            url: url.to_string(),
            detail: error_chain(&e),
        },
        e => Error::Fetch {
            url: url.to_string(),
            detail: error_chain(&e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_profile() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[ci]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n";
        assert_eq!(
            parse_credentials(text, "default"),
            Some(("A".into(), "B".into(), None))
        );
        assert_eq!(
            parse_credentials(text, "ci"),
            Some(("C".into(), "D".into(), Some("T".into())))
        );
        assert_eq!(parse_credentials(text, "other"), None);
    }
}
