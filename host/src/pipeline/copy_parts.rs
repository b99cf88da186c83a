//! COPY/ADD sources that do not come from the context or a `--from` root: heredocs
//! (`COPY <<EOF /dst`) and, for ADD, `http(s)://` URLs and git repositories. Each is
//! materialized by the host in a scratch root (`heredoc`, `context::add_url`, `context::add_git`)
//! and handed to the guest as the `--from` root of a call of its own, so that destination,
//! owner and mode rules stay the guest's. Context and `--from` sources of the same
//! instruction go to the guest first, unchanged, then the git repositories and URLs in the
//! order written, then the heredocs (BuildKit's order).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use super::heredoc;
use crate::attest::provenance::Material;
use crate::context::{add_git, add_url};
use crate::dockerfile::{is_heredoc_marker, Heredoc, Instruction, Keyword};
use crate::rootfs::Root;

/// Flags that only make sense for context, `--from` and git sources.
const SOURCE_ONLY_FLAGS: [&str; 5] = ["from", "checksum", "keep-git-dir", "parents", "exclude"];

/// One guest call of a COPY/ADD.
pub(crate) struct Part {
    /// sources then the destination, expanded
    pub args: Vec<String>,
    pub flags: Vec<(String, Option<String>)>,
    /// the root the sources are read from; `None`: the instruction's own (context or `--from`)
    pub root: Option<Arc<Root>>,
    /// what the layer cache keys the part's sources on
    pub pin: Pin,
    /// a download or checkout by digest, for the provenance
    pub material: Option<Material>,
}

impl Part {
    /// Sources read from the instruction's own root (context or `--from`).
    pub(crate) fn own(args: Vec<String>, flags: Vec<(String, Option<String>)>) -> Part {
        Part {
            args,
            flags,
            root: None,
            pin: Pin::Content,
            material: None,
        }
    }
}

/// What fixes the content of a part's sources, for the layer cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pin {
    /// the files the guest reads, by content (found by a dry run)
    Content,
    /// an id that fixes the whole source: a git commit, with the subdirectory and options
    Id(String),
    /// nothing: a download, whose content is only known by fetching it
    Unpinned,
}

/// A fresh scratch directory under the build's work dir.
fn scratch_dir(work: &Path, what: &str) -> std::path::PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    work.join(format!("{what}-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// Whether a destination as written names a directory (the guest's rule, repeated for the
/// check that needs every source kind at once).
fn names_directory(dest: &str) -> bool {
    dest.ends_with('/') || dest.ends_with("/.") || dest == "."
}

fn is_url_like(src: &str) -> bool {
    add_url::is_http_url(src)
}

/// A remote source of an ADD, in the order written.
enum Remote {
    Url(String),
    Git(String),
}

/// An instruction's sources by where they come from.
struct Sorted<'a> {
    /// the context or `--from` root
    local: Vec<String>,
    /// ADD's URLs and git repositories
    remotes: Vec<Remote>,
    /// `<<EOF` markers' bodies
    heredocs: Vec<&'a Heredoc>,
}

/// Sorts the expanded sources (`raw`: as written, to find heredoc markers) by where they
/// come from; refuses git sources COPY cannot take and ssh ones kiln cannot fetch.
fn sort<'a>(ins: &'a Instruction, raw: &[String], srcs: &[String]) -> Result<Sorted<'a>> {
    let add = ins.keyword == Keyword::Add;
    let mut docs = ins.heredocs.iter();
    let (mut local, mut remotes, mut heredocs) = (Vec::new(), Vec::new(), Vec::new());
    for (i, src) in srcs.iter().enumerate() {
        let written = raw.get(i).map(String::as_str).unwrap_or(src);
        if is_heredoc_marker(written) {
            if let Some(doc) = docs.next() {
                heredocs.push(doc);
                continue;
            }
        }
        match add_git::transport(src) {
            Some(_) if !add => bail!("{src}: COPY cannot copy a git repository, use ADD"),
            Some(add_git::Transport::Ssh) => bail!(
                "{src}: git over ssh is not supported (kiln has no ssh client), use an https:// URL"
            ),
            Some(add_git::Transport::Fetched) => {
                remotes.push(Remote::Git(src.clone()));
                continue;
            }
            None => {}
        }
        if add && is_url_like(src) {
            remotes.push(Remote::Url(src.clone()));
        } else {
            local.push(src.clone());
        }
    }
    Ok(Sorted {
        local,
        remotes,
        heredocs,
    })
}

/// The flags of a part read from a root of its own: heredoc and URL files are plain files,
/// so flags that select or walk source trees do not apply; `--from` names the source.
fn own_flags(flags: &[(String, Option<String>)], from: &str) -> Vec<(String, Option<String>)> {
    flags
        .iter()
        .filter(|(n, _)| !SOURCE_ONLY_FLAGS.contains(&n.as_str()))
        .cloned()
        .chain(std::iter::once((
            "from".to_string(),
            Some(from.to_string()),
        )))
        .collect()
}

