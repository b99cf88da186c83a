//! Writing base images by hand: layer tarballs and OCI image layouts.
//!
//! [`LayerTar`] writes tar entries with the header bytes set directly, so a fixture can
//! hold exactly what a hostile image would (`..` names, absolute link targets) — the `tar`
//! crate's path setters refuse those. [`ImageLayout`] gzips layers into a layout's blob
//! store (streaming, both digests in one pass) and writes config, manifest and index.
//! Which images to build and where to push them is `images.rs`'s job.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

/// Timestamp of every fixture entry and config, so fixture layers are reproducible.
pub const FIXTURE_MTIME: u64 = 1_700_000_000;
const FIXTURE_CREATED: &str = "2023-11-14T22:13:20Z";
/// The `PATH` that Docker's official images carry.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An uncompressed layer tarball built entry by entry, in memory.
pub struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for LayerTar {
    fn default() -> Self {
        LayerTar::new()
    }
}

impl LayerTar {
    /// An empty layer.
    pub fn new() -> LayerTar {
        LayerTar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    /// Appends one entry exactly as given: `name` and `link` go into the header's name and
    /// linkname fields byte for byte, with no check at all (at most 100 bytes each).
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: &[u8],
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut LayerTar {
        let mut header = Header::new_gnu();
        let old = header.as_old_mut();
        assert!(
            name.len() <= old.name.len(),
            "fixture name too long: {name:?}"
        );
        assert!(
            link.len() <= old.linkname.len(),
            "fixture link too long: {link:?}"
        );
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(FIXTURE_MTIME);
        header.set_cksum();
        self.builder
            .append(&header, data)
            .expect("appending to an in-memory tar");
        self
    }

    /// A directory owned by root (a trailing `/` is added to the name).
    pub fn dir(&mut self, name: &str, mode: u32) -> &mut LayerTar {
        let name = format!("{}/", name.trim_end_matches('/'));
        self.raw(EntryType::Directory, name.as_bytes(), b"", b"", mode, 0, 0)
    }

    /// A regular file owned by root.
    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut LayerTar {
        self.raw(EntryType::Regular, name.as_bytes(), b"", data, mode, 0, 0)
    }

    /// A symlink owned by root; `target` is stored verbatim (absolute and `..` allowed).
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut LayerTar {
        let (name, target) = (name.as_bytes(), target.as_bytes());
        self.raw(EntryType::Symlink, name, target, b"", 0o777, 0, 0)
    }

    /// A hardlink to `target`, stored verbatim (absolute and `..` allowed).
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut LayerTar {
        let (name, target) = (name.as_bytes(), target.as_bytes());
        self.raw(EntryType::Link, name, target, b"", 0o644, 0, 0)
    }

    /// The finished tarball (with its two zero end blocks).
    pub fn into_bytes(self) -> Vec<u8> {
        self.builder
            .into_inner()
            .expect("finishing an in-memory tar")
    }
}

/// A layer stored in a layout: what the manifest and config need to know about it.
#[derive(Debug, Clone)]
struct StoredLayer {
    digest: String,
    diff_id: String,
    size: u64,
    created_by: String,
}

/// The runtime part of an image config that fixtures set.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `config.Env`.
    pub env: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
}

/// An OCI image layout directory being written: blobs first, then [`ImageLayout::finish`].
pub struct ImageLayout {
    dir: PathBuf,
    layers: Vec<StoredLayer>,
}

