//! The guest's view of the host's `fs` interface as plain Rust: the [`Files`] trait, its
//! value types, and the few composite operations every instruction shares (creating missing
//! directories, recording touched paths).
//!
//! The WIT-backed implementation lives in `bindings.rs`; tests use the in-memory tree in
//! `fake.rs`. Path confinement (chroot semantics, `..` clamped, symlinks re-rooted) is the
//! host's job: callers here pass absolute, cleaned paths inside a root.

use std::collections::BTreeSet;

use crate::error::{Error, FsError, Result};
use crate::path;

/// An opaque handle to a directory tree handed out by the host for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RootId(pub u32);

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
}

/// Metadata of one path, as `lstat`/`stat` report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    /// permission bits including setuid/setgid/sticky (mask 0o7777)
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub ino: u64,
    pub nlink: u64,
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

/// Metadata to set; `None` leaves a field alone. Never follows a final symlink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mtime: Option<(i64, u32)>,
}

/// The host's `fs` interface with plain Rust types. Paths are resolved by the
/// implementation inside `root` with chroot semantics.
pub trait Files {
    /// Metadata of the path itself (a final symlink is not followed).
    fn lstat(&self, root: RootId, path: &str) -> Result<Stat, FsError>;
    /// Metadata of what the path points to (a final symlink is followed inside the root).
    fn stat(&self, root: RootId, path: &str) -> Result<Stat, FsError>;
    fn readlink(&self, root: RootId, path: &str) -> Result<String, FsError>;
    /// Entry names, sorted bytewise, without `.` and `..`.
    fn read_dir(&self, root: RootId, path: &str) -> Result<Vec<String>, FsError>;
    /// At most `max` bytes from the start of a file (final symlink followed).
    fn read_file(&self, root: RootId, path: &str, max: u64) -> Result<Vec<u8>, FsError>;
    /// Creates one directory; the parent must exist.
    fn mkdir(&self, root: RootId, path: &str, mode: u32) -> Result<(), FsError>;
    fn symlink(&self, root: RootId, target: &str, path: &str) -> Result<(), FsError>;
    fn link(&self, root: RootId, existing: &str, path: &str) -> Result<(), FsError>;
    fn set_meta(&self, root: RootId, path: &str, meta: Meta) -> Result<(), FsError>;
    fn remove(&self, root: RootId, path: &str, recursive: bool) -> Result<(), FsError>;
    /// Copies a regular file (source symlink followed), replacing a file or symlink at
    /// `to_path`; keeps mode and mtime, returns the byte count.
    fn copy_file(
        &self,
        from: RootId,
        from_path: &str,
        to: RootId,
        to_path: &str,
    ) -> Result<u64, FsError>;
    /// Recreates a FIFO or device node (not followed) at `to_path`, replacing a file or
    /// symlink there.
    fn copy_node(
        &self,
        from: RootId,
        from_path: &str,
        to: RootId,
        to_path: &str,
    ) -> Result<(), FsError>;
    /// Whether the file is a tar archive, maybe compressed (its first entry reads as one).
    fn is_archive(&self, from: RootId, from_path: &str) -> Result<bool, FsError>;
    /// Unpacks a tar archive into the directory `to_dir`; returns the relative paths written.
    fn extract_archive(
        &self,
        from: RootId,
        from_path: &str,
        to: RootId,
        to_dir: &str,
    ) -> Result<Vec<String>, FsError>;
}

/// Owner of a path: numeric uid and gid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Paths created or changed in the stage root, relative, without a leading slash.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Touched(BTreeSet<String>);

impl Touched {
    /// Records an absolute path of the stage root; the root itself is not recorded.
    pub fn add(&mut self, abs: &str) {
        let rel = abs.trim_start_matches('/');
        if !rel.is_empty() {
            self.0.insert(rel.to_string());
        }
    }

    pub fn extend<I: IntoIterator<Item = String>>(&mut self, paths: I) {
        for p in paths {
            self.add(&p);
        }
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0.into_iter().collect()
    }
}

/// Wraps a host error with the operation and path it concerns.
pub fn fs_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(FsError) -> Error + 'a {
    move |source| Error::Fs {
        op,
        path: path.to_string(),
        source,
    }
}

