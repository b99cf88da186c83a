//! Safe layer extraction: a tar stream (an image layer or an `ADD` archive) applied to a root.
//!
//! Every entry goes through `Root`, so `../x`, absolute names, absolute symlinks and symlinked
//! parents all resolve inside the root. OCI whiteouts are applied (`.wh..wh..opq` checked
//! before the generic `.wh.` prefix); owners, modes, mtimes, xattrs, hardlinks, symlinks,
//! device nodes and FIFOs are kept. Compression is detected from the stream's magic bytes.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;

use super::{clean_bytes, join, Error, Kind, Meta, Result, Root};

/// Marks a directory whose lower-layer contents are hidden.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Prefix of a file that deletes its namesake from lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// How to treat whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// image layers: apply them as deletions
    Apply,
    /// ADD archives: ordinary files
    Keep,
}

/// Wraps a reader in the decompressor its magic bytes call for (gzip, zstd; bzip2 is refused
/// with a clear error, xz likewise, plain tar passes through).
pub fn decompress<'a, R: Read + 'a>(reader: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(1 << 16, reader);
    let head = buf.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buf)))
    } else if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "bzip2 and xz archives are not supported yet",
        ))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(buf)?))
    } else {
        Ok(Box::new(buf))
    }
}

fn io_err<'a>(path: &'a str, op: &'static str) -> impl Fn(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        path: format!("/{path}"),
        op,
        source,
    }
}

/// Unpacks a (possibly compressed) tar stream into `dir` inside `root`. Returns the paths
/// written, relative to the root.
pub fn extract<R: Read>(
    root: &Root,
    dir: &str,
    reader: R,
    whiteouts: Whiteouts,
    what: &str,
) -> Result<Vec<String>> {
    let reader = decompress(reader).map_err(io_err(what, "decompress"))?;
    let mut archive = tar::Archive::new(reader);
    let mut written: Vec<String> = Vec::new();
    let mut this_layer: HashSet<String> = HashSet::new();
    let mut dir_times: Vec<(String, (i64, u32))> = Vec::new();
    let entries = archive.entries().map_err(io_err(what, "read tar"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err(what, "read tar entry"))?;
        let raw_path = entry.path_bytes().into_owned();
        let comps = clean_bytes(&raw_path);
        let mut rel = comps
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if !dir.is_empty() {
            rel = if rel.is_empty() {
                dir.to_string()
            } else {
                join(dir, &rel)
            };
        }
        let header = entry.header().clone();
        let kind = header.entry_type();
        let name = comps.last().map(|c| c.as_slice()).unwrap_or(b"");
        let parent = parent_of(&rel);

        if whiteouts == Whiteouts::Apply && name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            if name == OPAQUE_WHITEOUT.as_bytes() {
                for child in root.read_dir(parent).unwrap_or_default() {
                    let child = join(parent, &child.to_string_lossy());
                    if !this_layer.contains(&child) {
                        root.remove(&child, true)?;
                    }
                }
            } else {
                let victim = String::from_utf8_lossy(&name[WHITEOUT_PREFIX.len()..]).into_owned();
                root.remove(&join(parent, &victim), true)?;
            }
            continue;
        }
        if rel.is_empty() {
            // the root directory itself: only its metadata
            if kind.is_dir() {
                apply_meta(
                    root,
                    "",
                    &header,
                    header.mtime().ok().map(|m| (m as i64, 0)),
                )?;
            }
            continue;
        }
        root.mkdir_all(parent, 0o755)?;
        let existing = root.lstat(&rel).ok();
        let mode = header.mode().map_err(io_err(&rel, "read mode"))? & 0o7777;
        tracing::trace!(path = %rel, kind = ?kind, "extract");
        if kind.is_dir() {
            match existing {
                Some(st) if st.kind == Kind::Dir => {}
                Some(_) => {
                    root.remove(&rel, true)?;
                    root.mkdir(&rel, mode)?;
                }
                None => root.mkdir(&rel, mode)?,
            }
        } else {
            if existing.is_some() {
                root.remove(&rel, true)?;
            }
            if kind.is_symlink() {
                let target = entry.link_name_bytes().ok_or_else(|| {
                    io_err(&rel, "read link")(std::io::ErrorKind::InvalidData.into())
                })?;
                root.symlink(OsStr::from_bytes(&target), &rel)?;
            } else if kind.is_hard_link() {
                let target = entry.link_name_bytes().ok_or_else(|| {
                    io_err(&rel, "read link")(std::io::ErrorKind::InvalidData.into())
                })?;
                let mut target = clean_bytes(&target)
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                if !dir.is_empty() {
                    target = join(dir, &target);
                }
                root.link(&target, &rel).map_err(|e| match e {
                    Error::NotFound { .. } => Error::NotFound {
                        path: format!("/{target} (hardlink target of /{rel} in {what})"),
                    },
                    e => e,
                })?;
                written.push(rel.clone());
                this_layer.insert(rel);
                continue;
            } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
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
                if let Err(e) = root.mknod(&rel, k, mode, dev) {
                    // unprivileged: device nodes cannot be made; the base keeps them in its layer
                    tracing::warn!(path = %rel, error = %e, "skipping device node");
                    continue;
                }
            } else if kind.is_file() || kind == tar::EntryType::Continuous {
                let mut file = root.create_file(&rel, mode)?;
                std::io::copy(&mut entry, &mut file).map_err(io_err(&rel, "write"))?;
            } else {
                tracing::debug!(path = %rel, kind = ?kind, "skipping unsupported tar entry");
                continue;
            }
        }
        let mut mtime = header.mtime().ok().map(|m| (m as i64, 0u32));
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                if let Ok(key) = ext.key() {
                    if key == "mtime" {
                        mtime = ext.value().ok().and_then(parse_pax_time).or(mtime);
                    } else if let Some(x) = key.strip_prefix("SCHILY.xattr.") {
                        if let Err(e) = root.set_xattr(&rel, x, ext.value_bytes()) {
                            tracing::warn!(path = %rel, xattr = x, error = %e, "could not keep xattr");
                        }
                    }
                }
            }
        }
        apply_meta(root, &rel, &header, mtime)?;
        if kind.is_dir() {
            if let Some(m) = mtime {
                dir_times.push((rel.clone(), m));
            }
        }
        written.push(rel.clone());
        this_layer.insert(rel);
    }
    // children bumped their parents' mtimes: restore the archive's, deepest first
    for (rel, mtime) in dir_times.into_iter().rev() {
        root.set_meta(
            &rel,
            &Meta {
                mtime: Some(mtime),
                ..Meta::default()
            },
        )?;
    }
    Ok(written)
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
    rel: &str,
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
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
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

fn parent_of(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(p, _)| p)
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
}
