//! The host side of the guest's `fs` interface: every call is a `Root` operation on a root
//! from the call's table, with chroot semantics, write access only on writable roots and
//! .dockerignore'd context paths invisible. Bytes are copied here, never through the guest.
//! Paths cross the boundary through `names`, so names that are not UTF-8 keep their bytes.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};

use super::bindings::kiln::builder::fs::Host as FsHost;
use super::bindings::kiln::builder::types::{self, FileStat as Stat, FsError, Kind, Meta};
use super::{names, RootEntry, State};
use crate::dockerfile::IgnoreRules;
use crate::layer::extract;
use crate::rootfs::{self, Root};

type FsResult<T> = Result<T, FsError>;

impl types::Host for State {}

fn to_fs_error(e: rootfs::Error) -> FsError {
    let msg = e.to_string();
    match e {
        rootfs::Error::NotFound { .. } => FsError::NotFound(msg),
        rootfs::Error::Exists { .. } => FsError::Exists(msg),
        rootfs::Error::NotDirectory { .. } => FsError::NotDirectory(msg),
        rootfs::Error::IsDirectory { .. } => FsError::IsDirectory(msg),
        rootfs::Error::Loop { .. }
        | rootfs::Error::Io { .. }
        | rootfs::Error::NotRegular { .. } => FsError::Io(msg),
    }
}

fn to_stat(st: rootfs::Stat) -> Stat {
    Stat {
        kind: match st.kind {
            rootfs::Kind::File => Kind::File,
            rootfs::Kind::Dir => Kind::Dir,
            rootfs::Kind::Symlink => Kind::Symlink,
            rootfs::Kind::Fifo => Kind::Fifo,
            rootfs::Kind::CharDevice => Kind::CharDevice,
            rootfs::Kind::BlockDevice => Kind::BlockDevice,
            rootfs::Kind::Socket => Kind::Socket,
        },
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        size: st.size,
        mtime_sec: st.mtime.0,
        mtime_nsec: st.mtime.1,
        ino: st.ino,
        nlink: st.nlink,
    }
}

impl RootEntry {
    /// Whether .dockerignore hides this path (only the context has rules): the path as
    /// written, and the path it really names (its parent's symlinks resolved; the last one
    /// too where the operation follows it), so `link -> .env` or `d/.env` with `d -> .`
    /// cannot reach an ignored `.env`.
    fn hidden(&self, path: &str, follow: bool) -> bool {
        let Some(rules) = &self.ignore else {
            return false;
        };
        if self.hidden_as_written(rules, &rootfs::clean(path)) {
            return true;
        }
        let guest = names::from_guest(path);
        let resolved = if follow {
            self.root.resolve(&guest)
        } else {
            let mut comps = rootfs::clean_bytes(&guest);
            let Some(name) = comps.pop() else {
                return false;
            };
            self.root
                .resolve(comps.join(&b'/'))
                .map(|dir| rootfs::join_bytes(&dir, &name))
        };
        resolved.is_ok_and(|r| {
            let r = names::to_guest(&r);
            r != rootfs::clean(path) && self.hidden_as_written(rules, &r)
        })
    }

    fn hidden_as_written(&self, rules: &IgnoreRules, rel: &str) -> bool {
        if rel.is_empty() || !rules.is_ignored(rel) {
            return false;
        }
        // an ignored directory stays, as BuildKit's context transfer keeps it, when an
        // exception re-includes something below it
        !(rules.has_exceptions() && self.keeps_something_below(rules, rel))
    }

    /// Whether `rel` is a directory with a path below it that the rules do not ignore.
    fn keeps_something_below(&self, rules: &IgnoreRules, rel: &str) -> bool {
        let is_dir = self
            .root
            .lstat(rel)
            .is_ok_and(|s| s.kind == rootfs::Kind::Dir);
        if !is_dir {
            return false;
        }
        let Ok(names) = self.root.read_dir(rel) else {
            return false;
        };
        names.iter().any(|n| {
            let child = rootfs::join(rel, &n.to_string_lossy());
            !rules.is_ignored(&child) || self.keeps_something_below(rules, &child)
        })
    }
}

impl State {
    /// The root entry for a call on `path`, following a final symlink.
    fn entry(&self, r: u32, path: &str) -> FsResult<&RootEntry> {
        self.entry_at(r, path, true)
    }

    /// The root entry for a call on `path`; `follow`: the call follows a final symlink.
    /// An ignored path (as written or as resolved) is not found.
    fn entry_at(&self, r: u32, path: &str, follow: bool) -> FsResult<&RootEntry> {
        let e = self
            .roots
            .get(r as usize)
            .ok_or_else(|| FsError::Invalid(format!("no root {r}")))?;
        if e.hidden(path, follow) {
            return Err(FsError::NotFound(format!(
                "/{}: not found",
                rootfs::clean(path)
            )));
        }
        Ok(e)
    }

