//! Credentials sent or shown where they must not be.
//!
//! A credential trap (HTTPS on loopback, every request answered 401 asking for basic
//! credentials) stands where a Dockerfile's `ADD <git URL>` or a context's `.gitmodules`
//! points: `GIT_TOKEN` must never reach it, unless `GIT_CREDENTIAL_HOSTS` names it. User
//! info in `--context`, `--dockerfile` and ADD URLs must show in no log line (text or JSON),
//! no error and no history entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{
    credential_trap, git_http_server, http_server, loopback_tls_files, require, run_checked,
    skopeo_config, unique_token, Registry, Scratch, Server,
};

use super::{kiln, stderr};

/// A trap, the file it records requests in and the CA kiln must trust to reach it.
fn trap(scratch: &Scratch) -> (Server, PathBuf, PathBuf) {
    let (ca, cert, key) = loopback_tls_files(&scratch.join("tls"), "127.0.0.1");
    let record = scratch.join("trap.record");
    fs::write(&record, "").unwrap();
    let server = credential_trap(&cert, &key, &record, &scratch.join("trap.log"));
    (server, record, ca)
}

/// The trap's record: one line per request.
fn requests(record: &Path) -> Vec<String> {
    fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn assert_no_credentials(record: &Path, what: &str) {
    let seen = requests(record);
    assert!(!seen.is_empty(), "{what}: kiln never reached the trap");
    assert!(
        seen.iter().all(|l| l.ends_with("authorization=-")),
        "{what}: credentials sent to the trap: {seen:?}"
    );
}

fn build_args(scratch: &Scratch, context: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["build", "--context", context, "--no-push", "--kiln-dir"]
        .into_iter()
        .map(String::from)
        .collect();
    args.push(scratch.kiln_dir().display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn git_token_is_not_sent_to_a_host_the_dockerfile_names() {
    let scratch = Scratch::new();
    let (server, record, ca) = trap(&scratch);
    let token = PathBuf::from(format!("tok{}", unique_token()));
    scratch.write(
        "ctx/Dockerfile",
        &format!("FROM scratch\nADD https://{}/x.git /src\n", server.addr),
    );
    let args = build_args(&scratch, &scratch.context().display().to_string(), &[]);
    let env = [
        ("GIT_TOKEN", token.as_path()),
        ("SSL_CERT_FILE", ca.as_path()),
    ];
    let out = kiln(&args, &env);
    assert!(!out.status.success(), "the trap answers every request 401");
    assert_no_credentials(&record, "ADD https://trap/x.git");

    // a host the user names does get them
    fs::write(&record, "").unwrap();
    let named = PathBuf::from(&server.addr);
    let mut env = env.to_vec();
    env.push(("GIT_CREDENTIAL_HOSTS", named.as_path()));
    kiln(&args, &env);
    let seen = requests(&record);
    assert!(
        seen.iter().any(|l| l.contains("authorization=Basic ")),
        "GIT_CREDENTIAL_HOSTS={}: no credentials sent: {seen:?}",
        server.addr
    );
}

#[test]
fn git_token_is_not_sent_to_a_submodule_on_another_host() {
    let scratch = Scratch::new();
    let (trap, record, ca) = trap(&scratch);
    // the context: a repository served without credentials whose submodule is on the trap
    let git = require("git", "git");
    let work = scratch.join("work");
    fs::create_dir_all(&work).unwrap();
    fs::write(work.join("Dockerfile"), "FROM scratch\nCOPY Dockerfile /\n").unwrap();
    fs::write(
        work.join(".gitmodules"),
        format!(
            "[submodule \"lib\"]\n\tpath = lib\n\turl = https://{}/lib.git\n",
            trap.addr
        ),
    )
    .unwrap();
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
    g(&[
        "update-index",
        "--add",
        "--cacheinfo",
        "160000,0123456789abcdef0123456789abcdef01234567,lib",
    ]);
    g(&["commit", "-q", "-m", "context with a submodule elsewhere"]);
    fs::create_dir_all(scratch.join("repos")).unwrap();
    run_checked(
        Command::new(&git)
            .args(["clone", "-q", "--bare"])
            .arg(&work)
            .arg(scratch.join("repos/ctx.git")),
    );
    let server = git_http_server(&scratch.join("repos"), None, &scratch.join("git.log"));
    let url = format!("{}/ctx.git", server.url());
    let token = PathBuf::from(format!("tok{}", unique_token()));
    let args = build_args(&scratch, &url, &["--git", "recurse-submodules=true"]);
    let env = [
        ("GIT_TOKEN", token.as_path()),
        ("SSL_CERT_FILE", ca.as_path()),
    ];
    let out = kiln(&args, &env);
    assert!(!out.status.success(), "the trap answers every request 401");
    assert_no_credentials(&record, ".gitmodules url = https://trap/lib.git");
}

#[test]
fn credentials_in_urls_show_in_no_log_error_or_history() {
    let scratch = Scratch::new();
    let secret = format!("pw{}", unique_token());
    scratch.write("serve/file.txt", "served\n");
    let server = http_server(&scratch.join("serve"), &scratch.join("http.log"));
    let host = server.addr.clone();
    scratch.write(
        "serve/Dockerfile",
        &format!("FROM scratch\nADD http://u:{secret}@{host}/file.txt /f\n"),
    );
    let registry = Registry::shared();
    let dest = registry.reference(&format!("e2e/hostile-redact-{}:latest", unique_token()));
    let dockerfile = format!("http://u:{secret}@{host}/Dockerfile");
    let context = scratch.context().display().to_string();
    for format in ["text", "json"] {
        let mut args = build_args(&scratch, &context, &["--dockerfile", &dockerfile]);
        args.retain(|a| a != "--no-push");
        args.extend(
            [
                "--destination",
                &dest,
                "--verbosity",
                "debug",
                "--log-format",
                format,
            ]
            .map(String::from),
        );
        let out = kiln(&args, &[]);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains(&secret),
            "{format} logs show the password"
        );
    }
    let config = skopeo_config(&dest);
    let history = config["history"].to_string();
    assert!(history.contains("ADD http://"), "no ADD in {history}");
    assert!(
        !history.contains(&secret),
        "history shows the password: {history}"
    );

    // a git context with user info that fails: the error and the logs hide the password
    let url = format!("http://u:{secret}@{host}/nope.git");
    let out = kiln(&build_args(&scratch, &url, &[]), &[]);
    assert!(!out.status.success(), "{url} does not exist");
    let err = stderr(&out);
    assert!(
        !err.contains(&secret),
        "the error shows the password:\n{err}"
    );
    assert!(
        err.contains(&format!("{host}/nope.git")),
        "the error no longer names the URL:\n{err}"
    );
}
