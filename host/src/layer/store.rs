//! The blob store: content-addressed files under `<dir>/sha256/<hex>`, written through a temp
//! file and renamed into place once their digest is known, and `BackgroundFile`, which writes
//! a blob on a thread of its own.
//!
//! What goes into a layer blob is the writer's business; pushing a blob is the registry's.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{joined, Digest, Error, Result};

/// Content-addressed files under `<dir>/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn open(dir: &Path) -> Result<BlobStore> {
        let sha = dir.join("sha256");
        std::fs::create_dir_all(&sha).map_err(|source| Error::Io {
            path: sha,
            op: "create blob store",
            source,
        })?;
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("sha256").join(digest.hex())
    }

    /// Stores bytes (a config, a manifest) and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let path = self.path(&digest);
        if !path.exists() {
            // a temp file of its own: stages building side by side may store the same bytes
            let (mut file, tmp) = self.temp_file()?;
            std::io::Write::write_all(&mut file, bytes).map_err(|source| Error::Io {
                path: tmp.clone(),
                op: "write blob",
                source,
            })?;
            drop(file);
            self.commit(&tmp, &digest)?;
        }
        Ok(digest)
    }

    /// A temp file in the store for a blob being written.
    pub fn temp_file(&self) -> Result<(File, PathBuf)> {
        let tmp = tempfile::Builder::new()
            .prefix("incoming-")
            .tempfile_in(&self.dir)
            .map_err(|source| Error::Io {
                path: self.dir.clone(),
                op: "create temp blob",
                source,
            })?;
        let (file, path) = tmp.keep().map_err(|e| Error::Io {
            path: self.dir.clone(),
            op: "keep temp blob",
            source: e.error,
        })?;
        Ok((file, path))
    }

    /// Moves a finished temp file to its digest's place.
    pub fn commit(&self, tmp: &Path, digest: &Digest) -> Result<PathBuf> {
        let path = self.path(digest);
        std::fs::rename(tmp, &path).map_err(|source| Error::Io {
            path: path.clone(),
            op: "store blob",
            source,
        })?;
        Ok(path)
    }
}

/// A file written on a thread of its own: the caller's buffers are handed over a MiB at a
/// time, so the copy into the page cache overlaps the caller's hashing. Writeback to the
/// disk is started every 8 MiB, so the final `sync_all` finds little left to do.
pub struct BackgroundFile {
    buf: Vec<u8>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<io::Result<File>>>,
}

const BACKGROUND_BUF: usize = 1 << 20;

impl BackgroundFile {
    pub fn new(mut file: File) -> BackgroundFile {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let thread = std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            let (mut written, mut started) = (0i64, 0i64);
            for chunk in rx {
                file.write_all(&chunk)?;
                written += chunk.len() as i64;
                if written - started >= 8 << 20 {
                    #[allow(unsafe_code)]
                    // SAFETY: a plain syscall on an open descriptor; it only starts writeback
                    unsafe {
                        libc::sync_file_range(
                            file.as_raw_fd(),
                            started,
                            written - started,
                            libc::SYNC_FILE_RANGE_WRITE,
                        );
                    }
                    started = written;
                }
            }
            Ok(file)
        });
        BackgroundFile {
            buf: Vec::with_capacity(BACKGROUND_BUF),
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(BACKGROUND_BUF));
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(chunk).is_ok());
        match sent {
            true => Ok(()),
            false => Err(self
                .stop()
                .err()
                .unwrap_or_else(|| io::Error::other("writer gone"))),
        }
    }

    fn stop(&mut self) -> io::Result<File> {
        self.tx = None;
        joined(self.thread.take(), "blob writer")
    }

    /// Writes what is buffered and returns the file once every byte is in it.
    pub fn finish(mut self) -> io::Result<File> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.stop()
    }
}

impl Write for BackgroundFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = (BACKGROUND_BUF - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == BACKGROUND_BUF {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BackgroundFile {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
