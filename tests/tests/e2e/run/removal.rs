//! The build's scratch directory at the end (`run::removal`): renamed into the kiln dir's
//! trash and removed during the push, the rest by a detached `kiln remove-scratch`. A kiln
//! dir left mid-removal (a build killed, a container stopped while it removed) does not
//! confuse the next build in it: the half-removed trees are swept, another build's directory
//! is left alone, and the image is the one a clean kiln dir gives.

#![allow(clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use kiln_tests::{busybox_image, kiln_bin, Registry, Scratch};

/// A stage root cut off midway through its removal: some directories emptied, one read-only,
/// links pointing out of it.
fn half_removed(top: &Path) {
    for d in 0..30 {
        let dir = top.join(format!("stage-0/usr/{d}"));
        fs::create_dir_all(&dir).expect("half-removed tree");
        if d % 3 == 0 {
            continue; // its files were removed already
        }
        for f in 0..50 {
            fs::write(dir.join(f.to_string()), b"left").expect("a left file");
        }
        std::os::unix::fs::symlink("/etc", dir.join("etc-link")).expect("link");
    }
    let locked = top.join("stage-0/usr/1");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).expect("chmod");
}

/// Waits until `path` is gone (the detached removal's end), at most a minute.
fn wait_gone(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} is still there a minute later",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_kiln_dir_left_mid_removal_does_not_confuse_the_next_build() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let dockerfile = format!("FROM {base}\nRUN ls / > /top && echo built > /built\n");
    let clean = Scratch::new();
    let want = clean
        .build(&dockerfile)
        .push_and_unpack(&registry.reference("removal/clean:1"));
    wait_gone(&clean.kiln_dir().join(".removing"));

    let scratch = Scratch::new();
    let kiln_dir = scratch.kiln_dir();
    let trash = kiln_dir.join(".removing");
    half_removed(&trash.join("build-4242.4242.1"));
    half_removed(&trash.join("build-4243.4243.2"));
    // another build's directory (it may be running): not this build's to touch
    let other = kiln_dir.join("build-1");
    half_removed(&other);
    let got = scratch
        .build(&dockerfile)
        .push_and_unpack(&registry.reference("removal/after:1"));
    assert_eq!(got.read("top"), want.read("top"), "the root saw the trash");
    assert_eq!(got.read("built"), "built\n");
    wait_gone(&trash);
    assert!(
        other.join("stage-0/usr/2/0").is_file(),
        "another build's directory was touched"
    );
    let builds: Vec<_> = fs::read_dir(&kiln_dir)
        .expect("kiln dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("build-") && n != "build-1")
        .collect();
    assert!(
        builds.is_empty(),
        "this build's directory is left: {builds:?}"
    );
    // the /etc behind the links is untouched
    assert!(Path::new("/etc/passwd").is_file());
}
