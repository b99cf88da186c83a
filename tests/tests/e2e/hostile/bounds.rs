//! Inputs sized to exhaust kiln (issue 23, section 5): base images whose config or tar
//! headers are huge (a GNU long name the `tar` crate would read whole, an xattr past Linux's
//! limit, a name past `PATH_MAX`), and compression bombs as a layer and as an `ADD` archive.
//! Each is refused with an error naming the bound, with kiln's memory bounded, and nothing
//! pushed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{self, Read};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::{
    assert_not_in_registry, busybox_layer, kiln_bin, push_layout, require, run_checked,
    unique_token, ImageLayout, Registry, RunConfig, Scratch, DEFAULT_PATH,
};
use sha2::Digest as _;

use super::stderr;

/// A base image (busybox, then `layer`, an uncompressed tar stream) pushed as `e2e/bounds-*`.
fn base_with(registry: &Registry, scratch: &Scratch, layer: impl Read, env: Vec<String>) -> String {
    let token = unique_token();
    let mut layout = ImageLayout::create(&scratch.join(&format!("layout-{token}")));
    layout
        .add_layer(busybox_layer(), "busybox")
        .add_layer_from(layer, "hostile");
    let dir = layout.finish(
        "latest",
        &RunConfig {
            env,
            cmd: vec!["/bin/sh".to_string()],
        },
    );
    push_layout(registry, &dir, "latest", &format!("e2e/bounds-{token}"))
}

/// Runs `kiln build` on `dockerfile` (context: `files` as well), pushing to a fresh tag of
/// `registry`; returns kiln's output, its peak resident memory in KiB, and the tag.
fn build(
    registry: &Registry,
    scratch: &Scratch,
    dockerfile: &str,
    files: &[(&str, &[u8])],
    extra: &[&str],
) -> (Output, u64, String) {
    let ctx = scratch.join(&format!("ctx-{}", unique_token()));
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    for (name, data) in files {
        fs::write(ctx.join(name), data).unwrap();
    }
    let dest = registry.reference(&format!("e2e/bounds-out-{}:latest", unique_token()));
    let mut cmd = Command::new(kiln_bin());
    cmd.args(["build", "--context"])
        .arg(&ctx)
        .arg("--destination")
        .arg(&dest)
        .arg("--kiln-dir")
        .arg(scratch.kiln_dir())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!("$ {cmd:?}");
    let mut child = cmd.spawn().expect("starting kiln");
    let pid = child.id();
    // the pipes are drained by threads so kiln never blocks on them
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut peak = 0;
    let status = loop {
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "kiln ran 600 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    };
    let shown = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "--- kiln {status}, peak RSS {peak} KiB ---\n{}--- end kiln ---",
        &shown[..shown.len().min(20_000)]
    );
    (out, peak, dest)
}

