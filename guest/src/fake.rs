//! Test double for [`Files`]: in-memory trees with the host's chroot-style path rules done
//! simply (`..` clamped at the root, symlinks followed and re-rooted inside the tree).
//! Root 1 is the stage (read-write), 2 the context and 3 a `--from` root (read-only).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};

use crate::error::FsError;
use crate::files::{Files, Kind, Meta, RootId, Stat};

const STAGE: u32 = 1;
const CONTEXT: u32 = 2;
const FROM: u32 = 3;
/// mtime every fixture entry gets unless a test changes it
pub const FIXTURE_MTIME: (i64, u32) = (1_000, 5);
/// Bytes that mark a fake file as compressed but not a tar (see `FakeFs::is_archive`).
pub const NOT_A_TAR: &[u8] = b"(not a tar)";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Body {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Fifo,
}

#[derive(Clone, Debug)]
struct Node {
    body: Body,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
}

#[derive(Debug)]
struct Tree {
    nodes: BTreeMap<String, Node>,
    read_only: bool,
}

pub struct FakeFs {
    roots: RefCell<BTreeMap<u32, Tree>>,
}

fn join(parts: &[String]) -> String {
    format!("/{}", parts.join("/"))
}

impl Tree {
    fn new(read_only: bool) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert("/".to_string(), dir_node(0o755));
        Tree { nodes, read_only }
    }

    /// Resolves `p`: intermediate symlinks always followed, the final one if `follow`.
    fn resolve(&self, p: &str, follow: bool) -> Result<String, FsError> {
        let mut out: Vec<String> = Vec::new();
        let mut queue: VecDeque<String> = p.split('/').map(str::to_string).collect();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    out.pop();
                    continue;
                }
                _ => {}
            }
            let last = queue.iter().all(|c| c.is_empty() || c == ".");
            let mut cand_parts = out.clone();
            cand_parts.push(c.clone());
            let cand = join(&cand_parts);
            match self.nodes.get(&cand).map(|n| &n.body) {
                Some(Body::Symlink(t)) if !last || follow => {
                    hops += 1;
                    if hops > 40 {
                        return Err(FsError::Invalid(format!("{p}: symlink loop")));
                    }
                    if t.starts_with('/') {
                        out.clear();
                    }
                    for part in t.split('/').rev() {
                        queue.push_front(part.to_string());
                    }
                }
                Some(Body::Dir) => out.push(c),
                Some(_) if !last => return Err(FsError::NotDirectory(cand)),
                Some(_) => out.push(c),
                None if !last => return Err(FsError::NotFound(cand)),
                None => out.push(c),
            }
        }
        Ok(join(&out))
    }

    fn get(&self, p: &str, follow: bool) -> Result<(String, &Node), FsError> {
        let r = self.resolve(p, follow)?;
        match self.nodes.get(&r) {
            Some(n) => Ok((r, n)),
            None => Err(FsError::NotFound(r)),
        }
    }

    /// Where a new entry named by `p` goes; its parent must be a directory.
    fn slot(&self, p: &str) -> Result<String, FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly(p.to_string()));
        }
        let r = self.resolve(p, false)?;
        let parent = match r.rfind('/') {
            Some(0) | None => "/".to_string(),
            Some(i) => r[..i].to_string(),
        };
        match self.nodes.get(&parent).map(|n| &n.body) {
            Some(Body::Dir) => Ok(r),
            Some(_) => Err(FsError::NotDirectory(parent)),
            None => Err(FsError::NotFound(parent)),
        }
    }
}

fn dir_node(mode: u32) -> Node {
    Node {
        body: Body::Dir,
        mode,
        uid: 0,
        gid: 0,
        mtime: FIXTURE_MTIME,
    }
}

fn stat_of(n: &Node) -> Stat {
    let (kind, size) = match &n.body {
        Body::File(b) => (Kind::File, b.len() as u64),
        Body::Dir => (Kind::Dir, 0),
        Body::Symlink(t) => (Kind::Symlink, t.len() as u64),
        Body::Fifo => (Kind::Fifo, 0),
    };
    Stat {
        kind,
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        size,
        mtime_sec: n.mtime.0,
        mtime_nsec: n.mtime.1,
        ino: 0,
        nlink: 1,
    }
}

impl FakeFs {
    pub fn new() -> Self {
        let mut roots = BTreeMap::new();
        roots.insert(STAGE, Tree::new(false));
        roots.insert(CONTEXT, Tree::new(true));
        roots.insert(FROM, Tree::new(true));
        FakeFs {
            roots: RefCell::new(roots),
        }
    }

    pub fn stage(&self) -> RootId {
        RootId(STAGE)
    }

    pub fn context(&self) -> RootId {
        RootId(CONTEXT)
    }

    pub fn from(&self) -> RootId {
        RootId(FROM)
    }

    fn with<T>(
        &self,
        root: RootId,
        f: impl FnOnce(&mut Tree) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        let mut roots = self.roots.borrow_mut();
        let tree = roots
            .get_mut(&root.0)
            .ok_or_else(|| FsError::Invalid(format!("no root {}", root.0)))?;
        f(tree)
    }

