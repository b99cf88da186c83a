//! Build contexts: turns what `--context` names (a directory, a tarball on disk or stdin, a
//! `gs://` or `s3://` object, a git repository, an `https://` tarball) into a local directory,
//! and `--dockerfile` (a path in the context, an absolute path, an `https://` URL) into a file.
//!
//! Remote archives stream from the network straight into `layer::extract` (no archive is
//! ever held whole in memory or on disk), so the same no-escape rules as base layers apply:
//! every entry is resolved inside the fetched directory with chroot semantics. Progress is
//! logged in bytes. One file per source (`tar`, `http`, `gcs`, `s3`, `git`); what happens to
//! the directory afterwards (`.dockerignore`, COPY) is the build's business.
//!
//! The same network sources feed `ADD`: `add_url` downloads an `http(s)://` file and
//! `add_git` checks out a git repository, each into a scratch root of its own that the guest
//! then copies from.

pub mod add_git;
pub mod add_url;
mod gcs;
pub mod git;
mod http;
pub(crate) mod s3;
mod tar;

use std::io::Read;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::AsyncRead;

use crate::layer::extract;
use crate::rootfs::{self, Root};

/// The object a bucket URL without an object names, as kaniko reads it.
pub const BUCKET_CONTEXT_OBJECT: &str = "context.tar.gz";

/// Where cloud metadata servers (GCE, EC2) answer, when there is one.
const METADATA_ADDR: &str = "169.254.169.254:80";

/// How often streamed downloads report their progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("context {spec}: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: access denied ({detail}): check the credentials")]
    Denied { url: String, detail: String },
    #[error("{url}: {detail}")]
    Fetch { url: String, detail: String },
    #[error("{url}: bad archive: {source}")]
    Archive { url: String, source: rootfs::Error },
    #[error("{url}: {op}: {source}")]
    Io {
        url: String,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("--context-sub-path {sub_path}: not a directory in context {url}")]
    SubPath { sub_path: String, url: String },
    #[error("dockerfile {path}: not found")]
    DockerfileNotFound { path: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Where a build context comes from: `--context` parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// a local directory (`PATH` or `dir://PATH`)
    Dir(PathBuf),
    /// `tar://PATH` (plain or gzip)
    TarFile(PathBuf),
    /// `tar://stdin`
    TarStdin,
    /// `gs://bucket/object`
    Gcs { bucket: String, object: String },
    /// `s3://bucket/key`
    S3 { bucket: String, key: String },
    /// `git://…` or `https://…/repo.git`, with an optional ref and commit after `#`
    Git(git::GitSource),
    /// `https://host/context.tar.gz` (or `http://`)
    Http(String),
}

impl Source {
    /// Parses a `--context` value the way kaniko does.
    pub fn parse(spec: &str) -> Result<Source> {
        let bad = |reason: &str| Error::BadSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let Some((scheme, rest)) = spec.split_once("://") else {
            return Ok(Source::Dir(PathBuf::from(spec)));
        };
        match scheme {
            "dir" => Ok(Source::Dir(PathBuf::from(rest))),
            "tar" if rest == "stdin" => Ok(Source::TarStdin),
            "tar" if rest.is_empty() => Err(bad("tar:// needs a path or stdin")),
            "tar" => Ok(Source::TarFile(PathBuf::from(rest))),
            "gs" | "s3" => {
                let (bucket, object) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("no bucket named"));
                }
                let object = if object.is_empty() || object.ends_with('/') {
                    format!("{object}{BUCKET_CONTEXT_OBJECT}")
                } else {
                    object.to_string()
                };
                Ok(if scheme == "gs" {
                    Source::Gcs {
                        bucket: bucket.to_string(),
                        object,
                    }
                } else {
                    Source::S3 {
                        bucket: bucket.to_string(),
                        key: object,
                    }
                })
            }
            "git" => Ok(Source::Git(git::GitSource::parse(spec)?)),
            "http" | "https" => {
                let url = spec.split('#').next().unwrap_or(spec);
                if url.ends_with(".git") || spec.contains(".git#") {
                    Ok(Source::Git(git::GitSource::parse(spec)?))
                } else {
                    Ok(Source::Http(spec.to_string()))
                }
            }
            other => Err(bad(&format!(
                "unknown scheme {other}:// (use a directory, dir://, tar://, gs://, s3://, git://, https://)"
            ))),
        }
    }

    /// Whether the context is the user's own directory (never removed by kiln).
    fn is_local_dir(&self) -> bool {
        matches!(self, Source::Dir(_))
    }
}

/// `--git` options, as kaniko spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitOptions {
    pub branch: Option<String>,
    pub single_branch: bool,
    pub recurse_submodules: bool,
    pub insecure_skip_tls: bool,
    /// the hosts that may receive the git credentials (not a `--git` key: the git
    /// context's host and `GIT_CREDENTIAL_HOSTS`, see [`git::credential_hosts`])
    pub credential_hosts: Vec<String>,
}

