//! Snapshots: an index of a stage root (path → type, mode, owner, size, times, inode, link
//! target) kept between steps, and the diff of two states as `Changes`.
//!
//! ctime cannot be set from userspace, so an entry whose (size, mtime, ctime, inode) and
//! metadata are unchanged is unchanged: no content is ever hashed to find a change. After
//! RUN the root is walked on every core (`walk`); after COPY/ADD/WORKDIR only the paths the
//! guest reports as touched (and their parents) are looked at (`Index::apply_touched`).
//! Turning `Changes` into a tar is the layer writer's business.

mod walk;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
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

/// kaniko's `--snapshot-mode`: which differences make a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// any difference in type, mode, owner, size, mtime, ctime, inode, device or link
    /// target; ctime also catches xattr changes and rewrites that restore the mtime
    #[default]
    Full,
    /// type, mode, owner, size, mtime, device and link target (ctime and inode ignored)
    Redo,
    /// type, mtime and link target only
    Time,
}

/// Root-relative paths (no leading slash) that never reach a layer, with all below them.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    paths: BTreeSet<Vec<u8>>,
}

impl Ignore {
    /// From absolute or relative paths as the user gave them (`--ignore-path /var/cache`).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(paths: I) -> Ignore {
        let paths = paths
            .into_iter()
            .map(|p| crate::rootfs::clean(p.as_ref()).into_bytes())
            .filter(|p| !p.is_empty())
            .collect();
        Ignore { paths }
    }

    /// Whether this path is ignored by itself (its parents are checked by the walk).
    pub fn contains(&self, path: &[u8]) -> bool {
        !self.paths.is_empty() && self.paths.contains(path)
    }

    /// Whether this path or one of its parents is ignored.
    pub fn covers(&self, path: &[u8]) -> bool {
        self.contains(path) || ancestors(path).any(|a| self.contains(a))
    }
}

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

/// What RUN on an overlay did to one root-relative path (`run::overlay::merge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// deleted, with everything below it
    Removed(Vec<u8>),
    /// a new or rewritten entry; a directory here is new as a whole (what was there before,
    /// if anything, is gone)
    Replaced(Vec<u8>),
    /// a directory kept, whose metadata may have changed
    Updated(Vec<u8>),
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

fn kind_of(ft: std::fs::FileType) -> Kind {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
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
    }
}

/// The entry of `host` from its metadata; a symlink's target is read unless `known` (the
/// previous state of the same inode, unchanged since) already has it.
fn entry_of(
    md: &std::fs::Metadata,
    host: impl FnOnce() -> std::path::PathBuf,
    known: Option<&Entry>,
) -> std::io::Result<Entry> {
    let kind = kind_of(md.file_type());
    let ctime = (md.ctime(), md.ctime_nsec() as u32);
    let link = if kind == Kind::Symlink {
        match known {
            Some(k) if k.kind == Kind::Symlink && k.ino == md.ino() && k.ctime == ctime => {
                k.link.clone()
            }
            _ => Some(std::fs::read_link(host())?.into_os_string()),
        }
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
        ctime,
        ino: md.ino(),
        nlink: md.nlink(),
        rdev: md.rdev(),
        link,
    })
}

