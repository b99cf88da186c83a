//! Local outputs of a `BuiltImage`: a `docker load`-compatible archive (`--tar-path`), an OCI
//! image layout (`--oci-layout-path`) and the digest file (`--digest-file`). Pushing is the
//! registry's business. Each output is written beside its destination and renamed into
//! place, so a failure leaves nothing half-written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{BuiltImage, Error, Result};
use crate::oci::media_type::OCI_INDEX;

fn io(path: &Path, op: &'static str) -> impl Fn(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        path: path.clone(),
        op,
        source,
    }
}

fn append_file<W: Write>(b: &mut tar::Builder<W>, name: &str, src: &Path) -> Result<()> {
    let mut f = File::open(src).map_err(io(src, "open blob"))?;
    let len = f.metadata().map_err(io(src, "stat blob"))?.len();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(len);
    h.set_mtime(0);
    b.append_data(&mut h, name, &mut f)
        .map_err(io(src, "write archive"))
}

fn append_bytes<W: Write>(
    b: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
    dest: &Path,
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(bytes.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, name, bytes)
        .map_err(io(dest, "write archive"))
}

fn temp_beside(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.kiln-partial"))
}

/// Writes a docker-archive: `manifest.json`, the config and the compressed layers (which
/// `docker load` and skopeo decompress themselves). `repo_tags` are `name:tag` strings.
pub fn write_docker_archive(image: &BuiltImage, repo_tags: &[String], dest: &Path) -> Result<()> {
    let tmp = temp_beside(dest);
    let file = File::create(&tmp).map_err(io(&tmp, "create"))?;
    let mut b = tar::Builder::new(BufWriter::new(file));
    let config_name = format!("{}.json", image.config_digest.hex());
    let layer_names: Vec<String> = image
        .layers
        .iter()
        .map(|l| format!("{}.tar.gz", l.digest.hex()))
        .collect();
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    append_bytes(&mut b, &config_name, &image.config, dest)?;
    let mut seen = std::collections::HashSet::new();
    for (layer, name) in image.layers.iter().zip(&layer_names) {
        if seen.insert(name.clone()) {
            append_file(&mut b, name, &layer.path)?;
        }
    }
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|source| Error::BadConfig {
        what: "the archive manifest".into(),
        source,
    })?;
    append_bytes(&mut b, "manifest.json", &manifest_bytes, dest)?;
    let mut w = b.into_inner().map_err(io(&tmp, "finish archive"))?;
    w.flush().map_err(io(&tmp, "flush"))?;
    std::fs::rename(&tmp, dest).map_err(io(dest, "rename into place"))
}

/// Writes (or adds to) an OCI image layout at `dir`, the manifest annotated with `ref_name`.
pub fn write_oci_layout(image: &BuiltImage, ref_name: &str, dir: &Path) -> Result<()> {
    put_image_blobs(image, dir)?;
    let descriptor = json!({
        "mediaType": image.family.manifest(),
        "digest": image.manifest_digest.0,
        "size": image.manifest.len(),
    });
    name_in_layout(dir, descriptor, ref_name)
}

/// Stores `bytes` (or the file `src`) as blob `hex` of the layout at `dir`, unless it is there.
pub(crate) fn put_layout_blob(
    dir: &Path,
    hex: &str,
    src: Option<&Path>,
    bytes: Option<&[u8]>,
) -> Result<()> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io(&blobs, "create"))?;
    let target = blobs.join(hex);
    if target.exists() {
        return Ok(());
    }
    let tmp = blobs.join(format!(".{hex}.partial"));
    match (src, bytes) {
        (Some(src), _) => {
            if std::fs::hard_link(src, &tmp).is_err() {
                std::fs::copy(src, &tmp).map_err(io(src, "copy blob"))?;
            }
        }
        (None, Some(bytes)) => std::fs::write(&tmp, bytes).map_err(io(&tmp, "write blob"))?,
        (None, None) => return Ok(()),
    }
    std::fs::rename(&tmp, &target).map_err(io(&target, "store blob"))
}

/// Stores an image's layers, config and manifest in the layout at `dir`.
pub(crate) fn put_image_blobs(image: &BuiltImage, dir: &Path) -> Result<()> {
    for layer in &image.layers {
        put_layout_blob(dir, layer.digest.hex(), Some(&layer.path), None)?;
    }
    put_layout_blob(dir, image.config_digest.hex(), None, Some(&image.config))?;
    put_layout_blob(
        dir,
        image.manifest_digest.hex(),
        None,
        Some(&image.manifest),
    )
}

/// Points `ref_name` in the layout's `index.json` at `descriptor` (replacing an older entry
/// of that name) and writes `oci-layout`.
pub(crate) fn name_in_layout(
    dir: &Path,
    mut descriptor: serde_json::Value,
    ref_name: &str,
) -> Result<()> {
    let layout = dir.join("oci-layout");
    std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io(&layout, "write"))?;
    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
        .unwrap_or_default();
    // a name points at one image: drop an older entry of the same name
    manifests.retain(|m| {
        m.pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(|n| n.as_str())
            != Some(ref_name)
    });
    descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": ref_name});
    manifests.push(descriptor);
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let tmp = dir.join(".index.json.partial");
    let bytes = serde_json::to_vec(&index).map_err(|source| Error::BadConfig {
        what: "the layout index".into(),
        source,
    })?;
    std::fs::write(&tmp, bytes).map_err(io(&tmp, "write"))?;
    std::fs::rename(&tmp, &index_path).map_err(io(&index_path, "rename into place"))
}

/// Writes `digest` to a file, as kaniko's `--digest-file` does.
pub fn write_digest_file(digest: &str, dest: &Path) -> Result<()> {
    let tmp = temp_beside(dest);
    std::fs::write(&tmp, digest).map_err(io(&tmp, "write"))?;
    std::fs::rename(&tmp, dest).map_err(io(dest, "rename into place"))
}
