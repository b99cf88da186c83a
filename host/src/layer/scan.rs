//! Reading a layer's entries without applying them to a root: each entry's cleaned path and
//! what it is (a regular file, whose bytes the visitor may read; a whiteout; an opaque
//! directory marker; anything else). For readers of an image's contents that need no root
//! (the SBOM in `attest`; `Lookup`, a few files as the stacked layers show them, for keys
//! that read `/etc/passwd`). Applying layers is `extract`'s.

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

/// What the stacked layers say about one path (see `Lookup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Looked {
    /// a regular file: its bytes
    File(Vec<u8>),
    /// no layer has it (or a whiteout or opaque directory above hides it)
    Absent,
    /// only a root can answer (a symlink, hardlink or directory on the path, a file over
    /// the size limit): why
    NeedsRoot(String),
}

/// A few paths looked up in an image's layers from the top layer down, without a root: a
/// path is decided by the highest layer that has it (a regular file, or an entry only a root
/// can answer for), hides it (a whiteout of it or of a parent, an opaque parent directory)
/// or puts something other than a directory on its parent path. Feed it the layers top
/// first (`layer`) until `done`.
pub struct Lookup {
    paths: Vec<String>,
    found: Vec<Option<Looked>>,
    max_bytes: u64,
}

impl Lookup {
    /// Looks for `paths` (relative to the image root, `etc/passwd`), reading at most
    /// `max_bytes` of each.
    pub fn new(paths: &[&str], max_bytes: u64) -> Lookup {
        Lookup {
            paths: paths.iter().map(|p| clean(p)).collect(),
            found: vec![None; paths.len()],
            max_bytes,
        }
    }

    /// Whether every path is decided.
    pub fn done(&self) -> bool {
        self.found.iter().all(Option::is_some)
    }

    /// The answers, in the order the paths were given (a path no layer decided is absent).
    pub fn finish(self) -> Vec<Looked> {
        self.found
            .into_iter()
            .map(|f| f.unwrap_or(Looked::Absent))
            .collect()
    }