fn display(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

impl Index {
    /// Walks the whole root on every core, never following symlinks, skipping what `ignore`
    /// names and sockets. `previous` saves re-reading unchanged symlinks.
    pub fn scan(root: &Path, ignore: &Ignore, previous: Option<&Index>) -> Result<Index> {
        let t = std::time::Instant::now();
        let mut entries = walk::walk(root, Vec::new(), ignore, previous)?;
        let walked = t.elapsed();
        // sorted here (unstable sort, in place): the map's bulk build then finds one run
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let sorted = t.elapsed();
        let entries = entries.into_iter().collect();
        tracing::debug!(
            walk = ?walked,
            sort = ?(sorted - walked),
            build = ?(t.elapsed() - sorted),
            "index"
        );
        Ok(Index { entries })
    }

    /// The changes that turn `self` (before) into `after`: one merge of the two sorted
    /// indexes, no lookups.
    pub fn diff(&self, after: &Index, mode: SnapshotMode) -> Changes {
        self.diff_settled(after, mode, &[])
    }

    /// [`Index::diff`] where a directory of `settled` (root-relative) whose ctime alone moved
    /// is not a change.
    pub fn diff_settled(&self, after: &Index, mode: SnapshotMode, settled: &[String]) -> Changes {
        let mut items = Vec::new();
        let mut opaque: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut deleted: Vec<&Vec<u8>> = Vec::new();
        let mut olds = self.entries.iter().peekable();
        for (path, new) in &after.entries {
            while let Some((p, _)) = olds.next_if(|(p, _)| *p < path) {
                deleted.push(p);
            }
            let old = olds.next_if(|(p, _)| *p == path).map(|(_, e)| e);
            let under_opaque = !opaque.is_empty() && ancestors(path).any(|a| opaque.contains(a));
            match old {
                _ if under_opaque => items.push(Change::Put(path.clone(), new.clone())),
                None => items.push(Change::Put(path.clone(), new.clone())),
                Some(old)
                    if old.kind == Kind::Dir && new.kind == Kind::Dir && old.ino != new.ino =>
                {
                    items.push(Change::Put(path.clone(), new.clone()));
                    items.push(Change::Opaque(path.clone()));
                    opaque.insert(path.clone());
                }
                Some(old) if changed(old, new, mode) && !ctime_alone(old, new, path, settled) => {
                    items.push(Change::Put(path.clone(), new.clone()))
                }
                Some(_) => {}
            }
        }
        deleted.extend(olds.map(|(p, _)| p));
        for path in deleted {
            // a deleted or replaced ancestor already covers this path
            let covered = ancestors(path).any(|a| {
                opaque.contains(a) || after.entries.get(a).is_none_or(|e| e.kind != Kind::Dir)
            });
            if !covered {
                items.push(Change::Whiteout(path.clone()));
            }
        }
        with_parents(items, after)
    }

    /// Brings the index up to date for the paths a COPY/ADD/WORKDIR reported (and their
    /// parents, and everything below a directory it created) without walking the rest of
    /// the root. `None` when the report cannot be trusted to be complete (a directory was
    /// removed or replaced, a parent is not a directory, a name is not UTF-8): the caller
    /// then walks the root.
    pub fn apply_touched(
        &mut self,
        root: &Path,
        touched: &[String],
        ignore: &Ignore,
        mode: SnapshotMode,
    ) -> Result<Option<Changes>> {
        let mut paths: BTreeSet<Vec<u8>> = BTreeSet::new();
        for t in touched {
            if t.contains(char::REPLACEMENT_CHARACTER) {
                // a name that is not UTF-8 (an ADD archive's) cannot be looked up from here
                return Ok(None);
            }
            let rel = crate::rootfs::clean(t).into_bytes();
            if rel.is_empty() || ignore.covers(&rel) {
                continue;
            }
            for a in ancestors(&rel) {
                paths.insert(a.to_vec());
            }
            paths.insert(rel);
        }
        let mut items = Vec::new();
        let mut new_dirs: Vec<Vec<u8>> = Vec::new();
        for path in &paths {
            if new_dirs.iter().any(|d| is_under(path, d)) {
                continue; // walked below
            }
            let host = root.join(std::ffi::OsStr::from_bytes(path));
            let old = self.entries.get(path);
            let md = match std::fs::symlink_metadata(&host) {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => match old {
                    None => continue,
                    Some(o) if o.kind == Kind::Dir => return Ok(None),
                    Some(_) => {
                        self.entries.remove(path);
                        items.push(Change::Whiteout(path.clone()));
                        continue;
                    }
                },
                Err(source) => {
                    return Err(Error::Walk {
                        path: display(path),
                        source,
                    })
                }
            };
            let new = entry_of(&md, || host.clone(), old).map_err(|source| Error::Walk {
                path: display(path),
                source,
            })?;
            let is_parent = touched_parent(path, &paths);
            if is_parent && new.kind != Kind::Dir {
                return Ok(None);
            }
            match old {
                Some(o) if o.kind == Kind::Dir && (new.kind != Kind::Dir || o.ino != new.ino) => {
                    return Ok(None)
                }
                Some(o) if !changed(o, &new, mode) => continue,
                _ => {}
            }
            if new.kind == Kind::Socket {
                continue;
            }
            if new.kind == Kind::Dir && old.is_none() {
                for (p, e) in walk::walk(root, path.clone(), ignore, None)? {
                    items.push(Change::Put(p.clone(), e.clone()));
                    self.entries.insert(p, e);
                }
                new_dirs.push(path.clone());
            }
            items.push(Change::Put(path.clone(), new.clone()));
            self.entries.insert(path.clone(), new);
        }
        Ok(Some(with_parents(items, self)))
    }
}

impl Index {
    /// Brings the index up to date from what RUN on an overlay reported, looking at those
    /// paths only (and walking directories that are new as a whole). Exact: the overlay's
    /// upper directory held every path the command changed.
    pub fn apply_upper(
        &mut self,
        root: &Path,
        touched: &[Touch],
        ignore: &Ignore,
        mode: SnapshotMode,
    ) -> Result<Changes> {
        let mut items = Vec::new();
        for t in touched {
            let (Touch::Removed(path) | Touch::Replaced(path) | Touch::Updated(path)) = t;
            if path.is_empty() || ignore.covers(path) {
                continue;
            }
            let old = match t {
                Touch::Updated(_) => self.entries.get(path).cloned(),
                _ => self.remove_below(path),
            };
            if let Touch::Removed(_) = t {
                if old.is_some() {
                    items.push(Change::Whiteout(path.clone()));
                }
                continue;
            }
            let host = root.join(std::ffi::OsStr::from_bytes(path));
            let walk_err = |source| Error::Walk {
                path: display(path),
                source,
            };
            let md = match std::fs::symlink_metadata(&host) {
                Ok(md) => md,
                // gone again since (kiln's own mountpoints and scripts, removed after RUN)
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if matches!(t, Touch::Updated(_)) {
                        self.remove_below(path);
                    }
                    if old.is_some() {
                        items.push(Change::Whiteout(path.clone()));
                    }
                    continue;
                }
                Err(e) => return Err(walk_err(e)),
            };
            let new = entry_of(&md, || host.clone(), None).map_err(walk_err)?;
            match (t, &old) {
                (Touch::Updated(_), Some(o)) if !changed(o, &new, mode) => continue,
                _ if new.kind == Kind::Socket => continue,
                (Touch::Replaced(_), Some(o)) if o.kind == Kind::Dir && new.kind == Kind::Dir => {
                    items.push(Change::Opaque(path.clone()))
                }
                _ => {}
            }
            if new.kind == Kind::Dir && !matches!(t, Touch::Updated(_)) {
                for (p, e) in walk::walk(root, path.clone(), ignore, None)? {
                    items.push(Change::Put(p.clone(), e.clone()));
                    self.entries.insert(p, e);
                }
            }
            items.push(Change::Put(path.clone(), new.clone()));
            self.entries.insert(path.clone(), new);
        }
        Ok(with_parents(items, self))
    }

    /// Takes `path` and everything below it out of the index; the entry of `path` itself.
    fn remove_below(&mut self, path: &[u8]) -> Option<Entry> {
        let old = self.entries.remove(path);
        if old.as_ref().is_some_and(|o| o.kind == Kind::Dir) {
            let lo = [path, b"/"].concat();
            let hi = [path, b"0"].concat(); // '0' follows '/'
            let below: Vec<Vec<u8>> = self.entries.range(lo..hi).map(|(k, _)| k.clone()).collect();
            for k in below {
                self.entries.remove(&k);
            }
        }
        old
    }
}

