//! An image as a container runtime sees it, for comparing what two builders made of one
//! Dockerfile ([`ImageView`]): every path of the root umoci unpacks (type, mode, owner,
//! size, content hash, link target, device number) and the config fields that change what a
//! container does (Env, Cmd, Entrypoint, WorkingDir, User, ExposedPorts, Volumes, Labels,
//! StopSignal, platform). Owns what the comparison leaves out: timestamps, the paths a
//! runtime mounts over (`/proc`, `/sys`, `/dev`, `/run`, `/etc/hosts`, …), the order of Env
//! entries and buildah's own `io.buildah.version` label.
//!
//! Unpacking is `unpacked.rs`'s; which images to compare is `differential.rs`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::tools::skopeo_config;
use crate::unpacked::umoci_unpack;

/// Top-level directories a runtime mounts over: never compared.
const MOUNTED_DIRS: [&str; 4] = ["proc", "sys", "dev", "run"];
/// Files a runtime writes at start: never compared.
const RUNTIME_FILES: [&str; 3] = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];
/// The config fields compared (under the config's `config`).
const CONFIG_FIELDS: [&str; 9] = [
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
];
/// The label buildah stamps on every image it builds.
const BUILDAH_LABEL: &str = "io.buildah.version";

/// One path of an unpacked root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// size and sha256 of a regular file
    content: Option<(u64, String)>,
    /// a symlink's target
    target: Option<String>,
    /// a device's number
    rdev: Option<u64>,
}

/// What a runtime sees of an image: its files by path and its normalised config.
#[derive(Debug)]
pub struct ImageView {
    /// Paths relative to the root, without a leading `/`.
    pub files: BTreeMap<String, Entry>,
    /// The compared config fields (absent and empty are the same: `null`) and `platform`.
    pub config: BTreeMap<String, Value>,
}

impl ImageView {
    /// Unpacks `reference` (anything skopeo reads; bare names are `docker://`) with umoci and
    /// reads its config.
    pub fn read(reference: &str) -> ImageView {
        let unpacked = umoci_unpack(reference);
        let mut files = BTreeMap::new();
        walk(&unpacked.rootfs, &unpacked.rootfs, &mut files);
        ImageView {
            files,
            config: normalise(&skopeo_config(reference)),
        }
    }

    /// Paths whose entries differ (or exist in one image only).
    pub fn differing_paths(&self, other: &ImageView) -> BTreeSet<String> {
        let all: BTreeSet<&String> = self.files.keys().chain(other.files.keys()).collect();
        all.into_iter()
            .filter(|p| self.files.get(*p) != other.files.get(*p))
            .cloned()
            .collect()
    }

    /// Every difference, file by file then field by field, with `ignored` paths left out;
    /// empty when a runtime could not tell the two images apart.
    pub fn differences(&self, other: &ImageView, ignored: &BTreeSet<String>) -> Vec<String> {
        let mut out: Vec<String> = self
            .differing_paths(other)
            .into_iter()
            .filter(|p| !ignored.contains(p))
            .map(|p| {
                format!(
                    "/{p}: reference {:?}, kiln {:?}",
                    self.files.get(&p),
                    other.files.get(&p)
                )
            })
            .collect();
        for (field, want) in &self.config {
            let got = other.config.get(field).unwrap_or(&Value::Null);
            if got != want {
                out.push(format!("config {field}: reference {want}, kiln {got}"));
            }
        }
        out
    }
}

fn skipped(rel: &str) -> bool {
    let top = rel.split('/').next().unwrap_or(rel);
    MOUNTED_DIRS.contains(&top) || RUNTIME_FILES.contains(&rel)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        let rel = path
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .into_owned();
        if skipped(&rel) {
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let kind = meta.file_type();
        let name = match () {
            _ if kind.is_dir() => "dir",
            _ if kind.is_file() => "file",
            _ if kind.is_symlink() => "symlink",
            _ if kind.is_char_device() => "char",
            _ if kind.is_block_device() => "block",
            _ if kind.is_fifo() => "fifo",
            _ => "socket",
        };
        out.insert(
            rel.clone(),
            Entry {
                kind: name,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                content: kind.is_file().then(|| (meta.len(), sha256_of(&path))),
                target: kind.is_symlink().then(|| {
                    fs::read_link(&path)
                        .expect("readlink")
                        .to_string_lossy()
                        .into_owned()
                }),
                rdev: (kind.is_char_device() || kind.is_block_device()).then(|| meta.rdev()),
            },
        );
        if kind.is_dir() {
            walk(root, &path, out);
        }
    }
}

fn sha256_of(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).expect("reading an image file");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hex::encode(hasher.finalize())
}

/// The compared fields of an OCI config, absent and empty alike as `null`.
fn normalise(config: &Value) -> BTreeMap<String, Value> {
    let inner = &config["config"];
    let mut out = BTreeMap::new();
    for field in CONFIG_FIELDS {
        let mut value = inner.get(field).cloned().unwrap_or(Value::Null);
        if let (Value::Object(labels), "Labels") = (&mut value, field) {
            labels.remove(BUILDAH_LABEL);
        }
        if let (Value::Array(env), "Env") = (&mut value, field) {
            env.sort_by_key(|v| v.to_string());
        }
        let empty = match &value {
            Value::Object(map) => map.is_empty(),
            Value::Array(list) => list.is_empty(),
            Value::String(text) => text.is_empty(),
            _ => false,
        };
        out.insert(field.to_string(), if empty { Value::Null } else { value });
    }
    out.insert(
        "platform".to_string(),
        Value::String(format!("{}/{}", config["os"], config["architecture"])),
    );
    out
}
