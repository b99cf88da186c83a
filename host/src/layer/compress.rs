//! Layer compression: gzip (parallel members, `pgzip`) or zstd (the library's own worker
//! threads), both on every core, behind one `Write`; and the way back, `decompress`, which
//! reads whatever compression Docker detects. Which media type a compressed layer carries is
//! decided here too; what goes into the stream is the writer's business.

use std::io::{self, BufRead, BufReader, Read, Write};

use super::pgzip::ParallelGz;

/// `--compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    /// The level used when `--compression-level` is not given.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::Gzip => 6,
            Compression::Zstd => 3,
        }
    }

    /// The levels a user may ask for.
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            Compression::Gzip => 0..=9,
            Compression::Zstd => 1..=22,
        }
    }
}

/// How new layers are compressed: an algorithm and a level within its `levels()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub compression: Compression,
    pub level: i32,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            compression: Compression::Gzip,
            level: Compression::Gzip.default_level(),
        }
    }
}

/// A compressing `Write`; `finish` flushes the last frame and returns the inner writer.
pub(crate) enum Encoder<W: Write + Send + 'static> {
    Gzip(ParallelGz<W>),
    /// with the hash of what went in
    Zstd(sha2::Sha256, zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write + Send + 'static> Encoder<W> {
    pub fn new(inner: W, codec: Codec) -> io::Result<Encoder<W>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        Ok(match codec.compression {
            Compression::Gzip => Encoder::Gzip(ParallelGz::new(
                inner,
                flate2::Compression::new(codec.level.clamp(0, 9) as u32),
            )),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(inner, codec.level)?;
                // with one or more workers the frame does not depend on how many there
                // are, so a build on another machine gives the same bytes
                enc.multithread(threads.max(1))?;
                enc.include_checksum(true)?;
                Encoder::Zstd(<sha2::Sha256 as sha2::Digest>::new(), enc)
            }
        })
    }

    /// Ends the stream: the uncompressed stream's `sha256:<hex>` (the diff id) and the inner
    /// writer.
    pub fn finish(self) -> io::Result<(String, W)> {
        match self {
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(h, z) => {
                let hex = hex::encode(sha2::Digest::finalize(h));
                z.finish().map(|w| (format!("sha256:{hex}"), w))
            }
        }
    }
}

impl<W: Write + Send + 'static> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(h, z) => {
                let n = z.write(buf)?;
                sha2::Digest::update(h, &buf[..n]);
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(_, z) => z.flush(),
        }
    }
}

/// Wraps a reader in the decompressor its magic bytes call for (gzip, bzip2, xz, zstd — the
/// compressions Docker detects); anything else passes through as a plain tar.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buf = BufReader::with_capacity(1 << 16, reader);
    let head = buf.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buf)))
    } else if head.starts_with(b"BZh") {
        Ok(Box::new(bzip2::bufread::MultiBzDecoder::new(buf)))
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Ok(Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(
            buf,
        )))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(buf)?))
    } else {
        Ok(Box::new(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_codecs_round_trip_and_repeat_byte_for_byte() {
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        for compression in [Compression::Gzip, Compression::Zstd] {
            let codec = Codec {
                compression,
                level: compression.default_level(),
            };
            let encode = || {
                let mut e = Encoder::new(Vec::new(), codec).unwrap();
                e.write_all(&data).unwrap();
                e.finish().unwrap().1
            };
            let (a, b) = (encode(), encode());
            assert_eq!(a, b, "{compression:?} is not deterministic");
            let mut back = Vec::new();
            decompress(&a[..]).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data, "{compression:?} did not round-trip");
        }
    }
}