/// A tar header block for an entry of `kind` named `name` with `size` bytes of data.
fn header(kind: tar::EntryType, name: &[u8], size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A layer whose one file is named by a GNU long-name record of `len` bytes of `a`, streamed.
fn long_name_layer(len: u64) -> impl Read {
    let mut tail = header(tar::EntryType::Regular, b"short", 0);
    tail.extend_from_slice(&[0u8; 1024]);
    io::Cursor::new(header(tar::EntryType::GNULongName, b"././@LongLink", len))
        .chain(io::repeat(b'a').take(len))
        .chain(io::repeat(0).take(len.next_multiple_of(512) - len))
        .chain(io::Cursor::new(tail))
}

/// A layer with one file of `size` zero bytes: a few hundred KiB gzip'd.
fn zero_file_tar(size: u64) -> impl Read {
    let mut tail = Vec::new();
    tail.extend_from_slice(&[0u8; 1024]);
    io::Cursor::new(header(tar::EntryType::Regular, b"zeros", size))
        .chain(io::repeat(0).take(size))
        .chain(io::Cursor::new(tail))
}

#[test]
fn a_huge_gnu_long_name_is_refused_with_bounded_memory() {
    let registry = Registry::shared();
    let scratch = Scratch::new();
    let len = 64 << 20;
    let base = base_with(
        &registry,
        &scratch,
        long_name_layer(len),
        vec![DEFAULT_PATH.into()],
    );
    let (out, peak_kib, dest) = build(
        &registry,
        &scratch,
        &format!("FROM {base}\nRUN true\n"),
        &[],
        &[],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "a 64 MiB long name was accepted");
    assert!(
        err.contains("GNU long-name record of 67108864 bytes (the limit is 1048576)"),
        "the error does not name the bound: {}",
        &err[..err.len().min(4000)]
    );
    assert!(err.contains("sha256:"), "the error does not name the layer");
    assert!(
        err.len() < 64 << 10,
        "kiln wrote {} bytes of log",
        err.len()
    );
    assert!(peak_kib < 300 << 10, "kiln peaked at {peak_kib} KiB");
    assert_not_in_registry(&dest);
}

#[test]
fn names_past_path_max_and_big_xattrs_are_refused_and_cut_in_errors() {
    let registry = Registry::shared();
    let scratch = Scratch::new();
    let name_base = base_with(
        &registry,
        &scratch,
        long_name_layer(10_000),
        vec![DEFAULT_PATH.into()],
    );
    let (out, _, dest) = build(
        &registry,
        &scratch,
        &format!("FROM {name_base}\nRUN true\n"),
        &[],
        &[],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "a 10,000-byte name was accepted");
    assert!(
        err.contains("name is 10000 bytes long; the limit is 4096"),
        "the error does not name the bound: {}",
        &err[..err.len().min(4000)]
    );
    assert!(
        !err.contains(&"a".repeat(1000)),
        "the error carries the whole name"
    );
    assert_not_in_registry(&dest);

    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.user.big", &vec![b'v'; 100_000][..])])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "big-xattr", &b"x"[..]).unwrap();
    let layer = b.into_inner().unwrap();
    let xattr_base = base_with(&registry, &scratch, &layer[..], vec![DEFAULT_PATH.into()]);
    let (out, _, dest) = build(
        &registry,
        &scratch,
        &format!("FROM {xattr_base}\nRUN true\n"),
        &[],
        &[],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "a 100,000-byte xattr was accepted");
    assert!(
        err.contains("xattr user.big is 100000 bytes; the limit is 65536"),
        "the error does not name the bound: {err}"
    );
    assert!(
        err.contains("big-xattr"),
        "the error does not name the path: {err}"
    );
    assert_not_in_registry(&dest);
}

/// Uploads `bytes` as a blob of `repo` (skopeo refuses configs over 4 MiB, so this goes by
/// the distribution API); returns its digest.
fn upload_blob(registry: &Registry, scratch: &Scratch, repo: &str, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
    let file = scratch.join(&format!("blob-{}", unique_token()));
    fs::write(&file, bytes).unwrap();
    let curl = require("curl", "curl");
    let base = format!("http://{}", registry.host());
    let headers = run_checked(
        Command::new(&curl)
            .args(["-sSf", "-X", "POST", "-D", "-", "-o", "/dev/null"])
            .arg(format!("{base}/v2/{repo}/blobs/uploads/")),
    );
    let location = headers
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
        })
        .map(|(_, v)| v.trim().to_string())
        .expect("an upload session's Location");
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    run_checked(
        Command::new(&curl)
            .args([
                "-sSf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!("{location}{sep}digest={digest}")),
    );
    digest
}

#[test]
fn an_oversized_image_config_is_refused_before_it_is_read() {
    let registry = Registry::shared();
    let scratch = Scratch::new();
    let repo = format!("e2e/bounds-config-{}", unique_token());
    let tar = vec![0u8; 1024];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::Write::write_all(&mut gz, &tar).unwrap();
    let layer = gz.finish().unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [DEFAULT_PATH], "Labels": {"pad": "x".repeat(9 << 20)}},
        "rootfs": {"type": "layers",
            "diff_ids": [format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar)))]},
    })
    .to_string();
    let layer_digest = upload_blob(&registry, &scratch, &repo, &layer);
    let config_digest = upload_blob(&registry, &scratch, &repo, config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest, "size": layer.len()}],
    })
    .to_string();
    let file = scratch.join("manifest.json");
    fs::write(&file, manifest).unwrap();
    run_checked(
        Command::new(require("curl", "curl"))
            .args(["-sSf", "-X", "PUT", "-H"])
            .arg("Content-Type: application/vnd.oci.image.manifest.v1+json")
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!(
                "http://{}/v2/{repo}/manifests/latest",
                registry.host()
            )),
    );
    let base = registry.reference(&format!("{repo}:latest"));
    let (out, peak_kib, dest) = build(
        &registry,
        &scratch,
        &format!("FROM {base}\nRUN true\n"),
        &[],
        &[],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "a 9 MiB config was accepted");
    assert!(
        err.contains(&format!("image config {config_digest}"))
            && err.contains("kiln reads at most 8388608"),
        "the error does not name the bound: {}",
        &err[..err.len().min(4000)]
    );
    assert!(peak_kib < 300 << 10, "kiln peaked at {peak_kib} KiB");
    let blobs = scratch.kiln_dir();
    let big = walk_sizes(&blobs)
        .into_iter()
        .filter(|s| *s > 8 << 20)
        .count();
    assert_eq!(big, 0, "a blob over 8 MiB was kept under the kiln dir");
    assert_not_in_registry(&dest);
}

/// Sizes of every file below `dir`.
fn walk_sizes(dir: &std::path::Path) -> Vec<u64> {
    let mut sizes = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            sizes.extend(walk_sizes(&entry.path()));
        } else {
            sizes.push(meta.len());
        }
    }
    sizes
}

