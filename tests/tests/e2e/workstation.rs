//! The workstation path the README gives an ordinary user,
//! `cargo run --release -- build --context ./app --no-push --oci-layout-path out`, run as the
//! unprivileged user kiln-test (subordinate ids in /etc/subuid and /etc/subgid, as
//! `scripts/test.sh` sets it up) from the root of a copy of the checkout. The user runs the
//! argument vector that follows `cargo run --release --`, given to the built binary: cargo
//! and rustup live in root's home, which kiln-test cannot read. The layout it writes is
//! checked with umoci: what the context held, a RUN that chowned to ids only subordinate ids
//! can give, and the config.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiln_tests::{
    busybox_image, kiln_bin, require, require_root, run_checked, run_with_timeout, skopeo_config,
    umoci_unpack, workspace_root, Registry,
};

/// The command as the README prints it.
const README_COMMAND: &str =
    "cargo run --release -- build --context ./app --no-push --oci-layout-path out";
/// The unprivileged user with subordinate ids.
const USER: &str = "kiln-test";
const BUILD_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// kiln-test's uid and gid; panics saying how to create it when it is missing.
fn user_ids() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == USER).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .unwrap_or_else(|| panic!("missing user {USER}: run scripts/test.sh setup"))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for e in fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

/// A copy of the checkout (sources, no `target/` or `.git`) under `home`.
fn copy_checkout(home: &Path) -> std::path::PathBuf {
    let checkout = home.join("kiln");
    fs::create_dir(&checkout).unwrap();
    let root = workspace_root();
    run_checked(Command::new("sh").arg("-c").arg(format!(
        "tar -C '{}' --exclude=./target --exclude=./.git -cf - . | tar -C '{}' -xf -",
        root.display(),
        checkout.display()
    )));
    checkout
}

#[test]
fn an_ordinary_user_builds_into_an_oci_layout_as_the_readme_says() {
    require_root("switching to the unprivileged user kiln-test");
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    assert!(
        readme.contains(README_COMMAND),
        "the README no longer gives {README_COMMAND:?}"
    );
    let (_, argv) = README_COMMAND.split_once(" -- ").unwrap();
    let setpriv = require("setpriv", "util-linux");
    require("newuidmap", "uidmap");
    let (uid, gid) = user_ids();
    let kiln = kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let home = tempfile::Builder::new()
        .prefix("kiln-workstation-")
        .tempdir()
        .unwrap();
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let checkout = copy_checkout(home.path());
    let app = checkout.join("app");
    fs::create_dir(&app).unwrap();
    fs::write(app.join("hello.txt"), "hello from a workstation\n").unwrap();
    fs::write(
        app.join("Dockerfile"),
        format!(
            "FROM {base}\nCOPY hello.txt /srv/hello.txt\n\
             RUN chown 1234:5678 /srv/hello.txt && id -u > /srv/uid\n\
             USER 1234\nCMD [\"cat\", \"/srv/hello.txt\"]\n"
        ),
    )
    .unwrap();
    chown_tree(home.path(), uid, gid);
    let mut cmd = Command::new(&setpriv);
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "--inh-caps=-all", "--"])
        .arg(&kiln)
        .args(argv.split(' '))
        .current_dir(&checkout)
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("DOCKER_CONFIG", std::env::var_os("DOCKER_CONFIG").unwrap());
    let out = run_with_timeout(&mut cmd, BUILD_TIMEOUT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the README's build failed:\n{stderr}");
    assert!(
        stderr.contains("RUN isolation: rootless"),
        "the build was not rootless:\n{stderr}"
    );
    let layout = checkout.join("out");
    assert_eq!(
        fs::metadata(&layout).unwrap().uid(),
        uid,
        "out/ is the user's"
    );
    assert!(
        home.path().join(".cache/kiln").is_dir(),
        "the kiln dir defaults to ~/.cache/kiln"
    );
    let reference = format!("oci:{}:latest", layout.display());
    let image = umoci_unpack(&reference);
    assert_eq!(image.read("srv/hello.txt"), "hello from a workstation\n");
    assert_eq!(image.mode_owner("srv/hello.txt"), "0644 1234:5678");
    assert_eq!(
        image.read("srv/uid"),
        "0\n",
        "RUN runs as the namespace's root"
    );
    let config = skopeo_config(&reference);
    assert_eq!(config["config"]["User"], "1234");
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["cat", "/srv/hello.txt"])
    );
}