/// Whether `path` is a strict parent of another path in the (sorted) set.
fn touched_parent(path: &[u8], paths: &BTreeSet<Vec<u8>>) -> bool {
    let mut prefix = path.to_vec();
    prefix.push(b'/');
    paths
        .range(prefix.clone()..)
        .next()
        .is_some_and(|p| p.starts_with(&prefix))
}

fn is_under(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

/// Adds every missing parent directory of a change (from `after`), so that a reader that
/// creates what it meets gets each directory's owner, mode and times, and sorts into tar
/// order: by path, a directory's opaque marker right after it, whiteouts by their own name.
fn with_parents(mut items: Vec<Change>, after: &Index) -> Changes {
    let present: BTreeSet<Vec<u8>> = items
        .iter()
        .filter_map(|c| match c {
            Change::Put(p, _) => Some(p.clone()),
            _ => None,
        })
        .collect();
    let mut parents: BTreeSet<Vec<u8>> = BTreeSet::new();
    for c in &items {
        let p = match c {
            Change::Put(p, _) | Change::Whiteout(p) | Change::Opaque(p) => p,
        };
        for a in ancestors(p) {
            if present.contains(a) || !parents.insert(a.to_vec()) {
                break;
            }
        }
    }
    for p in parents {
        if let Some(e) = after.entries.get(&p) {
            items.push(Change::Put(p, e.clone()));
        }
    }
    items.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
    Changes { items }
}

fn sort_key(c: &Change) -> (&[u8], u8) {
    match c {
        Change::Put(p, _) => (p, 0),
        Change::Opaque(p) => (p, 1),
        Change::Whiteout(p) => (p, 2),
    }
}

/// Whether `path` is one of `settled` and, of what `changed` compares, only its ctime moved.
fn ctime_alone(old: &Entry, new: &Entry, path: &[u8], settled: &[String]) -> bool {
    old.ctime != new.ctime
        && settled.iter().any(|s| s.as_bytes() == path)
        && !changed(
            old,
            &Entry {
                ctime: old.ctime,
                ..new.clone()
            },
            SnapshotMode::Full,
        )
}

fn changed(old: &Entry, new: &Entry, mode: SnapshotMode) -> bool {
    let basic = old.kind != new.kind || old.mtime != new.mtime || old.link != new.link;
    match mode {
        SnapshotMode::Time => basic,
        SnapshotMode::Redo => {
            basic
                || old.mode != new.mode
                || old.uid != new.uid
                || old.gid != new.gid
                || old.size != new.size
                || old.rdev != new.rdev
        }
        SnapshotMode::Full => {
            basic
                || old.mode != new.mode
                || old.uid != new.uid
                || old.gid != new.gid
                || old.size != new.size
                || old.rdev != new.rdev
                || old.ctime != new.ctime
                || old.ino != new.ino
        }
    }
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
        let before = Index::scan(r, &Ignore::default(), None).unwrap();
        fs::remove_dir_all(r.join("gone")).unwrap();
        fs::remove_dir_all(r.join("re")).unwrap();
        fs::create_dir_all(r.join("re")).unwrap();
        fs::write(r.join("re/new"), "2").unwrap();
        fs::remove_file(r.join("typechange")).unwrap();
        fs::create_dir(r.join("typechange")).unwrap();
        fs::write(r.join("added"), "3").unwrap();
        let after = Index::scan(r, &Ignore::default(), None).unwrap();
        let got = names(&before.diff(&after, SnapshotMode::Full));
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

    fn scan(r: &std::path::Path) -> Index {
        Index::scan(r, &Ignore::default(), None).unwrap()
    }

    #[test]
    fn a_change_deep_down_brings_its_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::write(r.join("a/b/f"), "1").unwrap();
        fs::write(r.join("a/b/gone"), "1").unwrap();
        let before = scan(r);
        fs::write(r.join("a/b/f"), "2").unwrap();
        fs::remove_file(r.join("a/b/gone")).unwrap();
        let got = names(&before.diff(&scan(r), SnapshotMode::Full));
        assert_eq!(got, vec!["+a", "+a/b", "+a/b/f", "-a/b/gone"], "{got:?}");
    }

    #[test]
    fn modes_differ_in_what_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::write(r.join("f"), "1").unwrap();
        let before = scan(r);
        // a mode change keeps the mtime: full and redo see it, time does not
        let mut perm = fs::metadata(r.join("f")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o600);
        fs::set_permissions(r.join("f"), perm).unwrap();
        let after = scan(r);
        for (mode, want) in [
            (SnapshotMode::Full, vec!["+f"]),
            (SnapshotMode::Redo, vec!["+f"]),
            (SnapshotMode::Time, vec![]),
        ] {
            assert_eq!(names(&before.diff(&after, mode)), want, "{mode:?}");
        }
        // an xattr change moves only the ctime: full alone sees it
        let before = after;
        rustix::fs::lsetxattr(r.join("f"), "user.k", b"v", rustix::fs::XattrFlags::empty())
            .unwrap();
        let after = scan(r);
        for (mode, want) in [
            (SnapshotMode::Full, vec!["+f"]),
            (SnapshotMode::Redo, vec![]),
        ] {
            assert_eq!(names(&before.diff(&after, mode)), want, "{mode:?}");
        }
    }

    #[test]
    fn ignored_paths_and_sockets_never_appear() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::create_dir_all(r.join("var/cache/x")).unwrap();
        fs::create_dir_all(r.join("var/lib")).unwrap();
        let ignore = Ignore::new(["/var/cache"]);
        let before = Index::scan(r, &ignore, None).unwrap();
        fs::write(r.join("var/cache/x/new"), "1").unwrap();
        fs::write(r.join("var/lib/new"), "1").unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(r.join("sock")).unwrap();
        let after = Index::scan(r, &ignore, Some(&before)).unwrap();
        assert_eq!(
            names(&before.diff(&after, SnapshotMode::Full)),
            vec!["+var", "+var/lib", "+var/lib/new"]
        );
    }

    #[test]
    fn touched_paths_give_what_a_walk_gives() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        fs::create_dir_all(r.join("etc/ssl")).unwrap();
        fs::write(r.join("etc/ssl/old"), "1").unwrap();
        fs::write(r.join("etc/hosts"), "1").unwrap();
        let mut index = scan(r);
        let before = index.clone();
        // a COPY: one file overwritten, a new tree, a file replaced by a symlink
        fs::write(r.join("etc/ssl/old"), "2").unwrap();
        fs::create_dir_all(r.join("app/lib")).unwrap();
        fs::write(r.join("app/lib/x"), "1").unwrap();
        fs::remove_file(r.join("etc/hosts")).unwrap();
        std::os::unix::fs::symlink("/run/hosts", r.join("etc/hosts")).unwrap();
        let touched: Vec<String> = ["/etc/ssl/old", "/app", "/etc/hosts"]
            .map(String::from)
            .to_vec();
        let got = index
            .apply_touched(r, &touched, &Ignore::default(), SnapshotMode::Full)
            .unwrap()
            .expect("a complete report");
        let walked = before.diff(&scan(r), SnapshotMode::Full);
        assert_eq!(names(&got), names(&walked));
        assert_eq!(
            names(&got),
            vec![
                "+app",
                "+app/lib",
                "+app/lib/x",
                "+etc",
                "+etc/hosts",
                "+etc/ssl",
                "+etc/ssl/old"
            ]
        );
        assert_eq!(index.entries, scan(r).entries);
        // a replaced directory is beyond a report: the caller walks
        fs::remove_dir_all(r.join("app")).unwrap();
        fs::write(r.join("app"), "file").unwrap();
        let touched = vec!["app".to_string()];
        assert!(index
            .apply_touched(r, &touched, &Ignore::default(), SnapshotMode::Full)
            .unwrap()
            .is_none());
    }

    /// `KILN_SCAN_BENCH=DIR cargo test --release -p kiln --lib scan_bench -- --ignored
    /// --nocapture`: where a snapshot of DIR spends its time.
    #[test]
    #[ignore]
    fn scan_bench() {
        let dir = std::env::var("KILN_SCAN_BENCH").unwrap();
        let r = std::path::Path::new(&dir);
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_test_writer()
            .try_init();
        let mut before = scan(r);
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let after = Index::scan(r, &Ignore::default(), Some(&before)).unwrap();
            let scanned = t.elapsed();
            let changes = before.diff(&after, SnapshotMode::Full);
            let diffed = t.elapsed();
            drop(std::mem::replace(&mut before, after));
            eprintln!(
                "scan {scanned:?}, diff {:?}, drop {:?}, {} changes",
                diffed - scanned,
                t.elapsed() - diffed,
                changes.items.len()
            );
        }
    }
}
