//! Git contexts: `git://host/repo.git#ref#commit` (fetched over `GIT_PULL_METHOD`, `https` by
//! default, as kaniko does; `http`, or `git` for the native protocol) and
//! `https://host/repo.git#ref`. Cloned with gitoxide (no `git` binary: the executor image has
//! none), HTTP over reqwest with rustls.
//!
//! `--git branch=…` picks the ref (a branch or tag name, or a full ref), `single-branch=true`
//! fetches only it, `insecure-skip-tls=true` accepts any server certificate. `GIT_TOKEN`, or
//! `GIT_USERNAME`/`GIT_PASSWORD`, are sent as basic credentials when the server asks, and only
//! to the host of the git `--context` or a host `GIT_CREDENTIAL_HOSTS` names. A
//! commit after the ref (or in its place) is checked out detached. `.git` stays in the
//! context, as with kaniko.
//!
//! [`fetch`] is the same clone for callers outside the context (an `ADD` of a git URL), which
//! build a [`GitSource`] themselves.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::{Error, GitOptions, Result};
use crate::error::chain as error_chain;

/// Where a git context comes from: `--context` split at `#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// the URL clone fetches from (scheme resolved)
    pub url: String,
    /// the ref after the first `#`, if any (a branch, tag or full ref name)
    pub reference: Option<String>,
    /// the commit to check out, if any
    pub commit: Option<String>,
}

fn is_hash(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl GitSource {
    /// Parses `git://host/repo#ref#commit` or `https://host/repo.git#ref`. For `git://`, the
    /// scheme actually used is `GIT_PULL_METHOD` (`https` unless set to `http` or `git`).
    pub fn parse(spec: &str) -> Result<GitSource> {
        let mut parts = spec.split('#');
        let location = parts.next().unwrap_or_default();
        let first = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
        let second = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
        if parts.next().is_some() {
            return Err(Error::BadSpec {
                spec: spec.to_string(),
                reason: "expected URL#REF#COMMIT at most".into(),
            });
        }
        let url = match location.strip_prefix("git://") {
            Some(rest) => {
                let method = std::env::var("GIT_PULL_METHOD").unwrap_or_default();
                let scheme = match method.as_str() {
                    "http" | "git" => method.as_str(),
                    _ => "https",
                };
                format!("{scheme}://{rest}")
            }
            None => location.to_string(),
        };
        if url
            .split_once("://")
            .is_none_or(|(_, rest)| rest.is_empty())
        {
            return Err(Error::BadSpec {
                spec: spec.to_string(),
                reason: "no repository named".into(),
            });
        }
        let (reference, commit) = match (first, second) {
            (Some(r), None) if is_hash(&r) => (None, Some(r)),
            (r, c) => (r, c),
        };
        if let Some(c) = &commit {
            if !is_hash(c) {
                return Err(Error::BadSpec {
                    spec: spec.to_string(),
                    reason: format!("{c}: not a commit id"),
                });
            }
        }
        Ok(GitSource {
            url,
            reference,
            commit,
        })
    }

    /// The URL with its ref and commit, as errors name it.
    pub fn display(&self) -> String {
        let mut text = self.url.clone();
        for part in [&self.reference, &self.commit].into_iter().flatten() {
            text.push('#');
            text.push_str(part);
        }
        text
    }
}

/// Clones `src` into `dir` (which must be empty) per `opts`. A clone cut by the network (a
/// timeout, a reset, a 5xx) starts again from an empty `dir`, [`super::http::ATTEMPTS`] times in
/// all; a refusal, a missing repository or ref fails at once.
pub async fn clone_into(src: &GitSource, opts: &GitOptions, dir: &Path) -> Result<()> {
    let url = src.display();
    let mut tried = 0;
    let result = super::http::retrying(
        &url,
        |e| !is_transient(e),
        || {
            tried += 1;
            let first = tried == 1;
            let (src, opts, dir) = (src.clone(), opts.clone(), dir.to_path_buf());
            let url = url.clone();
            async move {
                if !first {
                    empty_dir(&dir, &url)?;
                }
                // gitoxide's HTTP transport runs its own blocking client: keep it off the async
                // threads
                let (tx, rx) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(clone_blocking(&src, &opts, &dir, 0));
                });
                rx.await.map_err(|_| Error::Fetch {
                    url,
                    detail: "the clone stopped unexpectedly".into(),
                })?
            }
        },
    )
    .await;
    match result {
        Err(Error::Fetch { url, detail }) if tried > 1 => Err(Error::Fetch {
            url,
            detail: format!("{detail} (gave up after {tried} attempts)"),
        }),
        other => other,
    }
}

