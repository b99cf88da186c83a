//! Parallel gzip: the stream is cut into fixed-size blocks, each compressed as its own gzip
//! member on a small pool of threads, and the members are written in order. A gzip file may
//! hold several members (RFC 1952 §2.2); every reader kiln's layers meet (Go's, zlib's,
//! Python's) reads them as one stream. Block size and level are fixed, so the output is as
//! deterministic as single-threaded gzip.
//!
//! Memory is bounded: at most `2 × threads` blocks are in flight.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::write::GzEncoder;
use flate2::Compression;

/// Bytes of input per gzip member.
pub const BLOCK_SIZE: usize = 1 << 20;

type Job = (Vec<u8>, SyncSender<io::Result<Vec<u8>>>);

/// A `Write` that gzip-compresses on every core, in order.
pub struct ParallelGz<W: Write> {
    /// taken by `finish`
    inner: Option<W>,
    buf: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    max_pending: usize,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> ParallelGz<W> {
    pub fn new(inner: W, level: Compression) -> Self {
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
                    let mut enc = GzEncoder::new(Vec::with_capacity(block.len() / 2), level);
                    let out = enc.write_all(&block).and_then(|_| enc.finish());
                    // the writer may have gone away after an error: nothing to report to
                    let _ = reply.send(out);
                })
            })
            .collect();
        ParallelGz {
            inner: Some(inner),
            buf: Vec::with_capacity(BLOCK_SIZE),
            jobs: Some(tx),
            pending: VecDeque::new(),
            max_pending: 2 * threads,
            workers,
        }
    }

    fn dispatch(&mut self) -> io::Result<()> {
        let block = std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK_SIZE));
        let (reply, result) = mpsc::sync_channel(1);
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("gzip pool closed"))?;
        jobs.send((block, reply))
            .map_err(|_| io::Error::other("gzip worker gone"))?;
        self.pending.push_back(result);
        while self.pending.len() > self.max_pending {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(result) = self.pending.pop_front() {
            let member = result
                .recv()
                .map_err(|_| io::Error::other("gzip worker gone"))??;
            let inner = self
                .inner
                .as_mut()
                .ok_or_else(|| io::Error::other("gzip stream finished"))?;
            inner.write_all(&member)?;
        }
        Ok(())
    }

    /// Compresses what is left, writes every member in order and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.buf.is_empty() || self.pending.is_empty() {
            self.dispatch()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.inner
            .take()
            .ok_or_else(|| io::Error::other("gzip stream finished"))
    }
}

impl<W: Write> Write for ParallelGz<W> {
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

impl<W: Write> Drop for ParallelGz<W> {
    fn drop(&mut self) {
        self.jobs = None;
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
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
            let out = gz.finish().unwrap();
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input, "length {len}");
        }
    }

    #[test]
    fn output_is_deterministic() {
        let input: Vec<u8> = (0..3 * BLOCK_SIZE).map(|i| (i % 13) as u8).collect();
        let run = || {
            let mut gz = ParallelGz::new(Vec::new(), Compression::default());
            gz.write_all(&input).unwrap();
            gz.finish().unwrap()
        };
        assert_eq!(run(), run());
    }
}
