//! The layer format, in both directions, and the blob store. A layer is a tar stream:
//! `writer` turns `Changes` into one, compressed on every core (gzip members in `pgzip`, or
//! multi-threaded zstd; `compress`) and hashed in one pass (diff_id over the tar, digest over
//! the compressed bytes) straight into a file of the blob store (`store`); `extract` applies
//! one (or an `ADD` archive) to a root. Whiteout names are defined here, xattrs as tar carries
//! them in `xattr`. No layer is ever held in memory whole.
//!
//! What changed is the snapshot's business; resolving paths inside a root is `rootfs`'s; how a
//! blob reaches a registry is the registry's.

pub mod bounds;
pub mod compress;
mod dirs;
pub mod extract;
#[cfg(test)]
mod fidelity_tests;
mod nodes;
pub mod pgzip;
pub mod scan;
pub mod store;
pub mod writer;
pub mod xattr;

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

pub use compress::{Codec, Compression};
pub use store::{BackgroundFile, BlobStore};
pub use writer::{write_layer, LayerFormat};

/// Marks a directory whose lower-layer contents are hidden (checked before `WHITEOUT_PREFIX`,
/// which it also starts with).
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Prefix of a file that deletes its namesake from lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    #[error("writing layer entry {path}: {source}")]
    Entry { path: String, source: io::Error },
    #[error(transparent)]
    Root(#[from] crate::rootfs::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The digest of a blob as stored and pushed (the compressed bytes): `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub String);

/// The digest of a layer's uncompressed tar, as listed in `rootfs.diff_ids`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiffId(pub String);

impl Digest {
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for DiffId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A layer in the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    pub digest: Digest,
    pub diff_id: DiffId,
    pub size: u64,
    pub media_type: String,
    pub path: PathBuf,
}

/// Media types of one manifest family.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// zstd layers exist only in the OCI family; an image with one is written as OCI.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// What a writer thread returned; an error naming it when it panicked or was joined before.
pub(crate) fn joined<T>(
    thread: Option<std::thread::JoinHandle<io::Result<T>>>,
    what: &str,
) -> io::Result<T> {
    match thread.map(std::thread::JoinHandle::join) {
        Some(Ok(result)) => result,
        _ => Err(io::Error::other(format!("{what} thread gone"))),
    }
}

/// A writer that hashes what passes through it and counts it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// `sha256:<hex>`, the byte count and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
            self.inner,
        )
    }
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
