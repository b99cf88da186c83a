//! Parallel gzip: the stream is cut into fixed-size blocks, each compressed as its own gzip
//! member on a small pool of threads, and the members are written in order. A gzip file may
//! hold several members (RFC 1952 §2.2); every reader kiln's layers meet (Go's, zlib's,
//! Python's) reads them as one stream. Block size and level are fixed, so the output is as
//! deterministic as single-threaded gzip.
//!
//! A block that does not compress (random bytes, files that are already compressed) is
//! stored: three samples of it are deflated at the fastest level first, and when none
//! shrinks by 2% the member holds stored deflate blocks, which cost a copy and a CRC instead
//! of a full search for matches that are not there. The choice depends on the block's bytes
//! alone, so it keeps the output deterministic.
//!
//! Memory is bounded: at most `3 × threads` blocks are in flight.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::write::GzEncoder;
use flate2::{Compress, Compression, FlushCompress};

/// Bytes of input per gzip member.
pub const BLOCK_SIZE: usize = 1 << 20;

type Job = (Arc<Vec<u8>>, SyncSender<io::Result<Vec<u8>>>);
type Member = Receiver<io::Result<Vec<u8>>>;

/// A `Write` that gzip-compresses on every core, in order. The members are written to the
/// inner writer (hashing, the file) on a thread of its own, and the uncompressed stream is
/// hashed (the layer's diff id) on another, so that work overlaps both the compression and
/// the caller's.
pub struct ParallelGz<W: Write + Send + 'static> {
    buf: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    /// the members in order, to the sink thread
    sink: Option<SyncSender<Member>>,
    sink_thread: Option<JoinHandle<io::Result<W>>>,
    /// the blocks in order, to the hashing thread
    hash: Option<SyncSender<Arc<Vec<u8>>>>,
    hash_thread: Option<JoinHandle<String>>,
    workers: Vec<JoinHandle<()>>,
    /// whether any member was started (an empty stream still gets one)
    started: bool,
}

/// Bytes deflated from each of three places in a block to see whether it compresses.
const PROBE: usize = 8 << 10;

/// Whether deflating `block` is worth it: some sample of it shrinks by more than 2% at the
/// fastest level. Short blocks are always compressed.
fn compresses(block: &[u8]) -> bool {
    if block.len() < 4 * PROBE {
        return true;
    }
    let step = (block.len() - PROBE) / 2;
    let mut out = Vec::with_capacity(PROBE + PROBE / 8);
    (0..3).any(|i| {
        let sample = &block[i * step..i * step + PROBE];
        let mut c = Compress::new(Compression::fast(), false);
        out.clear();
        match c.compress_vec(sample, &mut out, FlushCompress::Finish) {
            Ok(flate2::Status::StreamEnd) => out.len() < sample.len() - sample.len() / 50,
            // did not fit in 112% of the sample, or failed: compress the block properly
            _ => true,
        }
    })
}

/// A gzip member holding `data` in stored deflate blocks (RFC 1951 §3.2.4): one copy of
/// the data and a CRC, no search for matches.
fn stored_member(data: &[u8]) -> Vec<u8> {
    const MAX: usize = 0xffff;
    let blocks = data.len().div_ceil(MAX).max(1);
    let mut out = Vec::with_capacity(data.len() + 5 * blocks + 18);
    // magic, deflate, no flags, no mtime, no extra flags, unknown OS
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    let mut chunks = data.chunks(MAX).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let len = chunk.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

impl<W: Write + Send + 'static> ParallelGz<W> {
    pub fn new(mut inner: W, level: Compression) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (tx, rx) = mpsc::sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|_| {
                let rx = rx.clone();
                std::thread::spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    let Ok((block, reply)) = job else { return };
                    let out = match level.level() > 0 && !compresses(&block) {
                        true => Ok(stored_member(&block)),
                        false => {
                            let mut enc =
                                GzEncoder::new(Vec::with_capacity(block.len() / 2), level);
                            enc.write_all(&block).and_then(|_| enc.finish())
                        }
                    };
                    // the writer may have gone away after an error: nothing to report to
                    let _ = reply.send(out);
                })
            })
            .collect();
        let (hash, blocks) = mpsc::sync_channel::<Arc<Vec<u8>>>(2 * threads);
        let hash_thread = std::thread::spawn(move || {
            use sha2::{Digest as _, Sha256};
            let mut hasher = Sha256::new();
            for block in blocks {
                hasher.update(&block[..]);
            }
            format!("sha256:{}", hex::encode(hasher.finalize()))
        });
        let (sink, members) = mpsc::sync_channel::<Member>(2 * threads);
        let sink_thread = std::thread::spawn(move || {
            for member in members {
                let member = member
                    .recv()
                    .map_err(|_| io::Error::other("gzip worker gone"))??;
                inner.write_all(&member)?;
            }
            Ok(inner)
        });
        ParallelGz {
            buf: Vec::with_capacity(BLOCK_SIZE),
            jobs: Some(tx),
            sink: Some(sink),
            sink_thread: Some(sink_thread),
            hash: Some(hash),
            hash_thread: Some(hash_thread),
            workers,
            started: false,
        }
    }

    /// The sink's error once it has stopped.
    fn sink_error(&mut self) -> io::Error {
        self.sink = None;
        match super::joined(self.sink_thread.take(), "gzip writer") {
            Err(e) => e,
            Ok(_) => io::Error::other("gzip writer stopped early"),
        }
    }

    fn dispatch(&mut self) -> io::Result<()> {
        self.started = true;
        let block = Arc::new(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(BLOCK_SIZE),
        ));
        if let Some(hash) = &self.hash {
            hash.send(block.clone())
                .map_err(|_| io::Error::other("hashing thread gone"))?;
        }
        let (reply, result) = mpsc::sync_channel(1);
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip pool closed"))?;
        jobs.send((block, reply))
            .map_err(|_| io::Error::other("gzip worker gone"))?;
        let sent = match &self.sink {
            Some(sink) => sink.send(result).is_ok(),
            None => false,
        };
        match sent {
            true => Ok(()),
            false => Err(self.sink_error()),
        }
    }

    /// Compresses what is left, writes every member in order and returns the uncompressed
    /// stream's `sha256:<hex>` and the inner writer.
    pub fn finish(mut self) -> io::Result<(String, W)> {
        if !self.buf.is_empty() || !self.started {
            self.dispatch()?;
        }
        self.hash = None;
        let diff_id = self
            .hash_thread
            .take()
            .map(JoinHandle::join)
            .and_then(Result::ok)
            .ok_or_else(|| io::Error::other("hashing thread gone"))?;
        self.sink = None;
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        super::joined(self.sink_thread.take(), "gzip writer").map(|w| (diff_id, w))
    }
}

