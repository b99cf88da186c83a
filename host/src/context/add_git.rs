//! `ADD <git repository>`: which ADD sources are git repositories, the `#ref:subdir`
//! fragment, and the checkout into a scratch directory of its own. The guest then copies the
//! checkout's tree (or the subdirectory the fragment names) like any directory source, so
//! destination, `--chown` and `--chmod` rules stay its own. `.git` goes along only with
//! `--keep-git-dir=true`.
//!
//! A source is a git repository as BuildKit reads one: a `git://` or `ssh://` URL, an
//! `http(s)://` URL whose path ends in `.git`, or an scp-like `user@host:path`. Cloning is
//! the context's git client (`context::git`, gitoxide); kiln has no ssh, so the ssh forms
//! are refused with an error that says so.

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use crate::context::git::{self, GitSource};
use crate::rootfs::{Kind, Root};

/// How an ADD source names a git repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `http://`, `https://` or `git://`: fetched
    Fetched,
    /// `ssh://` or `user@host:path`: refused (kiln has no ssh client)
    Ssh,
}

/// Whether `src` names a git repository, and over what (None: it does not).
pub(crate) fn transport(src: &str) -> Option<Transport> {
    let Some((scheme, rest)) = src.split_once("://") else {
        return is_scp_like(src).then_some(Transport::Ssh);
    };
    if scheme.is_empty() || !scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    match scheme.to_ascii_lowercase().as_str() {
        "git" => Some(Transport::Fetched),
        "ssh" => Some(Transport::Ssh),
        "http" | "https" => {
            // the URL path, without query and fragment, must end in `.git`
            let end = rest.find(['?', '#']).unwrap_or(rest.len());
            let path = rest[..end].find('/').map_or("", |i| &rest[i..end]);
            path.ends_with(".git").then_some(Transport::Fetched)
        }
        _ => None,
    }
}

/// `user@host:path`, the scp-like form git reads as ssh.
fn is_scp_like(src: &str) -> bool {
    let Some((user, rest)) = src.split_once('@') else {
        return false;
    };
    let Some((host, _)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !host.is_empty()
        && !host.contains('/')
}

/// A git source of an ADD: the repository, what to check out, and the subdirectory to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitAdd {
    pub source: GitSource,
    /// relative to the repository's top, cleaned; empty for the whole tree
    pub subdir: String,
}

fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl GitAdd {
    /// Parses `<url>[#<ref>[:<subdir>]]`; the ref is a branch, a tag, a full ref name or a
    /// full commit id. The URL goes to the clone as written (`git://` is git's own protocol).
    pub(crate) fn parse(src: &str) -> Result<GitAdd> {
        let (url, fragment) = src.split_once('#').unwrap_or((src, ""));
        if url.contains('?') {
            bail!(
                "git source {src}: URL query options are not supported, use {url}#<ref>:<subdir>"
            );
        }
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        // `..` is clamped at the top of the repository, as BuildKit cleans it
        let subdir = crate::rootfs::clean(subdir);
        let (reference, commit) = match reference {
            "" => (None, None),
            r if is_commit_id(r) => (None, Some(r.to_ascii_lowercase())),
            r => (Some(r.to_string()), None),
        };
        Ok(GitAdd {
            source: GitSource {
                url: url.to_string(),
                reference,
                commit,
            },
            subdir,
        })
    }
}

/// A fetched git source: the checkout as a root, the path the guest copies from it, and what
/// pins its content for the layer cache.
pub(crate) struct Checkout {
    pub root: Root,
    /// `/` or `/<subdir>`
    pub path: String,
    /// the commit, the subdirectory and whether `.git` is kept
    pub pin: String,
    /// the full id of the commit checked out (what the provenance names)
    pub commit: String,
}

