//! kiln builds its own executor image: both targets of the top-level Dockerfile, from the
//! Debian fixture as BASE_IMAGE, pushed to a loopback registry. The executor image must be
//! scratch plus exactly the listed files; its binary, extracted with umoci, runs
//! (`--version`, and a small build given kaniko-style flags without a subcommand), and its
//! root builds under gVisor as `deploy/gvisor.yaml` runs it (`deploy::gvisor`).
//!
//! The builder stage installs Rust with rustup and compiles kiln for musl, so this test needs
//! the network (a Debian mirror, static.rust-lang.org, crates.io) and several minutes.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kiln_tests::{
    debian_image, require_root, run_checked, run_with_timeout, skopeo_config, umoci_unpack,
    workspace_root, Build, Registry,
};

/// Every path of an unpacked root, relative and sorted.
fn tree(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("readable rootfs") {
            let path = entry.expect("entry").path();
            let rel = path
                .strip_prefix(root)
                .expect("inside root")
                .to_string_lossy()
                .into_owned();
            if path.is_dir() && !path.is_symlink() {
                dirs.push(path);
            }
            out.insert(rel);
        }
    }
    out
}

const EXECUTOR_FILES: [&str; 8] = [
    "kiln",
    "kiln/.docker",
    "kiln/.docker/config.json",
    "kiln/executor",
    "kiln/ssl",
    "kiln/ssl/certs",
    "kiln/ssl/certs/ca-certificates.crt",
    "workspace",
];

fn build_target(registry: &Registry, base: &str, kiln_dir: &Path, target: &str) -> String {
    let root = workspace_root();
    let dest = registry.reference(&format!("kiln/executor:{target}"));
    Build::new(&root.join("Dockerfile"), &root, kiln_dir)
        .arg("--target")
        .arg(target)
        .arg("--build-arg")
        .arg(format!("BASE_IMAGE={base}"))
        // unoptimised: the image build still compiles, links and ships kiln, with less work
        .arg("--build-arg")
        .arg("CARGO_PROFILE=quick")
        // this machine's CA bundle, for networks behind a TLS-intercepting proxy
        .arg("--secret")
        .arg("id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt")
        // the second target takes the builder stage from the layer cache
        .arg("--cache")
        .arg(format!(
            "--cache-repo=oci:{}",
            kiln_dir.join("layer-cache").display()
        ))
        .destination(&dest)
        .run_ok();
    dest
}

#[test]
fn kiln_builds_and_runs_its_own_executor_image() {
    require_root("the builder stage runs apt-get and rustup in a chroot");
    let registry = Registry::start();
    let base = debian_image(&registry);
    let kiln_dir = tempfile::tempdir().expect("kiln dir");

    // executor: scratch + the listed files, entrypoint and environment as documented
    let executor = build_target(&registry, &base, kiln_dir.path(), "executor");
    let unpacked = umoci_unpack(&executor);
    let files = tree(&unpacked.rootfs);
    let expected: BTreeSet<String> = EXECUTOR_FILES.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        files, expected,
        "the executor image holds exactly these paths"
    );
    let config = skopeo_config(&executor);
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/kiln/executor"])
    );
    assert_eq!(config["config"]["WorkingDir"], "/workspace");
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        env.contains(&"DOCKER_CONFIG=/kiln/.docker/"),
        "DOCKER_CONFIG in {env:?}"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(1),
        "scratch plus one layer"
    );

    // the extracted binary is static and runs here
    let bin = unpacked.path("kiln/executor");
    assert_ne!(
        fs::metadata(&bin).expect("executor").permissions().mode() & 0o111,
        0
    );
    let version = run_checked(Command::new(&bin).arg("--version"));
    assert!(version.starts_with("kiln "), "--version prints {version}");
    let ldd = run_with_timeout(
        Command::new("ldd").arg(&bin),
        std::time::Duration::from_secs(30),
    );
    let ldd_text =
        String::from_utf8_lossy(&ldd.stdout).into_owned() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd_text.contains("not a dynamic executable") || ldd_text.contains("statically linked"),
        "the executor binary is static: {ldd_text}"
    );

    // a small build with kaniko's flags and no subcommand, as a pod spec passes them
    let work = tempfile::tempdir().expect("scratch");
    let context = work.path().join("context");
    fs::create_dir(&context).expect("context");
    fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\n",
    )
    .expect("Dockerfile");
    fs::write(context.join("hello.txt"), "from the executor image\n").expect("hello");
    let layout = work.path().join("layout");
    run_checked(
        Command::new(&bin)
            .arg(format!("--context=dir://{}", context.display()))
            .arg("--dockerfile=Dockerfile")
            .arg("--destination=example.invalid/hello:1")
            .arg("--no-push")
            .arg(format!("--oci-layout-path={}", layout.display()))
            .arg(format!("--kiln-dir={}", work.path().join("kiln").display())),
    );
    let hello = umoci_unpack(&format!("oci:{}:1", layout.display()));
    assert_eq!(hello.read("hello.txt"), "from the executor image\n");

    // the same root under gVisor, as deploy/gvisor.yaml runs it
    crate::deploy::gvisor::builds_like_outside(&unpacked.rootfs, "the executor image");

    // debug: the executor plus busybox under /busybox, on PATH, and kiln's manual pages
    // and bash completion
    let debug = build_target(&registry, &base, kiln_dir.path(), "debug");
    let unpacked = umoci_unpack(&debug);
    let files = tree(&unpacked.rootfs);
    const DOCS: &[&str] = &[
        "usr/share/man/man1/kiln.1",
        "usr/share/man/man1/kiln-build.1",
        "usr/share/man/man1/kiln-warm.1",
        "usr/share/bash-completion/completions/kiln",
    ];
    for path in EXECUTOR_FILES
        .iter()
        .chain(&["busybox/busybox", "busybox/sh"])
        .chain(DOCS)
    {
        assert!(files.contains(*path), "debug image lacks {path}");
    }
    assert!(unpacked
        .read("usr/share/man/man1/kiln-build.1")
        .contains("destination"));
    let outside: Vec<&String> = files
        .iter()
        .filter(|p| !expected.contains(*p) && *p != "busybox" && !p.starts_with("busybox/"))
        .filter(|p| {
            !DOCS
                .iter()
                .any(|d| d.starts_with(p.as_str()) || *d == p.as_str())
        })
        .collect();
    assert!(
        outside.is_empty(),
        "debug adds only /busybox and the docs: {outside:?}"
    );
    let config = skopeo_config(&debug);
    let env = config["config"]["Env"].to_string();
    assert!(env.contains("PATH=/kiln:/busybox"), "PATH in {env}");
    let sh =
        run_checked(Command::new(unpacked.path("busybox/busybox")).args(["sh", "-c", "echo ok"]));
    assert_eq!(sh.trim(), "ok");
}