impl GitOptions {
    /// Parses `branch=…,single-branch=…,recurse-submodules=…,insecure-skip-tls=…`.
    pub fn parse(text: &str) -> std::result::Result<GitOptions, String> {
        let mut opts = GitOptions::default();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part}: expected KEY=VALUE"))?;
            let flag = || match value.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(format!("{key}={other}: expected true or false")),
            };
            match key.trim() {
                "branch" => opts.branch = Some(value.trim().to_string()).filter(|b| !b.is_empty()),
                "single-branch" => opts.single_branch = flag()?,
                "recurse-submodules" => opts.recurse_submodules = flag()?,
                "insecure-skip-tls" => opts.insecure_skip_tls = flag()?,
                other => {
                    return Err(format!(
                        "unknown key {other} (branch, single-branch, recurse-submodules, insecure-skip-tls)"
                    ))
                }
            }
        }
        Ok(opts)
    }
}

/// Everything the CLI says about the context and the Dockerfile.
#[derive(Debug, Clone)]
pub struct Request {
    /// the `--context` value as typed, for messages
    pub spec: String,
    pub source: Source,
    /// `--context-sub-path`
    pub sub_path: Option<String>,
    /// `--dockerfile` as typed: a path or an `https://` URL
    pub dockerfile: Option<String>,
    pub git: GitOptions,
}

/// What a context was built from, as the provenance records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// a local directory: named, never hashed (BuildKit's local source)
    Local,
    /// a git repository (its URL with ref as typed, credentials masked) and the full id of
    /// the commit checked out
    Git { url: String, commit: String },
    /// an archive (`tar://`, `https://`, `gs://`, `s3://`): the `sha256:` of the bytes
    /// fetched, and the stored object's version where the store names one (`generation` of
    /// a `gs://` object, `etag` of an `s3://` one)
    Archive {
        url: String,
        digest: String,
        version: Option<(&'static str, String)>,
    },
}

/// A context ready to build from; a fetched one is removed when this is dropped.
#[derive(Debug)]
pub struct Prepared {
    /// the context directory (with `--context-sub-path` applied)
    pub dir: PathBuf,
    pub dockerfile: PathBuf,
    /// what the context was fetched from
    pub origin: Origin,
    /// what kiln fetched and must remove afterwards
    scratch: Option<PathBuf>,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %dir.display(), error = %e, "could not remove fetched context");
                }
            }
        }
    }
}

/// Fetches the context (when it is not a local directory) under `kiln_dir`, applies the
/// sub-path and finds the Dockerfile.
pub async fn prepare(req: &Request, kiln_dir: &Path) -> Result<Prepared> {
    let mut prepared = Prepared {
        dir: PathBuf::new(),
        dockerfile: PathBuf::new(),
        origin: Origin::Local,
        scratch: None,
    };
    let base = if let Source::Dir(dir) = &req.source {
        dir.clone()
    } else {
        let scratch = kiln_dir.join(format!("context-{}", std::process::id()));
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch).map_err(io(&scratch, "clearing"))?;
        }
        std::fs::create_dir_all(&scratch).map_err(io(&scratch, "creating"))?;
        prepared.scratch = Some(scratch.clone());
        let dir = scratch.join("context");
        std::fs::create_dir(&dir).map_err(io(&dir, "creating"))?;
        prepared.origin = fetch(req, &dir).await?;
        dir
    };
    prepared.dir = match &req.sub_path {
        None => base,
        Some(sub) => sub_dir(&base, sub).ok_or_else(|| Error::SubPath {
            sub_path: sub.clone(),
            url: req.spec.clone(),
        })?,
    };
    if !prepared.dir.is_dir() {
        return Err(Error::BadSpec {
            spec: req.spec.clone(),
            reason: "not a directory".into(),
        });
    }
    prepared.dockerfile = match req.dockerfile.as_deref() {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
            let scratch = match &prepared.scratch {
                Some(s) => s.clone(),
                None => {
                    let s = kiln_dir.join(format!("context-{}", std::process::id()));
                    std::fs::create_dir_all(&s).map_err(io(&s, "creating"))?;
                    prepared.scratch = Some(s.clone());
                    s
                }
            };
            let file = scratch.join("Dockerfile");
            http::download_file(url, &file).await?;
            file
        }
        other => find_dockerfile(other, &prepared.dir, req.source.is_local_dir())?,
    };
    Ok(prepared)
}