/// Clones `src` into `dir` and prepares what the ADD copies: `.git` is removed unless
/// `keep_git_dir`, and the fragment's subdirectory must be a directory of the checkout. The
/// git credentials go only to `credential_hosts` (never to a host the Dockerfile picks).
pub(crate) async fn fetch(
    src: &str,
    keep_git_dir: bool,
    dir: &Path,
    credential_hosts: &[String],
) -> Result<Checkout> {
    let add = GitAdd::parse(src)?;
    let commit = git::fetch(&add.source, dir, credential_hosts).await?;
    tracing::info!(url = %add.source.url, %commit, subdir = %add.subdir, "git source checked out");
    if !keep_git_dir {
        let dot_git = dir.join(".git");
        std::fs::remove_dir_all(&dot_git)
            .with_context(|| format!("removing {}", dot_git.display()))?;
    }
    let root = Root::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    if !add.subdir.is_empty() {
        let at = add.source.reference.as_deref().unwrap_or(commit.as_str());
        match root.stat(&add.subdir) {
            Ok(st) if st.kind == Kind::Dir => {}
            _ => bail!(
                "git source {src}: {:?} is not a directory of {} at {at}",
                add.subdir,
                add.source.url
            ),
        }
    }
    Ok(Checkout {
        root,
        path: format!("/{}", add.subdir),
        pin: format!(
            "git {commit} subdir={} keep-git-dir={keep_git_dir}",
            add.subdir
        ),
        commit,
    })
}

/// `--keep-git-dir[=true|false]`.
pub(crate) fn parse_keep_git_dir(value: Option<&str>) -> Result<bool> {
    match value {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => bail!("--keep-git-dir={other}: expected true or false"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tells_git_sources_as_buildkit() {
        use Transport::{Fetched, Ssh};
        for (src, want) in [
            ("https://github.com/moby/buildkit.git", Some(Fetched)),
            ("https://h/r.git#v1:docs", Some(Fetched)),
            ("HTTP://h:8080/a/r.git?x=1", Some(Fetched)),
            ("git://h/r", Some(Fetched)),
            ("ssh://git@h/r.git", Some(Ssh)),
            ("git@github.com:moby/buildkit.git", Some(Ssh)),
            ("https://h/file.tar.gz", None),
            ("https://h/r.git/x", None),
            ("https://h.git", None),
            ("ftp://h/r.git", None),
            ("github.com/moby/buildkit", None),
            ("local.git", None),
            ("dir/a@b:c", None),
            ("a@b", None),
        ] {
            assert_eq!(transport(src), want, "{src}");
        }
    }

    #[test]
    fn parses_ref_and_subdir() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        for (src, reference, commit, subdir) in [
            ("https://h/r.git".to_string(), None, None, ""),
            ("https://h/r.git#v1".to_string(), Some("v1"), None, ""),
            (
                "https://h/r.git#main:docs/x/".to_string(),
                Some("main"),
                None,
                "docs/x",
            ),
            ("https://h/r.git#:/sub".to_string(), None, None, "sub"),
            (
                "https://h/r.git#main:../x".to_string(),
                Some("main"),
                None,
                "x",
            ),
            (format!("https://h/r.git#{c}:a"), None, Some(c), "a"),
            (
                "https://h/r.git#refs/tags/v1".to_string(),
                Some("refs/tags/v1"),
                None,
                "",
            ),
        ] {
            let got = GitAdd::parse(&src).unwrap();
            assert_eq!(got.source.url, "https://h/r.git", "{src}");
            assert_eq!(got.source.reference.as_deref(), reference, "{src}");
            assert_eq!(got.source.commit.as_deref(), commit, "{src}");
            assert_eq!(got.subdir, subdir, "{src}");
        }
        assert!(GitAdd::parse("https://h/r.git?ref=main").is_err());
    }

    #[test]
    fn keep_git_dir_values() {
        for (value, want) in [(None, Some(true)), (Some("true"), Some(true))] {
            assert_eq!(parse_keep_git_dir(value).ok(), want);
        }
        assert!(!parse_keep_git_dir(Some("false")).unwrap());
        assert!(parse_keep_git_dir(Some("yes")).is_err());
    }
}
