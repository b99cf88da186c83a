//! Build contexts from every source kiln reads, each from a real server on loopback: a
//! tarball on disk and on stdin, a plain HTTP server, the GCS emulator (fake-gcs-server),
//! an S3 server (moto), git over smart HTTP (`git http-backend`). Every build is
//! `--reproducible` and must give the same manifest digest as the same files given as a
//! directory. Also: a hostile tarball cannot write outside the context directory, and a
//! missing object, a bad credential or a corrupt archive fails naming the URL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kiln_tests::{
    gcs_server, git_http_server, http_server, kiln_bin, require, run_checked, s3_put, s3_server,
    unique_token, Scratch,
};

const DOCKERFILE: &str = "FROM scratch\nCOPY a.txt run.sh link /ctx/\nCOPY sub /ctx/sub\n";

/// Writes the test context into `dir`: a Dockerfile, files with two modes, a subdirectory
/// and a symlink.
fn write_context(dir: &Path) {
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(dir.join("a.txt"), "alpha\n").unwrap();
    fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("sub/b.txt"), "beta\n").unwrap();
    fs::write(dir.join("sub/deeper/c.txt"), "gamma\n").unwrap();
    std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
    for d in [dir, &dir.join("sub"), &dir.join("sub/deeper")] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `tar -czf out -C dir .`
fn tar_gz(dir: &Path, out: &Path) {
    let tar = require("tar", "tar");
    run_checked(
        Command::new(tar)
            .arg("-czf")
            .arg(out)
            .arg("-C")
            .arg(dir)
            .arg("."),
    );
}

/// kiln build with `--context SPEC` (and extra args), reproducible, into an OCI layout.
fn build(scratch: &Scratch, spec: &str, extra: &[&str]) -> Output {
    kiln_tests::run_kiln(build_args(spec, extra, scratch))
}

fn digest_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "kiln failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let digest = text.trim().lines().last().unwrap_or_default().to_string();
    assert!(digest.starts_with("sha256:"), "no digest printed: {text}");
    digest
}