/// Whether a clone's failure came from the network and may pass on a new attempt.
fn is_transient(e: &Error) -> bool {
    let Error::Fetch { detail, .. } = e else {
        return false;
    };
    let lower = detail.to_lowercase();
    [
        "timed out",
        "timeout",
        "too slow",
        "reset",
        "broken pipe",
        "connection",
        "unexpected eof",
        "end of file",
        " 500",
        " 502",
        " 503",
        " 504",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// Removes what a failed clone left in `dir`, keeping (or making again) `dir` itself.
fn empty_dir(dir: &Path, url: &str) -> Result<()> {
    let io = |source| Error::Io {
        url: url.to_string(),
        op: "emptying the clone directory",
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        // a failed clone may remove the directory it made
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return std::fs::create_dir_all(dir).map_err(io);
        }
        other => other.map_err(io)?,
    };
    for entry in entries {
        let path = entry.map_err(io)?.path();
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io)?;
    }
    Ok(())
}

/// Clones `src` into `dir` with default options (what an `ADD` of a git repository needs),
/// the environment's credentials sent only to `credential_hosts`; returns the id of the
/// commit checked out.
pub async fn fetch(src: &GitSource, dir: &Path, credential_hosts: &[String]) -> Result<String> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        url: dir.display().to_string(),
        op: "creating",
        source,
    })?;
    let opts = GitOptions {
        credential_hosts: credential_hosts.to_vec(),
        ..GitOptions::default()
    };
    clone_into(src, &opts, dir).await?;
    head_commit(src, dir).await
}

/// The full id of the commit checked out in the clone `dir` of `src`.
pub async fn head_commit(src: &GitSource, dir: &Path) -> Result<String> {
    let (shown, dir) = (src.display(), dir.to_path_buf());
    let head = tokio::task::spawn_blocking(move || -> Result<String> {
        let repo = gix::open(&dir).map_err(|e| classify(&shown, "opening the clone", &e))?;
        let id = repo
            .head_id()
            .map_err(|e| classify(&shown, "reading the checked-out commit", &e))?;
        Ok(id.to_string())
    });
    head.await.map_err(|e| Error::Fetch {
        url: src.display(),
        detail: format!("reading the checked-out commit: {e}"),
    })?
}

/// The hosts (`host[:port]`) kiln may send the git credentials to: the host of a git
/// `--context` and those `GIT_CREDENTIAL_HOSTS` names (comma-separated). A Dockerfile's
/// `ADD <git URL>` or a `.gitmodules` URL elsewhere gets none.
pub fn credential_hosts(context: Option<&GitSource>) -> Vec<String> {
    let mut hosts: Vec<String> = context.and_then(|c| url_host(&c.url)).into_iter().collect();
    if let Ok(list) = std::env::var(CREDENTIAL_HOSTS_ENV) {
        hosts.extend(
            list.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .filter_map(|h| url_host(&format!("https://{h}"))),
        );
    }
    hosts
}

/// The variable naming more hosts that may receive `GIT_TOKEN`/`GIT_USERNAME`/`GIT_PASSWORD`.
pub const CREDENTIAL_HOSTS_ENV: &str = "GIT_CREDENTIAL_HOSTS";

/// `host[:port]` of a URL, lower-case, without user info and without the scheme's default
/// port; `None` when it names no host.
pub fn url_host(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = authority.to_ascii_lowercase();
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => Some(":443"),
        "http" => Some(":80"),
        "git" => Some(":9418"),
        _ => None,
    };
    let host = match default_port {
        Some(p) => host.strip_suffix(p).map(str::to_string).unwrap_or(host),
        None => host,
    };
    (!host.is_empty()).then_some(host)
}