/// Fetches a remote context into `dir`; returns what was fetched.
async fn fetch(req: &Request, dir: &Path) -> Result<Origin> {
    tracing::info!(context = %req.spec, "fetching build context");
    let url = crate::redaction::redact(&req.spec).into_owned();
    let archive = |digest: String| Origin::Archive {
        url: url.clone(),
        digest,
        version: None,
    };
    Ok(match &req.source {
        Source::Dir(_) => Origin::Local,
        Source::TarFile(path) => archive(tar::extract_file(path, dir).await?),
        Source::TarStdin => archive(tar::extract_stdin(dir).await?),
        Source::Http(u) => archive(http::extract_url(u, dir).await?),
        Source::Gcs { bucket, object } => {
            let (digest, generation) = gcs::extract_object(bucket, object, dir).await?;
            Origin::Archive {
                url,
                digest,
                version: Some(("generation", generation.to_string())),
            }
        }
        Source::S3 { bucket, key } => {
            let (digest, etag) = s3::extract_object(bucket, key, dir).await?;
            Origin::Archive {
                url,
                digest,
                version: etag.map(|e| ("etag", e)),
            }
        }
        Source::Git(src) => {
            git::clone_into(src, &req.git, dir).await?;
            Origin::Git {
                url: crate::redaction::redact(&src.display()).into_owned(),
                commit: git::head_commit(src, dir).await?,
            }
        }
    })
}

/// `--context-sub-path`: a directory inside the context, its symlinks resolved inside the
/// context (a link to `/etc` names the context's `etc`, never the host's); `None` when that
/// is not a directory.
fn sub_dir(base: &Path, sub: &str) -> Option<PathBuf> {
    let root = Root::open(base).ok()?;
    let (_, resolved) = root.subroot(sub).ok()?;
    Some(base.join(std::ffi::OsStr::from_bytes(&resolved)))
}

/// A path inside the context with its symlinks resolved inside the context.
fn in_context(context: &Path, rel: &Path) -> PathBuf {
    match Root::open(context).and_then(|root| root.resolve(rel.as_os_str().as_bytes())) {
        Ok(resolved) => context.join(std::ffi::OsStr::from_bytes(&resolved)),
        // the context cannot be opened: nothing there to find
        Err(_) => context.join(rootfs::clean(&rel.to_string_lossy())),
    }
}

/// The part of `path` (absolute, or relative to the working directory) below `context`,
/// compared lexically; `None` when it lies outside.
fn below_context(context: &Path, path: &Path) -> Option<PathBuf> {
    let lexical = |p: &Path| -> Option<PathBuf> {
        let abs = std::path::absolute(p).ok()?;
        Some(PathBuf::from(format!(
            "/{}",
            rootfs::clean(&abs.to_string_lossy())
        )))
    };
    let (context, path) = (lexical(context)?, lexical(path)?);
    path.strip_prefix(&context).ok().map(Path::to_path_buf)
}

/// `--dockerfile`: absent means `<context>/Dockerfile`; an existing path (absolute, or
/// relative to the working directory for a local context) is used as is; otherwise a
/// relative path is looked up in the context. A path in the context is resolved inside it:
/// a `Dockerfile` that links to a host file names the context's copy of that path.
fn find_dockerfile(given: Option<&str>, context: &Path, local: bool) -> Result<PathBuf> {
    let path = match given {
        None => in_context(context, Path::new("Dockerfile")),
        Some(p) => {
            let p = Path::new(p);
            if p.is_absolute() || (local && p.is_file()) {
                match below_context(context, p) {
                    Some(rel) => in_context(context, &rel),
                    None => p.to_path_buf(),
                }
            } else {
                in_context(context, p)
            }
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::DockerfileNotFound {
            path: path.display().to_string(),
        })
    }
}

/// Whether a cloud metadata server answers (short timeout): decides between instance
/// credentials and anonymous access.
fn metadata_server_reachable() -> bool {
    METADATA_ADDR
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
        })
}

fn io<'a>(path: &'a Path, op: &'static str) -> impl Fn(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        url: path.display().to_string(),
        op,
        source,
    }
}

/// Counts and hashes the bytes read and logs them every few seconds.
struct Progress<R> {
    inner: R,
    url: String,
    bytes: u64,
    /// the sha256 of every byte read (the archive as fetched, for the provenance)
    hasher: sha2::Sha256,
    last: Instant,
    started: Instant,
}

impl<R> Progress<R> {
    fn new(inner: R, url: &str) -> Progress<R> {
        let now = Instant::now();
        Progress {
            inner,
            url: url.to_string(),
            bytes: 0,
            hasher: sha2::Sha256::default(),
            last: now,
            started: now,
        }
    }

    fn done(&self) {
        tracing::info!(
            url = %self.url,
            bytes = self.bytes,
            secs = format!("{:.1}", self.started.elapsed().as_secs_f64()),
            "context fetched"
        );
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            tracing::info!(url = %self.url, bytes = self.bytes, "fetching context");
        }
        Ok(n)
    }
}

