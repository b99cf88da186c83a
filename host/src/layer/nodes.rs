//! Making an extracted entry's node in its parent directory's open handle (`layer::dirs`), and
//! the writers that make small regular files on threads of their own while the extractor's
//! thread inflates, hashes and reads the next entries.
//!
//! A node's name is always one cleaned component (never `.`, `..` or with a `/`), acted on
//! with `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW` in a directory resolved inside the root, so nothing
//! here reaches outside it. Writers only ever create regular files whose name was free when
//! the extractor looked; every other change (directories, symlinks, hardlinks, whiteouts,
//! replacing a node) is made by the extractor itself, after [`Writers::settle`] where it
//! depends on files already queued.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use super::dirs::errno;
use crate::rootfs::{Error, Result};

/// Files up to this size go to a writer with their bytes; larger ones are written by the
/// extractor straight from the stream (no copy held in memory).
pub(super) const QUEUED_FILE_MAX: u64 = 256 * 1024;
/// Jobs waiting per writer: with `QUEUED_FILE_MAX`, at most 8 MiB of file bytes per writer.
const QUEUE_DEPTH: usize = 32;
/// Writers per extraction at most (each makes files in the directories hashed to it).
const MAX_WRITERS: usize = 4;

/// Ownership, mode and mtime of a node, as the tar header (and PAX records) give them.
#[derive(Debug, Clone, Default)]
pub(super) struct NodeMeta {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<(i64, u32)>,
    /// xattrs to set, already checked against the size bound
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// Creates a regular file `name` in `dir`; a non-directory already there is replaced.
pub(super) fn create_file(dir: BorrowedFd, name: &OsStr, rel: &[u8], mode: u32) -> Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let perm = Mode::from_raw_mode(mode & 0o7777);
    match rfs::openat(dir, name, flags, perm) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::EXIST) => {
            let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| errno(rel, "replace", e))?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(errno(rel, "create", Errno::ISDIR));
            }
            rfs::unlinkat(dir, name, AtFlags::empty()).map_err(|e| errno(rel, "replace", e))?;
            rfs::openat(dir, name, flags, perm)
                .map(File::from)
                .map_err(|e| errno(rel, "create", e))
        }
        Err(e) => Err(errno(rel, "create", e)),
    }
}

/// Owner, mode, xattrs and times on a file just written (in that order: chown clears
/// setuid bits and file capabilities, so both go after it).
pub(super) fn finish_file(file: &File, rel: &[u8], meta: &NodeMeta) -> Result<()> {
    if meta.uid.is_some() || meta.gid.is_some() {
        let owner = rfs::fchown(
            file,
            meta.uid.map(rfs::Uid::from_raw),
            meta.gid.map(rfs::Gid::from_raw),
        );
        match owner {
            // unprivileged extraction cannot chown (EINVAL: the id is not mapped in a
            // rootless user namespace): keep going with the caller's ids
            Ok(()) | Err(Errno::PERM) | Err(Errno::INVAL) => {}
            Err(e) => return Err(errno(rel, "chown", e)),
        }
    }
    rfs::fchmod(file, Mode::from_raw_mode(meta.mode & 0o7777))
        .map_err(|e| errno(rel, "chmod", e))?;
    for (key, value) in &meta.xattrs {
        if let Err(e) = rfs::fsetxattr(file, key.as_str(), value, rfs::XattrFlags::empty()) {
            let path = rel.escape_ascii();
            tracing::warn!(path = %path, xattr = key, error = %e, "could not keep xattr");
        }
    }
    if let Some(mtime) = meta.mtime {
        rfs::futimens(file, &times(mtime)).map_err(|e| errno(rel, "set times", e))?;
    }
    Ok(())
}

