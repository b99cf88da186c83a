//! The mountpoints one RUN needs in the stage root: `/proc`, `/dev`, `/sys`, the network
//! files and every `--mount` target, made where the image has none and removed after the
//! command with their parent's mtime restored, so none of them reaches a layer. Without a
//! mount namespace it also provides copies of the network files and basic device nodes.

use std::io::Write as _;
use std::path::Path;

use super::{Error, Result};
use crate::rootfs::{Kind, Meta, Root};

/// Paths kiln created in the root for one RUN, removed afterwards.
pub struct Scaffold<'a> {
    root: &'a Root,
    created: Vec<(String, Option<(i64, u32)>)>,
}

impl<'a> Scaffold<'a> {
    pub fn new(root: &'a Root) -> Scaffold<'a> {
        Scaffold {
            root,
            created: Vec::new(),
        }
    }

    /// Makes `rel` exist as `kind` (a dir or an empty file) if its parent is a real directory
    /// and nothing else is there; returns whether the path is now a usable mountpoint.
    pub fn ensure(&mut self, rel: &str, kind: Kind) -> Result<bool> {
        let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
        let parent_stat = match self.root.lstat(parent) {
            Ok(st) if st.kind == Kind::Dir => st,
            _ => return Ok(false),
        };
        match self.root.lstat(rel) {
            Ok(st) => Ok(st.kind == kind),
            Err(crate::rootfs::Error::NotFound { .. }) => {
                match kind {
                    Kind::Dir => self.root.mkdir(rel, 0o755)?,
                    _ => drop(self.root.create_file(rel, 0o644)?),
                }
                self.created
                    .push((rel.to_string(), Some(parent_stat.mtime)));
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Without a mount namespace: a copy of `host` at `rel` for the command, only where the
    /// image has nothing there.
    pub fn provide_file(&mut self, rel: &str, host: &Path) -> Result<()> {
        if self.root.lstat(rel).is_ok() {
            return Ok(());
        }
        if self.ensure(rel, Kind::File)? {
            let data = std::fs::read(host).unwrap_or_default();
            let mut f = self.root.create_file(rel, 0o644)?;
            f.write_all(&data).map_err(|source| Error::Io {
                path: host.to_path_buf(),
                source,
            })?;
        }
        Ok(())
    }

    /// Without a mount namespace: the basic device nodes in /dev (where mknod is allowed
    /// and the image has none), removed afterwards.
    pub fn provide_devices(&mut self) -> Result<()> {
        if !self.ensure("dev", Kind::Dir)? {
            return Ok(());
        }
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            let rel = format!("dev/{name}");
            if self.root.lstat(&rel).is_ok() {
                continue;
            }
            let parent_mtime = self.root.lstat("dev").ok().map(|s| s.mtime);
            let dev = rustix::fs::makedev(major, minor);
            if self.root.mknod(&rel, Kind::CharDevice, 0o666, dev).is_err() {
                continue;
            }
            let _ = self.root.set_meta(
                &rel,
                &Meta {
                    mode: Some(0o666),
                    ..Meta::default()
                },
            );
            self.created.push((rel, parent_mtime));
        }
        Ok(())
    }

    /// Makes a mount target exist (missing parents too); Ok(true) when kiln created it.
    pub(super) fn ensure_target(&mut self, rel: &str, dir: bool) -> Result<bool> {
        match self.root.stat(rel) {
            Ok(st) if (st.kind == Kind::Dir) == dir => return Ok(false),
            Ok(_) => {
                return Err(Error::Mount {
                    kind: if dir { "directory" } else { "file" },
                    what: format!("target=/{rel}"),
                    why: "the target exists with another file type".into(),
                })
            }
            Err(crate::rootfs::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
        // the first missing ancestor: the one whose parent's mtime must be restored
        let mut first = parent.to_string();
        while !first.is_empty() && self.root.lstat(&first).is_err() {
            first = first.rsplit_once('/').map_or("", |(p, _)| p).to_string();
        }
        let keep_mtime = self.root.lstat(&first).ok().map(|s| s.mtime);
        let made = self.root.mkdir_all(parent, 0o755)?;
        let mut first_made = true;
        for p in made {
            self.created
                .push((p, if first_made { keep_mtime } else { None }));
            first_made = false;
        }
        let parent_mtime = if first_made {
            self.root.lstat(parent).ok().map(|s| s.mtime)
        } else {
            None
        };
        if dir {
            self.root.mkdir(rel, 0o755)?;
        } else {
            drop(self.root.create_file(rel, 0o600)?);
        }
        self.created.push((rel.to_string(), parent_mtime));
        Ok(true)
    }

    /// Removes what was made, deepest first, restoring each parent's mtime; returns those
    /// parents (their ctime still moved: a walk is told it was kiln's doing).
    pub fn undo(self) -> Result<Vec<String>> {
        let mut settled = Vec::new();
        for (rel, parent_mtime) in self.created.into_iter().rev() {
            self.root.remove(&rel, true)?;
            let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
            if let Some(mtime) = parent_mtime {
                self.root.set_meta(
                    parent,
                    &Meta {
                        mtime: Some(mtime),
                        ..Meta::default()
                    },
                )?;
                settled.push(parent.to_string());
            }
        }
        settled.sort();
        settled.dedup();
        Ok(settled)
    }
}
