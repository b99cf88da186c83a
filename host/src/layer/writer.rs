//! The layer writer: `Changes` → tar → gzip|zstd → blob file, hashing both sides in one pass.
//!
//! Entries are written in the order `Changes` gives (parents first, deterministic); file
//! bytes are streamed from the root; a file whose inode was already written in this layer
//! becomes a tar hardlink with a relative name.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufWriter, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::compress::{Codec, Encoder};
use super::store::{BackgroundFile, BlobStore};
use super::{xattr, DiffId, Digest, Error, HashingWriter, LayerBlob, Result};
use super::{OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::rootfs::{Kind, Root};
use crate::snapshot::{Change, Changes, Entry};

/// How a new layer is written.
#[derive(Debug, Clone)]
pub struct LayerFormat {
    /// the layer's media type in the image's manifest family
    pub media_type: String,
    pub codec: Codec,
    /// reproducible builds: every entry's mtime is this second, whatever the context's or
    /// the clock's (kaniko's `--reproducible` zeroes them the same way)
    pub mtime_clamp: Option<i64>,
    /// the label of the layer's byte count in the live view (`layer [stage 2/3]`)
    pub shown_as: Option<String>,
}

/// Bytes of tar between two updates of the live view's count.
const SHOWN_EVERY: u64 = 256 * 1024;

/// The tar stream on its way to the compressor, counted for the live view.
struct Counted<W> {
    inner: W,
    shown: Option<crate::progress::Transfer>,
    /// total written, and the part not yet reported
    written: u64,
    unreported: u64,
    total: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(shown) = &self.shown {
            self.unreported += n as u64;
            if self.unreported >= SHOWN_EVERY {
                // the estimate of the total is a bound the view never passes
                let report = self.unreported.min(self.total.saturating_sub(self.written));
                shown.add(report);
                self.written += report;
                self.unreported = 0;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The size of the tar `changes` make, roughly: a header per entry and file bytes in
/// 512-byte blocks.
fn tar_estimate(changes: &Changes) -> u64 {
    changes
        .items
        .iter()
        .map(|c| match c {
            Change::Put(_, e) if e.kind == Kind::File => 512 + e.size.div_ceil(512) * 512,
            _ => 512,
        })
        .sum::<u64>()
        + 1024
}

/// Writes `changes` (read from `root`) as a compressed layer into the blob store.
pub fn write_layer(
    root: &Root,
    changes: &Changes,
    store: &BlobStore,
    format: &LayerFormat,
) -> Result<LayerBlob> {
    let mtime_clamp = format.mtime_clamp;
    let (file, tmp) = store.temp_file()?;
    let compressed = HashingWriter::new(BackgroundFile::new(file));
    let gz = Encoder::new(compressed, format.codec).map_err(|source| Error::Io {
        path: tmp.clone(),
        op: "start compression",
        source,
    })?;
    // file contents are read straight into this buffer a MiB at a time (io::copy into a
    // BufWriter), then handed to the compressor, which also hashes them, in one piece
    let tar_side = BufWriter::with_capacity(1 << 20, gz);
    let total = tar_estimate(changes);
    let shown = format
        .shown_as
        .as_ref()
        .filter(|_| crate::progress::live())
        .map(|label| crate::progress::Transfer::start(label.clone(), total));
    let tar_side = Counted {
        inner: tar_side,
        shown,
        written: 0,
        unreported: 0,
        total,
    };
    let mut builder = tar::Builder::new(tar_side);
    builder.mode(tar::HeaderMode::Complete);
    let mut inodes: HashMap<u64, Vec<u8>> = HashMap::new();
    for change in &changes.items {
        match change {
            Change::Put(path, entry) => match mtime_clamp {
                Some(limit) => {
                    let clamped = Entry {
                        mtime: (limit, 0),
                        ..entry.clone()
                    };
                    append_entry(&mut builder, root, path, &clamped, &mut inodes)?
                }
                _ => append_entry(&mut builder, root, path, entry, &mut inodes)?,
            },
            Change::Whiteout(path) => {
                let (dir, name) = split(path);
                let wh = join(dir, &[WHITEOUT_PREFIX.as_bytes(), name].concat());
                append_marker(&mut builder, &wh)?;
            }
            Change::Opaque(path) => {
                let wh = join(path, OPAQUE_WHITEOUT.as_bytes());
                append_marker(&mut builder, &wh)?;
            }
        }
    }
    let io = |op| {
        let tmp = tmp.clone();
        move |source| Error::Io {
            path: tmp,
            op,
            source,
        }
    };
    let counted = builder.into_inner().map_err(io("finish tar"))?;
    let tar_side = counted
        .inner
        .into_inner()
        .map_err(|e| io("finish tar")(e.into_error()))?;
    let (diff_id, compressed) = tar_side.finish().map_err(io("finish compression"))?;
    let (digest, size, file) = compressed.finish();
    let file = file.finish().map_err(io("write"))?;
    file.sync_all().ok();
    let digest = Digest(digest);
    let path = store.commit(&tmp, &digest)?;
    Ok(LayerBlob {
        digest,
        diff_id: DiffId(diff_id),
        size,
        media_type: format.media_type.clone(),
        path,
    })
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    }
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        name.to_vec()
    } else {
        [dir, b"/", name].concat()
    }
}

fn header_for(entry: &Entry, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(entry.mode);
    h.set_uid(entry.uid as u64);
    h.set_gid(entry.gid as u64);
    h.set_mtime(entry.mtime.0.max(0) as u64);
    h.set_size(0);
    h
}

/// The PAX records an entry needs beyond the ustar/GNU header: sub-second mtime and
/// extended attributes (`security.capability` included), as Docker writes them.
fn pax_records(root: &Root, path: &[u8], entry: &Entry) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut records = Vec::new();
    if entry.mtime.1 != 0 {
        let mtime = format!("{}.{:09}", entry.mtime.0, entry.mtime.1);
        records.push((
            "mtime".to_string(),
            mtime.trim_end_matches('0').as_bytes().to_vec(),
        ));
    }
    if entry.kind == Kind::Symlink {
        return Ok(records);
    }
    let host = root.path().join(OsStr::from_bytes(path));
    records.extend(xattr::records(&host)?);
    Ok(records)
}

fn append_entry<W: Write>(
    b: &mut tar::Builder<W>,
    root: &Root,
    path: &[u8],
    entry: &Entry,
    inodes: &mut HashMap<u64, Vec<u8>>,
) -> Result<()> {
    let err = |source| Error::Entry {
        path: format!("/{}", String::from_utf8_lossy(path)),
        source,
    };
    let (kind, name, link, data): (_, Vec<u8>, Option<Vec<u8>>, Option<std::fs::File>) =
        match entry.kind {
            Kind::Dir => (tar::EntryType::Directory, [path, b"/"].concat(), None, None),
            Kind::Symlink => {
                let target = entry.link.clone().unwrap_or_default().into_vec();
                (tar::EntryType::Symlink, path.to_vec(), Some(target), None)
            }
            Kind::File => match inodes.get(&entry.ino) {
                // a later name of an inode already in this layer: a hardlink to the first
                // name, root-relative (Docker refuses absolute link names)
                Some(first) if entry.nlink > 1 => (
                    tar::EntryType::Link,
                    path.to_vec(),
                    Some(first.clone()),
                    None,
                ),
                _ => {
                    if entry.nlink > 1 {
                        inodes.insert(entry.ino, path.to_vec());
                    }
                    let file = root.open_read_bytes(path)?;
                    (tar::EntryType::Regular, path.to_vec(), None, Some(file))
                }
            },
            Kind::CharDevice => (tar::EntryType::Char, path.to_vec(), None, None),
            Kind::BlockDevice => (tar::EntryType::Block, path.to_vec(), None, None),
            Kind::Fifo => (tar::EntryType::Fifo, path.to_vec(), None, None),
            Kind::Socket => return Ok(()),
        };
    let mut h = header_for(entry, kind);
    let mut records = pax_records(root, path, entry).map_err(err)?;
    set_name(&mut h.as_old_mut().name, "path", &name, &mut records);
    if let Some(link) = &link {
        set_name(&mut h.as_old_mut().linkname, "linkpath", link, &mut records);
    }
    // beyond the 7 octal digits of ustar: PAX, as Go's writer does
    for (key, id) in [("uid", entry.uid), ("gid", entry.gid)] {
        if id > 0o7777777 {
            records.push((key.to_string(), id.to_string().into_bytes()));
        }
    }
    if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
        h.set_device_major(rustix::fs::major(entry.rdev))
            .map_err(err)?;
        h.set_device_minor(rustix::fs::minor(entry.rdev))
            .map_err(err)?;
    }
    let len = match &data {
        Some(file) => file.metadata().map_err(err)?.len(),
        None => 0,
    };
    h.set_size(len);
    h.set_cksum();
    if !records.is_empty() {
        records.sort();
        b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(err)?;
    }
    match data {
        // a file that grows while it is read must not overrun its header
        Some(file) => b.append(&h, std::io::Read::take(file, len)).map_err(err),
        None => b.append(&h, std::io::empty()).map_err(err),
    }
}

