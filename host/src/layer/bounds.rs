//! What a tar stream (an image layer, an `ADD` archive, a context tarball) may make kiln hold
//! or write: the bytes it expands to (`--max-expanded-bytes`, `KILN_MAX_EXPANDED_BYTES`), the
//! size of the header records the `tar` crate reads into memory (GNU long names and links,
//! PAX headers), the length of a path and of an xattr value.
//!
//! The `tar` crate reads a GNU long name, long link or PAX record whole into a `Vec` sized by
//! the record's header (a 512 MiB name is 512 MiB of memory, then a log line). It has no bound
//! of its own, so [`TarGuard`] sits between the decompressor and the crate and follows the tar
//! stream block by block: it reads each 512-byte header as it passes, and when a header
//! announces an `L`, `K` or `x` record longer than [`MAX_HEADER_RECORD`] it fails the read
//! before the crate has seen the header, so nothing is allocated. It also counts every byte
//! passed on and fails once the stream goes past the expansion cap, so a gzip bomb stops
//! there, having written less than the cap.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The longest GNU long-name, long-link or PAX header record kiln reads.
pub const MAX_HEADER_RECORD: u64 = 1 << 20;
/// The longest path or link target an entry may name (Linux's `PATH_MAX`).
pub const MAX_PATH: usize = 4096;
/// The largest xattr value kept (Linux's own limit, `XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: usize = 64 << 10;
/// What one layer, `ADD` archive or context tarball may expand to unless told otherwise.
pub const DEFAULT_MAX_EXPANDED: u64 = 64 << 30;
/// The environment variable that sets the expansion cap when the flag does not.
pub const MAX_EXPANDED_ENV: &str = "KILN_MAX_EXPANDED_BYTES";
/// How much of a name an error shows.
const SHOWN_NAME: usize = 200;

/// The cap `--max-expanded-bytes` set (0: not set).
static MAX_EXPANDED: AtomicU64 = AtomicU64::new(0);

/// Sets the expansion cap for this process (the `--max-expanded-bytes` flag).
pub fn set_max_expanded_bytes(bytes: u64) {
    MAX_EXPANDED.store(bytes, Ordering::Relaxed);
}

/// The bytes one tar stream may expand to: the flag's, else the environment's, else the
/// default.
pub fn max_expanded_bytes() -> u64 {
    match MAX_EXPANDED.load(Ordering::Relaxed) {
        0 => std::env::var(MAX_EXPANDED_ENV)
            .ok()
            .and_then(|v| parse_size(&v).ok())
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_MAX_EXPANDED),
        n => n,
    }
}

/// A byte count with an optional binary suffix: `1048576`, `512MiB`, `64G`, `1TiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "{text:?}: expected a byte count such as 1048576, 512MiB or 64GiB"
            ))
        }
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a byte count such as 1048576, 512MiB or 64GiB"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?}: too large"))
}

/// At most [`SHOWN_NAME`] bytes of `name`, escaped, then its length when it was cut.
pub fn shown_name(name: &[u8]) -> String {
    if name.len() <= SHOWN_NAME {
        name.escape_ascii().to_string()
    } else {
        format!(
            "{}… ({} bytes)",
            name[..SHOWN_NAME].escape_ascii(),
            name.len()
        )
    }
}

/// Where the guard is in the tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// filling a header block
    Header,
    /// filling a GNU sparse extension block
    SparseExt,
    /// passing `n` bytes of an entry's data and padding
    Data(u64),
    /// past the end-of-archive block: bytes are only counted
    End,
}

/// A reader that follows a tar stream and refuses what is past the bounds (module docs).
/// The reason of a refusal is kept in [`TarGuard::refusal`] too, since the `tar` crate
/// replaces the messages of some errors with its own.
pub struct TarGuard<R> {
    inner: R,
    limit: u64,
    total: u64,
    at: At,
    block: [u8; 512],
    filled: usize,
    /// the PAX record being read (its own bytes, before padding), to find a `size`
    pax: Option<(Vec<u8>, u64)>,
    /// a PAX `size` for the next entry
    pax_size: Option<u64>,
    /// a sparse entry's data size, while its extension blocks pass
    pending_size: u64,
    refusal: Arc<OnceLock<String>>,
}

