//! The root handle: a directory that every path is resolved inside of, with chroot semantics.
//!
//! `Root` owns a directory fd. A path handed to it (from a tar entry, the guest, a Dockerfile)
//! is first cleaned lexically (`.` dropped, `..` clamped at the root, leading `/` removed); its
//! parent is then opened with `openat2(RESOLVE_IN_ROOT)`, so symlinks met on the way (absolute
//! ones included) are re-rooted by the kernel and nothing outside the root is ever reached.
//! Where openat2 is missing (gVisor, old kernels) the parent is found by a component-by-component
//! `O_NOFOLLOW` walk that re-roots links itself. The final component is then acted on with the
//! `*at` calls relative to that parent, never following it unless the operation says so.
//!
//! This module is only the root handle: paths resolved inside a root and metadata on its
//! nodes. Reading and writing layers (tar, whiteouts, xattrs as tar carries them) is
//! `layer`'s business; what to copy where is the guest's (`sandbox`), which calls back into
//! this module.

mod resolve;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
};
use rustix::io::Errno;

/// Symlinks followed in one resolution before giving up, as the kernel's ELOOP limit.
const MAX_SYMLINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: not found")]
    NotFound { path: String },
    #[error("{path}: already exists")]
    Exists { path: String },
    #[error("{path}: not a directory")]
    NotDirectory { path: String },
    #[error("{path}: is a directory")]
    IsDirectory { path: String },
    #[error("{path}: is a {kind}, not a regular file (never opened)")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path}: too many levels of symbolic links")]
    Loop { path: String },
    #[error("{path}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    fn from_errno(path: &str, op: &'static str, e: Errno) -> Error {
        let path = format!("/{path}");
        match e {
            Errno::NOENT => Error::NotFound { path },
            Errno::EXIST => Error::Exists { path },
            Errno::NOTDIR => Error::NotDirectory { path },
            Errno::ISDIR => Error::IsDirectory { path },
            Errno::LOOP => Error::Loop { path },
            e => Error::Io {
                path,
                op,
                source: e.into(),
            },
        }
    }
}

/// Refuses anything but a regular file (a directory as `IsDirectory`).
fn regular(fd: &OwnedFd, crel: &[u8]) -> Result<()> {
    let st = rfs::fstat(fd).map_err(|e| Error::from_errno(&shown(crel), "stat", e))?;
    let path = format!("/{}", shown(crel));
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => return Ok(()),
        FileType::Directory => return Err(Error::IsDirectory { path }),
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        _ => "special file",
    };
    Err(Error::NotRegular { path, kind })
}

/// Maps an errno on `crel` to this module's error.
fn errno_at<'a>(crel: &'a [u8], op: &'static str) -> impl FnOnce(Errno) -> Error + 'a {
    move |e| Error::from_errno(&shown(crel), op, e)
}

fn fd_number(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd as _;
    fd.as_raw_fd()
}

/// What kind of object a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

impl Kind {
    fn from_file_type(t: FileType) -> Kind {
        match t {
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::CharacterDevice => Kind::CharDevice,
            FileType::BlockDevice => Kind::BlockDevice,
            FileType::Socket => Kind::Socket,
            _ => Kind::File,
        }
    }
}

/// The metadata kiln reads from a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    /// permission bits including setuid, setgid and sticky
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
    pub ino: u64,
    pub nlink: u64,
    pub rdev: u64,
}

impl Stat {
    fn from_raw(st: &rfs::Stat) -> Stat {
        Stat {
            kind: Kind::from_file_type(FileType::from_raw_mode(st.st_mode)),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
            ino: st.st_ino,
            nlink: st.st_nlink,
            rdev: st.st_rdev,
        }
    }
}

/// Metadata to apply; `None` keeps what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<(i64, u32)>,
}

