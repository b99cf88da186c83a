//! Safe layer extraction: a tar stream (an image layer or an `ADD` archive) applied to a root.
//!
//! Every entry goes through `rootfs::Root`, so `../x`, absolute names, absolute symlinks and
//! symlinked parents all resolve inside the root. OCI whiteouts are applied (`.wh..wh..opq`
//! checked before the generic `.wh.` prefix); owners, modes, mtimes, xattrs, hardlinks,
//! symlinks, device nodes and FIFOs are kept. Compression is detected from the stream's magic
//! bytes (`compress::decompress`). Errors are the root's (`rootfs::Error`): every failure is
//! an operation on a path inside it.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};

use sha2::{Digest as _, Sha256};

use super::bounds::{shown_name, TarGuard, MAX_PATH, MAX_XATTR_VALUE};
use super::compress::decompress;
use super::dirs::{errno, Dirs};
use super::nodes::{
    create_file, finish_file, set_meta_at, FileJob, NodeMeta, Writers, QUEUED_FILE_MAX,
};
use super::{xattr, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::rootfs::{clean_bytes, clean_rel, join_bytes, Error, Kind, Meta, Result, Root};

/// Whether a stream is a tar archive, maybe compressed: its (decompressed) first entry reads
/// as a tar header, as Docker's ADD decides. A compressed file that is not a tar (a `.gz` of
/// a text file) is not an archive; an empty tar is not one either.
pub fn is_archive<R: Read>(reader: R) -> bool {
    let Ok(stream) = decompress(reader) else {
        return false;
    };
    let mut archive = tar::Archive::new(TarGuard::new(stream));
    let Ok(mut entries) = archive.entries() else {
        return false;
    };
    matches!(entries.next(), Some(Ok(_)))
}

/// How to treat whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// image layers: apply them as deletions
    Apply,
    /// ADD archives: ordinary files
    Keep,
}

fn io_err<'a>(path: &'a [u8], op: &'static str) -> impl Fn(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: format!("/{}", path.escape_ascii()),
        op,
        source,
    }
}

/// Unpacks a (possibly compressed) tar stream into `dir` inside `root`. Returns the paths
/// written, relative to the root, with their names' bytes as the archive has them.
pub fn extract<R: Read>(
    root: &Root,
    dir: &str,
    reader: R,
    whiteouts: Whiteouts,
    what: &str,
) -> Result<Vec<Vec<u8>>> {
    let reader = decompress(reader).map_err(io_err(what.as_bytes(), "decompress"))?;
    let guard = TarGuard::new(reader);
    let refusal = guard.refusal();
    extract_stream(root, dir, guard, whiteouts, what, None).map_err(|e| bounded(e, &refusal, what))
}

/// The error of an extraction the guard stopped names the bound (the `tar` crate may have
/// put its own words over the guard's).
fn bounded(e: Error, refusal: &std::sync::OnceLock<String>, what: &str) -> Error {
    match refusal.get() {
        Some(why) => Error::Io {
            // layers are named by digest, ADD archives by their path (`/app.tar`)
            path: format!("/{}", shown_name(what.trim_start_matches('/').as_bytes())),
            op: "refused",
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, why.clone()),
        },
        None => e,
    }
}

/// Unpacks an uncompressed tar stream.
fn extract_stream<R: Read>(
    root: &Root,
    dir: &str,
    reader: R,
    whiteouts: Whiteouts,
    what: &str,
    within: Option<&Within>,
) -> Result<Vec<Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    let mut run = Extraction {
        root,
        dir,
        whiteouts,
        what,
        within,
        written: Vec::new(),
        this_layer: HashSet::new(),
        dir_times: Vec::new(),
        dirs: Dirs::default(),
        writers: Writers::default(),
    };
    let entries = archive
        .entries()
        .map_err(io_err(what.as_bytes(), "read tar"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err(what.as_bytes(), "read tar entry"))?;
        run.entry(&mut entry)?;
    }
    run.finish()
}

