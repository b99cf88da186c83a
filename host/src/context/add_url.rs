//! `ADD <url>`: fetches an `http://` or `https://` source into a scratch root of its own, as
//! BuildKit's HTTP source does: the file is named after the last segment of the URL path
//! (`__unnamed__` when there is none), has mode 0600 and owner 0:0, takes its mtime from the
//! `Last-Modified` header, and is checked against `--checksum` when one is given. URL sources
//! are never unpacked. A server that stalls (no byte for the idle timeout of `http.rs`, before
//! the answer or within the body: "timed out"), one slower than the minimum rate
//! (`crate::network::RateFloor`: "too slow"), a reset or a 5xx is started again from zero;
//! after the last attempt the step fails naming the URL and the cause. Where the file lands is the guest's business, as for any COPY source.

use std::io::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest as _, Sha256};

use crate::rootfs::{Meta, Root};

/// Mode of a downloaded file (BuildKit's default for HTTP sources).
const URL_FILE_MODE: u32 = 0o600;

/// Whether an ADD source is a URL kiln downloads.
pub(crate) fn is_http_url(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The name a URL's file gets: the last segment of its path, else `__unnamed__`.
pub(crate) fn file_name(url: &reqwest::Url) -> String {
    url.path_segments()
        .and_then(|mut segments| segments.rfind(|s| !s.is_empty()).map(str::to_string))
        .map(|s| percent_decode(&s))
        .filter(|s| s != "." && s != ".." && !s.contains('/'))
        .unwrap_or_else(|| "__unnamed__".to_string())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `--checksum=sha256:<hex>` into the expected hex digest.
pub(crate) fn parse_checksum(value: &str) -> Result<String> {
    let Some((algo, hex)) = value.split_once(':') else {
        bail!("invalid --checksum {value:?}: expected sha256:<64 hex digits>");
    };
    if algo != "sha256" {
        bail!("unsupported --checksum algorithm {algo:?} in {value:?} (only sha256 is supported)");
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("invalid --checksum {value:?}: expected sha256:<64 hex digits>");
    }
    Ok(hex.to_ascii_lowercase())
}

/// Downloads `url` into a new root at `dir`; returns the root and the file's name in it. A
/// failed download (timeout, reset, cut short, too slow, 5xx) is started again from zero, as
/// `http::retrying` says; the last error names the URL and the number of attempts.
pub(crate) async fn fetch(url: &str, checksum: Option<&str>, dir: &Path) -> Result<(Root, String)> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid URL {url}"))?;
    let name = file_name(&parsed);
    let client = super::http::timed_client(|b| b).context("setting up an HTTP client")?;
    let root = Root::create(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (mtime, got) = super::http::retrying(
        url,
        |e: &Attempt| e.permanent,
        || download(&client, &parsed, url, &root, &name),
    )
    .await
    .map_err(|e| {
        if e.permanent {
            e.error
        } else {
            e.error.context(format!(
                "gave up on {url} after {} attempts",
                super::http::ATTEMPTS
            ))
        }
    })?;
    if let Some(want) = checksum {
        let want = parse_checksum(want)?;
        if got != want {
            return Err(anyhow!(
                "checksum of {url} does not match: expected sha256:{want}, got sha256:{got}"
            ));
        }
    }
    if let Some(secs) = mtime {
        let meta = Meta {
            mtime: Some((secs, 0)),
            ..Meta::default()
        };
        root.set_meta(&name, &meta)
            .with_context(|| format!("setting the time of {url}"))?;
    }
    Ok((root, name))
}

/// A failed download attempt, and whether another one could do better.
struct Attempt {
    error: anyhow::Error,
    permanent: bool,
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// One attempt: GETs `url` into `root/name` (replacing what an earlier attempt left); returns
/// the `Last-Modified` time and the sha256 of the content.
async fn download(
    client: &reqwest::Client,
    parsed: &reqwest::Url,
    url: &str,
    root: &Root,
    name: &str,
) -> std::result::Result<(Option<i64>, String), Attempt> {
    let transient = |error: anyhow::Error| Attempt {
        error,
        permanent: false,
    };
    let mut resp = client
        .get(parsed.clone())
        .send()
        .await
        .map_err(|e| transient(anyhow!("fetching {url}: {}", super::http::describe(&e))))?;
    let status = resp.status();
    if !status.is_success() {
        let error = anyhow!("fetching {url}: the server answered {status}");
        let retry = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
        return Err(Attempt {
            error,
            permanent: !retry,
        });
    }
    let mtime = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::network::parse_http_date);
    let storing = |e: crate::rootfs::Error| Attempt {
        error: anyhow::Error::new(e).context(format!("storing {url}")),
        permanent: true,
    };
    let mut file = root.create_file(name, URL_FILE_MODE).map_err(storing)?;
    let mut hasher = Sha256::new();
    let mut floor = crate::network::RateFloor::from_env();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| transient(anyhow!("reading {url}: {}", super::http::describe(&e))))?
    {
        floor
            .note(chunk.len() as u64)
            .map_err(|why| transient(anyhow!("reading {url}: {why}")))?;
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|e| Attempt {
            error: anyhow::Error::new(e).context(format!("storing {url}")),
            permanent: true,
        })?;
    }
    file.sync_all().ok();
    Ok((mtime, hex::encode(hasher.finalize())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_files_like_buildkit() {
        for (url, want) in [
            ("https://example.com/a/b.tar.gz", "b.tar.gz"),
            ("https://example.com/a/dir/", "dir"),
            ("https://example.com/", "__unnamed__"),
            ("https://example.com", "__unnamed__"),
            ("http://h:8080/x%20y?q=1#f", "x y"),
        ] {
            let parsed = reqwest::Url::parse(url).unwrap();
            assert_eq!(file_name(&parsed), want, "url {url}");
        }
    }

    #[test]
    fn checks_checksum_syntax() {
        let hex = "a".repeat(64);
        assert_eq!(parse_checksum(&format!("sha256:{hex}")).unwrap(), hex);
        for bad in ["sha256:abc", "md5:00", "nocolon", &format!("sha512:{hex}")] {
            assert!(parse_checksum(bad).is_err(), "{bad}");
        }
    }
}
