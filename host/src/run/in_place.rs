//! In-place isolation (kaniko's model): the stage root is `/` of the container kiln runs in.
//! This file owns what must never be touched there — /proc, /sys, /dev, kiln's own dir, every
//! mount point in /proc/self/mountinfo, `--ignore-path`s and /var/run unless
//! `--ignore-var-run=false` — laying a base image over `/` around them, and emptying `/`
//! around them when the next stage of a multi-stage build takes its place. Snapshots and RUN
//! take the skip set from here; the orchestrator decides when each happens.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// Root-relative paths (no leading slash) an in-place build never snapshots or writes.
pub fn skip_set(
    kiln_dir: &Path,
    ignore_paths: &[PathBuf],
    ignore_var_run: bool,
) -> BTreeSet<Vec<u8>> {
    let mut skip: BTreeSet<Vec<u8>> = ["proc", "sys", "dev"]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
    if ignore_var_run {
        skip.insert(b"var/run".to_vec());
    }
    let rel = |p: &Path| crate::rootfs::clean(&p.to_string_lossy()).into_bytes();
    let kiln_dir = std::fs::canonicalize(kiln_dir).unwrap_or_else(|_| kiln_dir.to_path_buf());
    skip.insert(rel(&kiln_dir));
    for p in ignore_paths {
        skip.insert(rel(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        skip.insert(rel(&exe));
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint ...
        if let Some(point) = line.split(' ').nth(4) {
            let point = unescape(point);
            if point != "/" {
                skip.insert(rel(Path::new(&point)));
            }
        }
    }
    skip.remove(&Vec::new());
    skip
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Paths RUN must not read in place: kiln's dir and the registry credentials.
pub fn hidden(kiln_dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![kiln_dir.to_path_buf()];
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => out.push(PathBuf::from(dir)),
        None => {
            if let Some(home) = std::env::var_os("HOME") {
                out.push(Path::new(&home).join(".docker"));
            }
        }
    }
    out
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lays the extracted base image at `src` over `/`, leaving every skipped path alone.
pub fn populate(src: &Path, skip: &BTreeSet<Vec<u8>>) -> Result<()> {
    overlay(src, Path::new("/"), "", skip)
}

fn overlay(src: &Path, dst: &Path, rel: &str, skip: &BTreeSet<Vec<u8>>) -> Result<()> {
    for entry in std::fs::read_dir(src).map_err(io(src))? {
        let entry = entry.map_err(io(src))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if skip.contains(child_rel.as_bytes()) {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        let meta = std::fs::symlink_metadata(&from).map_err(io(&from))?;
        let existing = std::fs::symlink_metadata(&to).ok();
        let ft = meta.file_type();
        if let Some(old) = &existing {
            let both_dirs = old.is_dir() && ft.is_dir();
            if !both_dirs {
                if old.is_dir() {
                    std::fs::remove_dir_all(&to).map_err(io(&to))?;
                } else {
                    std::fs::remove_file(&to).map_err(io(&to))?;
                }
            }
        }
        if ft.is_dir() {
            if !to.is_dir() {
                std::fs::create_dir(&to).map_err(io(&to))?;
            }
            overlay(&from, &to, &child_rel, skip)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(io(&from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io(&to))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(io(&to))?;
        } else {
            continue;
        }
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(io(&to))?;
        }
        let _ = std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

/// Root-relative form of `paths`, made absolute and canonical where they exist: what a stage
/// switch must keep besides the skip set (the context, the credentials, the outputs).
pub fn rel_paths<'a>(paths: impl IntoIterator<Item = &'a Path>) -> BTreeSet<Vec<u8>> {
    paths
        .into_iter()
        .map(|p| {
            std::fs::canonicalize(p)
                .or_else(|_| std::path::absolute(p))
                .unwrap_or_else(|_| p.to_path_buf())
        })
        .map(|p| crate::rootfs::clean(&p.to_string_lossy()).into_bytes())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Empties `/` before the next stage is laid over it: removes every entry except the
/// skipped paths, the `keep` paths and the directories on the way to them. Returns how many
/// entries were removed (a removed directory counts once, whatever it held).
pub fn clear(skip: &BTreeSet<Vec<u8>>, keep: &BTreeSet<Vec<u8>>) -> Result<usize> {
    let protected: BTreeSet<Vec<u8>> = skip.union(keep).cloned().collect();
    clear_dir(Path::new("/"), "", &protected)
}

/// Whether a protected path lies below `rel`.
fn leads_to_protected(rel: &str, protected: &BTreeSet<Vec<u8>>) -> bool {
    let prefix = format!("{rel}/").into_bytes();
    protected
        .range(prefix.clone()..)
        .next()
        .is_some_and(|p| p.starts_with(&prefix))
}

fn clear_dir(dir: &Path, rel: &str, protected: &BTreeSet<Vec<u8>>) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if protected.contains(child_rel.as_bytes()) {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if leads_to_protected(&child_rel, protected) {
            // on the way to a kept path: emptied around it, never removed (nor followed
            // when it is a link)
            if meta.is_dir() {
                removed += clear_dir(&path, &child_rel, protected)?;
            }
            continue;
        }
        if meta.is_dir() {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        } else {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn skip_set_covers_kernel_dirs_mounts_and_ignore_paths() {
        let skip = skip_set(Path::new("/kiln"), &[PathBuf::from("/data/keep/")], true);
        for p in ["proc", "sys", "dev", "kiln", "data/keep", "var/run"] {
            assert!(skip.contains(p.as_bytes()), "{p}: {skip:?}");
        }
        let skip = skip_set(Path::new("/kiln"), &[], false);
        assert!(!skip.contains(&b"var/run"[..]));
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn only_ancestors_of_protected_paths_are_walked_into() {
        let protected: BTreeSet<Vec<u8>> = ["var/run", "kiln", "work/ctx"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        for (rel, want) in [
            ("var", true),
            ("work", true),
            ("va", false),
            ("var/run", false),
            ("kil", false),
            ("workspace", false),
        ] {
            assert_eq!(leads_to_protected(rel, &protected), want, "{rel}");
        }
    }
}