/// Unpacks an image layer into `root`, checking that the uncompressed stream is the one the
/// image's config names (`diff_id`, `sha256:<hex>`): a layer that does not match is refused
/// with the two digests, after which the root must not be used.
pub fn extract_layer<R: Read>(
    root: &Root,
    reader: R,
    what: &str,
    diff_id: &str,
) -> Result<Vec<Vec<u8>>> {
    extract_layer_within(root, reader, what, diff_id, None)
}

/// The paths a partial extraction keeps: each one, everything under it, and the directories
/// on the way to it (with the metadata the layers give them). Whiteouts and opaque markers
/// apply only where they fall inside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Within {
    paths: Vec<Vec<u8>>,
}

impl Within {
    /// `paths` relative to the root (`app/bin`; cleaned here).
    pub fn new<P: AsRef<[u8]>>(paths: &[P]) -> Within {
        let mut paths: Vec<Vec<u8>> = paths.iter().map(|p| clean_rel(p.as_ref())).collect();
        paths.sort();
        paths.dedup();
        Within { paths }
    }

    /// Whether `rel` (cleaned, relative) is kept.
    pub fn wants(&self, rel: &[u8]) -> bool {
        rel.is_empty()
            || self
                .paths
                .iter()
                .any(|p| p.is_empty() || rel == p || is_under(rel, p) || is_under(p, rel))
    }

    /// Whether `rel` is one of the paths or under one (not merely on the way to one).
    pub fn covers(&self, rel: &[u8]) -> bool {
        self.paths
            .iter()
            .any(|p| p.is_empty() || rel == p || is_under(rel, p))
    }

    /// The paths, cleaned and sorted.
    pub fn paths(&self) -> &[Vec<u8>] {
        &self.paths
    }
}

/// Whether `path` is strictly below the directory `dir` (both cleaned and relative).
fn is_under(path: &[u8], dir: &[u8]) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
}

/// Unpacks only what `within` keeps of an image layer (all of it when `None`), the whole
/// stream still read and checked against `diff_id` as in [`extract_layer`].
pub fn extract_layer_within<R: Read>(
    root: &Root,
    reader: R,
    what: &str,
    diff_id: &str,
    within: Option<&Within>,
) -> Result<Vec<Vec<u8>>> {
    let stream = decompress(reader).map_err(io_err(what.as_bytes(), "decompress"))?;
    let guard = TarGuard::new(stream);
    let refusal = guard.refusal();
    let mut hashing = HashingReader {
        inner: guard,
        hasher: Sha256::new(),
    };
    let written = extract_stream(root, "", &mut hashing, Whiteouts::Apply, what, within)
        .map_err(|e| bounded(e, &refusal, what))?;
    // the diff_id covers the whole stream, padding after the end-of-archive blocks included
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(io_err(what.as_bytes(), "read layer"))
        .map_err(|e| bounded(e, &refusal, what))?;
    let got = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    if got != diff_id {
        return Err(Error::Io {
            path: format!("/ (layer {what})"),
            op: "verify diff_id",
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the image config says {diff_id}, the layer's content is {got}"),
            ),
        });
    }
    Ok(written)
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// One extraction under way: where it writes and what it has written so far.
struct Extraction<'a> {
    root: &'a Root,
    /// the directory inside the root that entry names are relative to
    dir: &'a str,
    whiteouts: Whiteouts,
    /// the archive, in errors
    what: &'a str,
    /// a partial extraction: what it keeps
    within: Option<&'a Within>,
    written: Vec<Vec<u8>>,
    /// paths this archive wrote: an opaque marker after them must leave them alone
    this_layer: HashSet<Vec<u8>>,
    /// directories' archive mtimes, restored once their children are in
    dir_times: Vec<(Vec<u8>, (i64, u32))>,
    /// parent directories kept open between entries
    dirs: Dirs,
    /// the threads writing small files
    writers: Writers,
}

/// What became of an entry's node.
enum Placed {
    /// made: its metadata is applied next
    Node,
    /// a small file handed to a writer with its metadata
    Queued,
    /// a hardlink: it shares its target's metadata
    Link,
    /// not made (unsupported type, or a device node without the privilege)
    Skipped,
}