    fn root(&self, r: u32, path: &str) -> FsResult<&Root> {
        Ok(&self.entry(r, path)?.root)
    }

    /// As [`State::root`] for a call that acts on a final symlink itself.
    fn root_nofollow(&self, r: u32, path: &str) -> FsResult<&Root> {
        Ok(&self.entry_at(r, path, false)?.root)
    }

    fn writable(&self, r: u32, path: &str) -> FsResult<&Root> {
        let e = self.entry(r, path)?;
        if !e.writable {
            return Err(FsError::ReadOnly(format!(
                "/{}: read-only root",
                rootfs::clean(path)
            )));
        }
        Ok(&e.root)
    }
}

impl State {
    /// In a dry run, remembers a read of a source root (not the stage): what the
    /// instruction would depend on. `content`: the file's bytes are read, not only its metadata.
    fn note(&mut self, r: u32, path: &str, content: bool) {
        if r == 0 {
            return;
        }
        if let Some(reads) = &mut self.reads {
            reads.insert((r, rootfs::clean(path), content));
        }
    }

    /// Whether writes to root `r` are only pretended (a dry run).
    fn pretend(&self, r: u32) -> bool {
        self.roots.get(r as usize).is_some_and(|e| e.dry_run)
    }
}

impl FsHost for State {
    fn lstat(&mut self, r: u32, path: String) -> FsResult<Stat> {
        self.note(r, &path, false);
        self.root_nofollow(r, &path)?
            .lstat(names::from_guest(&path))
            .map(to_stat)
            .map_err(to_fs_error)
    }

    fn stat(&mut self, r: u32, path: String) -> FsResult<Stat> {
        self.note(r, &path, false);
        self.root(r, &path)?
            .stat(names::from_guest(&path))
            .map(to_stat)
            .map_err(to_fs_error)
    }

    fn readlink(&mut self, r: u32, path: String) -> FsResult<String> {
        self.note(r, &path, false);
        self.root_nofollow(r, &path)?
            .readlink(names::from_guest(&path))
            .map(|t| names::to_guest(t.as_bytes()))
            .map_err(to_fs_error)
    }

    fn read_dir(&mut self, r: u32, path: String) -> FsResult<Vec<String>> {
        let entry = self.entry(r, &path)?;
        let names = entry
            .root
            .read_dir(names::from_guest(&path))
            .map_err(to_fs_error)?;
        let dir = rootfs::clean(&path);
        Ok(names
            .into_iter()
            .map(|n| names::to_guest(n.as_bytes()))
            .filter(|n| !entry.hidden(&rootfs::join(&dir, n), false))
            .collect())
    }

    fn read_file(&mut self, r: u32, path: String, max: u64) -> FsResult<Vec<u8>> {
        self.note(r, &path, true);
        let file = self
            .root(r, &path)?
            .open_read(names::from_guest(&path))
            .map_err(to_fs_error)?;
        let mut buf = Vec::new();
        file.take(max)
            .read_to_end(&mut buf)
            .map_err(|e| FsError::Io(format!("/{}: read: {e}", rootfs::clean(&path))))?;
        Ok(buf)
    }

    fn mkdir(&mut self, r: u32, path: String, mode: u32) -> FsResult<()> {
        if self.pretend(r) {
            self.writable(r, &path)?;
            return Ok(());
        }
        self.writable(r, &path)?
            .mkdir(names::from_guest(&path), mode)
            .map_err(to_fs_error)
    }

    fn symlink(&mut self, r: u32, target: String, path: String) -> FsResult<()> {
        if self.pretend(r) {
            self.writable(r, &path)?;
            return Ok(());
        }
        self.writable(r, &path)?
            .symlink(
                &OsString::from_vec(names::from_guest(&target)),
                names::from_guest(&path),
            )
            .map_err(to_fs_error)
    }

    fn link(&mut self, r: u32, existing: String, path: String) -> FsResult<()> {
        if self.pretend(r) {
            self.writable(r, &path)?;
            return Ok(());
        }
        self.writable(r, &path)?
            .link(names::from_guest(&existing), names::from_guest(&path))
            .map_err(to_fs_error)
    }

    fn set_meta(&mut self, r: u32, path: String, m: Meta) -> FsResult<()> {
        if self.pretend(r) {
            self.writable(r, &path)?;
            return Ok(());
        }
        let meta = rootfs::Meta {
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime,
        };
        self.writable(r, &path)?
            .set_meta(names::from_guest(&path), &meta)
            .map_err(to_fs_error)
    }

