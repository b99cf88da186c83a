//! Other users of the machine: while a build runs, its stage roots (and what a setuid file in
//! them could give) and its cache mounts are out of their reach. kiln's dirs are 0700: a
//! fresh kiln dir, each build's dir (the stage roots are below it) and the cache mounts' dir,
//! also inside a kiln dir an older kiln made 0755.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_tests::{busybox_image, require, require_root, Build, Registry, Scratch};

/// Whether the `nobody` user can list `dir`.
fn nobody_can_list(dir: &Path) -> bool {
    let setpriv = require("setpriv", "util-linux");
    Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "ls"])
        .arg(dir)
        .output()
        .expect("setpriv")
        .status
        .success()
}

/// The build's own dir under `kiln_dir`, once the build has made it.
fn build_dir(kiln_dir: &Path) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = fs::read_dir(kiln_dir)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| {
                e.file_name().to_string_lossy().starts_with("build-")
                    && e.path().join("stage-0").is_dir()
            });
        if let Some(entry) = found {
            return entry.path();
        }
        assert!(
            Instant::now() < deadline,
            "no build dir in {}",
            kiln_dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn other_users_cannot_reach_stage_roots_or_cache_mounts() {
    require_root("setpriv to another user");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let work = Scratch::new();
    // the scratch dir is open to all, so only kiln's own dirs can keep others out
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    // a kiln dir an older kiln made, open to all
    let kiln_dir = work.kiln_dir();
    fs::create_dir(&kiln_dir).expect("kiln dir");
    fs::set_permissions(&kiln_dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    assert!(
        nobody_can_list(&kiln_dir),
        "the test's premise: the old kiln dir is open"
    );
    let mut child = work
        .build(&format!(
            "FROM {base}\nRUN --mount=type=cache,target=/c touch /c/x && sleep 4\n"
        ))
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(work.join("out"))
        .spawn();
    let build = build_dir(&kiln_dir);
    let stage = build.join("stage-0");
    let reachable = nobody_can_list(&build) || nobody_can_list(&stage);
    let build_mode = mode(&build);
    let status = child.wait().expect("kiln");
    assert!(status.success(), "the build failed");
    assert!(
        !reachable,
        "another user listed the stage root (build dir mode {build_mode:o})"
    );
    assert_eq!(build_mode & 0o077, 0, "the build dir is {build_mode:o}");
    let mounts = kiln_dir.join("cache/mounts");
    assert_eq!(
        mode(&mounts) & 0o077,
        0,
        "{} is {:o}",
        mounts.display(),
        mode(&mounts)
    );

    // a kiln dir kiln makes itself is private from the start
    let fresh = work.join("fresh/kiln");
    work.write("ctx/a.txt", "a");
    let dockerfile = work.write("Dockerfile.fresh", "FROM scratch\nCOPY a.txt /a.txt\n");
    Build::new(&dockerfile, &work.context(), &fresh)
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(work.join("out2"))
        .run_ok();
    assert_eq!(
        mode(&fresh) & 0o077,
        0,
        "a new kiln dir is {:o}",
        mode(&fresh)
    );
}