/// Fetches one remote source into a scratch root of its own: the part that copies it.
async fn fetch(
    remote: Remote,
    dest: &str,
    checksum: Option<&str>,
    keep_git_dir: bool,
    work: &Path,
    flags: &[(String, Option<String>)],
    git_credential_hosts: &[String],
) -> Result<Part> {
    Ok(match remote {
        Remote::Url(url) => {
            let dir = scratch_dir(work, "add-url");
            let (root, name) = add_url::fetch(&url, checksum, &dir).await?;
            let file = root.path().join(&name);
            let digest = crate::oci::digest::hash_file(&file)
                .with_context(|| format!("hashing {}", file.display()))?;
            let material =
                Material::fetched(&crate::redaction::redact(&url), &format!("sha256:{digest}"));
            Part {
                args: vec![name, dest.to_string()],
                flags: own_flags(flags, &url),
                root: Some(Arc::new(root)),
                pin: Pin::Unpinned,
                material: Some(material),
            }
        }
        Remote::Git(src) => {
            let dir = scratch_dir(work, "add-git");
            let checkout = add_git::fetch(&src, keep_git_dir, &dir, git_credential_hosts).await?;
            let material = Material::fetched(
                &crate::redaction::redact(&src),
                &format!("sha1:{}", checkout.commit),
            );
            Part {
                args: vec![checkout.path, dest.to_string()],
                flags: own_flags(flags, &src),
                root: Some(Arc::new(checkout.root)),
                pin: Pin::Id(checkout.pin),
                material: Some(material),
            }
        }
    })
}

/// Warnings for sources BuildKit accepts but that rarely mean what they say: a source that
/// expands to nothing (it stands for the whole context or `--from` root, as in BuildKit), and
/// several sources to a destination without `/` (each copied onto it in turn).
fn warn_about_sources(
    ins: &Instruction,
    raw: &[String],
    srcs: &[String],
    dest: &str,
    parents: bool,
) {
    let keyword = ins.keyword.as_str();
    for (written, src) in raw.iter().zip(srcs) {
        if src.is_empty() {
            tracing::warn!(
                "Dockerfile:{}: {keyword} source {written:?} expands to nothing: the whole \
                 source (build context or --from root) is copied to {dest:?}, as BuildKit does",
                ins.line
            );
        }
    }
    if srcs.len() > 1 && !names_directory(dest) && !parents {
        tracing::warn!(
            "Dockerfile:{}: {keyword} has several sources and the destination {dest:?} does \
             not end with /: each source is copied onto it in turn (files replace each other)",
            ins.line
        );
    }
}

/// Splits a COPY/ADD (`args`: its expanded words, sources then destination) into guest
/// calls. Without heredocs or URLs it is one call, exactly as written.
/// Whether every source of a COPY/ADD is a context or `--from` path (no URL, git
/// repository or heredoc): `split` then hands the instruction to the guest unchanged.
pub(crate) fn all_local(ins: &Instruction, srcs: &[String]) -> Result<bool> {
    let raw = ins.words()?;
    let sorted = sort(ins, &raw, srcs)?;
    Ok(sorted.remotes.is_empty() && sorted.heredocs.is_empty())
}

pub(crate) async fn split(
    ins: &Instruction,
    args: Vec<String>,
    flags: Vec<(String, Option<String>)>,
    lookup: &HashMap<String, String>,
    work: &Path,
    git_credential_hosts: &[String],
) -> Result<Vec<Part>> {
    let raw = ins.words()?;
    let flag = |name: &str| {
        flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let checksum = flag("checksum").flatten();
    let Some((dest, srcs)) = args.split_last() else {
        return Ok(vec![Part::own(args, flags)]);
    };
    let Sorted {
        local,
        remotes,
        heredocs,
    } = sort(ins, &raw, srcs)?;
    let urls = remotes
        .iter()
        .filter(|r| matches!(r, Remote::Url(_)))
        .count();
    if let Some(sum) = &checksum {
        if srcs.len() != 1 || urls != 1 {
            bail!("--checksum={sum} needs exactly one http(s) source");
        }
        add_url::parse_checksum(sum)?;
    }
    let keep_git_dir = match flag("keep-git-dir") {
        Some(value) => add_git::parse_keep_git_dir(value.as_deref())?,
        None => false,
    };
    warn_about_sources(ins, &raw, srcs, dest, flag("parents").is_some());
    if remotes.is_empty() && heredocs.is_empty() && flag("keep-git-dir").is_none() {
        return Ok(vec![Part::own(args, flags)]);
    }
    let mut parts = Vec::new();
    if !local.is_empty() {
        let mut args = local;
        args.push(dest.clone());
        // the remote sources' own flags mean nothing to context and `--from` sources
        let flags = flags
            .iter()
            .filter(|(n, _)| n != "checksum" && n != "keep-git-dir")
            .cloned()
            .collect();
        parts.push(Part::own(args, flags));
    }
    for remote in remotes {
        parts.push(
            fetch(
                remote,
                dest,
                checksum.as_deref(),
                keep_git_dir,
                work,
                &flags,
                git_credential_hosts,
            )
            .await?,
        );
    }
    if !heredocs.is_empty() {
        let dir = scratch_dir(work, "heredoc");
        let (root, names) = heredoc::materialize(ins, &heredocs, lookup, &dir)?;
        let mut args: Vec<String> = names.into_iter().map(|n| format!("/{n}")).collect();
        args.dedup();
        args.push(dest.clone());
        parts.push(Part {
            args,
            flags: own_flags(&flags, "heredoc"),
            root: Some(Arc::new(root)),
            pin: Pin::Content,
            material: None,
        });
    }
    Ok(parts)
}
