//! Snapshots: an index of a stage root (path → type, mode, owner, size, times, inode, link
//! target) and the diff of two indexes as `Changes`.
//!
//! ctime cannot be set from userspace, so an entry whose (size, mtime, ctime, inode) and
//! metadata are unchanged is unchanged; no content is hashed. Turning `Changes` into a tar is
//! the layer writer's business.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::rootfs::Kind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("snapshot of {path}: {source}")]
    Walk {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// One path's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub link: Option<OsString>,
}

/// Root-relative path bytes (no leading slash) → state. Byte order puts every parent
/// before its children.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub entries: BTreeMap<Vec<u8>, Entry>,
}

/// One element of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// a new or changed path, written whole
    Put(Vec<u8>, Entry),
    /// a path deleted since the last snapshot
    Whiteout(Vec<u8>),
    /// a directory whose earlier contents are all gone (it was replaced)
    Opaque(Vec<u8>),
}

/// What a step changed, in tar order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub items: Vec<Change>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn entry_of(md: &std::fs::Metadata, host: &Path) -> std::io::Result<Entry> {
    let ft = md.file_type();
    use std::os::unix::fs::FileTypeExt;
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        Kind::File
    };
    let link = if kind == Kind::Symlink {
        Some(std::fs::read_link(host)?.into_os_string())
    } else {
        None
    };
    Ok(Entry {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: if kind == Kind::File { md.size() } else { 0 },
        mtime: (md.mtime(), md.mtime_nsec() as u32),
        ctime: (md.ctime(), md.ctime_nsec() as u32),
        ino: md.ino(),
        nlink: md.nlink(),
        rdev: md.rdev(),
        link,
    })
}

impl Index {
    /// Walks the root (never following symlinks, never leaving its filesystem tree), skipping
    /// the root-relative paths in `skip` and everything below them.
    pub fn scan(root: &Path, skip: &BTreeSet<Vec<u8>>) -> Result<Index> {
        let mut index = Index::default();
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(dir) = stack.pop() {
            let host = root.join(std::ffi::OsStr::from_bytes(&dir));
            let rd = std::fs::read_dir(&host).map_err(|source| Error::Walk {
                path: format!("/{}", String::from_utf8_lossy(&dir)),
                source,
            })?;
            for item in rd {
                let item = item.map_err(|source| Error::Walk {
                    path: format!("/{}", String::from_utf8_lossy(&dir)),
                    source,
                })?;
                let name = item.file_name().into_vec();
                let rel = if dir.is_empty() {
                    name
                } else {
                    [dir.as_slice(), b"/", name.as_slice()].concat()
                };
                if skip.contains(&rel) {
                    continue;
                }
                let path = item.path();
                let md = match std::fs::symlink_metadata(&path) {
                    Ok(md) => md,
                    // removed while we walked (a RUN's leftover process): not part of the state
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => {
                        return Err(Error::Walk {
                            path: format!("/{}", String::from_utf8_lossy(&rel)),
                            source,
                        })
                    }
                };
                let entry = entry_of(&md, &path).map_err(|source| Error::Walk {
                    path: format!("/{}", String::from_utf8_lossy(&rel)),
                    source,
                })?;
                if entry.kind == Kind::Socket {
                    continue;
                }
                if entry.kind == Kind::Dir {
                    stack.push(rel.clone());
                }
                index.entries.insert(rel, entry);
            }
        }
        Ok(index)
    }

