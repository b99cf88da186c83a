//! Servers that stop sending (issue 23, §5): a context tarball, a `--dockerfile` URL, an
//! `ADD <url>` file and a git context whose server stalls, before its first byte or in the
//! middle of the body, behind the fault-injecting proxy. kiln gives up (after three attempts,
//! but for git) after the idle timeout
//! (`KILN_NETWORK_IDLE_TIMEOUT_SECS`, short here) with an error that names the URL and says
//! "timed out", instead of hanging; one that trickles under the minimum rate
//! (`KILN_NETWORK_MIN_RATE`) fails as "too slow".

#![allow(clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kiln_tests::{
    git_http_server, http_server, kiln_bin, require, run_checked, Build, Fault, FaultProxy, Scratch,
};

use super::stderr;

/// A server that resets the first connection in the middle of the body: the context
/// tarball, the `--dockerfile` URL and the `ADD <url>` file are each downloaded again and the
/// build completes.
#[test]
fn downloads_reset_midway_are_started_again() {
    kiln_bin();
    let scratch = Scratch::new();
    scratch.write("tree/Dockerfile", "FROM scratch\nCOPY big.bin /big.bin\n");
    std::fs::write(scratch.join("tree/big.bin"), vec![7u8; 256 * 1024]).expect("big.bin");
    std::fs::create_dir_all(scratch.join("serve")).expect("serve dir");
    run_checked(
        Command::new(require("tar", "tar"))
            .arg("-czf")
            .arg(scratch.join("serve/ctx.tar.gz"))
            .arg("-C")
            .arg(scratch.join("tree"))
            .arg("."),
    );
    std::fs::write(scratch.join("serve/file.bin"), vec![1u8; 64 * 1024]).expect("file.bin");
    scratch.write(
        "serve/Dockerfile",
        &format!(
            "FROM scratch\nCOPY big.bin /big.bin\nADD http://PROXY/file.bin /file.bin\n# {}\n",
            "padding so the reset lands in the body ".repeat(100)
        ),
    );
    let (_server, proxy) = served(&scratch);
    let dockerfile = std::fs::read_to_string(scratch.join("serve/Dockerfile"))
        .expect("Dockerfile")
        .replace("PROXY", proxy.host());
    std::fs::write(scratch.join("serve/Dockerfile"), dockerfile).expect("Dockerfile");
    for path in ["/ctx.tar.gz", "/Dockerfile", "/file.bin"] {
        proxy.inject("GET", path, Fault::Reset, 1);
    }
    let out = Build::new(
        Path::new(&format!("http://{}/Dockerfile", proxy.host())),
        Path::new(&format!("http://{}/ctx.tar.gz", proxy.host())),
        &scratch.kiln_dir(),
    )
    .arg("--no-push")
    .env("KILN_NETWORK_IDLE_TIMEOUT_SECS", "2")
    .run();
    assert!(
        out.status.success(),
        "a reset download was not started again:\n{}\n{:#?}",
        stderr(&out),
        proxy.log()
    );
    assert_eq!(proxy.remaining(), [0, 0, 0], "{:#?}", proxy.log());
}

/// A stall longer than any of these builds may take.
const LONG_STALL: Duration = Duration::from_secs(120);
/// How soon a stalled download must have failed (a 2 s idle timeout, with slack; below the
/// 30 s that the git client waited before).
const NOTICED: Duration = Duration::from_secs(25);

/// Runs `build` with a 2 s idle timeout; checks it failed in time, naming `url`, saying why.
fn assert_times_out(build: Build, url: &str) -> Output {
    let started = Instant::now();
    let out = build.env("KILN_NETWORK_IDLE_TIMEOUT_SECS", "2").run();
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(!out.status.success(), "the build succeeded through a stall");
    assert!(
        took < NOTICED,
        "the stall was noticed after {took:?}:\n{err}"
    );
    assert!(err.contains(url), "the error does not name {url}:\n{err}");
    assert!(
        err.contains("timed out"),
        "the error does not say timed out:\n{err}"
    );
    if !url.ends_with(".git") {
        assert!(
            err.contains("after 3 attempts"),
            "the error does not say the download was tried again:\n{err}"
        );
    }
    out
}

/// Serves `scratch/serve` over HTTP behind a proxy; returns both (keep them alive).
fn served(scratch: &Scratch) -> (kiln_tests::Server, FaultProxy) {
    std::fs::create_dir_all(scratch.join("serve")).expect("serve dir");
    let server = http_server(&scratch.join("serve"), &scratch.join("http.log"));
    let proxy = FaultProxy::start(&server.addr);
    (server, proxy)
}