    fn remove(&mut self, r: u32, path: String, recursive: bool) -> FsResult<()> {
        if self.pretend(r) {
            self.writable(r, &path)?;
            return Ok(());
        }
        self.writable(r, &path)?
            .remove(names::from_guest(&path), recursive)
            .map_err(to_fs_error)
    }

    fn copy_file(
        &mut self,
        from: u32,
        from_path: String,
        to: u32,
        to_path: String,
    ) -> FsResult<u64> {
        self.note(from, &from_path, true);
        let src_root = self.root(from, &from_path)?;
        let st = src_root
            .stat(names::from_guest(&from_path))
            .map_err(to_fs_error)?;
        if st.kind != rootfs::Kind::File {
            return Err(FsError::Invalid(format!(
                "/{}: not a regular file",
                rootfs::clean(&from_path)
            )));
        }
        if self.pretend(to) {
            self.writable(to, &to_path)?;
            return Ok(st.size);
        }
        let mut src = src_root
            .open_read(names::from_guest(&from_path))
            .map_err(to_fs_error)?;
        let dst_root = self.writable(to, &to_path)?;
        let mut dst = dst_root
            .create_file(names::from_guest(&to_path), st.mode)
            .map_err(to_fs_error)?;
        // std uses copy_file_range between two files
        let n = std::io::copy(&mut src, &mut dst)
            .map_err(|e| FsError::Io(format!("/{}: copy: {e}", rootfs::clean(&to_path))))?;
        drop(dst);
        dst_root
            .set_meta(
                names::from_guest(&to_path),
                &rootfs::Meta {
                    mtime: Some(st.mtime),
                    ..rootfs::Meta::default()
                },
            )
            .map_err(to_fs_error)?;
        Ok(n)
    }

    fn copy_node(
        &mut self,
        from: u32,
        from_path: String,
        to: u32,
        to_path: String,
    ) -> FsResult<()> {
        let st = self
            .root_nofollow(from, &from_path)?
            .lstat(names::from_guest(&from_path))
            .map_err(to_fs_error)?;
        if !matches!(
            st.kind,
            rootfs::Kind::Fifo | rootfs::Kind::CharDevice | rootfs::Kind::BlockDevice
        ) {
            return Err(FsError::Invalid(format!(
                "/{}: not a fifo or device node",
                rootfs::clean(&from_path)
            )));
        }
        let dst_root = self.writable(to, &to_path)?;
        if let Ok(existing) = dst_root.lstat(names::from_guest(&to_path)) {
            if existing.kind == rootfs::Kind::Dir {
                return Err(FsError::IsDirectory(format!(
                    "/{}",
                    rootfs::clean(&to_path)
                )));
            }
            dst_root
                .remove(names::from_guest(&to_path), false)
                .map_err(to_fs_error)?;
        }
        dst_root
            .mknod(names::from_guest(&to_path), st.kind, st.mode, st.rdev)
            .map_err(to_fs_error)
    }

    fn is_archive(&mut self, from: u32, from_path: String) -> FsResult<bool> {
        self.note(from, &from_path, true);
        let src = self
            .root(from, &from_path)?
            .open_read(names::from_guest(&from_path))
            .map_err(to_fs_error)?;
        Ok(extract::is_archive(src))
    }

    fn extract_archive(
        &mut self,
        from: u32,
        from_path: String,
        to: u32,
        to_dir: String,
    ) -> FsResult<Vec<String>> {
        self.note(from, &from_path, true);
        if self.pretend(to) {
            self.root(from, &from_path)?;
            self.writable(to, &to_dir)?;
            return Ok(Vec::new());
        }
        let src = self
            .root(from, &from_path)?
            .open_read(names::from_guest(&from_path))
            .map_err(to_fs_error)?;
        // the destination is the root the archive's links resolve in: `l -> /` then `l/etc/x`
        // lands below the destination, where the layer looks for it
        let (dst, at) = self
            .writable(to, &to_dir)?
            .subroot(names::from_guest(&to_dir))
            .map_err(to_fs_error)?;
        let what = format!("/{}", rootfs::clean(&from_path));
        extract::extract(&dst, "", src, extract::Whiteouts::Keep, &what)
            .map(|written| {
                written
                    .iter()
                    .map(|p| names::to_guest(&rootfs::join_bytes(&at, &real_name(&dst, p))))
                    .collect()
            })
            .map_err(to_fs_error)
    }
}

/// Where an archive entry's name really is in `root` (its parent's links resolved), so the
/// layer records the path the entry was written at.
fn real_name(root: &Root, rel: &[u8]) -> Vec<u8> {
    let mut comps = rootfs::clean_bytes(rel);
    let Some(name) = comps.pop() else {
        return Vec::new();
    };
    match root.resolve(comps.join(&b'/')) {
        Ok(dir) => rootfs::join_bytes(&dir, &name),
        Err(_) => rootfs::clean_rel(rel),
    }
}
