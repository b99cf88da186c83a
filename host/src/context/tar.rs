//! `tar://PATH` and `tar://stdin`: a plain or gzipped tarball on disk or piped in, extracted
//! into the context directory with the base-layer rules (see `super::extract_reader`).

use std::path::Path;

use super::{extract_reader, Error, Result};

/// Extracts the tarball at `path` into `dir`; returns the `sha256:` of its bytes.
pub async fn extract_file(path: &Path, dir: &Path) -> Result<String> {
    let url = format!("tar://{}", path.display());
    let file = std::fs::File::open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound { url: url.clone() },
        _ => Error::Io {
            url: url.clone(),
            op: "open",
            source,
        },
    })?;
    let dir = dir.to_path_buf();
    blocking(&url, move |url| extract_reader(file, &dir, url)).await
}

/// Extracts the tarball piped to kiln's standard input into `dir`; returns the `sha256:`
/// of the bytes read.
pub async fn extract_stdin(dir: &Path) -> Result<String> {
    let dir = dir.to_path_buf();
    blocking("tar://stdin", move |url| {
        extract_reader(std::io::stdin().lock(), &dir, url)
    })
    .await
}

async fn blocking<F>(url: &str, f: F) -> Result<String>
where
    F: FnOnce(&str) -> Result<String> + Send + 'static,
{
    let owned = url.to_string();
    tokio::task::spawn_blocking(move || f(&owned))
        .await
        .map_err(|e| Error::Fetch {
            url: url.to_string(),
            detail: format!("extraction stopped: {e}"),
        })?
}