#[test]
fn a_context_tarball_that_stalls_midway_times_out() {
    kiln_bin();
    let scratch = Scratch::new();
    scratch.write("tree/Dockerfile", "FROM scratch\nCOPY big.bin /big.bin\n");
    std::fs::write(scratch.join("tree/big.bin"), vec![7u8; 256 * 1024]).expect("big.bin");
    std::fs::create_dir_all(scratch.join("serve")).expect("serve dir");
    run_checked(
        Command::new(require("tar", "tar"))
            .arg("-czf")
            .arg(scratch.join("serve/ctx.tar.gz"))
            .arg("-C")
            .arg(scratch.join("tree"))
            .arg("."),
    );
    let (_server, proxy) = served(&scratch);
    proxy.inject("GET", "/ctx.tar.gz", Fault::StallBody(LONG_STALL), 1000);
    let url = format!("http://{}/ctx.tar.gz", proxy.host());
    let build = Build::new(
        Path::new("Dockerfile"),
        Path::new(&url),
        &scratch.kiln_dir(),
    )
    .arg("--no-push");
    assert_times_out(build, &url);
}

#[test]
fn a_dockerfile_url_that_never_answers_times_out() {
    kiln_bin();
    let scratch = Scratch::new();
    scratch.write("serve/Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n");
    scratch.write("ctx/a.txt", "a\n");
    let (_server, proxy) = served(&scratch);
    proxy.inject("GET", "/Dockerfile", Fault::Stall(LONG_STALL), 1000);
    let url = format!("http://{}/Dockerfile", proxy.host());
    let build =
        Build::new(Path::new(&url), &scratch.context(), &scratch.kiln_dir()).arg("--no-push");
    assert_times_out(build, &url);
}

#[test]
fn an_add_url_that_stalls_midway_times_out() {
    kiln_bin();
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.join("serve")).expect("serve dir");
    std::fs::write(scratch.join("serve/file.bin"), vec![1u8; 64 * 1024]).expect("file.bin");
    let (_server, proxy) = served(&scratch);
    proxy.inject("GET", "/file.bin", Fault::StallBody(LONG_STALL), 1000);
    let url = format!("http://{}/file.bin", proxy.host());
    let build = scratch
        .build(&format!("FROM scratch\nADD {url} /file.bin\n"))
        .arg("--no-push");
    assert_times_out(build, &url);
}

#[test]
fn a_git_context_whose_pack_stalls_times_out() {
    kiln_bin();
    let git = require("git", "git");
    let scratch = Scratch::new();
    let work = scratch.join("work");
    scratch.write("work/Dockerfile", "FROM scratch\nCOPY big.bin /big.bin\n");
    // incompressible, so the pack has a middle to stall in
    let mut state = 0x853c_49e6_748f_ea9b_u64;
    let noise: Vec<u8> = (0..256 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    std::fs::write(work.join("big.bin"), noise).expect("big.bin");
    let g = |args: &[&str]| {
        run_checked(
            Command::new(&git)
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
                .arg(&work)
                .args(args),
        )
    };
    g(&["init", "-q", "-b", "main"]);
    g(&["add", "."]);
    g(&["commit", "-q", "-m", "context"]);
    std::fs::create_dir_all(scratch.join("repos")).expect("repos");
    run_checked(
        Command::new(&git)
            .args(["clone", "-q", "--bare"])
            .arg(&work)
            .arg(scratch.join("repos/ctx.git")),
    );
    let server = git_http_server(&scratch.join("repos"), None, &scratch.join("git.log"));
    let proxy = FaultProxy::start(&server.addr);
    proxy.inject(
        "POST",
        "/git-upload-pack",
        Fault::StallBody(LONG_STALL),
        1000,
    );
    let url = format!("http://{}/ctx.git", proxy.host());
    let build = Build::new(
        Path::new("Dockerfile"),
        Path::new(&url),
        &scratch.kiln_dir(),
    )
    .arg("--no-push");
    assert_times_out(build, &url);
    assert!(
        proxy.remaining() != [1000],
        "the pack was never asked for: {:#?}",
        proxy.log()
    );
}

/// A server that sends an `ADD <url>` file one byte every 200 ms never goes silent for the
/// idle timeout; under a minimum rate of 1 KiB/s over 2 s windows the step fails in seconds,
/// naming the URL and saying "too slow".
#[test]
fn an_add_url_that_trickles_fails_as_too_slow() {
    kiln_bin();
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.join("serve")).expect("serve dir");
    std::fs::write(scratch.join("serve/file.bin"), vec![1u8; 16 * 1024]).expect("file.bin");
    let (_server, proxy) = served(&scratch);
    proxy.inject(
        "GET",
        "/file.bin",
        Fault::Trickle(Duration::from_millis(200)),
        1000,
    );
    let url = format!("http://{}/file.bin", proxy.host());
    let started = Instant::now();
    let out = scratch
        .build(&format!("FROM scratch\nADD {url} /file.bin\n"))
        .arg("--no-push")
        .env("KILN_NETWORK_IDLE_TIMEOUT_SECS", "2")
        .env("KILN_NETWORK_MIN_RATE", "1024")
        .env("KILN_NETWORK_MIN_RATE_WINDOW_SECS", "2")
        .run();
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(!out.status.success(), "a trickling ADD source was accepted");
    assert!(
        took < NOTICED,
        "the trickle was noticed after {took:?}:\n{err}"
    );
    assert!(err.contains(&url), "the error does not name {url}:\n{err}");
    assert!(
        err.contains("too slow"),
        "the error does not say why:\n{err}"
    );
}