/// The basic credentials for a request to `url`: only when its host is one of `hosts`.
fn credentials_for(url: &str, hosts: &[String]) -> Option<(String, String)> {
    let host = url_host(url)?;
    if !hosts.contains(&host) {
        return None;
    }
    credentials()
}

/// The basic credentials kaniko sends: `GIT_TOKEN` as the user name, else
/// `GIT_USERNAME`/`GIT_PASSWORD`.
fn credentials() -> Option<(String, String)> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    if let Some(token) = var("GIT_TOKEN") {
        return Some((token, String::new()));
    }
    let (user, pass) = (var("GIT_USERNAME"), var("GIT_PASSWORD"));
    if user.is_none() && pass.is_none() {
        return None;
    }
    Some((user.unwrap_or_default(), pass.unwrap_or_default()))
}

fn clone_blocking(src: &GitSource, opts: &GitOptions, dir: &Path, depth: usize) -> Result<()> {
    let shown = src.display();
    let fail = |what: &str, e: &dyn std::error::Error| classify(&shown, what, e);
    tracing::info!(url = %shown, "cloning");
    let interrupt = AtomicBool::new(false);
    let mut prepare =
        gix::prepare_clone(src.url.as_str(), dir).map_err(|e| fail("preparing the clone", &e))?;
    // --git branch wins over the ref in the URL, as in kaniko
    let reference = opts.branch.clone().or_else(|| src.reference.clone());
    if let Some(r) = &reference {
        prepare = if r.starts_with("refs/") {
            prepare.with_revision(Some(r.as_str()))
        } else if opts.single_branch {
            prepare.with_revision(Some(format!("refs/heads/{r}")))
        } else {
            prepare.with_ref_name(Some(r.as_str()))
        }
        .map_err(|e| fail(&format!("ref {r}"), &e))?;
    }
    let insecure = opts.insecure_skip_tls;
    let creds = credentials_for(&src.url, &opts.credential_hosts);
    if creds.is_none() && credentials().is_some() {
        tracing::info!(url = %shown, "git credentials are not sent to this host (see {CREDENTIAL_HOSTS_ENV})");
    }
    let hosts = opts.credential_hosts.clone();
    let url_for_opts = src.url.clone();
    prepare = prepare.configure_connection(move |conn| {
        if let Some((user, pass)) = creds.clone() {
            let hosts = hosts.clone();
            conn.set_credentials(move |action| match action {
                // a request that went elsewhere (a redirect) gets nothing
                gix::credentials::helper::Action::Get(ctx)
                    if ctx
                        .url
                        .as_ref()
                        .and_then(|u| url_host(&u.to_string()))
                        .is_some_and(|h| !hosts.contains(&h)) =>
                {
                    Ok(None)
                }
                gix::credentials::helper::Action::Get(ctx) => {
                    Ok(Some(gix::credentials::protocol::Outcome {
                        identity: gix::sec::identity::Account {
                            username: user.clone(),
                            password: pass.clone(),
                            oauth_refresh_token: None,
                        },
                        next: ctx.into(),
                    }))
                }
                _ => Ok(None),
            });
        }
        let options = conn
            .remote()
            .repo()
            .transport_options(url_for_opts.as_str(), None)?;
        if let Some(mut options) = options {
            if let Some(http) = options
                .downcast_mut::<gix::protocol::transport::client::blocking_io::http::Options>()
            {
                http.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(http_backend(
                    insecure,
                ))));
            }
            conn.set_transport_options(options);
        }
        Ok(())
    });
    let (mut checkout, _) = prepare
        .fetch_then_checkout(gix::progress::Discard, &interrupt)
        .map_err(|e| fail("fetching", &e))?;
    if let Some(commit) = &src.commit {
        point_head_at(checkout.repo(), commit, &shown)?;
    }
    let (repo, _) = checkout
        .main_worktree(gix::progress::Discard, &interrupt)
        .map_err(|e| fail("checking out", &e))?;
    tracing::info!(url = %shown, dir = %dir.display(), "cloned");
    if opts.recurse_submodules {
        clone_submodules(&repo, src, opts, dir, depth)?;
    }
    Ok(())
}

