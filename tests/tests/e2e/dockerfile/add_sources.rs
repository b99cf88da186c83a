//! ADD from `http://` URLs (served by a small HTTP server the test starts on loopback), ADD of
//! git repositories (served by `git http-backend` on loopback: refs, subdirectories,
//! `--keep-git-dir`, the layer cache keyed on the commit) and ADD of local archives in every
//! compression Docker unpacks, checked on pushed images unpacked with umoci.

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use kiln_tests::{
    busybox_image, kiln_bin, loopback_listener, require, require_root, umoci_unpack, LayerTar,
    Registry, Scratch,
};

/// `Last-Modified` of the served files, and the same instant in seconds.
const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const LAST_MODIFIED_SECS: i64 = 784_111_777;

/// Serves `files` (path → body) over plain HTTP on a free loopback port until the test
/// process ends; anything else is a 404. Returns `http://127.0.0.1:PORT`.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = loopback_listener();
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
            let response = match files.get(&path) {
                Some(body) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: {LAST_MODIFIED}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = conn.write_all(&response);
        }
    });
    format!("http://{addr}")
}

fn small_tar() -> Vec<u8> {
    let mut tar = LayerTar::new();
    tar.dir("pkg", 0o755)
        .file("pkg/data.txt", b"packed\n", 0o640);
    tar.into_bytes()
}

#[test]
fn add_urls_as_docker() {
    kiln_bin();
    require_root("owners in the unpacked image are compared");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let tar = small_tar();
    let hello = b"hello url\n".to_vec();
    let sum = hex::encode(Sha256::digest(&hello));
    let url = serve(HashMap::from([
        ("/files/hello.txt".to_string(), hello.clone()),
        ("/files/pkg.tar".to_string(), tar.clone()),
        ("/".to_string(), b"index\n".to_vec()),
    ]));
    let scratch = Scratch::new();
    scratch.write("ctx/x", "x");
    let dockerfile = format!(
        "FROM {base}
ARG HOST={url}
ADD $HOST/files/hello.txt /url/
ADD --checksum=sha256:{sum} {url}/files/hello.txt /url/renamed.txt
ADD --chown=5:6 --chmod=644 {url}/files/pkg.tar /url/dir/
ADD {url}/ /url/noname/
"
    );
    let image = scratch
        .build(&dockerfile)
        .push_and_unpack(&registry.reference("e2e/add-url:v1"));
    assert_eq!(image.read_bytes("/url/hello.txt"), hello);
    assert_eq!(image.mode_owner("/url/hello.txt"), "0600 0:0");
    let mtime = fs::metadata(image.path("url/hello.txt"))
        .expect("stat")
        .mtime();
    assert_eq!(mtime, LAST_MODIFIED_SECS, "mtime from Last-Modified");
    assert_eq!(image.read_bytes("/url/renamed.txt"), hello);
    // a URL's archive is not unpacked
    assert_eq!(image.read_bytes("/url/dir/pkg.tar"), tar);
    assert_eq!(image.mode_owner("/url/dir/pkg.tar"), "0644 5:6");
    assert!(!image.path("url/dir/pkg").exists());
    assert_eq!(image.read_bytes("/url/noname/__unnamed__"), b"index\n");
}

#[test]
fn add_url_failures_name_line_and_url() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let url = serve(HashMap::from([(
        "/f.txt".to_string(),
        b"served\n".to_vec(),
    )]));
    let wrong = "0".repeat(64);
    for (line, want) in [
        (
            format!("ADD --checksum=sha256:{wrong} {url}/f.txt /f.txt"),
            "does not match",
        ),
        (format!("ADD {url}/missing /m"), "404"),
        (
            format!("ADD --checksum=sha256:{wrong} ctx.txt /f.txt"),
            "needs exactly one http(s) source",
        ),
    ] {
        let scratch = Scratch::new();
        scratch.write("ctx/ctx.txt", "x");
        let out = scratch
            .build(&format!("FROM {base}\n{line}\n"))
            .arg("--no-push")
            .run();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line} should fail");
        assert!(
            stderr.contains("Dockerfile:2: ADD") && stderr.contains(want),
            "{line}: {stderr}"
        );
        if !line.contains("ctx.txt") {
            assert!(stderr.contains(&url), "{line}: {stderr}");
        }
    }
}