impl<R: Read> TarGuard<R> {
    /// Guards `inner` with the process's expansion cap.
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard::with_limit(inner, max_expanded_bytes())
    }

    pub fn with_limit(inner: R, limit: u64) -> TarGuard<R> {
        TarGuard {
            inner,
            limit,
            total: 0,
            at: At::Header,
            block: [0; 512],
            filled: 0,
            pax: None,
            pax_size: None,
            pending_size: 0,
            refusal: Arc::new(OnceLock::new()),
        }
    }

    /// Why the guard refused the stream, once it has; shared so it can be read after the
    /// guard was moved into an archive.
    pub fn refusal(&self) -> Arc<OnceLock<String>> {
        self.refusal.clone()
    }

    fn refuse(&self, why: String) -> io::Error {
        let _ = self.refusal.set(why.clone());
        io::Error::new(io::ErrorKind::InvalidData, why)
    }

    /// Follows `data`, the next bytes of the stream.
    fn follow(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.at {
                At::End => return Ok(()),
                At::Data(left) => {
                    let take = left.min(data.len() as u64) as usize;
                    if let Some((buf, want)) = &mut self.pax {
                        let keep = (*want as usize - buf.len()).min(take);
                        buf.extend_from_slice(&data[..keep]);
                    }
                    data = &data[take..];
                    self.at = At::Data(left - take as u64);
                    if left == take as u64 {
                        self.entry_done();
                    }
                }
                At::Header | At::SparseExt => {
                    let take = (512 - self.filled).min(data.len());
                    self.block[self.filled..self.filled + take].copy_from_slice(&data[..take]);
                    self.filled += take;
                    data = &data[take..];
                    if self.filled == 512 {
                        self.filled = 0;
                        self.block_done()?;
                    }
                }
            }
        }
        Ok(())
    }

    /// An entry's data has passed: a PAX record's `size` applies to the next entry.
    fn entry_done(&mut self) {
        self.at = At::Header;
        if let Some((buf, _)) = self.pax.take() {
            self.pax_size = pax_size(&buf);
        }
    }

    /// A whole header (or sparse extension) block has passed.
    fn block_done(&mut self) -> io::Result<()> {
        let block = self.block;
        if self.at == At::SparseExt {
            // byte 504 of an extension block: another one follows
            if block[504] == 0 {
                self.data(self.pending_size);
            }
            return Ok(());
        }
        if block.iter().all(|b| *b == 0) {
            self.at = At::End;
            return Ok(());
        }
        let Some(mut size) = octal_or_binary(&block[124..136]) else {
            // the tar crate reports the broken header
            self.at = At::End;
            return Ok(());
        };
        let kind = block[156];
        let record = match kind {
            b'L' => Some("GNU long-name"),
            b'K' => Some("GNU long-link"),
            b'x' => Some("PAX header"),
            _ => None,
        };
        if let Some(record) = record {
            if size > MAX_HEADER_RECORD {
                return Err(self.refuse(format!(
                    "a {record} record of {size} bytes (the limit is {MAX_HEADER_RECORD})"
                )));
            }
            if kind == b'x' {
                self.pax = Some((Vec::with_capacity(size as usize), size));
            }
        } else if let Some(s) = self.pax_size.take() {
            size = s;
        }
        // GNU sparse: extension blocks (flag at byte 482) come before the data
        if kind == b'S' && block[482] != 0 {
            self.pending_size = size;
            self.at = At::SparseExt;
            return Ok(());
        }
        self.data(size);
        Ok(())
    }

    /// An entry's data (`size` bytes, padded to a block) comes next.
    fn data(&mut self, size: u64) {
        let padded = size.div_ceil(512).saturating_mul(512);
        self.at = At::Data(padded);
        if padded == 0 {
            self.entry_done();
        }
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(why) = self.refusal.get() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, why.clone()));
        }
        // never read past the cap: at most one byte beyond it, to know it was passed
        let room = self.limit.saturating_sub(self.total).saturating_add(1);
        let want = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.total += n as u64;
        if self.total > self.limit {
            return Err(self.refuse(format!(
                "it expands past {} bytes, the limit (--max-expanded-bytes, {MAX_EXPANDED_ENV})",
                self.limit
            )));
        }
        self.follow(&buf[..n])?;
        Ok(n)
    }
}

/// A tar numeric field: octal digits (spaces and NULs around them), or base-256 when the
/// first byte's high bit is set.
fn octal_or_binary(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// The `size` record of a PAX header (`<len> size=<n>\n`), as the `tar` crate reads it.
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut found = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return found;
        }
        let record = &rest[space + 1..len];
        if let Some(v) = record.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            found = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(tar: &[u8], limit: u64) -> (io::Result<Vec<String>>, Option<String>) {
        let guard = TarGuard::with_limit(tar, limit);
        let refusal = guard.refusal();
        let mut archive = tar::Archive::new(guard);
        let names = archive.entries().and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.path_bytes().len().to_string()))
                .collect()
        });
        (names, refusal.get().cloned())
    }

    #[test]
    fn long_names_pax_and_sparse_pass_under_the_bounds() {
        let mut b = tar::Builder::new(Vec::new());
        let long = "d/".repeat(1000) + "f";
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
        b.append_pax_extensions([("SCHILY.xattr.user.a", &b"v"[..])])
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(600);
        b.append_data(&mut h, "p", &[7u8; 600][..]).unwrap();
        let tar = b.into_inner().unwrap();
        let (names, refusal) = read_all(&tar, 1 << 20);
        assert_eq!(names.unwrap(), vec!["2001".to_string(), "1".to_string()]);
        assert_eq!(refusal, None);
    }

    #[test]
    fn a_huge_long_name_is_refused_before_it_is_read() {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(512 << 20);
        h.set_cksum();
        // only the header: the name's bytes never come, and are never asked for
        let (names, refusal) = read_all(h.as_bytes(), u64::MAX);
        assert!(names.is_err());
        assert!(refusal
            .unwrap()
            .contains("GNU long-name record of 536870912 bytes"));
    }

    #[test]
    fn the_expansion_cap_stops_the_stream() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1 << 20);
        b.append_data(&mut h, "big", io::repeat(0).take(1 << 20))
            .unwrap();
        let tar = b.into_inner().unwrap();
        let mut guard = TarGuard::with_limit(&tar[..], 100_000);
        let mut out = Vec::new();
        assert!(guard.read_to_end(&mut out).is_err());
        assert!(out.len() <= 100_001);
        assert!(read_all(&tar, tar.len() as u64).0.is_ok());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64GiB"), Ok(64 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert!(parse_size("lots").is_err());
    }
}
