//! The two-platform base image: the amd64 busybox of `images.rs` and the same root with
//! Debian's arm64 `busybox-static` (fetched with `apt-get download busybox-static:arm64`,
//! cached under [`fixture_cache_dir`]), one OCI index over both, pushed with
//! `skopeo copy --all`. Running arm64 programs (`qemu-aarch64-static`) is the tests' own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::busybox_layer;
use crate::images::{busybox_rootfs, fixture_cache_dir, lock_cache};
use crate::layout::{ImageLayout, RunConfig, DEFAULT_PATH};
use crate::registry::Registry;
use crate::tools::{require, run_checked};

/// Bump when the layout changes shape, so the cached one is rebuilt.
const MULTIARCH_VERSION: &str = "1";
/// The applets linked in the arm64 root (what the platform tests run).
const ARM64_APPLETS: &[&str] = &[
    "cat", "echo", "env", "false", "ls", "mkdir", "rm", "sh", "test", "true", "uname",
];

/// Debian's arm64 busybox-static binary, downloaded once per machine.
pub fn arm64_busybox() -> PathBuf {
    let dir = fixture_cache_dir().join("busybox-arm64");
    let binary = dir.join("bin/busybox");
    if binary.is_file() {
        return binary;
    }
    let _lock = lock_cache("busybox-arm64");
    if binary.is_file() {
        return binary;
    }
    let apt = require("apt-get", "apt");
    let dpkg_deb = require("dpkg-deb", "dpkg");
    let scratch = tempfile::tempdir_in(fixture_cache_dir()).expect("download dir");
    let out = Command::new(apt)
        .args(["download", "busybox-static:arm64"])
        .current_dir(scratch.path())
        .output()
        .expect("running apt-get download");
    if !out.status.success() {
        panic!(
            "apt-get download busybox-static:arm64 failed (run `dpkg --add-architecture arm64 \
             && apt-get update`, as scripts/test.sh setup does):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let deb = fs::read_dir(scratch.path())
        .expect("download dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download left no .deb");
    let unpacked = scratch.path().join("root");
    run_checked(Command::new(dpkg_deb).arg("-x").arg(&deb).arg(&unpacked));
    fs::create_dir_all(dir.join("bin")).expect("creating the arm64 busybox dir");
    let staged = dir.join("bin/.busybox.partial");
    fs::copy(unpacked.join("bin/busybox"), &staged).expect("copying the arm64 busybox");
    fs::rename(&staged, &binary).expect("storing the arm64 busybox");
    binary
}

fn layout_dir() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let dest =
            fixture_cache_dir().join(format!("layouts/busybox-multiarch-v{MULTIARCH_VERSION}"));
        if dest.join("index.json").is_file() {
            return dest;
        }
        let _lock = lock_cache("busybox-multiarch");
        if dest.join("index.json").is_file() {
            return dest;
        }
        let arm64 = fs::read(arm64_busybox()).expect("reading the arm64 busybox");
        let staging = tempfile::Builder::new()
            .prefix(".building-")
            .tempdir_in(dest.parent().expect("layout parent"))
            .expect("staging dir");
        let run = RunConfig {
            env: vec![DEFAULT_PATH.to_string()],
            cmd: vec!["/bin/sh".to_string()],
        };
        let mut amd = ImageLayout::create(staging.path());
        amd.add_layer(busybox_layer(), "busybox-static rootfs (kiln test fixture)");
        let amd_manifest = amd.write_manifest("amd64", &run);
        let mut arm = ImageLayout::create(staging.path());
        arm.add_layer(
            &busybox_rootfs(&arm64, ARM64_APPLETS),
            "busybox-static:arm64 rootfs (kiln test fixture)",
        );
        let arm_manifest = arm.write_manifest("arm64", &run);
        arm.finish_index("latest", &[amd_manifest, arm_manifest]);
        let staged = staging.keep();
        if fs::rename(&staged, &dest).is_err() {
            let _ = fs::remove_dir_all(&staged);
        }
        dest
    })
}

/// Pushes the two-platform busybox (linux/amd64 and linux/arm64 under one index) as
/// `<registry>/busybox-multiarch:latest`; returns that reference.
pub fn busybox_multiarch_image(registry: &Registry) -> String {
    let reference = registry.reference("busybox-multiarch:latest");
    let mut pushed = registry.pushed.lock().unwrap_or_else(|p| p.into_inner());
    if pushed.contains(&reference) {
        return reference;
    }
    run_checked(
        Command::new(require("skopeo", "skopeo"))
            .args(["copy", "--all", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout_dir().display()))
            .arg(format!("docker://{reference}")),
    );
    pushed.insert(reference.clone());
    reference
}
