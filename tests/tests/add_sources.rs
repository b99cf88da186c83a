//! ADD from `http://` URLs (served by a small HTTP server the test starts on loopback) and
//! ADD of local archives in every compression Docker unpacks, checked on pushed images
//! unpacked with umoci.

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use kiln_tests::{
    busybox_image, kiln_bin, require, require_root, umoci_unpack, LayerTar, Registry, Scratch,
};

/// `Last-Modified` of the served files, and the same instant in seconds.
const LAST_MODIFIED: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const LAST_MODIFIED_SECS: i64 = 784_111_777;

/// Serves `files` (path → body) over plain HTTP on a free loopback port until the test
/// process ends; anything else is a 404. Returns `http://127.0.0.1:PORT`.
fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
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

/// `"0600 0:0"` for a path in the unpacked image.
fn mode_owner(root: &Path, p: &str) -> String {
    let meta = fs::symlink_metadata(root.join(p.trim_start_matches('/'))).expect(p);
    format!(
        "{:04o} {}:{}",
        meta.permissions().mode() & 0o7777,
        meta.uid(),
        meta.gid()
    )
}

fn read(root: &Path, p: &str) -> Vec<u8> {
    fs::read(root.join(p.trim_start_matches('/'))).unwrap_or_else(|e| panic!("{p}: {e}"))
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
    let destination = registry.reference("e2e/add-url:v1");
    scratch
        .build(&dockerfile)
        .destination(&destination)
        .run_ok();
    let image = umoci_unpack(&destination);
    let root = &image.rootfs;
    assert_eq!(read(root, "/url/hello.txt"), hello);
    assert_eq!(mode_owner(root, "/url/hello.txt"), "0600 0:0");
    let mtime = fs::metadata(root.join("url/hello.txt"))
        .expect("stat")
        .mtime();
    assert_eq!(mtime, LAST_MODIFIED_SECS, "mtime from Last-Modified");
    assert_eq!(read(root, "/url/renamed.txt"), hello);
    // a URL's archive is not unpacked
    assert_eq!(read(root, "/url/dir/pkg.tar"), tar);
    assert_eq!(mode_owner(root, "/url/dir/pkg.tar"), "0644 5:6");
    assert!(!root.join("url/dir/pkg").exists());
    assert_eq!(read(root, "/url/noname/__unnamed__"), b"index\n");
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
    let destination = registry.reference("e2e/add-archives:v1");
    scratch
        .build(&dockerfile)
        .destination(&destination)
        .run_ok();
    let image = umoci_unpack(&destination);
    let root = &image.rootfs;
    for kind in ["plain", "gz", "bz2", "xz", "zst"] {
        let p = format!("/x/{kind}/pkg/data.txt");
        assert_eq!(read(root, &p), b"packed\n", "{p}");
        assert_eq!(mode_owner(root, &p), "0640 0:0", "{p}");
    }
    // --chown re-owns every unpacked entry
    assert_eq!(mode_owner(root, "/x/owned/pkg"), "0755 7:9");
    assert_eq!(mode_owner(root, "/x/owned/pkg/data.txt"), "0640 7:9");
    // COPY never unpacks
    assert!(root.join("x/copied/zst.bin").is_file());
}

fn run_checked_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn compressor");
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}