impl<W: Write + Send + 'static> Write for ParallelGz<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BLOCK_SIZE {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelGz<W> {
    fn drop(&mut self) {
        self.jobs = None;
        self.sink = None;
        self.hash = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(t) = self.sink_thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.hash_thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_decode_to_the_input_in_order() {
        for len in [0usize, 10, BLOCK_SIZE - 1, BLOCK_SIZE, 5 * BLOCK_SIZE + 123] {
            let input: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut gz = ParallelGz::new(Vec::new(), Compression::default());
            for chunk in input.chunks(70_000) {
                gz.write_all(chunk).unwrap();
            }
            let (_, out) = gz.finish().unwrap();
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input, "length {len}");
        }
    }

    #[test]
    fn incompressible_blocks_are_stored_and_the_rest_compressed() {
        // xorshift: bytes no deflate level can shrink
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut noise = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        let random: Vec<u8> = (0..2 * BLOCK_SIZE).map(|_| noise()).collect();
        let text: Vec<u8> = b"layer ".iter().copied().cycle().take(BLOCK_SIZE).collect();
        // a block that is random at its samples' places only in part still compresses
        let mut mixed = random[..BLOCK_SIZE].to_vec();
        mixed[BLOCK_SIZE / 2..].fill(b'x');
        for (input, stored) in [(&random, true), (&text, false), (&mixed, false)] {
            let mut gz = ParallelGz::new(Vec::new(), Compression::default());
            gz.write_all(input).unwrap();
            let (_, out) = gz.finish().unwrap();
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(&back == input);
            // stored: the input plus a few bytes per 64 KiB block and member
            let overhead = out.len() as f64 / input.len() as f64;
            match stored {
                true => assert!((1.0..1.001).contains(&overhead), "{overhead}"),
                false => assert!(overhead < 0.6, "{overhead}"),
            }
        }
        assert!(compresses(&random[..1000]), "short blocks are compressed");
        // stored members of any length decode, by flate2 and by gzip(1)
        for len in [0, 1, 65535, 65536, 3 * 65535 + 7] {
            let member = stored_member(&random[..len]);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&member[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == random[..len], "length {len}");
            let mut gunzip = std::process::Command::new("gzip")
                .args(["-d", "-c"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("gzip (Debian package gzip) is needed");
            let mut stdin = gunzip.stdin.take().unwrap();
            let writer = std::thread::spawn(move || stdin.write_all(&member));
            let out = gunzip.wait_with_output().unwrap();
            writer.join().unwrap().unwrap();
            assert!(
                out.status.success() && out.stdout == random[..len],
                "gzip -d: {len}"
            );
        }
    }

    #[test]
    fn output_is_deterministic() {
        let input: Vec<u8> = (0..3 * BLOCK_SIZE).map(|i| (i % 13) as u8).collect();
        let run = || {
            let mut gz = ParallelGz::new(Vec::new(), Compression::default());
            gz.write_all(&input).unwrap();
            gz.finish().unwrap().1
        };
        assert_eq!(run(), run());
    }
}
