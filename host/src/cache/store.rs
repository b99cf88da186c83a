//! Where cache entries live: a registry repository (one-layer images tagged by key, as
//! kaniko's cache) or a local OCI image layout (`oci:/path`). Both hold the same entry image,
//! so one can be copied to the other with skopeo.
//!
//! Local layout writes are safe for concurrent builds: blobs are content-addressed and
//! renamed into place, and `index.json` is rewritten whole under an exclusive lock.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::layer::{BlobStore, DiffId, Digest, HashingWriter, LayerBlob, OCI_LAYER_GZIP};
use crate::oci::media_type::{OCI_CONFIG, OCI_MANIFEST};
use crate::registry::{self, Platform, PushImage, Registry};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LABEL_KEY: &str = "dev.kiln.cache.key";
const LABEL_COMPONENTS: &str = "dev.kiln.cache.components";
const LABEL_STORED: &str = "dev.kiln.cache.stored";

/// One cached step: the layer it produced (none when it changed nothing) and its history.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub components: Vec<(String, String)>,
    pub layer: Option<LayerBlob>,
    pub created_by: String,
    /// Unix seconds when the entry was stored (for --cache-ttl)
    pub stored: i64,
}

/// A cache store.
#[derive(Clone)]
pub enum Store {
    /// `oci:/path`
    Layout(PathBuf),
    /// a registry repository, e.g. `registry.example.com/team/app/cache`
    Registry {
        registry: Arc<Registry>,
        repo: String,
        platform: Platform,
    },
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Layout(p) => write!(f, "oci:{}", p.display()),
            Store::Registry { repo, .. } => f.write_str(repo),
        }
    }
}

impl Store {
    /// The entry tagged `tag`, its layer copied (verified) into `blobs`; None when absent.
    pub async fn get(&self, tag: &str, blobs: &BlobStore) -> Result<Option<Entry>> {
        self.read(tag, blobs, true).await
    }

    /// The entry tagged `tag` without its layer's bytes (its path is where they would be):
    /// whether a step would hit, for `--dry-run`.
    pub async fn peek(&self, tag: &str, blobs: &BlobStore) -> Result<Option<Entry>> {
        self.read(tag, blobs, false).await
    }

    async fn read(&self, tag: &str, blobs: &BlobStore, layer: bool) -> Result<Option<Entry>> {
        match self {
            Store::Layout(dir) => {
                let (dir, tag, blobs) = (dir.clone(), tag.to_string(), blobs.clone());
                tokio::task::spawn_blocking(move || layout_get(&dir, &tag, &blobs, layer)).await?
            }
            Store::Registry {
                registry,
                repo,
                platform,
            } => {
                let reference = format!("{repo}:{tag}");
                let pulled = if layer {
                    registry.pull(&reference, platform, blobs.dir()).await
                } else {
                    registry
                        .pull_config(&reference, platform, blobs.dir())
                        .await
                };
                let pulled = match pulled {
                    Ok(p) => p,
                    Err(e) => {
                        if !is_not_found(&e) {
                            tracing::warn!(cache = %reference, error = %crate::error::chain(&e), "cache lookup failed; treating it as a miss");
                        }
                        return Ok(None);
                    }
                };
                let layer = match pulled.layers.as_slice() {
                    [] => None,
                    [l] => Some((l.digest.clone(), l.size, l.path.clone())),
                    _ => bail!("cache entry {reference} has more than one layer"),
                };
                decode(&pulled.config, layer).map(Some)
            }
        }
    }

    /// Stores `entry` under every tag in `tags`.
    pub async fn put(&self, tags: &[String], entry: &Entry, blobs: &BlobStore) -> Result<()> {
        let (config, manifest) = encode(entry, self.platform())?;
        match self {
            Store::Layout(dir) => {
                let (dir, tags, entry) = (dir.clone(), tags.to_vec(), entry.clone());
                tokio::task::spawn_blocking(move || {
                    layout_put(&dir, &tags, &config, &manifest, entry.layer.as_ref())
                })
                .await?
            }
            Store::Registry { registry, repo, .. } => {
                let config_digest = blobs.put_bytes(&config)?;
                let mut files = vec![registry::BlobFile {
                    digest: config_digest.0.clone(),
                    size: config.len() as u64,
                    path: blobs.path(&config_digest),
                }];
                if let Some(l) = &entry.layer {
                    files.push(registry::BlobFile {
                        digest: l.digest.0.clone(),
                        size: l.size,
                        path: l.path.clone(),
                    });
                }
                let image = PushImage {
                    manifest,
                    manifest_media_type: OCI_MANIFEST.to_string(),
                    blobs: files,
                };
                for tag in tags {
                    let reference = format!("{repo}:{tag}");
                    registry
                        .push(&reference, &image)
                        .await
                        .with_context(|| format!("pushing cache entry {reference}"))?;
                }
                Ok(())
            }
        }
    }

