//! Where a path inside a root really leads: symlinks followed with chroot semantics
//! (`Root::resolve`), and a directory of the root taken as a root of its own
//! (`Root::subroot`), for rules that judge paths (`.dockerignore`) and contexts below a
//! sub-path.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{Mode, OFlags};

use super::{clean_bytes, clean_rel, join_bytes, shown, Error, Kind, Result, Root, MAX_SYMLINKS};

impl Root {
    /// The path `rel` really names inside the root: every symlink on the way, the last one
    /// included, resolved with chroot semantics (`""` is the root). Components that do not
    /// exist are kept as written. What rules that speak of paths (`.dockerignore`) must judge.
    pub fn resolve(&self, rel: impl AsRef<[u8]>) -> Result<Vec<u8>> {
        let rel = rel.as_ref();
        let mut pending: Vec<Vec<u8>> = clean_bytes(rel).into_iter().rev().collect();
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let path = join_bytes(&done.join(&b'/'), &comp);
            let is_link = self.lstat(&path).is_ok_and(|st| st.kind == Kind::Symlink);
            if !is_link {
                done.push(comp);
                continue;
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Error::Loop {
                    path: format!("/{}", shown(&clean_rel(rel))),
                });
            }
            let target = self.readlink(&path)?;
            let target = target.as_bytes();
            if target.first() == Some(&b'/') {
                done.clear();
            }
            pending.extend(target.split(|b| *b == b'/').rev().map(<[u8]>::to_vec));
        }
        Ok(done.join(&b'/'))
    }

    /// A directory inside the root (symlinks resolved inside it, as [`Root::resolve`]) as a
    /// root of its own, and its resolved path: links below it then resolve at it, never above.
    pub fn subroot(&self, rel: impl AsRef<[u8]>) -> Result<(Root, Vec<u8>)> {
        let resolved = self.resolve(rel)?;
        let fd = self
            .open_resolved(&resolved, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .map_err(|e| Error::from_errno(&shown(&resolved), "open", e))?;
        let path = self.path.join(OsStr::from_bytes(&resolved));
        Ok((Root { fd, path }, resolved))
    }
}