/// The HTTP client settings of a clone: the idle timeout of `http.rs` on every read (a
/// server that stalls fails the clone with "timed out"), and no certificate check when
/// `insecure`.
fn http_backend(
    insecure: bool,
) -> gix::protocol::transport::client::blocking_io::http::reqwest::Options {
    let idle = super::http::idle_timeout();
    gix::protocol::transport::client::blocking_io::http::reqwest::Options {
        configure_client: Some(Box::new(move |builder| {
            Ok(builder
                .connect_timeout(crate::network::connect_timeout(GIT_CONNECT_TIMEOUT))
                .timeout(idle)
                .danger_accept_invalid_certs(insecure))
        })),
        configure_request: None,
    }
}

/// Longest wait for a connection to a git server over HTTP.
const GIT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Detaches HEAD at `commit`, which the fetch must have brought.
fn point_head_at(repo: &gix::Repository, commit: &str, shown: &str) -> Result<()> {
    let fail = |what: &str, e: &dyn std::error::Error| classify(shown, what, e);
    let id = gix::ObjectId::from_hex(commit.as_bytes())
        .map_err(|e| fail(&format!("commit {commit}"), &e))?;
    if repo.find_object(id).is_err() {
        return Err(Error::Fetch {
            url: shown.to_string(),
            detail: format!(
                "commit {commit} is not in what was fetched (name the ref that contains it)"
            ),
        });
    }
    repo.reference(
        "HEAD",
        id,
        gix::refs::transaction::PreviousValue::Any,
        "kiln: check out the requested commit",
    )
    .map_err(|e| fail(&format!("checking out {commit}"), &e))?;
    Ok(())
}

/// Submodules nested deeper than this are left out, as go-git (kaniko) does.
const MAX_SUBMODULE_DEPTH: usize = 10;

/// Clones each submodule `.gitmodules` lists at the commit the superproject records,
/// recursively. A submodule path is confined to the checkout and may not pass a symlink.
fn clone_submodules(
    repo: &gix::Repository,
    src: &GitSource,
    opts: &GitOptions,
    dir: &Path,
    depth: usize,
) -> Result<()> {
    let shown = src.display();
    let Ok(text) = std::fs::read_to_string(dir.join(".gitmodules")) else {
        return Ok(());
    };
    if depth >= MAX_SUBMODULE_DEPTH {
        tracing::warn!(url = %shown, "submodules nested too deep, left out");
        return Ok(());
    }
    let tree = repo
        .head_tree()
        .map_err(|e| classify(&shown, "reading the checked-out tree", &e))?;
    let sub_opts = GitOptions {
        branch: None,
        single_branch: false,
        ..opts.clone()
    };
    for (path, url) in parse_gitmodules(&text) {
        let rel = crate::rootfs::clean(&path);
        if rel.is_empty() {
            continue;
        }
        let entry = tree
            .lookup_entry_by_path(&rel)
            .map_err(|e| classify(&shown, &format!("submodule {rel}"), &e))?;
        let Some(entry) = entry.filter(|e| e.mode().is_commit()) else {
            tracing::warn!(url = %shown, path = %rel, "submodule not recorded in the tree, left out");
            continue;
        };
        let mut target = dir.to_path_buf();
        for comp in rel.split('/') {
            target.push(comp);
            if std::fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::Fetch {
                    url: shown.clone(),
                    detail: format!("submodule path {rel} passes a symlink"),
                });
            }
        }
        std::fs::create_dir_all(&target).map_err(|source| Error::Io {
            url: target.display().to_string(),
            op: "creating",
            source,
        })?;
        let sub = GitSource {
            url: resolve_url(&src.url, &url),
            reference: None,
            commit: Some(entry.object_id().to_string()),
        };
        clone_blocking(&sub, &sub_opts, &target, depth + 1)?;
    }
    Ok(())
}

/// `(path, url)` of each `[submodule "…"]` section.
fn parse_gitmodules(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let (mut path, mut url) = (None::<String>, None::<String>);
    let mut flush = |path: &mut Option<String>, url: &mut Option<String>| {
        if let (Some(p), Some(u)) = (path.take(), url.take()) {
            found.push((p, u));
        }
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&mut path, &mut url);
        } else if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "path" => path = Some(v.trim().to_string()),
                "url" => url = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    flush(&mut path, &mut url);
    found
}

