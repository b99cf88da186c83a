//! The base images the tests build on, made from Debian packages and pushed to a test
//! registry.
//!
//! * busybox: busybox-static's binary plus one symlink per applet, `/etc/passwd` and
//!   `/etc/group` with root and nobody, `/tmp` 1777 — the same image the conformance
//!   harness builds with buildah.
//! * debian: `debootstrap --variant=minbase bookworm`, cached once per machine under
//!   [`fixture_cache_dir`] (the slow tier), or copied from the conformance registry at
//!   127.0.0.1:5000 when that already holds it.
//!
//! Set `KILN_DEBIAN_SOURCE=debootstrap` to skip the copy from the conformance registry.
//! Layouts are cached on disk keyed by content; pushes are remembered per registry.
//! Writing layouts is `layout.rs`'s; running the registry is `registry.rs`'s.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

use crate::layout::{ImageLayout, LayerTar, RunConfig, DEFAULT_PATH};
use crate::registry::Registry;
use crate::tools::{require, run_checked, try_skopeo_inspect};

/// Bump when the fixture images change shape, so cached layouts are rebuilt.
const FIXTURE_VERSION: &str = "1";
const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
const CONFORMANCE_DEBIAN: &str = "127.0.0.1:5000/library/debian:bookworm";

/// Machine-wide cache of fixture material: `/var/tmp/kiln-fixtures`, or
/// `$KILN_FIXTURE_CACHE`.
pub fn fixture_cache_dir() -> PathBuf {
    let dir = std::env::var_os("KILN_FIXTURE_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/kiln-fixtures"));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Holds an exclusive lock on `<cache>/<name>.lock` until dropped (across processes).
pub(crate) fn lock_cache(name: &str) -> File {
    let path = fixture_cache_dir().join(format!("{name}.lock"));
    let file = File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
    file
}

/// Holds the machine-wide lock on the 127.0.0.1:5000 registry until dropped: the
/// conformance runs (whose `setup.sh` starts and fills it), the Debian fixture copied from
/// it and the bench all take it. `flock` locks of separate opens exclude each other within
/// one process too, so this also keeps the test threads of one binary apart.
pub fn lock_conformance_registry() -> File {
    lock_cache("registry-5000")
}

/// Builds a layout with `build` into a scratch dir next to `dest`, then renames it into
/// place, so a half-written layout is never seen under `dest`.
fn build_layout_atomically(dest: &Path, build: impl FnOnce(&Path)) {
    let parent = dest.parent().expect("layout dir has a parent");
    fs::create_dir_all(parent).expect("creating layout cache");
    let staging = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(parent)
        .expect("staging dir");
    build(staging.path());
    let staged = staging.keep();
    if fs::rename(&staged, dest).is_err() {
        // Another process finished first; its identical layout wins.
        let _ = fs::remove_dir_all(&staged);
    }
}

/// Pushes `oci:<layout>:<tag>` to `<registry>/<repo>:<tag>` with skopeo, once per registry;
/// returns the pushed reference.
pub fn push_layout(registry: &Registry, layout: &Path, tag: &str, repo: &str) -> String {
    let reference = registry.reference(&format!("{repo}:{tag}"));
    let mut pushed = registry.pushed.lock().unwrap_or_else(|p| p.into_inner());
    if pushed.contains(&reference) {
        return reference;
    }
    run_checked(
        Command::new(require("skopeo", "skopeo"))
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{reference}")),
    );
    pushed.insert(reference.clone());
    reference
}

/// Whether `bytes` are a statically linked 64-bit little-endian ELF (no `PT_INTERP`
/// program header): a dynamic busybox would not run inside the fixture root.
fn is_static_elf(bytes: &[u8]) -> bool {
    let read = |at: usize, len: usize| -> Option<u64> {
        let slice = bytes.get(at..at + len)?;
        Some(
            slice
                .iter()
                .rev()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    };
    let is_elf64_le = bytes.starts_with(b"\x7fELF\x02\x01");
    let (Some(phoff), Some(phentsize), Some(phnum)) = (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    else {
        return false;
    };
    is_elf64_le
        && (0..phnum).all(|i| {
            let at = phoff as usize + (i * phentsize) as usize;
            read(at, 4) != Some(3) // PT_INTERP
        })
}

/// The busybox root filesystem as one uncompressed layer tarball (built once per process).
pub fn busybox_layer() -> &'static [u8] {
    static LAYER: OnceLock<Vec<u8>> = OnceLock::new();
    LAYER.get_or_init(|| {
        let busybox_path = require("busybox", "busybox-static");
        let busybox = fs::read(&busybox_path).expect("reading busybox");
        if !is_static_elf(&busybox) {
            panic!(
                "{} is not statically linked: apt-get install busybox-static",
                busybox_path.display()
            );
        }
        let list = run_checked(Command::new(&busybox_path).arg("--list"));
        let mut applets: Vec<&str> = list
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
            .collect();
        applets.sort_unstable();
        applets.dedup();
        busybox_rootfs(&busybox, &applets)
    })
}

/// A busybox root filesystem as an uncompressed layer tarball: `busybox` (a static binary)
/// at `/bin/busybox`, one symlink per applet, `/etc/passwd`, `/etc/group`, `/root`, `/tmp`.
pub(crate) fn busybox_rootfs(busybox: &[u8], applets: &[&str]) -> Vec<u8> {
    let mut tar = LayerTar::new();
    tar.dir("bin", 0o755).file("bin/busybox", busybox, 0o755);
    for applet in applets {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    tar.dir("etc", 0o755)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
            0o644,
        )
        .file("etc/group", b"root:x:0:\nnobody:x:65534:\n", 0o644)
        .dir("root", 0o700)
        .dir("tmp", 0o1777);
    tar.into_bytes()
}

fn busybox_run_config() -> RunConfig {
    RunConfig {
        env: vec![DEFAULT_PATH.to_string()],
        cmd: vec!["/bin/sh".to_string()],
    }
}

/// The busybox layout on disk (built once per machine and fixture content).
fn busybox_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let layer = busybox_layer();
        let mut key = Sha256::new();
        key.update(FIXTURE_VERSION.as_bytes());
        key.update(layer);
        let key = hex::encode(key.finalize());
        let dest = fixture_cache_dir().join(format!("layouts/busybox-{}", &key[..16]));
        if !dest.join("index.json").is_file() {
            build_layout_atomically(&dest, |dir| {
                let mut layout = ImageLayout::create(dir);
                layout.add_layer(layer, "busybox-static rootfs (kiln test fixture)");
                layout.finish("latest", &busybox_run_config());
            });
        }
        dest
    })
}

