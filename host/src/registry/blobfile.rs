//! A blob on its way into the blob store: the temporary file beside its final name
//! ([`TempFile`], gone unless kept) and the writer that hashes it and refuses bytes past the
//! size its descriptor says ([`DigestWriter`]).

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWrite;

/// A path removed on drop unless [`TempFile::keep`] is called.
pub(super) struct TempFile(pub PathBuf);

impl TempFile {
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // Nothing to report if it is already gone.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes through to a file while hashing, and refuses to write more than `limit` bytes so a
/// misbehaving server cannot fill the disk.
pub(super) struct DigestWriter<W> {
    inner: W,
    pub hasher: Sha256,
    pub written: u64,
    limit: u64,
    pub overflow: bool,
}

impl<W> DigestWriter<W> {
    pub fn new(inner: W, limit: u64) -> Self {
        DigestWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
            limit,
            overflow: false,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for DigestWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.written.saturating_add(buf.len() as u64) > this.limit {
            this.overflow = true;
            return Poll::Ready(Err(std::io::Error::other(
                "blob is larger than its descriptor says",
            )));
        }
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            this.hasher.update(&buf[..*n]);
            this.written += *n as u64;
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn digest_writer_hashes_and_limits() {
        let mut out = Vec::new();
        let mut w = DigestWriter::new(&mut out, 5);
        w.write_all(b"hello").await.unwrap();
        assert_eq!(w.written, 5);
        assert_eq!(
            hex::encode(w.hasher.clone().finalize()),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(w.write_all(b"!").await.is_err());
        assert!(w.overflow);
    }
}
