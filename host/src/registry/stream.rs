//! A blob GET read as it arrives: [`channel`] gives a [`Tee`], which the download feeds with
//! every chunk it writes to the blob store, and a [`BlobReader`], a blocking `Read` for the
//! consumer (a layer's extraction) on another thread. The channel is bounded
//! ([`CHUNKS_IN_FLIGHT`] chunks): a consumer that falls behind holds the download up, and the
//! time the download waits on it does not count against the minimum transfer rate.
//!
//! The reader's end of the stream comes only after the download checked the blob's size and
//! sha256: bytes that do not match make the reader fail (its consumer never sees a clean
//! end), and so does a download that stops for any reason. A download retried after a cut
//! hands the consumer only what it did not have yet (the bytes past what it already read)
//! and says so ([`Tee::resent`]): what the consumer read is then not known to be the
//! verified blob (a body damaged, then sent right), and a consumer that failed starts over
//! from the store; the extraction checks its output against the layer's `diff_id` in any
//! case. A blob found whole in the store is read from its file.

use std::fs::File;
use std::io::{Read, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Chunks of a body (a few KiB to a few hundred KiB each) held between download and reader.
pub const CHUNKS_IN_FLIGHT: usize = 32;

enum Piece {
    Bytes(Bytes),
    /// The blob is whole and verified at this path: what the reader has not had yet, from
    /// this offset on, is there.
    Done {
        path: PathBuf,
        from: u64,
    },
}

/// The download's side: what it fed so far, across attempts.
pub struct Tee {
    tx: mpsc::Sender<Piece>,
    /// bytes handed to the reader
    delivered: u64,
    /// bytes of the current attempt seen so far
    position: u64,
    /// the reader went away (its consumer failed): the download goes on for the store
    closed: bool,
    /// an attempt started over after the reader had bytes of an earlier one
    resent: Arc<AtomicBool>,
}

/// The consumer's side: a blocking `Read` of the blob's bytes.
pub struct BlobReader {
    rx: mpsc::Receiver<Piece>,
    current: Bytes,
    file: Option<File>,
    ended: bool,
}

/// A tee and its reader.
pub fn channel() -> (Tee, BlobReader) {
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    (
        Tee {
            tx,
            delivered: 0,
            position: 0,
            closed: false,
            resent: Arc::new(AtomicBool::new(false)),
        },
        BlobReader {
            rx,
            current: Bytes::new(),
            file: None,
            ended: false,
        },
    )
}

impl Tee {
    /// Whether the download started over after the reader had bytes of an earlier attempt:
    /// then what the reader read may differ from the verified blob, and a consumer that
    /// failed may start over from the store.
    pub fn resent(&self) -> Arc<AtomicBool> {
        self.resent.clone()
    }

    /// A download attempt starts from the blob's first byte.
    pub(super) fn attempt(&mut self) {
        self.position = 0;
        if self.delivered > 0 {
            self.resent.store(true, Ordering::Relaxed);
        }
    }

    /// Hands the reader the part of `chunk` (the attempt's next bytes) it has not had yet;
    /// returns how long it waited for room in the channel.
    pub(super) async fn feed(&mut self, chunk: &Bytes) -> Duration {
        let start = self.position;
        self.position += chunk.len() as u64;
        if self.closed || self.position <= self.delivered {
            return Duration::ZERO;
        }
        // `delivered` lies within this chunk: the reader has all before it
        let skip = usize::try_from(self.delivered - start).unwrap_or(0);
        let fresh = chunk.slice(skip..);
        let waiting = Instant::now();
        let len = fresh.len() as u64;
        if self.tx.send(Piece::Bytes(fresh)).await.is_err() {
            self.closed = true;
        } else {
            self.delivered += len;
        }
        waiting.elapsed()
    }

    /// The blob is whole and verified at `path`: the reader gets the rest from there, then
    /// its end.
    pub(super) async fn done(mut self, path: PathBuf) {
        if !self.closed {
            let from = self.delivered;
            self.closed = self.tx.send(Piece::Done { path, from }).await.is_err();
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(file) = &mut self.file {
                return file.read(buf);
            }
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current.split_to(n));
                return Ok(n);
            }
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Bytes(bytes)) => self.current = bytes,
                Some(Piece::Done { path, from }) => {
                    self.ended = true;
                    let mut file = File::open(&path)?;
                    if from < file.metadata()?.len() {
                        file.seek(SeekFrom::Start(from))?;
                        self.file = Some(file);
                    }
                }
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the blob's download stopped before its end was verified",
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(mut reader: BlobReader) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        Ok(out)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_download_hands_over_only_the_bytes_not_read_yet() {
        let tmp = tempfile::tempdir().unwrap();
        let blob = tmp.path().join("blob");
        std::fs::write(&blob, b"hello world").unwrap();
        let (mut tee, reader) = channel();
        let resent = tee.resent();
        let reading = tokio::task::spawn_blocking(move || read_all(reader));
        tee.attempt();
        tee.feed(&Bytes::from_static(b"hel")).await;
        assert!(!resent.load(Ordering::Relaxed));
        tee.feed(&Bytes::from_static(b"lo w")).await;
        // cut; the next attempt starts over
        tee.attempt();
        tee.feed(&Bytes::from_static(b"hello")).await;
        tee.feed(&Bytes::from_static(b" world")).await;
        tee.done(blob).await;
        assert_eq!(reading.await.unwrap().unwrap(), b"hello world");
        assert!(resent.load(Ordering::Relaxed));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_blob_found_in_the_store_is_read_from_its_file() {
        let tmp = tempfile::tempdir().unwrap();
        let blob = tmp.path().join("blob");
        std::fs::write(&blob, b"stored").unwrap();
        let (tee, reader) = channel();
        let reading = tokio::task::spawn_blocking(move || read_all(reader));
        tee.done(blob).await;
        assert_eq!(reading.await.unwrap().unwrap(), b"stored");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_download_that_stops_is_never_a_clean_end() {
        let (mut tee, reader) = channel();
        let reading = tokio::task::spawn_blocking(move || read_all(reader));
        tee.attempt();
        tee.feed(&Bytes::from_static(b"partial")).await;
        drop(tee);
        let err = reading.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_that_goes_away_does_not_stop_the_download() {
        let (mut tee, reader) = channel();
        drop(reader);
        tee.attempt();
        tee.feed(&Bytes::from_static(b"abc")).await;
        assert!(tee.closed);
        tee.feed(&Bytes::from_static(b"def")).await;
    }
}