/// A submodule URL: `./x` and `../x` are relative to the superproject's URL, as git reads them.
fn resolve_url(parent: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_string();
    }
    let mut base = parent.trim_end_matches('/').to_string();
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            if let Some((b, _)) = base.rsplit_once('/') {
                base = b.to_string();
            }
            rest = r;
        } else {
            break;
        }
    }
    format!("{base}/{rest}")
}

fn classify(url: &str, what: &str, e: &dyn std::error::Error) -> Error {
    let detail = error_chain(e);
    let lower = detail.to_lowercase();
    if lower.contains("401") || lower.contains("403") || lower.contains("authentication") {
        Error::Denied {
            url: url.to_string(),
            detail: format!("{what}: {detail}"),
        }
    } else if lower.contains("404") || lower.contains("not found") {
        Error::NotFound {
            url: url.to_string(),
        }
    } else if lower.contains("timed out") || lower.contains("timeout") {
        Error::Fetch {
            url: url.to_string(),
            detail: format!(
                "{what}: timed out: no data from the server for {:?} ({detail})",
                super::http::idle_timeout()
            ),
        }
    } else {
        Error::Fetch {
            url: url.to_string(),
            detail: format!("{what}: {detail}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_specs() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        for (spec, url, reference, commit) in [
            ("https://h/r.git".to_string(), "https://h/r.git", None, None),
            (
                "https://h/r.git#main".to_string(),
                "https://h/r.git",
                Some("main"),
                None,
            ),
            (
                format!("https://h/r.git#refs/heads/b#{c}"),
                "https://h/r.git",
                Some("refs/heads/b"),
                Some(c),
            ),
            (
                format!("https://h/r.git#{c}"),
                "https://h/r.git",
                None,
                Some(c),
            ),
        ] {
            let got = GitSource::parse(&spec).unwrap();
            assert_eq!(got.url, url, "{spec}");
            assert_eq!(got.reference.as_deref(), reference, "{spec}");
            assert_eq!(got.commit.as_deref(), commit, "{spec}");
        }
        assert!(GitSource::parse("https://h/r.git#main#nothex").is_err());
        assert!(GitSource::parse("https://h/r.git#a#b#c").is_err());
    }

    #[test]
    fn credentials_go_only_to_the_named_hosts() {
        for (url, want) in [
            (
                "https://User:Tok@Git.Example.com:443/r.git",
                Some("git.example.com"),
            ),
            ("http://127.0.0.1:8080/r.git", Some("127.0.0.1:8080")),
            ("http://h:80/r.git?x#y", Some("h")),
            ("git://h/r", Some("h")),
            ("nohost", None),
            ("https:///r", None),
        ] {
            assert_eq!(url_host(url).as_deref(), want, "{url}");
        }
        let hosts = vec!["git.example.com".to_string()];
        assert_eq!(credentials_for("https://evil.example/x.git", &hosts), None);
        assert_eq!(
            credentials_for("https://git.example.com:8443/x.git", &hosts),
            None
        );
    }

    #[test]
    fn submodule_urls_and_sections() {
        for (parent, url, want) in [
            ("http://h/org/ctx.git", "../lib.git", "http://h/org/lib.git"),
            (
                "http://h/org/ctx.git",
                "./lib.git",
                "http://h/org/ctx.git/lib.git",
            ),
            (
                "http://h/org/ctx.git",
                "../../x/lib.git",
                "http://h/x/lib.git",
            ),
            ("http://h/ctx.git", "https://o/lib.git", "https://o/lib.git"),
        ] {
            assert_eq!(resolve_url(parent, url), want, "{parent} + {url}");
        }
        let text = "[submodule \"lib\"]\n\tpath = vendor/lib\n\turl = ../lib.git\n[submodule \"b\"]\n\turl = x\n\tpath = b\n";
        assert_eq!(
            parse_gitmodules(text),
            vec![
                ("vendor/lib".to_string(), "../lib.git".to_string()),
                ("b".to_string(), "x".to_string())
            ]
        );
    }
}