/// An entry's node: the path, its parent's open handle and its own name in it.
struct At<'r> {
    rel: &'r [u8],
    parent: &'r [u8],
    dir: Arc<OwnedFd>,
    name: &'r OsStr,
}

impl Extraction<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<()> {
        self.check_lengths(entry)?;
        let comps = clean_bytes(&entry.path_bytes());
        let rel = self.within_dir(&comps);
        let header = entry.header().clone();
        let kind = header.entry_type();
        let name = comps.last().map(|c| c.as_slice()).unwrap_or(b"");
        let parent = parent_of(&rel);

        let is_whiteout =
            self.whiteouts == Whiteouts::Apply && name.starts_with(WHITEOUT_PREFIX.as_bytes());
        if let Some(within) = self.within {
            // a whiteout is decided by what it removes
            let decides = match is_whiteout {
                true if name == OPAQUE_WHITEOUT.as_bytes() => parent.to_vec(),
                true => join_bytes(parent, &name[WHITEOUT_PREFIX.len()..]),
                false => rel.clone(),
            };
            if !within.wants(&decides) {
                return Ok(());
            }
        }
        if is_whiteout {
            // after the files queued before it; it removes, so open handles may be stale
            self.writers.settle()?;
            self.dirs.forget();
            return self.whiteout(parent, name);
        }
        if rel.is_empty() {
            // the root directory itself: only its metadata
            if kind.is_dir() {
                let mtime = header.mtime().ok().map(|m| (m as i64, 0));
                apply_meta(self.root, b"", &header, mtime)?;
            }
            return Ok(());
        }
        if kind.is_hard_link() || self.this_layer.contains(&rel) {
            // its target, or an earlier entry of the same name, may still be queued
            self.writers.settle()?;
        }
        let leaf = &rel[rel.len() - name.len()..];
        let at = At {
            rel: &rel,
            parent,
            dir: self.dirs.get(self.root, parent)?,
            name: OsStr::from_bytes(leaf),
        };
        let mode = header.mode().map_err(io_err(&rel, "read mode"))? & 0o7777;
        tracing::trace!(path = %rel.escape_ascii(), kind = ?kind, "extract");
        match self.place(entry, &at, mode)? {
            Placed::Skipped => return Ok(()),
            Placed::Link | Placed::Queued => {}
            Placed::Node => {
                let mut meta = node_meta(entry, &rel, &header)?;
                meta.mode = mode;
                set_meta_at(at.dir.as_fd(), at.name, &rel, &meta, kind.is_symlink())?;
                self.set_xattrs(&rel, &meta.xattrs);
                if let (true, Some(m)) = (kind.is_dir(), meta.mtime) {
                    self.dir_times.push((rel.clone(), m));
                }
            }
        }
        self.written.push(rel.clone());
        self.this_layer.insert(rel);
        Ok(())
    }

    /// xattrs on a node the extractor made itself (a directory, a special file, a large
    /// file): through the root, which opens regular files and directories only.
    fn set_xattrs(&self, rel: &[u8], xattrs: &[(String, Vec<u8>)]) {
        for (key, value) in xattrs {
            if let Err(e) = self.root.set_xattr(rel, key, value) {
                let path = rel.escape_ascii();
                tracing::warn!(path = %path, xattr = key, error = %e, "could not keep xattr");
            }
        }
    }

    /// Refuses an entry whose name or link target is longer than `PATH_MAX`, showing only
    /// the start of it.
    fn check_lengths<R: Read>(&self, entry: &tar::Entry<R>) -> Result<()> {
        let name = entry.path_bytes();
        let link = entry.link_name_bytes().unwrap_or_default();
        for (which, bytes) in [("name", &name), ("link target", &link)] {
            if bytes.len() > MAX_PATH {
                return Err(Error::Io {
                    path: format!("/{} (in {})", shown_name(&name), shown_name(self.what.as_bytes())),
                    op: "refused",
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "the entry's {which} is {} bytes long; the limit is {MAX_PATH} (PATH_MAX)",
                            bytes.len()
                        ),
                    ),
                });
            }
        }
        Ok(())
    }

    /// Cleaned name components as a root-relative path under `dir`.
    fn within_dir(&self, comps: &[Vec<u8>]) -> Vec<u8> {
        join_bytes(self.dir.as_bytes(), &comps.join(&b'/'))
    }

    /// Applies a whiteout entry named `name` in `parent`: the opaque marker hides what lower
    /// layers put in the directory, any other `.wh.<name>` deletes its namesake.
    fn whiteout(&self, parent: &[u8], name: &[u8]) -> Result<()> {
        if name == OPAQUE_WHITEOUT.as_bytes() {
            for child in self.root.read_dir(parent).unwrap_or_default() {
                let child = join_bytes(parent, child.as_bytes());
                if !self.this_layer.contains(&child) {
                    self.root.remove(&child, true)?;
                }
            }
        } else {
            let victim = &name[WHITEOUT_PREFIX.len()..];
            self.root.remove(join_bytes(parent, victim), true)?;
        }
        Ok(())
    }

    /// Removes what is at the entry's path (after the queued files: one may be under it),
    /// and forgets the open directories, which may have been resolved through it.
    fn replace(&mut self, rel: &[u8]) -> Result<()> {
        self.writers.settle()?;
        self.dirs.forget();
        self.root.remove(rel, true)
    }

    /// Makes the entry's node, replacing what is there (a directory stays when the entry is
    /// one too).
    fn place<R: Read>(&mut self, entry: &mut tar::Entry<R>, at: &At, mode: u32) -> Result<Placed> {
        let (root, rel) = (self.root, at.rel);
        let kind = entry.header().entry_type();
        let existing = rfs::statat(&*at.dir, at.name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| FileType::from_raw_mode(st.st_mode));
        if kind.is_dir() {
            if existing != Some(FileType::Directory) {
                if existing.is_some() {
                    self.replace(rel)?;
                }
                rfs::mkdirat(&*at.dir, at.name, Mode::from_raw_mode(mode))
                    .map_err(|e| errno(rel, "mkdir", e))?;
            }
            return Ok(Placed::Node);
        }
        if existing.is_some() {
            self.replace(rel)?;
        }
        if kind.is_symlink() {
            let target = link_name(entry, rel)?;
            rfs::symlinkat(OsStr::from_bytes(&target), &*at.dir, at.name)
                .map_err(|e| errno(rel, "symlink", e))?;
        } else if kind.is_hard_link() {
            self.hardlink(&link_name(entry, rel)?, rel)?;
            return Ok(Placed::Link);
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            return Ok(special(root, entry.header(), rel, mode));
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            return self.file(entry, at, mode);
        } else {
            tracing::debug!(path = %rel.escape_ascii(), kind = ?kind, "skipping unsupported tar entry");
            return Ok(Placed::Skipped);
        }
        Ok(Placed::Node)
    }

    /// A regular file: a small one queued for a writer with its bytes and metadata, a large
    /// one written from the stream here.
    fn file<R: Read>(&mut self, entry: &mut tar::Entry<R>, at: &At, mode: u32) -> Result<Placed> {
        let rel = at.rel;
        let header = entry.header().clone();
        let size = entry.size();
        if size <= QUEUED_FILE_MAX {
            let mut data = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut data)
                .map_err(io_err(rel, "read tar entry"))?;
            let mut meta = node_meta(entry, rel, &header)?;
            meta.mode = mode;
            let job = FileJob {
                dir: at.dir.clone(),
                name: at.name.to_os_string(),
                rel: rel.to_vec(),
                data,
                meta,
            };
            self.writers.queue(at.parent, job)?;
            return Ok(Placed::Queued);
        }
        let mut file = create_file(at.dir.as_fd(), at.name, rel, mode)?;
        std::io::copy(entry, &mut file).map_err(io_err(rel, "write"))?;
        let mut meta = node_meta(entry, rel, &header)?;
        meta.mode = mode;
        finish_file(&file, rel, &meta)?;
        Ok(Placed::Queued)
    }

    /// A hardlink at `rel` to `target`, an archive name (so under `dir`, inside the root).
    fn hardlink(&self, target: &[u8], rel: &[u8]) -> Result<()> {
        let target = join_bytes(self.dir.as_bytes(), &clean_bytes(target).join(&b'/'));
        self.root.link(&target, rel).map_err(|e| match e {
            Error::NotFound { .. } => Error::NotFound {
                path: format!(
                    "/{} (hardlink target of /{} in {})",
                    target.escape_ascii(),
                    rel.escape_ascii(),
                    self.what
                ),
            },
            e => e,
        })
    }

    /// Waits for the writers, restores directory mtimes (children bumped their parents'),
    /// deepest first, and returns the paths written.
    fn finish(self) -> Result<Vec<Vec<u8>>> {
        self.writers.settle()?;
        for (rel, mtime) in self.dir_times.into_iter().rev() {
            self.root.set_meta(
                &rel,
                &Meta {
                    mtime: Some(mtime),
                    ..Meta::default()
                },
            )?;
        }
        Ok(self.written)
    }
}