    fn platform(&self) -> (String, String) {
        match self {
            Store::Registry { platform, .. } => {
                (platform.os.clone(), platform.architecture.clone())
            }
            Store::Layout(_) => {
                let p = Platform::host();
                (p.os, p.architecture)
            }
        }
    }
}

/// A manifest the registry does not have (a plain cache miss), as opposed to a failure.
fn is_not_found(e: &registry::Error) -> bool {
    let text = crate::error::chain(e).to_ascii_lowercase();
    text.contains("manifest unknown")
        || text.contains("manifest_unknown")
        || text.contains("not found")
        || text.contains("404")
        || text.contains("name_unknown")
}

/// The entry image's config and manifest.
fn encode(entry: &Entry, (os, architecture): (String, String)) -> Result<(Vec<u8>, Vec<u8>)> {
    let components = serde_json::to_string(&entry.components)?;
    let diff_ids: Vec<&str> = entry.layer.iter().map(|l| l.diff_id.0.as_str()).collect();
    let config = json!({
        "architecture": architecture,
        "os": os,
        "config": {"Labels": {
            LABEL_KEY: entry.key,
            LABEL_COMPONENTS: components,
            LABEL_STORED: entry.stored.to_string(),
        }},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{
            "created_by": entry.created_by,
            "empty_layer": entry.layer.is_none(),
        }],
    });
    let config = serde_json::to_vec(&config)?;
    let layers: Vec<Value> = entry
        .layer
        .iter()
        .map(|l| json!({"mediaType": OCI_LAYER_GZIP, "digest": l.digest.0, "size": l.size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        // the config travels inside the manifest too, so a lookup is one request
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": Digest::of(&config).0,
            "size": config.len(),
            "data": base64::engine::general_purpose::STANDARD.encode(&config),
        },
        "layers": layers,
    });
    Ok((config, serde_json::to_vec(&manifest)?))
}

/// An entry from its config; `layer`: (digest, size, path in the blob store).
fn decode(config: &[u8], layer: Option<(String, u64, PathBuf)>) -> Result<Entry> {
    let config: Value = serde_json::from_slice(config).context("cache entry config")?;
    let labels = &config["config"]["Labels"];
    let label = |k: &str| labels[k].as_str().unwrap_or_default().to_string();
    let components: Vec<(String, String)> =
        serde_json::from_str(&label(LABEL_COMPONENTS)).unwrap_or_default();
    let diff_id = config["rootfs"]["diff_ids"][0].as_str().map(String::from);
    let layer = match (layer, diff_id) {
        (Some((digest, size, path)), Some(diff_id)) => Some(LayerBlob {
            digest: Digest(digest),
            diff_id: DiffId(diff_id),
            size,
            media_type: OCI_LAYER_GZIP.to_string(),
            path,
        }),
        (None, None) => None,
        _ => bail!("cache entry: layers and diff_ids disagree"),
    };
    Ok(Entry {
        key: label(LABEL_KEY),
        components,
        layer,
        created_by: config["history"][0]["created_by"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        stored: label(LABEL_STORED).parse().unwrap_or(0),
    })
}

fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap_or(digest))
}

/// Reads a layout blob whole (manifests and configs are small), checking its digest.
fn read_verified(dir: &Path, digest: &str) -> Result<Vec<u8>> {
    let path = blob_path(dir, digest);
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if Digest::of(&bytes).0 != digest {
        bail!("{}: content does not match {digest}", path.display());
    }
    Ok(bytes)
}

/// `copy`: the layer copied into `blobs` (else its path is the layout's own blob).
fn layout_get(dir: &Path, tag: &str, blobs: &BlobStore, copy: bool) -> Result<Option<Entry>> {
    let index_path = dir.join("index.json");
    let index: Value = match fs::read(&index_path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{} is not valid JSON", index_path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", index_path.display())),
    };
    let Some(desc) = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"][REF_NAME] == tag)
    else {
        return Ok(None);
    };
    let digest = desc["digest"]
        .as_str()
        .context("index entry without digest")?;
    let manifest: Value = serde_json::from_slice(&read_verified(dir, digest)?)?;
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .context("cache manifest without config")?;
    let config = read_verified(dir, config_digest)?;
    let layer = match manifest["layers"].as_array().map(Vec::as_slice) {
        None | Some([]) => None,
        Some([l]) => {
            let digest = l["digest"].as_str().context("layer without digest")?;
            let path = match copy {
                true => copy_verified(&blob_path(dir, digest), digest, blobs)?,
                false => blob_path(dir, digest),
            };
            Some((digest.to_string(), l["size"].as_u64().unwrap_or(0), path))
        }
        Some(_) => bail!("cache entry {tag} in {} has several layers", dir.display()),
    };
    decode(&config, layer).map(Some)
}