/// The digest of the reference build: the context as a plain directory.
fn reference_digest(scratch: &Scratch, dir: &Path) -> String {
    digest_of(&build(scratch, &dir.display().to_string(), &[]))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_fails_naming(out: &Output, url: &str, words: &[&str]) {
    assert!(!out.status.success(), "kiln succeeded but must fail");
    let err = stderr(out);
    assert!(err.contains(url), "error does not name {url}:\n{err}");
    for w in words {
        assert!(err.contains(w), "error does not say {w:?}:\n{err}");
    }
}

/// No fetched context may be left behind under the kiln dir.
fn assert_cleaned(scratch: &Scratch) {
    let leftovers: Vec<_> = fs::read_dir(scratch.kiln_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("context-"))
        .collect();
    assert!(leftovers.is_empty(), "fetched context left: {leftovers:?}");
}

fn setup() -> (Scratch, PathBuf, PathBuf, String) {
    let scratch = Scratch::new();
    let dir = scratch.join("src");
    write_context(&dir);
    let tarball = scratch.join("serve/context.tar.gz");
    fs::create_dir_all(tarball.parent().unwrap()).unwrap();
    tar_gz(&dir, &tarball);
    let want = reference_digest(&scratch, &dir);
    (scratch, dir, tarball, want)
}

#[test]
fn tar_file_and_stdin_contexts_match_the_directory() {
    let (scratch, _dir, tarball, want) = setup();
    let got = digest_of(&build(
        &scratch,
        &format!("tar://{}", tarball.display()),
        &[],
    ));
    assert_eq!(got, want, "tar:// context");

    // plain (uncompressed) tar on stdin
    let plain = scratch.join("plain.tar");
    run_checked(
        Command::new(require("tar", "tar"))
            .arg("-cf")
            .arg(&plain)
            .arg("-C")
            .arg(scratch.join("src"))
            .arg("."),
    );
    let mut child = Command::new(kiln_bin())
        .args(["build", "--context", "tar://stdin", "--kiln-dir"])
        .arg(scratch.kiln_dir())
        .args(["--no-push", "--reproducible", "--oci-layout-path"])
        .arg(scratch.join("out-stdin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fs::read(&plain).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(digest_of(&out), want, "tar://stdin context");
    assert_cleaned(&scratch);
}

#[test]
fn https_tarball_context_sub_path_and_remote_dockerfile() {
    let (scratch, dir, tarball, want) = setup();
    // the same context one level down, for --context-sub-path
    let nested = scratch.join("nested");
    fs::create_dir_all(&nested).unwrap();
    run_checked(
        Command::new("cp")
            .arg("-a")
            .arg(&dir)
            .arg(nested.join("app")),
    );
    tar_gz(&nested, &scratch.join("serve/nested.tar.gz"));
    fs::write(scratch.join("serve/Dockerfile.remote"), DOCKERFILE).unwrap();
    let server = http_server(tarball.parent().unwrap(), &scratch.join("http.log"));

    let url = format!("{}/context.tar.gz", server.url());
    assert_eq!(digest_of(&build(&scratch, &url, &[])), want, "{url}");

    let nested_url = format!("{}/nested.tar.gz", server.url());
    let got = digest_of(&build(
        &scratch,
        &nested_url,
        &["--context-sub-path", "app"],
    ));
    assert_eq!(got, want, "{nested_url} with --context-sub-path app");

    // --dockerfile as an https:// (here http://) URL, and as a path inside the context
    let df_url = format!("{}/Dockerfile.remote", server.url());
    fs::remove_file(dir.join("Dockerfile")).unwrap();
    fs::write(dir.join("Other.dockerfile"), DOCKERFILE).unwrap();
    let got = digest_of(&build(
        &scratch,
        &dir.display().to_string(),
        &["--dockerfile", &df_url],
    ));
    assert_ne!(got, "", "remote dockerfile");
    let got = digest_of(&build(
        &scratch,
        &nested_url,
        &["--context-sub-path", "app", "--dockerfile", "Dockerfile"],
    ));
    assert_eq!(got, want, "--dockerfile inside a fetched context");
    assert_cleaned(&scratch);
}

#[test]
fn https_errors_name_the_url() {
    let scratch = Scratch::new();
    let serve = scratch.join("serve");
    fs::create_dir_all(&serve).unwrap();
    fs::write(
        serve.join("garbage.tar.gz"),
        b"\x1f\x8bthis is not gzip at all",
    )
    .unwrap();
    fs::write(serve.join("junk.tar"), vec![b'x'; 4096]).unwrap();
    let server = http_server(&serve, &scratch.join("http.log"));
    let missing = format!("{}/missing.tar.gz", server.url());
    assert_fails_naming(&build(&scratch, &missing, &[]), &missing, &["not found"]);
    for name in ["garbage.tar.gz", "junk.tar"] {
        let url = format!("{}/{name}", server.url());
        assert_fails_naming(&build(&scratch, &url, &[]), &url, &["bad archive"]);
    }
    assert_cleaned(&scratch);
}

/// A tarball that tries `../`, absolute names, a symlinked parent pointing at `/` and at
/// `../..`, and hardlinks out: every entry must land inside the context directory.
#[test]
fn hostile_context_tarball_cannot_escape() {
    let scratch = Scratch::new();
    let token = unique_token();
    let canary = format!("kiln-canary-{token}");
    let tmp_canary = PathBuf::from("/tmp").join(&canary);
    let tarball = scratch.join("hostile.tar");
    {
        let mut b = tar::Builder::new(fs::File::create(&tarball).unwrap());
        let mut add = |name: &str, kind: tar::EntryType, data: &[u8], link: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            // raw names: tar's set_path refuses `..`, which is the point here
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        use tar::EntryType::*;
        add("Dockerfile", Regular, b"FROM scratch\nCOPY . /ctx/\n", "");
        add(&format!("../{canary}"), Regular, b"up", "");
        add(&format!("../../../{canary}"), Regular, b"up3", "");
        add(&format!("/tmp/{canary}"), Regular, b"abs", "");
        add("rootlink", Symlink, b"", "/");
        add(&format!("rootlink/tmp/{canary}"), Regular, b"via-root", "");
        add("uplink", Symlink, b"", "../../..");
        add(&format!("uplink/{canary}"), Regular, b"via-up", "");
        add("hard", Link, b"", "../../../etc/hostname");
        b.finish().unwrap();
    }
    let out = build(&scratch, &format!("tar://{}", tarball.display()), &[]);
    // the build may refuse the hardlink (its target is not in the archive); either way
    // nothing may appear outside
    let err = stderr(&out);
    for outside in [
        tmp_canary.clone(),
        scratch.join(&canary),
        scratch.kiln_dir().join(&canary),
        scratch.path().parent().unwrap().join(&canary),
    ] {
        assert!(
            !outside.exists(),
            "{} was written outside the context:\n{err}",
            outside.display()
        );
    }
    if out.status.success() {
        let unpacked =
            kiln_tests::umoci_unpack(&format!("oci:{}:latest", newest_layout(&scratch).display()));
        assert_eq!(unpacked.read(&format!("/ctx/{canary}")), "up3");
        assert_eq!(unpacked.read(&format!("/ctx/tmp/{canary}")), "via-root");
    } else {
        assert!(err.contains("hostname"), "unexpected failure:\n{err}");
    }
    assert_cleaned(&scratch);
}

fn newest_layout(scratch: &Scratch) -> PathBuf {
    fs::read_dir(scratch.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("out-"))
        .max_by_key(|e| e.metadata().unwrap().modified().unwrap())
        .unwrap()
        .path()
}

#[test]
fn gcs_bucket_context_matches_the_directory() {
    let (scratch, _dir, tarball, want) = setup();
    let data = scratch.join("gcs");
    fs::create_dir_all(data.join("ctx-bucket/builds")).unwrap();
    fs::copy(&tarball, data.join("ctx-bucket/context.tar.gz")).unwrap();
    fs::copy(&tarball, data.join("ctx-bucket/builds/app.tar.gz")).unwrap();
    let server = gcs_server(&data, &scratch.join("gcs.log"));
    let env_build =
        |spec: &str, extra: &[&str], env: &[(&str, &str)]| run_env(&scratch, spec, extra, env);
    let emulator = [("STORAGE_EMULATOR_HOST", server.addr.as_str())];
    let out = env_build("gs://ctx-bucket/builds/app.tar.gz", &[], &emulator);
    assert_eq!(digest_of(&out), want, "gs:// object");
    let out = env_build("gs://ctx-bucket", &[], &emulator);
    assert_eq!(digest_of(&out), want, "gs:// bucket root");
    // kaniko's legacy --bucket
    let out = env_build("", &["--bucket", "ctx-bucket"], &emulator);
    assert_eq!(digest_of(&out), want, "--bucket");

    let missing = "gs://ctx-bucket/nope.tar.gz";
    let out = env_build(missing, &[], &emulator);
    assert_fails_naming(&out, missing, &["not found"]);
    // a credentials file that does not exist (no emulator): a clear error naming the URL
    let url = "gs://ctx-bucket/context.tar.gz";
    let out = env_build(
        url,
        &[],
        &[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            scratch.join("no-such-key.json").to_str().unwrap(),
        )],
    );
    assert_fails_naming(&out, url, &["credentials"]);
    assert_cleaned(&scratch);
}

/// `kiln build [--context SPEC] --kiln-dir … --no-push --reproducible --oci-layout-path …`
fn build_args(spec: &str, extra: &[&str], scratch: &Scratch) -> Vec<String> {
    let mut args: Vec<String> = vec!["build".into()];
    if !spec.is_empty() {
        args.extend(["--context".into(), spec.into()]);
    }
    args.extend([
        "--kiln-dir".into(),
        scratch.kiln_dir().display().to_string(),
        "--no-push".into(),
        "--reproducible".into(),
        "--oci-layout-path".into(),
        scratch
            .join(&format!("out-{}", unique_token()))
            .display()
            .to_string(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_env(scratch: &Scratch, spec: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(kiln_bin());
    cmd.args(build_args(spec, extra, scratch));
    for (k, v) in env {
        cmd.env(k, v);
    }
    eprintln!("$ {env:?} kiln {:?}", build_args(spec, extra, scratch));
    let out = kiln_tests::run_with_timeout(&mut cmd, std::time::Duration::from_secs(600));
    eprintln!("{}", stderr(&out));
    out
}

#[test]
fn s3_context_matches_the_directory() {
    let (scratch, _dir, tarball, want) = setup();
    let server = s3_server(&scratch.join("s3.log"), None);
    s3_put(&server, "ctx-bucket", "builds/app.tar.gz", &tarball);
    let endpoint = server.url();
    let env = [
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let out = run_env(&scratch, "s3://ctx-bucket/builds/app.tar.gz", &[], &env);
    assert_eq!(digest_of(&out), want, "s3:// object");
    let missing = "s3://ctx-bucket/builds/nope.tar.gz";
    assert_fails_naming(
        &run_env(&scratch, missing, &[], &env),
        missing,
        &["not found"],
    );

    // a server that checks credentials after the upload: unknown keys are refused
    let strict = s3_server(&scratch.join("s3-strict.log"), Some(2));
    s3_put(&strict, "ctx-bucket", "context.tar.gz", &tarball);
    let strict_endpoint = strict.url();
    let env = [
        ("S3_ENDPOINT", strict_endpoint.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000"),
        ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ("AWS_REGION", "us-east-1"),
    ];
    let url = "s3://ctx-bucket/context.tar.gz";
    assert_fails_naming(&run_env(&scratch, "s3://ctx-bucket/", &[], &env), url, &[]);
    assert_cleaned(&scratch);
}

/// A bare repository `repos/ctx.git` holding `dir`'s files on `main`, plus a branch `dev`
/// with one more commit; returns main's commit id.
fn git_repo(scratch: &Scratch, dir: &Path) -> String {
    let git = require("git", "git");
    let work = scratch.join("gitwork");
    run_checked(Command::new("cp").arg("-a").arg(dir).arg(&work));
    let g = |args: &[&str]| {
        run_checked(
            Command::new(&git)
                .arg("-C")
                .arg(&work)
                .args(["-c", "user.name=kiln", "-c", "user.email=kiln@example.com"])
                .args(args),
        )
    };
    g(&["init", "-q", "-b", "main"]);
    g(&["add", "-A"]);
    g(&["commit", "-q", "-m", "context"]);
    let main = g(&["rev-parse", "HEAD"]).trim().to_string();
    g(&["checkout", "-q", "-b", "dev"]);
    fs::write(work.join("a.txt"), "changed on dev\n").unwrap();
    g(&["commit", "-q", "-am", "dev"]);
    // a branch `sub` with a submodule at vendor/lib (../lib.git, relative to the server)
    let lib = scratch.join("libwork");
    fs::create_dir_all(&lib).unwrap();
    fs::write(lib.join("lib.txt"), "from the submodule\n").unwrap();
    let gl = |args: &[&str]| {
        run_checked(
            Command::new(&git)
                .arg("-C")
                .arg(&lib)
                .args(["-c", "user.name=kiln", "-c", "user.email=kiln@example.com"])
                .args(args),
        )
    };
    gl(&["init", "-q", "-b", "main"]);
    gl(&["add", "-A"]);
    gl(&["commit", "-q", "-m", "lib"]);
    fs::create_dir_all(scratch.join("repos")).unwrap();
    run_checked(
        Command::new(&git)
            .args(["clone", "-q", "--bare"])
            .arg(&lib)
            .arg(scratch.join("repos/lib.git")),
    );
    g(&["checkout", "-q", "-b", "sub", "main"]);
    let lib_bare = scratch.join("repos/lib.git").display().to_string();
    g(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        &lib_bare,
        "vendor/lib",
    ]);
    g(&[
        "config",
        "-f",
        ".gitmodules",
        "submodule.vendor/lib.url",
        "../lib.git",
    ]);
    fs::write(
        work.join("Dockerfile"),
        "FROM scratch\nCOPY vendor/lib/lib.txt /\n",
    )
    .unwrap();
    g(&["add", "-A"]);
    g(&["commit", "-q", "-m", "submodule"]);
    g(&["checkout", "-q", "main"]);
    run_checked(
        Command::new(&git)
            .args(["clone", "-q", "--bare"])
            .arg(&work)
            .arg(scratch.join("repos/ctx.git")),
    );
    main
}

#[test]
fn git_contexts_match_the_directory() {
    let (scratch, dir, _tarball, want) = setup();
    let main = git_repo(&scratch, &dir);
    let server = git_http_server(&scratch.join("repos"), None, &scratch.join("git.log"));
    let url = format!("{}/ctx.git", server.url());
    let plain_env: [(&str, &str); 0] = [];
    // https://…/repo.git (plain http here), default branch
    let out = run_env(&scratch, &url, &[], &plain_env);
    assert_eq!(digest_of(&out), want, "{url}");
    // git:// with GIT_PULL_METHOD=http, branch ref and commit, as kaniko writes it
    let git_url = format!("git://{}/ctx.git#refs/heads/main#{main}", server.addr);
    let out = run_env(&scratch, &git_url, &[], &[("GIT_PULL_METHOD", "http")]);
    assert_eq!(digest_of(&out), want, "{git_url}");
    // the dev branch differs; --git branch=main picks main again
    let dev = format!("{url}#dev");
    let dev_digest = digest_of(&run_env(&scratch, &dev, &[], &plain_env));
    assert_ne!(dev_digest, want, "{dev} must build the dev branch");
    let out = run_env(
        &scratch,
        &dev,
        &["--git", "branch=main,single-branch=true"],
        &plain_env,
    );
    assert_eq!(digest_of(&out), want, "--git branch=main");
    // submodules: only with recurse-submodules=true
    let sub = format!("{url}#sub");
    let out = run_env(&scratch, &sub, &[], &plain_env);
    assert!(
        !out.status.success() && stderr(&out).contains("vendor/lib/lib.txt"),
        "without recurse-submodules the submodule must be empty:\n{}",
        stderr(&out)
    );
    let out = run_env(
        &scratch,
        &sub,
        &["--git", "recurse-submodules=true"],
        &plain_env,
    );
    let layout = newest_layout(&scratch);
    digest_of(&out);
    let unpacked = kiln_tests::umoci_unpack(&format!("oci:{}:latest", layout.display()));
    assert_eq!(unpacked.read("/lib.txt"), "from the submodule\n");
    assert_cleaned(&scratch);
}

#[test]
fn git_credentials_are_checked_and_never_sent_in_clear() {
    let (scratch, dir, _tarball, want) = setup();
    git_repo(&scratch, &dir);
    let server = git_http_server(
        &scratch.join("repos"),
        Some("builder:s3cret"),
        &scratch.join("git.log"),
    );
    let url = format!("{}/ctx.git", server.url());
    // without credentials the server's 401 is an error naming the URL
    assert_fails_naming(&run_env(&scratch, &url, &[], &[]), &url, &[]);
    // credentials are never sent in clear text: plain http with GIT_USERNAME/GIT_PASSWORD
    // is refused, naming the URL (over https they are sent)
    let clear = run_env(
        &scratch,
        &url,
        &[],
        &[("GIT_USERNAME", "builder"), ("GIT_PASSWORD", "s3cret")],
    );
    assert_fails_naming(&clear, &url, &["clear text"]);
    let _ = &want;
    let missing = format!("{}/nope.git", server.url());
    let out = run_env(
        &scratch,
        &missing,
        &[],
        &[("GIT_USERNAME", "builder"), ("GIT_PASSWORD", "s3cret")],
    );
    assert_fails_naming(&out, &missing, &[]);
    assert_cleaned(&scratch);
}

#[test]
fn a_git_context_cut_by_the_network_is_cloned_again() {
    let (scratch, dir, _tarball, want) = setup();
    git_repo(&scratch, &dir);
    let server = git_http_server(&scratch.join("repos"), None, &scratch.join("git.log"));
    let plain_env: [(&str, &str); 0] = [];
    // the first ref advertisement is answered 503, the second has its connection dropped
    let proxy = kiln_tests::FaultProxy::start(&server.addr.to_string());
    proxy.inject("GET", "info/refs", kiln_tests::Fault::Status(503), 1);
    proxy.inject("GET", "info/refs", kiln_tests::Fault::Drop, 1);
    let url = format!("http://{}/ctx.git", proxy.host());
    let out = run_env(&scratch, &url, &[], &plain_env);
    assert_eq!(digest_of(&out), want, "{url}");
    let err = stderr(&out);
    assert!(
        err.matches("starting it again").count() >= 2,
        "both cut attempts must be logged as retried:\n{err}"
    );
    assert!(
        proxy.remaining().iter().all(|&n| n == 0),
        "a fault was not hit"
    );
    // a missing repository is not retried: one advertisement request, one attempt
    proxy.clear();
    let missing = format!("http://{}/nothing.git", proxy.host());
    let out = run_env(&scratch, &missing, &[], &plain_env);
    assert!(!out.status.success(), "a missing repository must fail");
    assert!(
        !stderr(&out).contains("starting it again"),
        "a missing repository must not be retried:\n{}",
        stderr(&out)
    );
    assert_cleaned(&scratch);
}