/// Cleans a path lexically into a root-relative form: no leading `/`, no `.`, `..` clamped
/// at the root. The root itself is the empty string.
pub fn clean(path: &str) -> String {
    clean_bytes(path.as_bytes())
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Byte-wise `clean` that keeps non-UTF-8 names intact, as components.
pub fn clean_bytes(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for comp in path.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c.to_vec()),
        }
    }
    out
}

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// A directory that paths are confined to.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens an existing directory as a root.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::Io {
            path: path.display().to_string(),
            op: "open root",
            source: e.into(),
        })?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Creates the directory (and parents) on the host, then opens it as a root.
    pub fn create(path: &Path) -> Result<Root> {
        std::fs::create_dir_all(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            op: "create root",
            source,
        })?;
        Root::open(path)
    }

    /// Where the root is on the host (for walking and chrooting, never for resolving).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a cleaned path inside the root, following symlinks inside it.
    fn open_resolved(
        &self,
        rel: &[u8],
        flags: OFlags,
        mode: Mode,
    ) -> std::result::Result<OwnedFd, Errno> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            match rfs::openat2(
                &self.fd,
                OsStr::from_bytes(rel),
                flags | OFlags::CLOEXEC,
                mode,
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(Errno::NOSYS) | Err(Errno::PERM) if !NO_OPENAT2.load(Ordering::Relaxed) => {
                    tracing::debug!("openat2 unavailable, resolving paths with an O_NOFOLLOW walk");
                    NO_OPENAT2.store(true, Ordering::Relaxed);
                }
                other => return other,
            }
        }
        self.walk_open(rel, flags, mode)
    }

    /// The openat2 fallback: resolves component by component, re-rooting symlinks.
    fn walk_open(
        &self,
        rel: &[u8],
        flags: OFlags,
        mode: Mode,
    ) -> std::result::Result<OwnedFd, Errno> {
        let follow_last = !flags.contains(OFlags::NOFOLLOW);
        let mut pending: Vec<Vec<u8>> = clean_bytes(rel).into_iter().rev().collect();
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut links = 0;
        loop {
            let Some(comp) = pending.pop() else {
                let dir = stack.last().map_or(self.fd.as_fd(), |f| f.as_fd());
                return rfs::openat(dir, ".", flags | OFlags::CLOEXEC, mode);
            };
            if comp == b".." {
                stack.pop();
                continue;
            }
            let dir = stack.last().map_or(self.fd.as_fd(), |f| f.as_fd());
            let last = pending.is_empty();
            if last && !follow_last {
                return rfs::openat(dir, OsStr::from_bytes(&comp), flags | OFlags::CLOEXEC, mode);
            }
            match rfs::statat(dir, OsStr::from_bytes(&comp), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let target = rfs::readlinkat(dir, OsStr::from_bytes(&comp), Vec::new())?;
                    let target = target.into_bytes();
                    if target.first() == Some(&b'/') {
                        stack.clear();
                    }
                    for c in target.split(|b| *b == b'/').rev() {
                        match c {
                            b"" | b"." => {}
                            c => pending.push(c.to_vec()),
                        }
                    }
                }
                Ok(_) if last => {
                    return rfs::openat(
                        dir,
                        OsStr::from_bytes(&comp),
                        flags | OFlags::CLOEXEC,
                        mode,
                    );
                }
                Ok(_) => {
                    let next = rfs::openat(
                        dir,
                        OsStr::from_bytes(&comp),
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    stack.push(next);
                }
                Err(Errno::NOENT) if last && flags.contains(OFlags::CREATE) => {
                    return rfs::openat(
                        dir,
                        OsStr::from_bytes(&comp),
                        flags | OFlags::CLOEXEC,
                        mode,
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The directory holding the path's last component (resolved inside the root) and that
    /// component. The root itself has no parent: `None`.
    fn parent(&self, rel: &[u8]) -> Result<Option<(OwnedFd, OsString)>> {
        let mut comps = clean_bytes(rel);
        let Some(name) = comps.pop() else {
            return Ok(None);
        };
        let parent = comps.join(&b'/');
        let fd = self
            .open_resolved(&parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| Error::from_errno(&shown(&parent), "resolve", e))?;
        Ok(Some((fd, OsString::from_vec_compat(name))))
    }

    fn parent_required(&self, rel: &[u8], op: &'static str) -> Result<(OwnedFd, OsString)> {
        self.parent(rel)?.ok_or_else(|| Error::Io {
            path: "/".into(),
            op,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not allowed on the root itself",
            ),
        })
    }

    /// An `O_PATH` handle on the path, resolved inside the root (symlinks followed there):
    /// what RUN mounts from or onto.
    pub fn open_path(&self, rel: impl AsRef<[u8]>) -> Result<OwnedFd> {
        let rel = rel.as_ref();
        let crel = clean_rel(rel);
        self.open_resolved(&crel, OFlags::PATH, Mode::empty())
            .map_err(|e| Error::from_errno(&shown(&crel), "open", e))
    }

    /// Metadata of the path itself (a final symlink is not followed).
    pub fn lstat(&self, rel: impl AsRef<[u8]>) -> Result<Stat> {
        let rel = rel.as_ref();
        match self.parent(rel)? {
            None => rfs::fstat(&self.fd).map(|s| Stat::from_raw(&s)),
            Some((dir, name)) => {
                rfs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW).map(|s| Stat::from_raw(&s))
            }
        }
        .map_err(|e| Error::from_errno(&shown(&clean_rel(rel)), "lstat", e))
    }

    /// Metadata of the path's target (a final symlink is followed, inside the root).
    pub fn stat(&self, rel: impl AsRef<[u8]>) -> Result<Stat> {
        let rel = rel.as_ref();
        let fd = self
            .open_resolved(&clean_rel(rel), OFlags::PATH, Mode::empty())
            .map_err(|e| Error::from_errno(&shown(&clean_rel(rel)), "stat", e))?;
        rfs::fstat(&fd)
            .map(|s| Stat::from_raw(&s))
            .map_err(|e| Error::from_errno(&shown(&clean_rel(rel)), "stat", e))
    }

    /// Whether anything (a dangling symlink included) is at the path.
    pub fn exists(&self, rel: impl AsRef<[u8]>) -> bool {
        let rel = rel.as_ref();
        self.lstat(rel).is_ok()
    }

    pub fn readlink(&self, rel: impl AsRef<[u8]>) -> Result<OsString> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_required(rel, "readlink")?;
        rfs::readlinkat(&dir, &name, Vec::new())
            .map(|c| OsString::from_vec_compat(c.into_bytes()))
            .map_err(|e| Error::from_errno(&shown(&clean_rel(rel)), "readlink", e))
    }

    /// Entry names of a directory (final symlink followed), sorted bytewise.
    pub fn read_dir(&self, rel: impl AsRef<[u8]>) -> Result<Vec<OsString>> {
        let rel = rel.as_ref();
        let crel = clean_rel(rel);
        let fd = self
            .open_resolved(&crel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| Error::from_errno(&shown(&crel), "read dir", e))?;
        let mut dir =
            rfs::Dir::new(fd).map_err(|e| Error::from_errno(&shown(&crel), "read dir", e))?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| Error::from_errno(&shown(&crel), "read dir", e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec_compat(name.to_vec()));
            }
        }
        names.sort();
        Ok(names)
    }

    /// Opens a file for reading (final symlink followed, inside the root).
    pub fn open_read(&self, rel: impl AsRef<[u8]>) -> Result<File> {
        let crel = clean_rel(rel.as_ref());
        // an O_PATH handle opens nothing: a device's driver never sees it
        let handle = self
            .open_resolved(&crel, OFlags::PATH, Mode::empty())
            .map_err(errno_at(&crel, "open"))?;
        regular(&handle, &crel)?;
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        // reopen that very inode; without /proc, the path again (checked again below)
        let fd = match rfs::open(
            format!("/proc/self/fd/{}", fd_number(&handle)),
            flags,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => self
                .open_resolved(&crel, flags, Mode::empty())
                .map_err(errno_at(&crel, "open"))?,
        };
        regular(&fd, &crel)?;
        rfs::fcntl_setfl(&fd, OFlags::empty()).map_err(errno_at(&crel, "open"))?;
        Ok(File::from(fd))
    }

    /// Opens a file by a root-relative path of any bytes (a snapshot's path, possibly not
    /// UTF-8) for reading; a final symlink is not followed.
    pub fn open_read_bytes(&self, rel: &[u8]) -> Result<File> {
        let fd = self
            .open_resolved(rel, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| Error::from_errno(&shown(rel), "open", e))?;
        Ok(File::from(fd))
    }

    /// Creates (or truncates) a regular file; a symlink or non-directory already at the path
    /// is replaced, never followed.
    pub fn create_file(&self, rel: impl AsRef<[u8]>, mode: u32) -> Result<File> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_required(rel, "create")?;
        let crel = clean_rel(rel);
        if let Ok(st) = rfs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    return Err(Error::IsDirectory {
                        path: format!("/{}", shown(&crel)),
                    })
                }
                _ => rfs::unlinkat(&dir, &name, AtFlags::empty())
                    .map_err(|e| Error::from_errno(&shown(&crel), "replace", e))?,
            }
        }
        let fd = rfs::openat(
            &dir,
            &name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode & 0o7777),
        )
        .map_err(|e| Error::from_errno(&shown(&crel), "create", e))?;
        // the umask may have trimmed the mode
        rfs::fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))
            .map_err(|e| Error::from_errno(&shown(&crel), "chmod", e))?;
        Ok(File::from(fd))
    }

    /// Creates one directory; the parent must exist.
    pub fn mkdir(&self, rel: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_required(rel, "mkdir")?;
        rfs::mkdirat(&dir, &name, Mode::from_raw_mode(mode & 0o7777))
            .and_then(|_| {
                rfs::chmodat(
                    &dir,
                    &name,
                    Mode::from_raw_mode(mode & 0o7777),
                    AtFlags::empty(),
                )
            })
            .map_err(|e| Error::from_errno(&shown(&clean_rel(rel)), "mkdir", e))
    }

    /// Creates the directory and its missing parents (`mode` for each new one); returns the
    /// paths created, parents first. An existing directory (or a symlink to one) is fine.
    pub fn mkdir_all(&self, rel: impl AsRef<[u8]>, mode: u32) -> Result<Vec<String>> {
        let rel = rel.as_ref();
        let comps = clean_bytes(rel);
        let mut created = Vec::new();
        let mut cur: Vec<u8> = Vec::new();
        for comp in comps {
            if !cur.is_empty() {
                cur.push(b'/');
            }
            cur.extend_from_slice(&comp);
            match self.stat(&cur) {
                Ok(st) if st.kind == Kind::Dir => continue,
                Ok(_) => {
                    return Err(Error::NotDirectory {
                        path: format!("/{}", shown(&cur)),
                    })
                }
                Err(Error::NotFound { .. }) => {
                    // a dangling symlink here would make mkdir fail with EEXIST
                    if self.lstat(&cur).is_ok() {
                        return Err(Error::NotDirectory {
                            path: format!("/{}", shown(&cur)),
                        });
                    }
                    self.mkdir(&cur, mode)?;
                    created.push(shown(&cur));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(created)
    }

    /// Creates a symlink holding `target` verbatim.
    pub fn symlink(&self, target: &OsStr, rel: impl AsRef<[u8]>) -> Result<()> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_required(rel, "symlink")?;
        rfs::symlinkat(target, &dir, &name)
            .map_err(|e| Error::from_errno(&shown(&clean_rel(rel)), "symlink", e))
    }

    /// Creates a hard link at `rel` to `existing` (whose final component is not followed).
    pub fn link(&self, existing: impl AsRef<[u8]>, rel: impl AsRef<[u8]>) -> Result<()> {
        let (existing, rel) = (existing.as_ref(), rel.as_ref());
        let (odir, oname) = self.parent_required(existing, "link")?;
        let (ndir, nname) = self.parent_required(rel, "link")?;
        rfs::linkat(&odir, &oname, &ndir, &nname, AtFlags::empty())
            .map_err(|e| Error::from_errno(&shown(&clean_rel(rel)), "link", e))
    }

    /// Creates a device node or FIFO.
    pub fn mknod(&self, rel: impl AsRef<[u8]>, kind: Kind, mode: u32, dev: u64) -> Result<()> {
        let rel = rel.as_ref();
        let (dir, name) = self.parent_required(rel, "mknod")?;
        let ft = match kind {
            Kind::CharDevice => FileType::CharacterDevice,
            Kind::BlockDevice => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        rfs::mknodat(&dir, &name, ft, Mode::from_raw_mode(mode & 0o7777), dev)
            .map_err(|e| Error::from_errno(&shown(&clean_rel(rel)), "mknod", e))
    }

    /// Applies metadata without following a final symlink (mode is skipped on symlinks).
    pub fn set_meta(&self, rel: impl AsRef<[u8]>, meta: &Meta) -> Result<()> {
        let rel = rel.as_ref();
        let crel = shown(&clean_rel(rel));
        let crel = crel.as_str();
        let err = |op| move |e| Error::from_errno(crel, op, e);
        let target: (OwnedFd, OsString) = match self.parent(rel)? {
            Some(p) => p,
            None => (
                rfs::openat(
                    &self.fd,
                    ".",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(err("open"))?,
                OsString::from("."),
            ),
        };
        let (dir, name) = (&target.0, &target.1);
        let st = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(err("lstat"))?;
        let is_link = FileType::from_raw_mode(st.st_mode) == FileType::Symlink;
        if meta.uid.is_some() || meta.gid.is_some() {
            rfs::chownat(
                dir,
                name,
                meta.uid.map(rfs::Uid::from_raw),
                meta.gid.map(rfs::Gid::from_raw),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(err("chown"))?;
        }
        // chown clears setuid/setgid, so the mode goes after it
        if !is_link {
            let mode = meta.mode.unwrap_or(st.st_mode & 0o7777);
            if meta.mode.is_some() || meta.uid.is_some() || meta.gid.is_some() {
                rfs::chmodat(
                    dir,
                    name,
                    Mode::from_raw_mode(mode & 0o7777),
                    AtFlags::empty(),
                )
                .map_err(err("chmod"))?;
            }
        }
        if let Some((sec, nsec)) = meta.mtime {
            let ts = Timestamps {
                last_access: Timespec {
                    tv_sec: sec,
                    tv_nsec: nsec as _,
                },
                last_modification: Timespec {
                    tv_sec: sec,
                    tv_nsec: nsec as _,
                },
            };
            rfs::utimensat(dir, name, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(err("set times"))?;
        }
        Ok(())
    }

    /// Sets an extended attribute on the path itself (not on a symlink's target). A regular
    /// file or directory is opened for it (`O_NONBLOCK | O_NOCTTY`); a device node, FIFO or
    /// socket never is: its attribute is set through its parent directory's handle.
    pub fn set_xattr(&self, rel: impl AsRef<[u8]>, key: &str, value: &[u8]) -> Result<()> {
        let rel = rel.as_ref();
        let crel = clean_rel(rel);
        let st = self.lstat(rel)?;
        match st.kind {
            Kind::Symlink => return Ok(()),
            Kind::File | Kind::Dir => {}
            _ => {
                let (dir, name) = self.parent_required(rel, "setxattr")?;
                let mut path = format!("/proc/self/fd/{}/", fd_number(&dir)).into_bytes();
                path.extend_from_slice(name.as_bytes());
                return rfs::lsetxattr(
                    OsStr::from_bytes(&path),
                    key,
                    value,
                    rfs::XattrFlags::empty(),
                )
                .map_err(errno_at(&crel, "setxattr"));
            }
        }
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
        let fd = self
            .open_resolved(&crel, flags, Mode::empty())
            .map_err(errno_at(&crel, "open"))?;
        if !matches!(
            FileType::from_raw_mode(rfs::fstat(&fd).map_err(errno_at(&crel, "stat"))?.st_mode),
            FileType::RegularFile | FileType::Directory
        ) {
            return Err(Error::from_errno(&shown(&crel), "setxattr", Errno::PERM));
        }
        rfs::fsetxattr(&fd, key, value, rfs::XattrFlags::empty())
            .map_err(errno_at(&crel, "setxattr"))
    }

    /// Removes the path itself (a final symlink is removed, not followed); a directory only
    /// when `recursive`. A missing path is not an error.
    pub fn remove(&self, rel: impl AsRef<[u8]>, recursive: bool) -> Result<()> {
        let rel = rel.as_ref();
        let Some((dir, name)) = self.parent(rel)? else {
            return Err(Error::Io {
                path: "/".into(),
                op: "remove",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "cannot remove the root",
                ),
            });
        };
        let crel = clean_rel(rel);
        let st = match rfs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(Error::from_errno(&shown(&crel), "remove", e)),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            if recursive {
                self.remove_children(&crel)?;
            }
            rfs::unlinkat(&dir, &name, AtFlags::REMOVEDIR)
                .map_err(|e| Error::from_errno(&shown(&crel), "remove", e))
        } else {
            rfs::unlinkat(&dir, &name, AtFlags::empty())
                .map_err(|e| Error::from_errno(&shown(&crel), "remove", e))
        }
    }

    /// Removes everything inside a directory, keeping the directory.
    pub fn remove_children(&self, rel: impl AsRef<[u8]>) -> Result<()> {
        let rel = rel.as_ref();
        let crel = clean_rel(rel);
        for name in self.read_dir(&crel)? {
            self.remove(join_bytes(&crel, name.as_bytes()), true)?;
        }
        Ok(())
    }
}

/// A cleaned root-relative path of any bytes (as [`clean_bytes`], joined with `/`).
pub fn clean_rel(path: &[u8]) -> Vec<u8> {
    clean_bytes(path).join(&b'/')
}

/// A root-relative path of any bytes as text, for messages (bytes that are not UTF-8 shown
/// as U+FFFD).
fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Joins a root-relative directory and a name, both of any bytes.
pub fn join_bytes(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = dir.to_vec();
    if !out.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// Joins a root-relative directory and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

trait FromVecCompat {
    fn from_vec_compat(v: Vec<u8>) -> Self;
}

impl FromVecCompat for OsString {
    fn from_vec_compat(v: Vec<u8>) -> OsString {
        use std::os::unix::ffi::OsStringExt;
        OsString::from_vec(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_links_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        root.mkdir("d", 0o755).unwrap();
        root.symlink(OsStr::new("/"), "up").unwrap();
        root.symlink(OsStr::new("."), "d/self").unwrap();
        root.symlink(OsStr::new("../.env"), "d/env").unwrap();
        root.symlink(OsStr::new("loop"), "loop").unwrap();
        for (rel, want) in [
            ("up/etc/x", "etc/x"),
            ("d/self/self/a", "d/a"),
            ("d/env", ".env"),
            ("up", ""),
            ("/../d/../up/d", "d"),
        ] {
            assert_eq!(root.resolve(rel).unwrap(), want.as_bytes(), "{rel}");
        }
        assert!(matches!(root.resolve("loop"), Err(Error::Loop { .. })));
        let (sub, at) = root.subroot("up/d").unwrap();
        assert_eq!(at, b"d");
        sub.symlink(OsStr::new("/"), "l").unwrap();
        sub.mkdir_all("l/etc", 0o755).unwrap();
        assert!(root.exists("d/etc") && !root.exists("etc"));
    }

    #[test]
    fn clean_clamps_and_relativizes() {
        for (input, want) in [
            ("/etc/passwd", "etc/passwd"),
            ("../../x", "x"),
            ("a/./b/../c", "a/c"),
            ("/", ""),
            ("", ""),
            ("a//b/", "a/b"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("root")).unwrap();
        std::fs::write(tmp.path().join("outside"), b"secret").unwrap();
        root.mkdir("run", 0o755).unwrap();
        root.mkdir("var", 0o755).unwrap();
        root.symlink(OsStr::new("/run"), "var/run").unwrap();
        root.symlink(OsStr::new("../../outside"), "up").unwrap();
        root.symlink(OsStr::new("/"), "x").unwrap();
        // through an absolute link: lands in the root's /run
        root.create_file("var/run/f", 0o644).unwrap();
        assert!(tmp.path().join("root/run/f").exists());
        // a relative link climbing out stays inside
        assert!(matches!(root.open_read("up"), Err(Error::NotFound { .. })));
        // x -> / then x/etc/canary: inside
        root.mkdir_all("x/etc", 0o755).unwrap();
        root.create_file("x/etc/canary", 0o644).unwrap();
        assert!(tmp.path().join("root/etc/canary").exists());
        // ../ in the path is clamped
        root.create_file("../escape", 0o644).unwrap();
        assert!(!tmp.path().join("escape").exists());
        assert!(tmp.path().join("root/escape").exists());
    }

    #[test]
    fn fallback_walk_confines_too() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("root")).unwrap();
        std::fs::write(tmp.path().join("outside"), b"secret").unwrap();
        root.mkdir("run", 0o755).unwrap();
        root.symlink(OsStr::new("/run"), "varrun").unwrap();
        root.symlink(OsStr::new("../../../outside"), "up").unwrap();
        root.create_file("run/f", 0o644).unwrap();
        let fd = root.walk_open(b"varrun/f", OFlags::RDONLY, Mode::empty());
        assert!(fd.is_ok());
        assert_eq!(
            root.walk_open(b"up", OFlags::RDONLY, Mode::empty()).err(),
            Some(Errno::NOENT)
        );
    }
    /// Device nodes and FIFOs in a root (from an image or a context) are never opened as
    /// files: `/etc/passwd` as `/dev/zero`'s node would be read without end, as a FIFO the
    /// open would block forever. Needs root (mknod).
    #[test]
    fn special_files_are_never_read() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test needs root (mknod)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("root")).unwrap();
        root.mkdir("etc", 0o755).unwrap();
        let zero = rustix::fs::makedev(1, 5);
        root.mknod("etc/passwd", Kind::CharDevice, 0o644, zero)
            .unwrap();
        root.mknod("etc/group", Kind::Fifo, 0o644, 0).unwrap();
        root.symlink(OsStr::new("/etc/group"), "link").unwrap();
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let kinds: Vec<String> = ["etc/passwd", "etc/group", "link", "etc"]
                .iter()
                .map(|p| match root.open_read(p) {
                    Err(e) => e.to_string(),
                    Ok(_) => format!("{p}: opened"),
                })
                .collect();
            let _ = done.send(kinds);
        });
        let got = wait
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("opening a FIFO blocked");
        assert_eq!(
            got,
            [
                "/etc/passwd: is a character device, not a regular file (never opened)",
                "/etc/group: is a FIFO, not a regular file (never opened)",
                "/link: is a FIFO, not a regular file (never opened)",
                "/etc: is a directory",
            ]
        );
    }

    /// An xattr on a device node is set without opening the node (whose driver would see
    /// the open): a node with no driver behind it cannot be opened at all. Needs root.
    #[test]
    fn xattrs_on_devices_never_open_them() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test needs root (mknod)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("root")).unwrap();
        // major 240: reserved for local use, no driver
        let dev = rustix::fs::makedev(240, 7);
        root.mknod("dev", Kind::CharDevice, 0o600, dev).unwrap();
        root.set_xattr("dev", "trusted.kiln", b"v").unwrap();
        let path = tmp.path().join("root/dev");
        let mut buf = [0u8; 8];
        let n = rustix::fs::lgetxattr(&path, "trusted.kiln", &mut buf).unwrap();
        assert_eq!(&buf[..n], b"v");
        std::fs::write(tmp.path().join("root/f"), b"x").unwrap();
        root.set_xattr("f", "trusted.kiln", b"w").unwrap();
    }
}
