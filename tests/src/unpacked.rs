//! An image unpacked by umoci ([`umoci_unpack`]) and the ways tests read it: a file's
//! text or bytes, a path's mode and owner, and sorted listings of a directory tree.
//!
//! Getting the image there (skopeo copy, umoci unpack) uses the process runners of
//! `tools.rs`; the build that pushed it is `build.rs`'s.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::tools::{is_root, require, run_checked, skopeo, with_transport};

/// A `umoci unpack`ed image: the bundle lives as long as this value.
#[derive(Debug)]
pub struct Unpacked {
    _dir: TempDir,
    /// The unpacked root filesystem.
    pub rootfs: PathBuf,
}

impl Unpacked {
    /// `rootfs` joined with a path given relative to the image root.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.rootfs.join(inside.trim_start_matches('/'))
    }

    /// The content of a regular file inside the image, as text; panics when absent.
    pub fn read(&self, inside: &str) -> String {
        let path = self.path(inside);
        fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("image file {inside} unreadable ({}): {e}", path.display()))
    }

    /// Panics naming the first of `paths` (relative to the image root) that exists in the
    /// image, even as a dangling symlink: what a build mounted or ignored must not leak.
    pub fn assert_absent(&self, paths: &[&str]) {
        for inside in paths {
            assert!(
                fs::symlink_metadata(self.path(inside)).is_err(),
                "/{inside} leaked into the image"
            );
        }
    }

    /// The bytes of a regular file inside the image; panics when absent.
    pub fn read_bytes(&self, inside: &str) -> Vec<u8> {
        fs::read(self.path(inside)).unwrap_or_else(|e| panic!("{inside}: {e}"))
    }

    /// `"0644 0:0"`: the permission bits and owner of a path inside the image (not
    /// following a final symlink).
    pub fn mode_owner(&self, inside: &str) -> String {
        let meta = fs::symlink_metadata(self.path(inside)).expect(inside);
        format!(
            "{:04o} {}:{}",
            meta.permissions().mode() & 0o7777,
            meta.uid(),
            meta.gid()
        )
    }

    /// Every path under `dir` of the image, sorted, directories with a trailing `/`.
    pub fn listing(&self, dir: &str) -> Vec<String> {
        walk(&self.path(dir))
            .into_iter()
            .map(|(rel, meta)| match meta.is_dir() {
                true => format!("{}/", rel.display()),
                false => rel.display().to_string(),
            })
            .collect()
    }

    /// Every entry under `dir` of the image, sorted, as `"d 0755 0:0 a/b"`: kind (`d`,
    /// `f`, `l`), permission bits, owner, and the path relative to `dir`.
    pub fn entries(&self, dir: &str) -> Vec<String> {
        walk(&self.path(dir))
            .into_iter()
            .map(|(rel, meta)| {
                let kind = if meta.is_dir() {
                    'd'
                } else if meta.file_type().is_symlink() {
                    'l'
                } else {
                    'f'
                };
                format!(
                    "{kind} {:04o} {}:{} {}",
                    meta.permissions().mode() & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    rel.display()
                )
            })
            .collect()
    }
}

/// Every entry under `base` (not following symlinks), depth first in name order, with its
/// path relative to `base` and its metadata.
fn walk(base: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    fn visit(base: &Path, dir: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let rel = path.strip_prefix(base).expect("under base").to_path_buf();
            let is_dir = meta.is_dir();
            out.push((rel, meta));
            if is_dir {
                visit(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    visit(base, base, &mut out);
    out
}

/// Unpacks an image with umoci. `source` is `oci:DIR:TAG` (unpacked directly) or anything
/// skopeo reads (`docker://…`, a bare registry ref, `docker-archive:FILE`), which is first
/// copied into a scratch OCI layout by skopeo.
pub fn umoci_unpack(source: &str) -> Unpacked {
    let umoci = require("umoci", "umoci");
    let dir = tempfile::Builder::new()
        .prefix("kiln-unpack-")
        .tempdir()
        .expect("scratch dir");
    let image = match source.strip_prefix("oci:") {
        Some(layout_and_tag) => layout_and_tag.to_string(),
        None => {
            let layout = dir.path().join("layout");
            let dest = format!("oci:{}:image", layout.display());
            run_checked(
                Command::new(skopeo())
                    .args(["copy", "--quiet", "--src-tls-verify=false"])
                    .arg(with_transport(source))
                    .arg(dest),
            );
            format!("{}:image", layout.display())
        }
    };
    let bundle = dir.path().join("bundle");
    let mut cmd = Command::new(umoci);
    cmd.arg("unpack");
    if !is_root() {
        cmd.arg("--rootless");
    }
    cmd.arg("--image").arg(&image).arg(&bundle);
    run_checked(&mut cmd);
    Unpacked {
        rootfs: bundle.join("rootfs"),
        _dir: dir,
    }
}