    /// Fixture setup: puts a node at a literal path, creating parents 0755 root-owned.
    fn put(&self, root: RootId, p: &str, body: Body, mode: u32) {
        let mut roots = self.roots.borrow_mut();
        let Some(tree) = roots.get_mut(&root.0) else {
            return;
        };
        let parts: Vec<String> = crate::path::components(p)
            .iter()
            .map(|s| s.to_string())
            .collect();
        for i in 1..parts.len() {
            tree.nodes
                .entry(join(&parts[..i]))
                .or_insert_with(|| dir_node(0o755));
        }
        tree.nodes.insert(
            join(&parts),
            Node {
                body,
                mode,
                uid: 0,
                gid: 0,
                mtime: FIXTURE_MTIME,
            },
        );
    }

    pub fn add_file(&self, root: RootId, p: &str, content: &[u8], mode: u32) {
        self.put(root, p, Body::File(content.to_vec()), mode);
    }

    pub fn add_dir(&self, root: RootId, p: &str, mode: u32) {
        self.put(root, p, Body::Dir, mode);
    }

    pub fn add_symlink(&self, root: RootId, p: &str, target: &str) {
        self.put(root, p, Body::Symlink(target.to_string()), 0o777);
    }

    pub fn add_fifo(&self, root: RootId, p: &str) {
        self.put(root, p, Body::Fifo, 0o644);
    }

    /// Fixture setup: owner and mtime of a literal path.
    pub fn set_fixture_meta(&self, root: RootId, p: &str, uid: u32, gid: u32, mtime: (i64, u32)) {
        if let Some(n) = self
            .roots
            .borrow_mut()
            .get_mut(&root.0)
            .and_then(|t| t.nodes.get_mut(p))
        {
            (n.uid, n.gid, n.mtime) = (uid, gid, mtime);
        }
    }

    /// Every literal path in a root but `/`, sorted, with a kind marker: `d:`, `f:`, `l:`.
    pub fn listing(&self, root: RootId) -> Vec<String> {
        let roots = self.roots.borrow();
        let Some(tree) = roots.get(&root.0) else {
            return vec![];
        };
        tree.nodes
            .iter()
            .filter(|(p, _)| p.as_str() != "/")
            .map(|(p, n)| {
                let tag = match &n.body {
                    Body::File(_) => "f",
                    Body::Dir => "d",
                    Body::Symlink(_) => "l",
                    Body::Fifo => "p",
                };
                format!("{tag}:{p}")
            })
            .collect()
    }

    pub fn content(&self, root: RootId, p: &str) -> Option<Vec<u8>> {
        match self.roots.borrow().get(&root.0)?.nodes.get(p)?.body.clone() {
            Body::File(b) => Some(b),
            _ => None,
        }
    }
}

impl Files for FakeFs {
    fn lstat(&self, root: RootId, p: &str) -> Result<Stat, FsError> {
        self.with(root, |t| t.get(p, false).map(|(_, n)| stat_of(n)))
    }

    fn stat(&self, root: RootId, p: &str) -> Result<Stat, FsError> {
        self.with(root, |t| t.get(p, true).map(|(_, n)| stat_of(n)))
    }

    fn readlink(&self, root: RootId, p: &str) -> Result<String, FsError> {
        self.with(root, |t| match t.get(p, false)? {
            (
                _,
                Node {
                    body: Body::Symlink(target),
                    ..
                },
            ) => Ok(target.clone()),
            (r, _) => Err(FsError::Invalid(format!("{r}: not a symlink"))),
        })
    }

    fn read_dir(&self, root: RootId, p: &str) -> Result<Vec<String>, FsError> {
        self.with(root, |t| {
            let (r, n) = t.get(p, true)?;
            if n.body != Body::Dir {
                return Err(FsError::NotDirectory(r));
            }
            let prefix = if r == "/" {
                "/".to_string()
            } else {
                format!("{r}/")
            };
            Ok(t.nodes
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                .map(str::to_string)
                .collect())
        })
    }

    fn read_file(&self, root: RootId, p: &str, max: u64) -> Result<Vec<u8>, FsError> {
        self.with(root, |t| match t.get(p, true)? {
            (
                _,
                Node {
                    body: Body::File(b),
                    ..
                },
            ) => Ok(b[..b.len().min(max as usize)].to_vec()),
            (
                r,
                Node {
                    body: Body::Dir, ..
                },
            ) => Err(FsError::IsDirectory(r)),
            (r, _) => Err(FsError::Invalid(r)),
        })
    }

    fn mkdir(&self, root: RootId, p: &str, mode: u32) -> Result<(), FsError> {
        self.with(root, |t| {
            let r = t.slot(p)?;
            if t.nodes.contains_key(&r) {
                return Err(FsError::Exists(r));
            }
            // simulates a umask of 022, so tests catch a mode that is not set explicitly
            t.nodes.insert(r, dir_node(mode & 0o755));
            Ok(())
        })
    }