    /// Reads one (possibly compressed) layer, the one below those read so far.
    pub fn layer<R: Read>(&mut self, reader: R) -> io::Result<()> {
        let n = self.paths.len();
        // per path, what this layer says: its own entry, a parent that is not a directory,
        // and whether the layers below are hidden
        let mut own: Vec<Option<Looked>> = vec![None; n];
        let mut odd_parent: Vec<Option<String>> = vec![None; n];
        let mut hidden = vec![false; n];
        let open: Vec<usize> = (0..n).filter(|&i| self.found[i].is_none()).collect();
        if open.is_empty() {
            return Ok(());
        }
        let paths = self.paths.clone();
        let max = self.max_bytes;
        // `p` is below `dir` (the root holds everything)
        let under = |p: &str, dir: &str| dir.is_empty() || p.starts_with(&format!("{dir}/"));
        let below = |p: &str, parent: &str| !parent.is_empty() && under(p, parent);
        scan(reader, |entry| {
            for &i in &open {
                let p = paths[i].as_str();
                match &entry {
                    Entry::Whiteout(gone) if gone == p || below(p, gone) => hidden[i] = true,
                    Entry::Opaque(dir) if under(p, dir) => hidden[i] = true,
                    Entry::File { path, .. } if path == p => {}
                    Entry::Directory(path) if path == p => {
                        own[i] = Some(Looked::NeedsRoot(format!("/{p} is a directory")))
                    }
                    Entry::Other(path) if path == p => {
                        own[i] = Some(Looked::NeedsRoot(format!("/{p} is a link or special file")))
                    }
                    Entry::File { path, .. } | Entry::Other(path) if below(p, path) => {
                        odd_parent[i] = Some(format!("/{path} is not a directory"))
                    }
                    _ => {}
                }
            }
            if let Entry::File {
                path, size, bytes, ..
            } = entry
            {
                for &i in &open {
                    if paths[i] != path {
                        continue;
                    }
                    own[i] = Some(if size > max {
                        Looked::NeedsRoot(format!("/{path} is over {max} bytes"))
                    } else {
                        let mut buf = Vec::with_capacity(size as usize);
                        bytes.take(max).read_to_end(&mut buf)?;
                        Looked::File(buf)
                    });
                }
            }
            Ok(())
        })?;
        for i in open {
            self.found[i] = match (odd_parent[i].take(), own[i].take()) {
                (Some(why), _) => Some(Looked::NeedsRoot(why)),
                (None, Some(looked)) => Some(looked),
                (None, None) if hidden[i] => Some(Looked::Absent),
                (None, None) => None,
            };
        }
        Ok(())
    }
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

#[cfg(test)]
mod lookup_tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            match data {
                Some(data) => {
                    h.set_size(data.len() as u64);
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    b.append_data(&mut h, name, *data).unwrap();
                }
                None if name.ends_with('/') => {
                    h.set_size(0);
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    b.append_data(&mut h, name, &b""[..]).unwrap();
                }
                None => {
                    h.set_size(0);
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    b.append_link(&mut h, name, "/elsewhere").unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// `layers` bottom first, as an image lists them.
    fn look(layers: &[Vec<u8>]) -> Vec<Looked> {
        let mut lookup = Lookup::new(&["etc/passwd", "/etc/group"], 64);
        for l in layers.iter().rev() {
            if lookup.done() {
                break;
            }
            lookup.layer(&l[..]).unwrap();
        }
        lookup.finish()
    }

    fn file(s: &str) -> Looked {
        Looked::File(s.as_bytes().to_vec())
    }

    #[test]
    fn the_highest_layer_decides() {
        let base = layer(&[
            ("etc/", None),
            ("etc/passwd", Some(b"root:x:0:0::/:/bin/sh\n")),
            ("etc/group", Some(b"root:x:0:\n")),
        ]);
        let upper = layer(&[("etc/passwd", Some(b"app:x:7:7::/:/bin/sh\n"))]);
        assert_eq!(
            look(&[base.clone(), upper.clone()]),
            [file("app:x:7:7::/:/bin/sh\n"), file("root:x:0:\n")]
        );
        // a change in the lower layer shows only where the upper one does not cover it
        let base2 = layer(&[
            ("etc/passwd", Some(b"root:x:1:1::/:/bin/sh\n")),
            ("etc/group", Some(b"root:x:1:\n")),
        ]);
        assert_eq!(
            look(std::slice::from_ref(&base2)),
            [file("root:x:1:1::/:/bin/sh\n"), file("root:x:1:\n")]
        );
        assert_eq!(
            look(&[base2, upper]),
            [file("app:x:7:7::/:/bin/sh\n"), file("root:x:1:\n")]
        );
        assert_eq!(look(&[]), [Looked::Absent, Looked::Absent]);
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_what_is_below() {
        let base = layer(&[
            ("etc/passwd", Some(b"root:x:0:0::/:/bin/sh\n")),
            ("etc/group", Some(b"root:x:0:\n")),
        ]);
        let gone = layer(&[("etc/.wh.passwd", Some(b""))]);
        assert_eq!(
            look(&[base.clone(), gone]),
            [Looked::Absent, file("root:x:0:\n")]
        );
        let opaque = layer(&[("etc/.wh..wh..opq", Some(b"")), ("etc/group", Some(b"g\n"))]);
        assert_eq!(look(&[base.clone(), opaque]), [Looked::Absent, file("g\n")]);
        let whole = layer(&[(".wh.etc", Some(b""))]);
        assert_eq!(
            look(&[base.clone(), whole]),
            [Looked::Absent, Looked::Absent]
        );
        // a file of the same layer as a whiteout is that layer's own
        let both = layer(&[
            ("etc/.wh.passwd", Some(b"")),
            ("etc/passwd", Some(b"new\n")),
        ]);
        assert_eq!(look(&[base, both])[0], file("new\n"));
    }

    #[test]
    fn links_directories_and_big_files_need_a_root() {
        let base = layer(&[
            ("etc/passwd", Some(b"root:x:0:0::/:/bin/sh\n")),
            ("etc/group", Some(b"root:x:0:\n")),
        ]);
        let link = layer(&[("etc/passwd", None)]);
        let got = look(&[base.clone(), link]);
        assert!(matches!(got[0], Looked::NeedsRoot(_)), "{got:?}");
        assert_eq!(got[1], file("root:x:0:\n"));
        let etc_link = layer(&[("etc", None)]);
        let got = look(&[base.clone(), etc_link]);
        assert!(
            got.iter().all(|g| matches!(g, Looked::NeedsRoot(_))),
            "{got:?}"
        );
        let dir = layer(&[("etc/passwd/", None)]);
        assert!(matches!(
            look(&[base.clone(), dir])[0],
            Looked::NeedsRoot(_)
        ));
        let big = layer(&[("etc/passwd", Some(&[b'x'; 65][..]))]);
        assert!(matches!(look(&[base, big])[0], Looked::NeedsRoot(_)));
    }
}