#[test]
fn add_unpacks_every_docker_compression() {
    kiln_bin();
    require_root("owners in the unpacked image are compared");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let tar_path = scratch.join("ctx/plain.tar");
    fs::create_dir_all(tar_path.parent().expect("parent")).expect("mkdir ctx");
    fs::write(&tar_path, small_tar()).expect("write tar");
    // each compressor writes `<name>.tar.<ext>` beside the plain tar
    for (tool, package, ext) in [
        ("gzip", "gzip", "gz"),
        ("bzip2", "bzip2", "bz2"),
        ("xz", "xz-utils", "xz"),
        ("zstd", "zstd", "zst"),
    ] {
        let bin = require(tool, package);
        let out = run_checked_bytes(Command::new(bin).arg("-c").arg(&tar_path));
        // a name that does not tell the compression: detection is by magic bytes
        fs::write(scratch.join(&format!("ctx/{ext}.bin")), out).expect("write archive");
    }
    let dockerfile = format!(
        "FROM {base}
ADD plain.tar /x/plain/
ADD gz.bin /x/gz/
ADD bz2.bin /x/bz2/
ADD xz.bin /x/xz/
ADD zst.bin /x/zst/
COPY zst.bin /x/copied/
ADD --chown=7:9 xz.bin /x/owned/
"
    );
    let image = scratch
        .build(&dockerfile)
        .push_and_unpack(&registry.reference("e2e/add-archives:v1"));
    for kind in ["plain", "gz", "bz2", "xz", "zst"] {
        let p = format!("/x/{kind}/pkg/data.txt");
        assert_eq!(image.read_bytes(&p), b"packed\n", "{p}");
        assert_eq!(image.mode_owner(&p), "0640 0:0", "{p}");
    }
    // --chown re-owns every unpacked entry
    assert_eq!(image.mode_owner("/x/owned/pkg"), "0755 7:9");
    assert_eq!(image.mode_owner("/x/owned/pkg/data.txt"), "0640 7:9");
    // COPY never unpacks
    assert!(image.path("x/copied/zst.bin").is_file());
}

fn run_checked_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn compressor");
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}

/// `git` with a fixed identity in `dir`; returns its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let bin = require("git", "git");
    kiln_tests::run_checked(
        Command::new(bin)
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=kiln", "-c", "user.email=kiln@example.com"])
            .args(args),
    )
}

/// A work tree and its bare clone `repos/repo.git`: tag `v1` holds `a.txt` = "one", `main`
/// one commit later "two" (with an executable and a subdirectory), branch `feature` adds
/// `docs/`. Returns the work tree.
fn git_fixture(scratch: &Scratch) -> std::path::PathBuf {
    let work = scratch.join("gitwork");
    fs::create_dir_all(work.join("sub")).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]);
    fs::write(work.join("a.txt"), "one\n").expect("write");
    fs::write(work.join("sub/b.txt"), "bee\n").expect("write");
    fs::write(work.join("run.sh"), "#!/bin/sh\necho run\n").expect("write");
    fs::set_permissions(work.join("run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "v1"]);
    fs::write(work.join("a.txt"), "two\n").expect("write");
    git(&work, &["commit", "-q", "-am", "two"]);
    git(&work, &["checkout", "-q", "-b", "feature"]);
    fs::create_dir_all(work.join("docs/deep")).expect("mkdir");
    fs::write(work.join("docs/guide.md"), "# guide\n").expect("write");
    fs::write(work.join("docs/deep/x.txt"), "x\n").expect("write");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "docs"]);
    git(&work, &["checkout", "-q", "main"]);
    fs::create_dir_all(scratch.join("repos")).expect("mkdir");
    kiln_tests::run_checked(
        Command::new(require("git", "git"))
            .args(["clone", "-q", "--bare"])
            .arg(&work)
            .arg(scratch.join("repos/repo.git")),
    );
    work
}

/// `cache hit: Dockerfile:N` lines of a build's log.
fn cache_hits(stderr: &str) -> Vec<usize> {
    stderr
        .lines()
        .filter_map(|l| l.split("cache hit: Dockerfile:").nth(1))
        .filter_map(|rest| rest.split(':').next()?.trim().parse().ok())
        .collect()
}

