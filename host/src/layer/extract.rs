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
use std::os::unix::ffi::OsStrExt;

use sha2::{Digest as _, Sha256};

use super::bounds::{shown_name, TarGuard, MAX_PATH, MAX_XATTR_VALUE};
use super::compress::decompress;
use super::{xattr, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::rootfs::{clean_bytes, join_bytes, Error, Kind, Meta, Result, Root};

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
    extract_stream(root, dir, guard, whiteouts, what).map_err(|e| bounded(e, &refusal, what))
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
) -> Result<Vec<Vec<u8>>> {
    let mut archive = tar::Archive::new(reader);
    let mut run = Extraction {
        root,
        dir,
        whiteouts,
        what,
        written: Vec::new(),
        this_layer: HashSet::new(),
        dir_times: Vec::new(),
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
    let stream = decompress(reader).map_err(io_err(what.as_bytes(), "decompress"))?;
    let guard = TarGuard::new(stream);
    let refusal = guard.refusal();
    let mut hashing = HashingReader {
        inner: guard,
        hasher: Sha256::new(),
    };
    let written = extract_stream(root, "", &mut hashing, Whiteouts::Apply, what)
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
    written: Vec<Vec<u8>>,
    /// paths this archive wrote: an opaque marker after them must leave them alone
    this_layer: HashSet<Vec<u8>>,
    /// directories' archive mtimes, restored once their children are in
    dir_times: Vec<(Vec<u8>, (i64, u32))>,
}

/// What became of an entry's node.
enum Placed {
    /// made: its metadata is applied next
    Node,
    /// a hardlink: it shares its target's metadata
    Link,
    /// not made (unsupported type, or a device node without the privilege)
    Skipped,
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

        if self.whiteouts == Whiteouts::Apply && name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
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
        self.root.mkdir_all(parent, 0o755)?;
        let mode = header.mode().map_err(io_err(&rel, "read mode"))? & 0o7777;
        tracing::trace!(path = %rel.escape_ascii(), kind = ?kind, "extract");
        match self.place(entry, &rel, mode)? {
            Placed::Skipped => return Ok(()),
            Placed::Link => {}
            Placed::Node => {
                let mtime = pax_meta(self.root, entry, &rel, &header)?;
                apply_meta(self.root, &rel, &header, mtime)?;
                if let (true, Some(m)) = (kind.is_dir(), mtime) {
                    self.dir_times.push((rel.clone(), m));
                }
            }
        }
        self.written.push(rel.clone());
        self.this_layer.insert(rel);
        Ok(())
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

    /// Makes the entry's node at `rel`, replacing what is there (a directory stays when the
    /// entry is one too).
    fn place<R: Read>(&self, entry: &mut tar::Entry<R>, rel: &[u8], mode: u32) -> Result<Placed> {
        let root = self.root;
        let kind = entry.header().entry_type();
        let existing = root.lstat(rel).ok();
        if kind.is_dir() {
            match existing {
                Some(st) if st.kind == Kind::Dir => {}
                Some(_) => {
                    root.remove(rel, true)?;
                    root.mkdir(rel, mode)?;
                }
                None => root.mkdir(rel, mode)?,
            }
            return Ok(Placed::Node);
        }
        if existing.is_some() {
            root.remove(rel, true)?;
        }
        if kind.is_symlink() {
            root.symlink(OsStr::from_bytes(&link_name(entry, rel)?), rel)?;
        } else if kind.is_hard_link() {
            self.hardlink(&link_name(entry, rel)?, rel)?;
            return Ok(Placed::Link);
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            return Ok(special(root, entry.header(), rel, mode));
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let mut file = root.create_file(rel, mode)?;
            std::io::copy(entry, &mut file).map_err(io_err(rel, "write"))?;
        } else {
            tracing::debug!(path = %rel.escape_ascii(), kind = ?kind, "skipping unsupported tar entry");
            return Ok(Placed::Skipped);
        }
        Ok(Placed::Node)
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

    /// Restores directory mtimes (children bumped their parents'), deepest first, and
    /// returns the paths written.
    fn finish(self) -> Result<Vec<Vec<u8>>> {
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

/// Applies the entry's PAX records that the header cannot hold: xattrs are set on `rel` (one
/// past `MAX_XATTR_VALUE` fails the extraction), and the mtime (the PAX one, sub-second, over the header's) is returned.
fn pax_meta<R: Read>(
    root: &Root,
    entry: &mut tar::Entry<R>,
    rel: &[u8],
    header: &tar::Header,
) -> Result<Option<(i64, u32)>> {
    let mut mtime = header.mtime().ok().map(|m| (m as i64, 0u32));
    if let Ok(Some(exts)) = entry.pax_extensions() {
        for ext in exts.flatten() {
            if let Ok(key) = ext.key() {
                if key == "mtime" {
                    mtime = ext.value().ok().and_then(parse_pax_time).or(mtime);
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
                    if let Err(e) = root.set_xattr(rel, x, ext.value_bytes()) {
                        let path = rel.escape_ascii();
                        tracing::warn!(path = %path, xattr = x, error = %e, "could not keep xattr");
                    }
                }
            }
        }
    }
    Ok(mtime)
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