/// Counts and hashes what passes through to `inner`.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ImageLayout {
    /// Creates `dir` (must not hold a layout yet) with `oci-layout` and an empty blob store.
    pub fn create(dir: &Path) -> ImageLayout {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("creating layout dirs");
        fs::write(
            dir.join("oci-layout"),
            json!({"imageLayoutVersion": "1.0.0"}).to_string(),
        )
        .expect("writing oci-layout");
        ImageLayout {
            dir: dir.to_path_buf(),
            layers: Vec::new(),
        }
    }

    fn blob_path(&self, hex_digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(hex_digest)
    }

    fn put_blob(&self, bytes: &[u8]) -> (String, u64) {
        let hex_digest = sha256_hex(bytes);
        fs::write(self.blob_path(&hex_digest), bytes).expect("writing blob");
        (format!("sha256:{hex_digest}"), bytes.len() as u64)
    }

    /// Adds a layer from an uncompressed tar stream: gzip'd into the blob store while both
    /// the compressed digest and the diff_id are computed.
    pub fn add_layer_from(&mut self, mut tar: impl Read, created_by: &str) -> &mut ImageLayout {
        let staging = tempfile::NamedTempFile::new_in(self.dir.join("blobs")).expect("temp blob");
        let sink = HashingWriter {
            inner: BufWriter::new(staging.reopen().expect("reopening temp blob")),
            hasher: Sha256::new(),
            written: 0,
        };
        let mut gz = GzEncoder::new(sink, Compression::fast());
        let mut diff_hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = tar.read(&mut buf).expect("reading layer tar");
            if n == 0 {
                break;
            }
            diff_hasher.update(&buf[..n]);
            gz.write_all(&buf[..n]).expect("compressing layer");
        }
        let mut sink = gz.finish().expect("finishing gzip");
        sink.flush().expect("flushing blob");
        let hex_digest = hex::encode(sink.hasher.finalize());
        staging
            .persist(self.blob_path(&hex_digest))
            .expect("storing layer blob");
        self.layers.push(StoredLayer {
            digest: format!("sha256:{hex_digest}"),
            diff_id: format!("sha256:{}", hex::encode(diff_hasher.finalize())),
            size: sink.written,
            created_by: created_by.to_string(),
        });
        self
    }

    /// Adds a layer from an in-memory tarball.
    pub fn add_layer(&mut self, tar: &[u8], created_by: &str) -> &mut ImageLayout {
        self.add_layer_from(tar, created_by)
    }

    /// Writes config, manifest and `index.json` (the manifest annotated with `tag`);
    /// returns the layout directory.
    pub fn finish(&self, tag: &str, run: &RunConfig) -> PathBuf {
        let mut descriptor = self.write_manifest("amd64", run);
        descriptor["annotations"] = json!({REF_NAME: tag});
        let index = json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [descriptor],
        });
        fs::write(self.dir.join("index.json"), index.to_string()).expect("writing index.json");
        self.dir.clone()
    }

    /// Writes the config (for `architecture` on linux) and manifest of the layers added so
    /// far; returns the manifest's descriptor, its `platform` included.
    pub fn write_manifest(&self, architecture: &str, run: &RunConfig) -> serde_json::Value {
        let config = json!({
            "created": FIXTURE_CREATED,
            "architecture": architecture,
            "os": "linux",
            "config": {"Env": run.env, "Cmd": run.cmd},
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": self.layers.iter().map(|l| json!({
                "created": FIXTURE_CREATED,
                "created_by": l.created_by,
            })).collect::<Vec<_>>(),
        });
        let (config_digest, config_size) = self.put_blob(config.to_string().as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
            "layers": self.layers.iter().map(|l| json!({
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": l.digest,
                "size": l.size,
            })).collect::<Vec<_>>(),
        });
        let (manifest_digest, manifest_size) = self.put_blob(manifest.to_string().as_bytes());
        json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": architecture, "os": "linux"},
        })
    }

    /// Writes an image index over `manifests` (descriptors from [`ImageLayout::write_manifest`],
    /// possibly of other `ImageLayout`s on the same directory) as a blob, and `index.json`
    /// naming it `tag`: `skopeo copy --all oci:<dir>:<tag>` copies every platform.
    pub fn finish_index(&self, tag: &str, manifests: &[serde_json::Value]) -> PathBuf {
        let inner = json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": manifests,
        });
        let (digest, size) = self.put_blob(inner.to_string().as_bytes());
        let index = json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [{
                "mediaType": INDEX_MEDIA_TYPE,
                "digest": digest,
                "size": size,
                "annotations": {REF_NAME: tag},
            }],
        });
        fs::write(self.dir.join("index.json"), index.to_string()).expect("writing index.json");
        self.dir.clone()
    }
}