/// Pushes the busybox fixture as `<registry>/busybox:latest`; returns that reference.
pub fn busybox_image(registry: &Registry) -> String {
    push_layout(registry, busybox_layout(), "latest", "busybox")
}

/// Runs debootstrap into a scratch dir and leaves `tarball` (a rootfs tar with top-level
/// names, numeric owners, apt caches and device nodes removed).
fn debootstrap_tarball(tarball: &Path) {
    let debootstrap = require("debootstrap", "debootstrap");
    require("tar", "tar");
    crate::tools::require_root("debootstrap creates a root filesystem");
    let scratch = tempfile::Builder::new()
        .prefix("kiln-debootstrap-")
        .tempdir_in(fixture_cache_dir())
        .expect("debootstrap scratch");
    let root = scratch.path().join("rootfs");
    let log = scratch.path().join("debootstrap.log");
    eprintln!("debootstrap --variant=minbase bookworm (once per machine, about a minute)");
    let started = std::time::Instant::now();
    let status = Command::new(&debootstrap)
        .args(["--variant=minbase", "bookworm"])
        .arg(&root)
        .arg(DEBIAN_MIRROR)
        .stdout(File::create(&log).expect("log"))
        .stderr(File::create(log.with_extension("err")).expect("log"))
        .status()
        .expect("running debootstrap");
    if !status.success() {
        panic!(
            "debootstrap failed ({status}):\n{}\n{}",
            fs::read_to_string(&log).unwrap_or_default(),
            fs::read_to_string(log.with_extension("err")).unwrap_or_default()
        );
    }
    eprintln!("debootstrap took {:?}", started.elapsed());
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists", "dev"] {
        let dir = root.join(dir);
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && path.file_name().is_some_and(|n| n == "partial") {
                continue;
            }
            if is_dir {
                fs::remove_dir_all(&path).expect("cleaning rootfs");
            } else {
                fs::remove_file(&path).expect("cleaning rootfs");
            }
        }
    }
    let mut names: Vec<_> = fs::read_dir(&root)
        .expect("reading rootfs")
        .map(|e| e.expect("rootfs entry").file_name())
        .collect();
    names.sort();
    let staging = scratch.path().join("rootfs.tar");
    run_checked(
        Command::new("tar")
            .args(["--numeric-owner", "--sort=name", "-C"])
            .arg(&root)
            .arg("-cf")
            .arg(&staging)
            .args(&names),
    );
    fs::rename(&staging, tarball).expect("storing the debian tarball");
    fs::set_permissions(tarball, fs::Permissions::from_mode(0o644)).expect("chmod tarball");
}

/// The debian layout on disk: from the cached tarball, else from the conformance registry,
/// else from a fresh debootstrap (whose tarball is cached for next time).
fn debian_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let _lock = lock_cache("debian");
        let cache = fixture_cache_dir();
        let dest = cache.join(format!("layouts/debian-bookworm-v{FIXTURE_VERSION}"));
        if dest.join("index.json").is_file() {
            return dest;
        }
        let tarball = cache.join("debian-bookworm-minbase.tar");
        let may_copy = std::env::var("KILN_DEBIAN_SOURCE").map_or(true, |v| v != "debootstrap");
        let conformance = (!tarball.is_file() && may_copy).then(lock_conformance_registry);
        if conformance.is_some() && try_skopeo_inspect(CONFORMANCE_DEBIAN).is_ok() {
            eprintln!("debian fixture: copying {CONFORMANCE_DEBIAN}");
            build_layout_atomically(&dest, |dir| {
                run_checked(
                    Command::new(require("skopeo", "skopeo"))
                        .args(["copy", "--quiet", "--src-tls-verify=false"])
                        .arg(format!("docker://{CONFORMANCE_DEBIAN}"))
                        .arg(format!("oci:{}:bookworm", dir.display())),
                );
            });
            return dest;
        }
        drop(conformance);
        if !tarball.is_file() {
            debootstrap_tarball(&tarball);
        }
        build_layout_atomically(&dest, |dir| {
            let file = File::open(&tarball).expect("opening debian tarball");
            let mut layout = ImageLayout::create(dir);
            layout.add_layer_from(file, "debootstrap --variant=minbase bookworm");
            layout.finish(
                "bookworm",
                &RunConfig {
                    env: vec![DEFAULT_PATH.to_string()],
                    cmd: vec!["bash".to_string()],
                },
            );
        });
        dest
    })
}

/// Pushes the Debian bookworm fixture as `<registry>/debian:bookworm`; returns that
/// reference. The first call on a fresh machine runs debootstrap (about a minute).
pub fn debian_image(registry: &Registry) -> String {
    push_layout(registry, debian_layout(), "bookworm", "debian")
}