/// A device node or FIFO; skipped with a warning where it cannot be made.
fn special(root: &Root, header: &tar::Header, rel: &[u8], mode: u32) -> Placed {
    let kind = header.entry_type();
    let k = if kind.is_character_special() {
        Kind::CharDevice
    } else if kind.is_block_special() {
        Kind::BlockDevice
    } else {
        Kind::Fifo
    };
    let major = header.device_major().ok().flatten().unwrap_or(0) as u64;
    let minor = header.device_minor().ok().flatten().unwrap_or(0) as u64;
    let dev = rustix::fs::makedev(major as u32, minor as u32);
    match root.mknod(rel, k, mode, dev) {
        Ok(()) => Placed::Node,
        Err(e) => {
            // unprivileged: device nodes cannot be made; the base keeps them in its layer
            tracing::warn!(path = %rel.escape_ascii(), error = %e, "skipping device node");
            Placed::Skipped
        }
    }
}

fn link_name<R: Read>(entry: &tar::Entry<R>, rel: &[u8]) -> Result<Vec<u8>> {
    entry
        .link_name_bytes()
        .map(|target| target.into_owned())
        .ok_or_else(|| io_err(rel, "read link")(std::io::ErrorKind::InvalidData.into()))
}

/// The entry's owner and times, with the PAX records the header cannot hold: xattrs (one
/// past `MAX_XATTR_VALUE` fails the extraction) and the mtime (the PAX one, sub-second, over
/// the header's). The mode is the caller's.
fn node_meta<R: Read>(
    entry: &mut tar::Entry<R>,
    rel: &[u8],
    header: &tar::Header,
) -> Result<NodeMeta> {
    let mut meta = NodeMeta {
        mode: 0,
        uid: header.uid().ok().map(|u| u as u32),
        gid: header.gid().ok().map(|g| g as u32),
        mtime: header.mtime().ok().map(|m| (m as i64, 0u32)),
        xattrs: Vec::new(),
    };
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Ok(meta);
    };
    for ext in exts.flatten() {
        let Ok(key) = ext.key() else { continue };
        if key == "mtime" {
            meta.mtime = ext.value().ok().and_then(parse_pax_time).or(meta.mtime);
        } else if let Some(x) = xattr::name_of(key) {
            let size = ext.value_bytes().len();
            if size > MAX_XATTR_VALUE {
                return Err(Error::Io {
                    path: format!("/{}", shown_name(rel)),
                    op: "refused",
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("xattr {} is {size} bytes; the limit is {MAX_XATTR_VALUE} (XATTR_SIZE_MAX)", shown_name(x.as_bytes())),
                    ),
                });
            }
            meta.xattrs
                .push((x.to_string(), ext.value_bytes().to_vec()));
        }
    }
    Ok(meta)
}