#[test]
fn compression_bombs_stop_at_the_expansion_cap() {
    let registry = Registry::shared();
    let scratch = Scratch::new();
    let cap = ["--max-expanded-bytes", "8MiB"];
    // a layer expanding to 64 MiB, under a cap of 8 MiB
    let base = base_with(
        &registry,
        &scratch,
        zero_file_tar(64 << 20),
        vec![DEFAULT_PATH.into()],
    );
    let (out, _, dest) = build(
        &registry,
        &scratch,
        &format!("FROM {base}\nRUN true\n"),
        &[],
        &cap,
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "a layer past the cap was extracted");
    assert!(
        err.contains("expands past 8388608 bytes") && err.contains("--max-expanded-bytes"),
        "the error does not name the bound: {err}"
    );
    assert_not_in_registry(&dest);

    // an ADD archive expanding to 64 MiB
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    io::copy(&mut zero_file_tar(64 << 20), &mut gz).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let (out, _, dest) = build(
        &registry,
        &scratch,
        "FROM scratch\nADD bomb.tar.gz /x/\n",
        &[("bomb.tar.gz", &bomb)],
        &cap,
    );
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "an ADD archive past the cap was extracted"
    );
    assert!(
        err.contains("expands past 8388608 bytes") && err.contains("bomb.tar.gz"),
        "the error does not name the bound and the archive: {err}"
    );
    assert_not_in_registry(&dest);
    // without the small cap the same archive is added
    let (out, _, _) = build(
        &registry,
        &scratch,
        "FROM scratch\nADD bomb.tar.gz /x/\n",
        &[("bomb.tar.gz", &bomb)],
        &[],
    );
    assert!(out.status.success(), "the default cap refused 64 MiB");
}

/// The image config of the one image in the OCI layout at `dir`.
fn layout_config(dir: &std::path::Path) -> serde_json::Value {
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs::read(&p).unwrap()).unwrap()
    };
    let blob = |digest: &serde_json::Value| {
        dir.join("blobs/sha256")
            .join(digest.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = read(dir.join("index.json"));
    let manifest = read(blob(&index["manifests"][0]["digest"]));
    read(blob(&manifest["config"]["digest"]))
}

#[test]
fn twenty_thousand_env_lines_build_in_seconds() {
    let scratch = Scratch::new();
    let ctx = scratch.context();
    let mut dockerfile = String::from("FROM scratch\n");
    for i in 0..20_000 {
        dockerfile.push_str(&format!("ENV V{i}=value-{i}\n"));
    }
    // a later ENV replaces in place and can read what earlier ones set
    dockerfile.push_str("ENV V7=${V19999}-again\n");
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let layout = scratch.join("out");
    let args: Vec<String> = vec![
        "build".into(),
        "--context".into(),
        ctx.display().to_string(),
        "--no-push".into(),
        "--kiln-dir".into(),
        scratch.kiln_dir().display().to_string(),
        "--oci-layout-path".into(),
        layout.display().to_string(),
    ];
    let start = Instant::now();
    let out = super::kiln(&args, &[]);
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "the build failed: {}",
        &stderr(&out)[..4000.min(stderr(&out).len())]
    );
    // the quadratic interpreter did 8,172 in 180 s
    assert!(
        took < Duration::from_secs(60),
        "20,000 ENV lines took {took:?}"
    );
    let config = layout_config(&layout);
    // after the PATH a scratch stage starts with
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .filter(|e| !e.starts_with("PATH="))
        .collect();
    assert_eq!(env.len(), 20_000);
    assert_eq!(env[0], "V0=value-0");
    assert_eq!(env[7], "V7=value-19999-again");
    assert_eq!(env[19_999], "V19999=value-19999");
    assert_eq!(config["history"].as_array().unwrap().len(), 20_001);
}

/// `ARG A=${A}${A}` 34 times, before `FROM` and inside a stage: the value doubles until one
/// expansion passes the 16 MiB cap, and the build stops there in seconds, naming the line,
/// with memory a few times the cap (not the 16 GiB the 34th line would make).
#[test]
fn doubling_args_fail_fast_naming_the_line() {
    let registry = Registry::shared();
    let scratch = Scratch::new();
    let doubling: String = (0..34).map(|_| "ARG A=${A}${A}\n").collect();
    for (dockerfile, line) in [
        (
            format!("ARG A=x\n{doubling}FROM scratch\nARG A\nLABEL a=b\n"),
            26,
        ),
        (format!("FROM scratch\nARG A=x\n{doubling}LABEL a=b\n"), 27),
    ] {
        let started = Instant::now();
        let (out, peak_kib, _) = build(&registry, &scratch, &dockerfile, &[], &[]);
        let took = started.elapsed();
        let err = stderr(&out);
        assert!(!out.status.success(), "34 doubling ARGs built");
        assert!(
            err.contains(&format!("Dockerfile:{line}")) && err.contains("16777216"),
            "the error does not name line {line} and the cap:\n{}",
            &err[..err.len().min(4000)]
        );
        assert!(took < Duration::from_secs(20), "failing took {took:?}");
        assert!(peak_kib < 1 << 20, "kiln peaked at {peak_kib} KiB");
    }
}