/// Extracts a (possibly gzipped) tar stream into `dir` with the base-layer rules, on a
/// blocking thread. `url` names the source in errors and progress. Returns the `sha256:` of
/// every byte read (the archive as fetched, compressed or not).
fn extract_reader(reader: impl Read, dir: &Path, url: &str) -> Result<String> {
    let root = Root::open(dir).map_err(|source| Error::Archive {
        url: url.to_string(),
        source,
    })?;
    let mut progress = Progress::new(reader, url);
    extract::extract(
        &root,
        "",
        &mut progress,
        extract::Whiteouts::Keep,
        "context",
    )
    .map_err(|source| Error::Archive {
        url: url.to_string(),
        source,
    })?;
    // drain what follows the tar's end marker, so a truncated download still fails
    let mut sink = [0u8; 8192];
    while progress.read(&mut sink).map_err(|source| Error::Io {
        url: url.to_string(),
        op: "read",
        source,
    })? > 0
    {}
    progress.done();
    let hash = sha2::Digest::finalize(progress.hasher);
    Ok(format!("sha256:{}", hex::encode(hash)))
}

/// Extracts an async byte stream (a download) into `dir`: the stream is read on a blocking
/// thread as it arrives, so only a few buffers are ever in memory. Returns the `sha256:` of
/// the bytes read.
async fn extract_async<R>(reader: R, dir: &Path, url: &str) -> Result<String>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let dir = dir.to_path_buf();
    let url_owned = url.to_string();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let bridge = tokio_util::io::SyncIoBridge::new_with_handle(reader, handle);
        extract_reader(bridge, &dir, &url_owned)
    })
    .await
    .map_err(|e| Error::Fetch {
        url: url.to_string(),
        detail: format!("extraction stopped: {e}"),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_context_specs() {
        for (spec, want) in [
            (".", Source::Dir(".".into())),
            ("dir:///work/ctx", Source::Dir("/work/ctx".into())),
            ("tar://ctx.tar.gz", Source::TarFile("ctx.tar.gz".into())),
            ("tar://stdin", Source::TarStdin),
            (
                "gs://b/path/context.tar.gz",
                Source::Gcs {
                    bucket: "b".into(),
                    object: "path/context.tar.gz".into(),
                },
            ),
            (
                "gs://b",
                Source::Gcs {
                    bucket: "b".into(),
                    object: "context.tar.gz".into(),
                },
            ),
            (
                "s3://b/dir/",
                Source::S3 {
                    bucket: "b".into(),
                    key: "dir/context.tar.gz".into(),
                },
            ),
            (
                "https://example.com/ctx.tar.gz",
                Source::Http("https://example.com/ctx.tar.gz".into()),
            ),
        ] {
            assert_eq!(Source::parse(spec).unwrap(), want, "{spec}");
        }
        assert!(matches!(
            Source::parse("git://h/r.git#refs/heads/b#0123456789abcdef0123456789abcdef01234567")
                .unwrap(),
            Source::Git(_)
        ));
        assert!(matches!(
            Source::parse("https://h/r.git#main").unwrap(),
            Source::Git(_)
        ));
        for bad in ["ftp://x/y", "gs://", "tar://"] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_git_options() {
        let o = GitOptions::parse(
            "branch=dev,single-branch=true,recurse-submodules=false,insecure-skip-tls=true",
        )
        .unwrap();
        assert_eq!(o.branch.as_deref(), Some("dev"));
        assert!(o.single_branch && o.insecure_skip_tls && !o.recurse_submodules);
        assert!(GitOptions::parse("depth=1").is_err());
        assert!(GitOptions::parse("single-branch=yes").is_err());
    }

    #[test]
    fn sub_path_and_dockerfile_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::fs::create_dir_all(base.join("app")).unwrap();
        std::os::unix::fs::symlink("/etc", base.join("hostetc")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", base.join("Dockerfile")).unwrap();
        assert_eq!(sub_dir(base, "../../etc").unwrap(), base.join("etc"));
        assert_eq!(sub_dir(base, "/app/").unwrap(), base.join("app"));
        assert_eq!(sub_dir(base, ".").unwrap(), base);
        assert_eq!(sub_dir(base, "hostetc").unwrap(), base.join("etc"));
        assert!(sub_dir(base, "nope").is_none());
        assert!(find_dockerfile(None, base, true).is_err());
        let given = base.join("Dockerfile");
        assert!(find_dockerfile(given.to_str(), base, true).is_err());
        assert_eq!(
            below_context(Path::new("/k/ctx"), Path::new("/k/ctx/./a/../Dockerfile")),
            Some(PathBuf::from("Dockerfile"))
        );
        assert_eq!(
            below_context(Path::new("/k/ctx"), Path::new("/k/other")),
            None
        );
    }
}