/// A PAX time (`1700000000.5`, `-1.25`) as seconds and nanoseconds.
fn parse_pax_time(v: &str) -> Option<(i64, u32)> {
    let (sec, frac) = v.split_once('.').unwrap_or((v, ""));
    let sec: i64 = sec.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nsec: u32 = format!("{digits:0<9}").parse().ok()?;
    Some((sec, nsec))
}

fn apply_meta(
    root: &Root,
    rel: &[u8],
    header: &tar::Header,
    mtime: Option<(i64, u32)>,
) -> Result<()> {
    let meta = Meta {
        mode: header.mode().ok().map(|m| m & 0o7777),
        uid: header.uid().ok().map(|u| u as u32),
        gid: header.gid().ok().map(|g| g as u32),
        mtime,
    };
    match root.set_meta(rel, &meta) {
        // unprivileged extraction cannot chown: keep going with the caller's ids
        Err(Error::Io { source, .. })
            if matches!(
                source.kind(),
                // EINVAL: the id is not mapped in a rootless user namespace
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput
            ) =>
        {
            root.set_meta(
                rel,
                &Meta {
                    uid: None,
                    gid: None,
                    ..meta
                },
            )
        }
        other => other,
    }
}

fn parent_of(rel: &[u8]) -> &[u8] {
    rel.iter()
        .rposition(|b| *b == b'/')
        .map_or(&[], |i| &rel[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_size(data.len() as u64);
            h.set_mtime(1_700_000_000);
            // raw name bytes: tar's set_path refuses `..`, which is the point here
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn diff_id(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    #[test]
    fn a_partial_extraction_keeps_its_paths_and_the_way_to_them() {
        use tar::EntryType::*;
        let l1 = layer(&[
            ("a/", Directory, b"", ""),
            ("a/keep", Regular, b"1", ""),
            ("a/gone", Regular, b"2", ""),
            ("b/", Directory, b"", ""),
            ("b/x", Regular, b"3", ""),
            ("c/", Directory, b"", ""),
            ("c/deep/", Directory, b"", ""),
            ("c/deep/f", Regular, b"4", ""),
            ("c/other", Regular, b"5", ""),
        ]);
        let l2 = layer(&[
            ("a/.wh.gone", Regular, b"", ""),
            ("a/new", Regular, b"6", ""),
            ("b/.wh..wh..opq", Regular, b"", ""),
            ("b/y", Regular, b"7", ""),
        ]);
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("r")).unwrap();
        let within = Within::new(&["a", "/c/deep/f"]);
        for l in [&l1, &l2] {
            extract_layer_within(&root, &l[..], "l", &diff_id(l), Some(&within)).unwrap();
        }
        let names = |d: &str| -> Vec<String> {
            root.read_dir(d)
                .unwrap()
                .into_iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(""), ["a", "c"]);
        assert_eq!(names("a"), ["keep", "new"]);
        assert_eq!(names("c"), ["deep"]);
        assert_eq!(names("c/deep"), ["f"]);
        assert!(within.covers(b"a/new") && !within.covers(b"c") && within.wants(b"c"));
        // the whole stream is still checked
        let wrong = diff_id(&l1);
        assert!(extract_layer_within(&root, &l2[..], "l2", &wrong, Some(&within)).is_err());
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("r")).unwrap();
        use tar::EntryType::*;
        let l1 = layer(&[
            ("a/", Directory, b"", ""),
            ("a/keep", Regular, b"1", ""),
            ("a/gone", Regular, b"2", ""),
            ("d/", Directory, b"", ""),
            ("d/old", Regular, b"3", ""),
        ]);
        extract(&root, "", &l1[..], Whiteouts::Apply, "l1").unwrap();
        let l2 = layer(&[
            ("a/.wh.gone", Regular, b"", ""),
            ("d/", Directory, b"", ""),
            ("d/.wh..wh..opq", Regular, b"", ""),
            ("d/new", Regular, b"4", ""),
        ]);
        extract(&root, "", &l2[..], Whiteouts::Apply, "l2").unwrap();
        let r = tmp.path().join("r");
        assert!(r.join("a/keep").exists());
        assert!(!r.join("a/gone").exists());
        assert!(!r.join("d/old").exists());
        assert!(r.join("d/new").exists());
        assert!(!r.join("d/.wh..wh..opq").exists());
    }

    #[test]
    fn hostile_entries_stay_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("r")).unwrap();
        use tar::EntryType::*;
        let l = layer(&[
            ("../escape", Regular, b"x", ""),
            ("x", Symlink, b"", "/"),
            ("x/etc/kiln-canary", Regular, b"y", ""),
            ("etc/", Directory, b"", ""),
            ("etc/hostname", Regular, b"h", ""),
            ("hl", Link, b"", "/etc/hostname"),
            ("hl2", Link, b"", "../../etc/hostname"),
        ]);
        extract(&root, "", &l[..], Whiteouts::Apply, "hostile").unwrap();
        let r = tmp.path().join("r");
        assert!(!tmp.path().join("escape").exists());
        assert!(r.join("escape").exists());
        assert!(r.join("etc/kiln-canary").exists());
        assert_eq!(std::fs::read(r.join("hl")).unwrap(), b"h");
        assert_eq!(std::fs::read(r.join("hl2")).unwrap(), b"h");
    }

    #[test]
    fn names_that_are_not_utf8_keep_their_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("r")).unwrap();
        let tar_of = |entries: &[&[u8]]| {
            let mut b = tar::Builder::new(Vec::new());
            for name in entries {
                let mut h = tar::Header::new_gnu();
                let dir = name.ends_with(b"/");
                h.set_entry_type(if dir {
                    tar::EntryType::Directory
                } else {
                    tar::EntryType::Regular
                });
                h.set_mode(0o755);
                h.set_size(if dir { 0 } else { 1 });
                h.as_old_mut().name[..name.len()].copy_from_slice(name);
                h.set_cksum();
                let data: &[u8] = if dir { b"" } else { b"x" };
                b.append(&h, data).unwrap();
            }
            b.into_inner().unwrap()
        };
        let l1 = tar_of(&[
            b"d\xff/",
            b"d\xff/keep\xfe",
            b"d\xff/gone\xfd",
            b"o/",
            b"o/old\xfc",
        ]);
        let written = extract(&root, "", &l1[..], Whiteouts::Apply, "l1").unwrap();
        assert!(written.contains(&b"d\xff/keep\xfe".to_vec()), "{written:?}");
        let l2 = tar_of(&[b"d\xff/.wh.gone\xfd", b"o/", b"o/.wh..wh..opq"]);
        extract(&root, "", &l2[..], Whiteouts::Apply, "l2").unwrap();
        let r = tmp.path().join("r");
        let at = |b: &[u8]| r.join(OsStr::from_bytes(b));
        assert!(at(b"d\xff/keep\xfe").exists());
        assert!(!at(b"d\xff/gone\xfd").exists());
        assert!(!at(b"o/old\xfc").exists());
        assert_eq!(
            std::fs::read_dir(&r).unwrap().count(),
            2,
            "no renamed copies"
        );
    }
    #[test]
    fn a_directory_replaced_by_a_symlink_sends_later_entries_through_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("r")).unwrap();
        use tar::EntryType::*;
        let l = layer(&[
            ("etc/", Directory, b"", ""),
            ("x/", Directory, b"", ""),
            ("d/", Directory, b"", ""),
            ("d/before", Regular, b"1", ""),
            // `l/…` is resolved through the symlink, so its open handle is x's
            ("l", Symlink, b"", "x"),
            ("l/one", Regular, b"2", ""),
            // replaced between entries: the handles kept for d and l/x are stale now
            ("d", Symlink, b"", "/etc"),
            ("d/after", Regular, b"3", ""),
            ("x", Symlink, b"", "../../../etc"),
            ("l/two", Regular, b"4", ""),
            ("up", Symlink, b"", "../../../../../.."),
            ("up/top", Regular, b"5", ""),
        ]);
        extract(&root, "", &l[..], Whiteouts::Apply, "replaced").unwrap();
        let r = tmp.path().join("r");
        assert!(r.join("d").is_symlink());
        assert_eq!(std::fs::read(r.join("etc/after")).unwrap(), b"3");
        assert_eq!(std::fs::read(r.join("etc/two")).unwrap(), b"4");
        assert_eq!(std::fs::read(r.join("top")).unwrap(), b"5");
        assert!(!r.join("etc/before").exists() && !r.join("etc/one").exists());
        assert!(!tmp.path().join("top").exists() && !tmp.path().join("etc").exists());
    }

    #[test]
    fn a_hardlink_waits_for_its_target_in_another_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("r")).unwrap();
        use tar::EntryType::*;
        let names: Vec<String> = (0..300).map(|i| format!("a/f{i}")).collect();
        let mut entries = vec![("a/", Directory, &b""[..], ""), ("b/", Directory, b"", "")];
        for n in &names {
            entries.push((n.as_str(), Regular, b"data", ""));
        }
        entries.push(("b/h", Link, b"", "a/f299"));
        entries.push(("c/h", Link, b"", "/a/f0"));
        extract(&root, "", &layer(&entries)[..], Whiteouts::Apply, "links").unwrap();
        let r = tmp.path().join("r");
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &str| std::fs::metadata(r.join(p)).unwrap().ino();
        assert_eq!(ino("b/h"), ino("a/f299"));
        assert_eq!(ino("c/h"), ino("a/f0"));
        assert_eq!(std::fs::read(r.join("b/h")).unwrap(), b"data");
    }

    #[test]
    fn whiteouts_apply_after_the_files_queued_before_them() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("r")).unwrap();
        use tar::EntryType::*;
        let l1 = layer(&[("e/", Directory, b"", ""), ("e/old", Regular, b"o", "")]);
        extract(&root, "", &l1[..], Whiteouts::Apply, "l1").unwrap();
        let names: Vec<String> = (0..200)
            .flat_map(|i| [format!("d/f{i}"), format!("e/n{i}")])
            .collect();
        let mut entries = vec![("d/", Directory, &b""[..], "")];
        for n in &names {
            entries.push((n.as_str(), Regular, b"x", ""));
        }
        entries.push(("d/.wh.f5", Regular, b"", ""));
        entries.push(("e/.wh..wh..opq", Regular, b"", ""));
        entries.push(("d/f5", Regular, b"again", ""));
        entries.push(("d/f7", Regular, b"twice", ""));
        entries.push(("d/.wh.f199", Regular, b"", ""));
        extract(&root, "", &layer(&entries)[..], Whiteouts::Apply, "l2").unwrap();
        let r = tmp.path().join("r");
        assert!(!r.join("e/old").exists(), "opaque: the lower layer's file");
        assert!(!r.join("d/f199").exists(), "removed after it was written");
        assert_eq!(std::fs::read(r.join("d/f5")).unwrap(), b"again");
        assert_eq!(std::fs::read(r.join("d/f7")).unwrap(), b"twice");
        let d = std::fs::read_dir(r.join("d")).unwrap().count();
        let e = std::fs::read_dir(r.join("e")).unwrap().count();
        assert_eq!((d, e), (199, 200));
    }

    #[test]
    fn layers_must_match_their_diff_id() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("r")).unwrap();
        let tar = layer(&[("f", tar::EntryType::Regular, b"1", "")]);
        let right = crate::oci::digest::of_bytes(&tar);
        extract_layer(&root, &tar[..], "sha256:aa", &right).unwrap();
        let wrong = format!("sha256:{}", "0".repeat(64));
        let err = extract_layer(&root, &tar[..], "sha256:aa", &wrong).unwrap_err();
        assert!(
            err.to_string().contains("the image config says sha256:000"),
            "{err}"
        );
    }
}