#[test]
fn add_git_repositories_as_docker() {
    kiln_bin();
    require_root("owners in the unpacked image are compared");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let work = git_fixture(&scratch);
    let server =
        kiln_tests::git_http_server(&scratch.join("repos"), None, &scratch.join("git-http.log"));
    let repo = format!("{}/repo.git", server.url());
    scratch.write("ctx/local.txt", "local\n");
    // line numbers matter: the cache checks below name them
    let dockerfile = format!(
        "FROM {base}
ADD --chown=5:6 --chmod=640 {repo}#v1 /tagged
ADD {repo}#feature:docs /docs
ADD local.txt {repo}#feature:/docs/deep /mixed/
ADD {repo} /plain/
ADD --keep-git-dir=true {repo} /kept
"
    );
    let destination = registry.reference("e2e/add-git:v1");
    let build = |dest: &str| {
        let out = scratch
            .build(&dockerfile)
            .destination(dest)
            .arg("--cache")
            .arg("--cache-copy-layers")
            .arg("--log-format=text")
            .run_ok();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    build(&destination);
    let image = umoci_unpack(&destination);
    // the tree at main, without .git; modes as git checks them out, owner 0:0
    assert_eq!(image.read_bytes("/plain/a.txt"), b"two\n");
    assert_eq!(image.read_bytes("/plain/sub/b.txt"), b"bee\n");
    assert_eq!(image.mode_owner("/plain/run.sh"), "0755 0:0");
    assert_eq!(image.mode_owner("/plain/a.txt"), "0644 0:0");
    assert!(
        !image.path("plain/.git").exists(),
        ".git copied without --keep-git-dir"
    );
    assert!(!image.path("plain/docs").exists(), "main has no docs/");
    // --keep-git-dir keeps the repository
    assert_eq!(image.read_bytes("/kept/a.txt"), b"two\n");
    assert!(
        image.path("kept/.git/HEAD").is_file(),
        "--keep-git-dir lost .git/HEAD"
    );
    // a tag, with --chown and --chmod on every entry
    assert_eq!(image.read_bytes("/tagged/a.txt"), b"one\n");
    assert_eq!(image.mode_owner("/tagged/a.txt"), "0640 5:6");
    assert_eq!(image.mode_owner("/tagged/sub/b.txt"), "0640 5:6");
    // a branch and a subdirectory: only the subdirectory's contents
    assert_eq!(image.read_bytes("/docs/guide.md"), b"# guide\n");
    assert_eq!(image.read_bytes("/docs/deep/x.txt"), b"x\n");
    assert!(
        !image.path("docs/a.txt").exists(),
        "more than the subdirectory copied"
    );
    // beside a context file
    assert_eq!(image.read_bytes("/mixed/local.txt"), b"local\n");
    assert_eq!(image.read_bytes("/mixed/x.txt"), b"x\n");

    // the layer cache keys a git source on its commit: a rebuild hits every ADD, and a new
    // commit on main misses exactly the ADDs of main (the last two lines)
    let hits = build(&registry.reference("e2e/add-git:v2"));
    assert_eq!(cache_hits(&hits), vec![2, 3, 4, 5, 6], "rebuild:\n{hits}");
    fs::write(work.join("a.txt"), "three\n").expect("write");
    git(&work, &["commit", "-q", "-am", "three"]);
    git(
        &work,
        &[
            "push",
            "-q",
            &scratch.join("repos/repo.git").display().to_string(),
            "main",
        ],
    );
    let dest3 = registry.reference("e2e/add-git:v3");
    let log = build(&dest3);
    assert_eq!(
        cache_hits(&log),
        vec![2, 3, 4],
        "after a commit on main:\n{log}"
    );
    let image = umoci_unpack(&dest3);
    assert_eq!(image.read_bytes("/plain/a.txt"), b"three\n");
    assert_eq!(image.read_bytes("/kept/a.txt"), b"three\n");
}

#[test]
fn add_git_failures_name_the_line() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    git_fixture(&scratch);
    let server =
        kiln_tests::git_http_server(&scratch.join("repos"), None, &scratch.join("git-http.log"));
    let repo = format!("{}/repo.git", server.url());
    for (line, want) in [
        (format!("ADD {repo}#no-such-ref /x"), repo.as_str()),
        (format!("ADD {repo}#main:nope /x"), "is not a directory"),
        (
            format!("ADD {}/missing.git /x", server.url()),
            "missing.git",
        ),
        ("ADD git@github.com:moby/buildkit.git /x".to_string(), "ssh"),
        (format!("COPY {repo} /x"), "use ADD"),
    ] {
        let out = scratch
            .build(&format!("FROM {base}\n{line}\n"))
            .arg("--no-push")
            .run();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line} should fail");
        let keyword = &line[..line.find(' ').expect("keyword")];
        assert!(
            stderr.contains(&format!("Dockerfile:2: {keyword}")) && stderr.contains(want),
            "{line}: {stderr}"
        );
    }
}
