//! Reading a layer's entries without applying them to a root: each entry's cleaned path and
//! what it is (a regular file, whose bytes the visitor may read; a whiteout; an opaque
//! directory marker; anything else). For readers of an image's contents that need no root
//! (the SBOM in `attest`). Applying layers is `extract`'s.

use std::io::{self, Read};

use super::compress::decompress;
use super::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

/// One entry of a layer, its path relative to the image root (`usr/bin/x`).
pub enum Entry<'a> {
    /// a regular file: its mode, size and a reader of its bytes
    File {
        path: String,
        mode: u32,
        size: u64,
        bytes: &'a mut dyn Read,
    },
    /// `.wh.NAME`: `path` deleted from the layers below
    Whiteout(String),
    /// `.wh..wh..opq` in `dir`: what the layers below hold in it is hidden
    Opaque(String),
    /// a directory
    Directory(String),
    /// a link, device or FIFO: replaces whatever `path` was
    Other(String),
}

/// `name` relative to the root: leading `/` and `./` dropped, `.` skipped, `..` clamped.
pub fn clean(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Calls `visit` with each entry of a (possibly compressed) layer, in archive order.
pub fn scan<R: Read>(
    reader: R,
    mut visit: impl FnMut(Entry<'_>) -> io::Result<()>,
) -> io::Result<()> {
    let mut archive = tar::Archive::new(decompress(reader)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes();
        let path = clean(&String::from_utf8_lossy(&raw));
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        // the opaque marker first: it also starts with the whiteout prefix
        if name == OPAQUE_WHITEOUT {
            visit(Entry::Opaque(dir))?;
            continue;
        }
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            let gone = if dir.is_empty() {
                target.to_string()
            } else {
                format!("{dir}/{target}")
            };
            visit(Entry::Whiteout(gone))?;
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0);
        let size = header.size().unwrap_or(0);
        if kind.is_file() || kind == tar::EntryType::Continuous {
            visit(Entry::File {
                path,
                mode,
                size,
                bytes: &mut entry,
            })?;
        } else if kind.is_dir() {
            visit(Entry::Directory(path))?;
        } else if !kind.is_pax_global_extensions() && !kind.is_pax_local_extensions() {
            visit(Entry::Other(path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_names() {
        for (name, want) in [
            ("./usr/bin/x", "usr/bin/x"),
            ("/a//b/./c", "a/b/c"),
            ("../../etc/passwd", "etc/passwd"),
            ("a/../b", "b"),
        ] {
            assert_eq!(clean(name), want, "{name}");
        }
    }

    #[test]
    fn reports_whiteouts_and_files() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("etc/.wh..wh..opq", &b""[..]),
            ("etc/.wh.passwd", b""),
            ("etc/hosts", b"127.0.0.1 localhost\n"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        let mut seen = Vec::new();
        scan(&bytes[..], |e| {
            seen.push(match e {
                Entry::Opaque(d) => format!("opaque {d}"),
                Entry::Whiteout(p) => format!("whiteout {p}"),
                Entry::File { path, bytes, .. } => {
                    let mut s = String::new();
                    bytes.read_to_string(&mut s)?;
                    format!("file {path} {}", s.len())
                }
                Entry::Directory(p) | Entry::Other(p) => format!("other {p}"),
            });
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            ["opaque etc", "whiteout etc/passwd", "file etc/hosts 20"]
        );
    }
}