/// Puts a name into a 100-byte header field; a longer one is cut there and carried whole
/// in a PAX record (`path`, `linkpath`), which every reader prefers.
fn set_name(field: &mut [u8; 100], key: &str, name: &[u8], records: &mut Vec<(String, Vec<u8>)>) {
    let n = name.len().min(field.len());
    field[..n].copy_from_slice(&name[..n]);
    field[n..].fill(0);
    if name.len() > field.len() {
        records.push((key.to_string(), name.to_vec()));
    }
}

fn append_marker<W: Write>(b: &mut tar::Builder<W>, path: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(0);
    h.set_mtime(0);
    let mut records = Vec::new();
    set_name(&mut h.as_old_mut().name, "path", path, &mut records);
    h.set_cksum();
    let err = |source| Error::Entry {
        path: format!("/{}", String::from_utf8_lossy(path)),
        source,
    };
    if !records.is_empty() {
        b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(err)?;
    }
    b.append(&h, std::io::empty()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::extract::Whiteouts;
    use crate::snapshot::{Ignore, Index, SnapshotMode};

    fn gzip_format() -> LayerFormat {
        LayerFormat {
            media_type: super::super::OCI_LAYER_GZIP.to_string(),
            codec: Codec::default(),
            mtime_clamp: None,
            shown_as: None,
        }
    }

    #[test]
    fn layer_roundtrips_with_whiteouts_and_hardlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let rp = tmp.path().join("root");
        std::fs::create_dir_all(rp.join("d")).unwrap();
        std::fs::write(rp.join("d/old"), "x").unwrap();
        let before = Index::scan(&rp, &Ignore::default(), None).unwrap();
        std::fs::remove_file(rp.join("d/old")).unwrap();
        std::fs::write(rp.join("a"), "hello").unwrap();
        std::fs::hard_link(rp.join("a"), rp.join("b")).unwrap();
        let after = Index::scan(&rp, &Ignore::default(), None).unwrap();
        let changes = before.diff(&after, SnapshotMode::Full);
        let store = BlobStore::open(&tmp.path().join("blobs")).unwrap();
        let root = Root::open(&rp).unwrap();
        let blob = write_layer(&root, &changes, &store, &gzip_format()).unwrap();
        let bytes = std::fs::read(&blob.path).unwrap();
        assert_eq!(Digest::of(&bytes), blob.digest);
        assert_eq!(bytes.len() as u64, blob.size);
        let mut tar_bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&bytes[..]),
            &mut tar_bytes,
        )
        .unwrap();
        assert_eq!(Digest::of(&tar_bytes).0, blob.diff_id.0);
        let mut ar = tar::Archive::new(&tar_bytes[..]);
        let got: Vec<(String, tar::EntryType)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), tar::EntryType::Regular),
                ("b".to_string(), tar::EntryType::Link),
                ("d/".to_string(), tar::EntryType::Directory),
                ("d/.wh.old".to_string(), tar::EntryType::Regular),
            ]
        );
    }

    #[test]
    fn xattrs_and_subsecond_mtimes_survive_a_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let rp = tmp.path().join("root");
        std::fs::create_dir_all(&rp).unwrap();
        let before = Index::scan(&rp, &Ignore::default(), None).unwrap();
        let f = rp.join("cap");
        std::fs::write(&f, "x").unwrap();
        rustix::fs::lsetxattr(&f, "user.kiln", b"v1", rustix::fs::XattrFlags::empty()).unwrap();
        // larger than the first buffer (ext4 holds up to one block of xattrs)
        let big = vec![b'x'; 3000];
        rustix::fs::lsetxattr(&f, "user.big", &big, rustix::fs::XattrFlags::empty()).unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
        let after = Index::scan(&rp, &Ignore::default(), None).unwrap();
        let store = BlobStore::open(&tmp.path().join("blobs")).unwrap();
        let root = Root::open(&rp).unwrap();
        let blob = write_layer(
            &root,
            &before.diff(&after, SnapshotMode::Full),
            &store,
            &gzip_format(),
        )
        .unwrap();
        let out = Root::create(&tmp.path().join("out")).unwrap();
        let file = std::fs::File::open(&blob.path).unwrap();
        crate::layer::extract::extract(&out, "", file, Whiteouts::Apply, "t").unwrap();
        let got = tmp.path().join("out/cap");
        let mut v = [0u8; 16];
        let n = rustix::fs::lgetxattr(&got, "user.kiln", &mut v[..]).unwrap();
        assert_eq!(&v[..n], b"v1");
        let mut v = vec![0u8; 65536];
        let n = rustix::fs::lgetxattr(&got, "user.big", &mut v[..]).unwrap();
        assert_eq!(v[..n], big[..]);
        let st = out.lstat("cap").unwrap();
        assert_eq!(st.mtime, (1_700_000_000, 123_456_789));
    }
}