    /// The changes that turn `self` (before) into `after`.
    pub fn diff(&self, after: &Index) -> Changes {
        let mut items = Vec::new();
        let mut opaque: BTreeSet<Vec<u8>> = BTreeSet::new();
        for (path, new) in &after.entries {
            let under_opaque = ancestors(path).any(|a| opaque.contains(a));
            match self.entries.get(path) {
                _ if under_opaque => items.push(Change::Put(path.clone(), new.clone())),
                None => items.push(Change::Put(path.clone(), new.clone())),
                Some(old)
                    if old.kind == Kind::Dir && new.kind == Kind::Dir && old.ino != new.ino =>
                {
                    items.push(Change::Put(path.clone(), new.clone()));
                    items.push(Change::Opaque(path.clone()));
                    opaque.insert(path.clone());
                }
                Some(old) if changed(old, new) => {
                    items.push(Change::Put(path.clone(), new.clone()))
                }
                Some(_) => {}
            }
        }
        for path in self.entries.keys() {
            if after.entries.contains_key(path) {
                continue;
            }
            // a deleted or replaced ancestor already covers this path
            let covered = ancestors(path).any(|a| {
                opaque.contains(a) || after.entries.get(a).is_none_or(|e| e.kind != Kind::Dir)
            });
            if !covered {
                items.push(Change::Whiteout(path.clone()));
            }
        }
        items.sort_by_key(sort_key);
        Changes { items }
    }
}

/// Tar order: by path, a directory's opaque marker right after it, whiteouts by their own name.
fn sort_key(c: &Change) -> (Vec<u8>, u8) {
    match c {
        Change::Put(p, _) => (p.clone(), 0),
        Change::Opaque(p) => (p.clone(), 1),
        Change::Whiteout(p) => (p.clone(), 2),
    }
}

fn changed(old: &Entry, new: &Entry) -> bool {
    old.kind != new.kind
        || old.mode != new.mode
        || old.uid != new.uid
        || old.gid != new.gid
        || old.size != new.size
        || old.mtime != new.mtime
        || old.ctime != new.ctime
        || old.ino != new.ino
        || old.rdev != new.rdev
        || old.link != new.link
}

/// Proper ancestors of a root-relative path, nearest first.
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut end = path.len();
    std::iter::from_fn(move || {
        let cut = path[..end].iter().rposition(|b| *b == b'/')?;
        end = cut;
        Some(&path[..cut])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(c: &Changes) -> Vec<String> {
        c.items
            .iter()
            .map(|c| match c {
                Change::Put(p, _) => format!("+{}", String::from_utf8_lossy(p)),
                Change::Whiteout(p) => format!("-{}", String::from_utf8_lossy(p)),
                Change::Opaque(p) => format!("*{}", String::from_utf8_lossy(p)),
            })
            .collect()
    }

    #[test]
    fn diff_finds_adds_deletes_and_replaced_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::create_dir_all(r.join("keep")).unwrap();
        fs::write(r.join("keep/same"), "1").unwrap();
        fs::create_dir_all(r.join("gone/deep")).unwrap();
        fs::write(r.join("gone/deep/f"), "1").unwrap();
        fs::create_dir_all(r.join("re")).unwrap();
        fs::write(r.join("re/old"), "1").unwrap();
        fs::write(r.join("typechange"), "1").unwrap();
        let before = Index::scan(r, &BTreeSet::new()).unwrap();
        fs::remove_dir_all(r.join("gone")).unwrap();
        fs::remove_dir_all(r.join("re")).unwrap();
        fs::create_dir_all(r.join("re")).unwrap();
        fs::write(r.join("re/new"), "2").unwrap();
        fs::remove_file(r.join("typechange")).unwrap();
        fs::create_dir(r.join("typechange")).unwrap();
        fs::write(r.join("added"), "3").unwrap();
        let after = Index::scan(r, &BTreeSet::new()).unwrap();
        let got = names(&before.diff(&after));
        assert_eq!(
            got,
            vec!["+added", "-gone", "+re", "*re", "+re/new", "+typechange"],
            "{got:?}"
        );
    }

    #[test]
    fn ancestors_nearest_first() {
        let got: Vec<&[u8]> = ancestors(b"a/b/c").collect();
        assert_eq!(got, vec![&b"a/b"[..], &b"a"[..]]);
        assert_eq!(ancestors(b"a").count(), 0);
    }
}