/// Owner, mode (not on a symlink) and times on the node `name` in `dir`, never following
/// it. xattrs are the caller's (they need the node opened).
pub(super) fn set_meta_at(
    dir: BorrowedFd,
    name: &OsStr,
    rel: &[u8],
    meta: &NodeMeta,
    symlink: bool,
) -> Result<()> {
    if meta.uid.is_some() || meta.gid.is_some() {
        let owner = rfs::chownat(
            dir,
            name,
            meta.uid.map(rfs::Uid::from_raw),
            meta.gid.map(rfs::Gid::from_raw),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        match owner {
            Ok(()) | Err(Errno::PERM) | Err(Errno::INVAL) => {}
            Err(e) => return Err(errno(rel, "chown", e)),
        }
    }
    if !symlink {
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        rfs::chmodat(dir, name, mode, AtFlags::empty()).map_err(|e| errno(rel, "chmod", e))?;
    }
    if let Some(mtime) = meta.mtime {
        rfs::utimensat(dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| errno(rel, "set times", e))?;
    }
    Ok(())
}

fn times((sec, nsec): (i64, u32)) -> Timestamps {
    let at = Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    Timestamps {
        last_access: at,
        last_modification: at,
    }
}

/// A small file for a writer: where, what, and its metadata.
pub(super) struct FileJob {
    pub dir: Arc<OwnedFd>,
    pub name: OsString,
    pub rel: Vec<u8>,
    pub data: Vec<u8>,
    pub meta: NodeMeta,
}

impl FileJob {
    fn write(&self) -> Result<()> {
        let mut file = create_file(self.dir.as_fd(), &self.name, &self.rel, self.meta.mode)?;
        file.write_all(&self.data).map_err(|source| Error::Io {
            path: format!("/{}", self.rel.escape_ascii()),
            op: "write",
            source,
        })?;
        finish_file(&file, &self.rel, &self.meta)
    }
}

/// What the writers share with the extractor: jobs not yet done, the first error.
#[derive(Default)]
struct Shared {
    state: Mutex<(usize, Option<Error>)>,
    idle: Condvar,
}

/// The writer threads of one extraction, started at the first queued file.
#[derive(Default)]
pub(super) struct Writers {
    queues: Vec<SyncSender<FileJob>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Writers {
    /// Queues a file; files of one directory always go to the same writer. Reports a
    /// writer's earlier failure instead.
    pub(super) fn queue(&mut self, parent: &[u8], job: FileJob) -> Result<()> {
        self.failed()?;
        if self.queues.is_empty() {
            self.start();
        }
        let which = fxhash(parent) % self.queues.len();
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0 += 1;
        if self.queues[which].send(job).is_err() {
            self.shared
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0 -= 1;
            return Err(Error::Io {
                path: format!("/{}", parent.escape_ascii()),
                op: "write",
                source: std::io::Error::other("a file writer thread is gone"),
            });
        }
        Ok(())
    }

    fn start(&mut self) {
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WRITERS);
        for _ in 0..n {
            let (tx, rx) = sync_channel::<FileJob>(QUEUE_DEPTH);
            let shared = self.shared.clone();
            let span = tracing::Span::current();
            self.threads.push(std::thread::spawn(move || {
                let _span = span.enter();
                for job in rx {
                    let result = job.write();
                    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                    state.0 -= 1;
                    if let (Err(e), None) = (result, &state.1) {
                        state.1 = Some(e);
                    }
                    if state.0 == 0 {
                        shared.idle.notify_all();
                    }
                }
            }));
            self.queues.push(tx);
        }
    }

    fn failed(&self) -> Result<()> {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.1.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits until every queued file is written; the first failure among them.
    pub(super) fn settle(&self) -> Result<()> {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.0 > 0 && !self.threads.iter().all(JoinHandle::is_finished) {
            state = self
                .shared
                .idle
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        match state.1.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Writers {
    /// Closes the queues and waits for the writers (an extraction that failed included).
    fn drop(&mut self) {
        self.queues.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A cheap, stable hash of a directory path, to pick its writer.
fn fxhash(bytes: &[u8]) -> usize {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    }) as usize
}