    fn symlink(&self, root: RootId, target: &str, p: &str) -> Result<(), FsError> {
        self.with(root, |t| {
            let r = t.slot(p)?;
            if t.nodes.contains_key(&r) {
                return Err(FsError::Exists(r));
            }
            t.nodes.insert(
                r,
                Node {
                    body: Body::Symlink(target.to_string()),
                    mode: 0o777,
                    uid: 0,
                    gid: 0,
                    mtime: (0, 0),
                },
            );
            Ok(())
        })
    }

    fn link(&self, root: RootId, existing: &str, p: &str) -> Result<(), FsError> {
        self.with(root, |t| {
            let (_, n) = t.get(existing, false)?;
            let n = n.clone();
            let r = t.slot(p)?;
            t.nodes.insert(r, n);
            Ok(())
        })
    }

    fn set_meta(&self, root: RootId, p: &str, m: Meta) -> Result<(), FsError> {
        self.with(root, |t| {
            if t.read_only {
                return Err(FsError::ReadOnly(p.to_string()));
            }
            let r = t.resolve(p, false)?;
            let n = t
                .nodes
                .get_mut(&r)
                .ok_or_else(|| FsError::NotFound(r.clone()))?;
            if let (Some(mode), false) = (m.mode, matches!(n.body, Body::Symlink(_))) {
                n.mode = mode & 0o7777;
            }
            n.uid = m.uid.unwrap_or(n.uid);
            n.gid = m.gid.unwrap_or(n.gid);
            n.mtime = m.mtime.unwrap_or(n.mtime);
            Ok(())
        })
    }

    fn remove(&self, root: RootId, p: &str, recursive: bool) -> Result<(), FsError> {
        self.with(root, |t| {
            let r = t.slot(p)?;
            let n = t
                .nodes
                .get(&r)
                .ok_or_else(|| FsError::NotFound(r.clone()))?;
            if n.body == Body::Dir {
                if !recursive {
                    return Err(FsError::IsDirectory(r));
                }
                let prefix = format!("{r}/");
                t.nodes.retain(|k, _| !k.starts_with(&prefix));
            }
            t.nodes.remove(&r);
            Ok(())
        })
    }

    fn copy_node(
        &self,
        from: RootId,
        from_path: &str,
        to: RootId,
        to_path: &str,
    ) -> Result<(), FsError> {
        let src = self.with(from, |t| t.get(from_path, false).map(|(_, n)| n.clone()))?;
        if !matches!(src.body, Body::Fifo) {
            return Err(FsError::Invalid(format!("{from_path}: not a fifo")));
        }
        self.with(to, |t| {
            let r = t.slot(to_path)?;
            t.nodes.insert(
                r,
                Node {
                    uid: 0,
                    gid: 0,
                    ..src
                },
            );
            Ok(())
        })
    }

    fn copy_file(
        &self,
        from: RootId,
        from_path: &str,
        to: RootId,
        to_path: &str,
    ) -> Result<u64, FsError> {
        let src = self.with(from, |t| t.get(from_path, true).map(|(_, n)| n.clone()))?;
        let Body::File(bytes) = &src.body else {
            return Err(FsError::Invalid(format!("{from_path}: not a regular file")));
        };
        self.with(to, |t| {
            let r = t.slot(to_path)?;
            if let Some(Node {
                body: Body::Dir, ..
            }) = t.nodes.get(&r)
            {
                return Err(FsError::IsDirectory(r));
            }
            t.nodes.insert(
                r,
                Node {
                    body: Body::File(bytes.clone()),
                    mode: src.mode,
                    uid: 0,
                    gid: 0,
                    mtime: src.mtime,
                },
            );
            Ok(bytes.len() as u64)
        })
    }

    /// Writes `<to_dir>/unpacked` holding the archive's bytes.
    /// The fake cannot decompress: a file is an archive unless its bytes contain
    /// [`NOT_A_TAR`] (a test's stand-in for a compressed text file).
    fn is_archive(&self, from: RootId, from_path: &str) -> Result<bool, FsError> {
        let bytes = self.read_file(from, from_path, u64::MAX)?;
        Ok(!bytes.windows(NOT_A_TAR.len()).any(|w| w == NOT_A_TAR))
    }

    fn extract_archive(
        &self,
        from: RootId,
        from_path: &str,
        to: RootId,
        to_dir: &str,
    ) -> Result<Vec<String>, FsError> {
        let bytes = self.read_file(from, from_path, u64::MAX)?;
        self.with(to, |t| {
            let dir = t.resolve(to_dir, true)?;
            if t.nodes.get(&dir).map(|n| &n.body) != Some(&Body::Dir) {
                return Err(FsError::NotDirectory(dir));
            }
            let out = if dir == "/" {
                "/unpacked".to_string()
            } else {
                format!("{dir}/unpacked")
            };
            t.nodes.insert(
                out.clone(),
                Node {
                    body: Body::File(bytes),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: (0, 0),
                },
            );
            Ok(vec![out.trim_start_matches('/').to_string()])
        })
    }
}