/// Most symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// The canonical path of `p` in `root`: every symlink on the way, the final one included,
/// followed with chroot semantics (absolute targets re-rooted, `..` clamped). Components
/// past the first missing one are kept as written. Used for destinations, so that COPY
/// writes through a symlinked destination as BuildKit does and `touched` names real paths.
pub fn resolve(files: &dyn Files, root: RootId, p: &str) -> Result<String> {
    let mut out: Vec<String> = Vec::new();
    let mut queue: std::collections::VecDeque<String> = p.split('/').map(str::to_string).collect();
    let mut hops = 0;
    let mut missing = false;
    while let Some(c) = queue.pop_front() {
        match c.as_str() {
            "" | "." => continue,
            ".." => {
                out.pop();
                continue;
            }
            _ => {}
        }
        if missing {
            out.push(c);
            continue;
        }
        let cand = format!(
            "/{}",
            out.iter()
                .chain([&c])
                .cloned()
                .collect::<Vec<_>>()
                .join("/")
        );
        match files.lstat(root, &cand) {
            Ok(st) if st.kind == Kind::Symlink => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(Error::SymlinkLoop {
                        path: p.to_string(),
                    });
                }
                let target = files
                    .readlink(root, &cand)
                    .map_err(fs_err("reading link", &cand))?;
                if target.starts_with('/') {
                    out.clear();
                }
                for part in target.split('/').rev() {
                    queue.push_front(part.to_string());
                }
            }
            Ok(_) => out.push(c),
            Err(e) if e.is_missing() => {
                missing = true;
                out.push(c);
            }
            Err(e) => return Err(fs_err("checking", &cand)(e)),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// Creates `dir` and every missing parent in `root` with `mode` and `owner`, recording each
/// created directory. Existing directories (symlinks to directories included) are left as
/// they are; an existing non-directory on the way is an error.
pub fn create_dirs(
    files: &dyn Files,
    root: RootId,
    dir: &str,
    mode: u32,
    owner: Owner,
    touched: &mut Touched,
) -> Result<()> {
    let mut cur = String::new();
    for comp in path::components(dir) {
        cur.push('/');
        cur.push_str(comp);
        match files.stat(root, &cur) {
            Ok(st) if st.is_dir() => continue,
            Ok(_) => return Err(Error::PathNotDirectory { path: cur }),
            Err(e) if e.is_not_found() => {
                make_dir(files, root, &cur, mode, owner, touched)?;
            }
            Err(e) => return Err(fs_err("checking", &cur)(e)),
        }
    }
    Ok(())
}

/// Creates one directory and sets its mode and owner explicitly (the host may apply a umask).
pub fn make_dir(
    files: &dyn Files,
    root: RootId,
    dir: &str,
    mode: u32,
    owner: Owner,
    touched: &mut Touched,
) -> Result<()> {
    files
        .mkdir(root, dir, mode)
        .map_err(fs_err("creating directory", dir))?;
    set_owner_mode(files, root, dir, owner, Some(mode), None)?;
    touched.add(dir);
    Ok(())
}

/// Sets owner, and optionally mode and mtime, on a path (a final symlink is not followed).
pub fn set_owner_mode(
    files: &dyn Files,
    root: RootId,
    p: &str,
    owner: Owner,
    mode: Option<u32>,
    mtime: Option<(i64, u32)>,
) -> Result<()> {
    let meta = Meta {
        mode,
        uid: Some(owner.uid),
        gid: Some(owner.gid),
        mtime,
    };
    files
        .set_meta(root, p, meta)
        .map_err(fs_err("setting owner and mode of", p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeFs;

    #[test]
    fn touched_is_relative_sorted_and_skips_root() {
        let mut t = Touched::default();
        for p in ["/b", "/a/c", "/", "a", "/b"] {
            t.add(p);
        }
        assert_eq!(t.into_vec(), vec!["a", "a/c", "b"]);
    }

    #[test]
    fn create_dirs_makes_only_missing_parents() {
        for (existing, want) in [
            (vec![], vec!["a", "a/b", "a/b/c"]),
            (vec!["/a"], vec!["a/b", "a/b/c"]),
            (vec!["/a/b/c"], vec![]),
        ] {
            let fs = FakeFs::new();
            let stage = fs.stage();
            for d in &existing {
                fs.add_dir(stage, d, 0o700);
            }
            let mut t = Touched::default();
            let owner = Owner { uid: 7, gid: 8 };
            create_dirs(&fs, stage, "/a/b/c", 0o755, owner, &mut t).unwrap();
            assert_eq!(t.into_vec(), want, "existing {existing:?}");
            let st = fs.lstat(stage, "/a/b/c").unwrap();
            assert!(st.is_dir());
            if existing.is_empty() {
                assert_eq!((st.mode, st.uid, st.gid), (0o755, 7, 8));
            }
        }
    }

    #[test]
    fn create_dirs_refuses_a_file_on_the_way() {
        let fs = FakeFs::new();
        let stage = fs.stage();
        fs.add_file(stage, "/a", b"x", 0o644);
        let mut t = Touched::default();
        let err = create_dirs(&fs, stage, "/a/b", 0o755, Owner::default(), &mut t).unwrap_err();
        assert!(err.to_string().contains("/a"), "{err}");
    }

    #[test]
    fn resolve_follows_links_inside_the_root() {
        let fs = FakeFs::new();
        let stage = fs.stage();
        fs.add_dir(stage, "/usr/bin", 0o755);
        fs.add_symlink(stage, "/bin", "usr/bin");
        fs.add_symlink(stage, "/abs", "/usr");
        fs.add_symlink(stage, "/up", "../../../usr");
        fs.add_symlink(stage, "/loop", "/loop");
        fs.add_symlink(stage, "/dangling", "/nowhere/x");
        for (p, want) in [
            ("/bin/sh", Ok("/usr/bin/sh")),
            ("/abs/bin", Ok("/usr/bin")),
            ("/up/bin/../lib", Ok("/usr/lib")),
            ("/dangling", Ok("/nowhere/x")),
            ("/new/a/b", Ok("/new/a/b")),
            ("/", Ok("/")),
            (
                "/loop/x",
                Err("too many levels of symbolic links resolving /loop/x"),
            ),
        ] {
            let got = resolve(&fs, stage, p).map_err(|e| e.to_string());
            assert_eq!(got, want.map(str::to_string).map_err(str::to_string), "{p}");
        }
    }

    #[test]
    fn fs_error_display_names_the_message() {
        for (e, want) in [
            (FsError::NotFound("/x: not found".into()), "/x: not found"),
            (FsError::Io(String::new()), "i/o error"),
        ] {
            assert_eq!(e.to_string(), want);
        }
    }
}