/// Copies a blob into the build's store, checking its digest on the way.
fn copy_verified(src: &Path, digest: &str, blobs: &BlobStore) -> Result<PathBuf> {
    let want = Digest(digest.to_string());
    let dest = blobs.path(&want);
    if dest.exists() {
        return Ok(dest);
    }
    let mut input = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let (file, tmp) = blobs.temp_file()?;
    let mut w = HashingWriter::new(io::BufWriter::new(file));
    io::copy(&mut input, &mut w).with_context(|| format!("copying {}", src.display()))?;
    let (got, _, mut inner) = w.finish();
    inner.flush()?;
    if got != digest {
        let _ = fs::remove_file(&tmp);
        bail!(
            "{}: content has digest {got}, expected {digest}",
            src.display()
        );
    }
    Ok(blobs.commit(&tmp, &want)?)
}

/// Writes a blob into the layout unless present: temp file, then rename.
fn layout_blob(
    dir: &Path,
    digest: &str,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let path = blob_path(dir, digest);
    if path.exists() {
        return Ok(());
    }
    let parent = path.parent().context("blob path")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    write(tmp.as_file_mut()).with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file().sync_all()?;
    tmp.persist(&path)
        .map_err(|e| e.error)
        .with_context(|| format!("storing {}", path.display()))?;
    Ok(())
}

fn layout_put(
    dir: &Path,
    tags: &[String],
    config: &[u8],
    manifest: &[u8],
    layer: Option<&LayerBlob>,
) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating cache layout {}", dir.display()))?;
    let layout_file = dir.join("oci-layout");
    if !layout_file.exists() {
        fs::write(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .with_context(|| format!("writing {}", layout_file.display()))?;
    }
    if let Some(l) = layer {
        layout_blob(dir, &l.digest.0, |f| {
            io::copy(&mut File::open(&l.path)?, f).map(|_| ())
        })?;
    }
    let config_digest = Digest::of(config);
    layout_blob(dir, &config_digest.0, |f| f.write_all(config))?;
    let manifest_digest = Digest::of(manifest);
    layout_blob(dir, &manifest_digest.0, |f| f.write_all(manifest))?;

    // index.json: read, update and replace under an exclusive lock
    let lock_path = dir.join("index.json.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let index_path = dir.join("index.json");
    let mut index: Value = match fs::read(&index_path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{} is not valid JSON", index_path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", index_path.display())),
    };
    let manifests = index["manifests"]
        .as_array_mut()
        .context("index.json without manifests")?;
    manifests.retain(|m| {
        let name = m["annotations"][REF_NAME].as_str().unwrap_or_default();
        !tags.iter().any(|t| t == name)
    });
    for tag in tags {
        manifests.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest.0,
            "size": manifest.len(),
            "annotations": {REF_NAME: tag},
        }));
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&serde_json::to_vec_pretty(&index)?)?;
    tmp.as_file().sync_all()?;
    tmp.persist(&index_path)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", index_path.display()))?;
    drop(lock);
    Ok(())
}

/// Reads a whole small file, for tests.
#[cfg(test)]
fn read_all(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .expect("read");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trip_and_concurrent_puts_keep_every_tag() {
        let dir = tempfile::tempdir().expect("dir");
        let layout = dir.path().join("cache");
        let blobs = BlobStore::open(&dir.path().join("blobs")).expect("store");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let layout = layout.clone();
                std::thread::spawn(move || {
                    let entry = Entry {
                        key: format!("k{i}"),
                        components: vec![("parent".into(), format!("{i}"))],
                        layer: None,
                        created_by: format!("RUN step {i}"),
                        stored: 1,
                    };
                    let (config, manifest) =
                        encode(&entry, ("linux".into(), "amd64".into())).expect("encode");
                    layout_put(&layout, &[format!("k{i}")], &config, &manifest, None).expect("put");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        for i in 0..8 {
            let e = layout_get(&layout, &format!("k{i}"), &blobs, true)
                .expect("get")
                .expect("present");
            assert_eq!(e.created_by, format!("RUN step {i}"));
            assert_eq!(e.components, vec![("parent".to_string(), format!("{i}"))]);
        }
        assert!(layout_get(&layout, "absent", &blobs, true)
            .expect("get")
            .is_none());
        let index: Value =
            serde_json::from_slice(&read_all(&layout.join("index.json"))).expect("json");
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(8));
    }
}
