//! The directory handles an extraction keeps open between entries, so an entry's node is made
//! with one `*at` call in its parent instead of resolving its whole path from the root again.
//!
//! A handle is taken once per directory, through the root (`openat2(RESOLVE_IN_ROOT)` or its
//! walk), so symlinked parents resolve inside the root exactly as they did entry by entry. A
//! handle stays right only while every component of the path it was resolved through is the
//! node it was then: adding nodes cannot change that (each component exists, so a new node
//! never takes its name), removing or replacing one can (a directory replaced by a symlink
//! to `/etc` must send later entries under it to the root's `/etc`). So the extractor calls
//! [`Dirs::forget`] whenever it removes anything, and the next entry resolves afresh.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use crate::rootfs::{Error, Result, Root};

/// How many directory handles are kept at once (file descriptors are a bounded resource);
/// past it the cache starts over. Tar streams list a directory's entries together, so the
/// few most recent directories are the ones that pay.
const MAX_OPEN: usize = 256;

/// Open directory handles by root-relative path (cleaned, as the extractor joins them).
#[derive(Default)]
pub(super) struct Dirs {
    open: HashMap<Vec<u8>, Arc<OwnedFd>>,
}

impl Dirs {
    /// The directory at `rel` (created with its missing parents, mode 0755, as the extractor
    /// always did), as an `O_PATH` handle.
    pub(super) fn get(&mut self, root: &Root, rel: &[u8]) -> Result<Arc<OwnedFd>> {
        if let Some(fd) = self.open.get(rel) {
            return Ok(fd.clone());
        }
        let fd = match self.child_of_open(rel) {
            Some(fd) => fd,
            None => {
                root.mkdir_all(rel, 0o755)?;
                let fd = root.open_path(rel)?;
                let st = rfs::fstat(&fd).map_err(|e| errno(rel, "stat", e))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    return Err(Error::NotDirectory {
                        path: format!("/{}", rel.escape_ascii()),
                    });
                }
                fd
            }
        };
        if self.open.len() >= MAX_OPEN {
            self.open.clear();
        }
        let fd = Arc::new(fd);
        self.open.insert(rel.to_vec(), fd.clone());
        Ok(fd)
    }

    /// A real directory (not a symlink) under an open parent: opened in one step from the
    /// parent's handle. Anything else (a symlink, missing, the parent not open) is `None` and
    /// goes through the root.
    fn child_of_open(&self, rel: &[u8]) -> Option<OwnedFd> {
        let cut = rel.iter().rposition(|b| *b == b'/');
        let (parent, name) = match cut {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], rel),
        };
        let dir = self.open.get(parent)?;
        let name = OsStr::from_bytes(name);
        let st = rfs::statat(&**dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return None;
        }
        rfs::openat(
            &**dir,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    }

    /// Drops every handle: something was removed or replaced, so a path may now resolve
    /// elsewhere.
    pub(super) fn forget(&mut self) {
        self.open.clear();
    }
}

pub(super) fn errno(rel: &[u8], op: &'static str, e: rustix::io::Errno) -> Error {
    match e {
        rustix::io::Errno::NOENT => Error::NotFound {
            path: format!("/{}", rel.escape_ascii()),
        },
        rustix::io::Errno::EXIST => Error::Exists {
            path: format!("/{}", rel.escape_ascii()),
        },
        rustix::io::Errno::NOTDIR => Error::NotDirectory {
            path: format!("/{}", rel.escape_ascii()),
        },
        rustix::io::Errno::ISDIR => Error::IsDirectory {
            path: format!("/{}", rel.escape_ascii()),
        },
        e => Error::Io {
            path: format!("/{}", rel.escape_ascii()),
            op,
            source: e.into(),
        },
    }
}
