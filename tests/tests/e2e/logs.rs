//! What a build writes where: stdout carries only the image digest (RUN output and logs go
//! to stderr); `--log-format json` gives one JSON object a line with kaniko's keys, no key
//! twice, RUN output as events of its step and the error as the last event; text logs carry
//! no escape codes in a pipe and a time only with `--log-timestamp`; a deprecated kaniko
//! spelling is accepted with a warning.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};

use kiln_tests::{busybox_image, kiln_bin, require, Registry, Scratch};
use serde_json::Value;

/// Every line of `text` through `jq -c .` (a parser kiln did not write) and through
/// Python's, which is told to refuse a key that appears twice; returns the parsed lines.
fn json_lines(text: &str) -> Vec<Value> {
    let jq = require("jq", "jq");
    let mut child = Command::new(jq)
        .args(["-c", "."])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jq");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jq refused the log: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = require("python3", "python3");
    let check = r#"
import json, sys
def unique(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise SystemExit("duplicate key in: %r" % keys)
    return dict(pairs)
for n, line in enumerate(sys.stdin, 1):
    json.loads(line, object_pairs_hook=unique)
"#;
    let mut child = Command::new(python)
        .args(["-c", check])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Whether a log line starts with an RFC 3339 date (`2026-12-03T…`).
fn timestamped(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 11 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

#[test]
fn stdout_carries_only_the_digest() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let destination = registry.reference("e2e/logs:stdout");
    let out = scratch
        .build(&format!(
            "FROM {base}\nRUN echo run-says-hello && echo run-complains >&2\n"
        ))
        .destination(&destination)
        .run_ok();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout must be the digest alone: {stdout:?}"
    );
    assert!(
        lines[0].starts_with("sha256:") && lines[0].len() == 71,
        "{stdout:?}"
    );
    assert!(stderr.contains("run-says-hello") && stderr.contains("run-complains"));
    // in a pipe, by default: no escape codes, no timestamps
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in a pipe:\n{stderr}"
    );
    let stamped = stderr.lines().filter(|l| timestamped(l)).count();
    assert_eq!(stamped, 0, "timestamps without --log-timestamp:\n{stderr}");

    // --log-timestamp puts the time on text lines; a deprecated spelling is warned about
    let out = scratch
        .build(&format!("FROM {base}\nRUN true\n"))
        .arg("--no-push")
        .arg("--log-timestamp")
        .arg("--snapshotMode=full")
        .run_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().any(timestamped),
        "no timestamped line:\n{stderr}"
    );
    assert!(
        stderr.contains("--snapshotMode is deprecated: use --snapshot-mode"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.trim().starts_with("sha256:") && stdout.lines().count() == 1,
        "the digest alone: {stdout:?}"
    );
}

#[test]
fn dryrun_logs_the_plan_and_builds_nothing() {
    kiln_bin();
    let scratch = Scratch::new();
    let out = scratch
        .build(
            "FROM 127.0.0.1:1/never/pulled:1 AS base\nRUN echo never-run\n\
             FROM scratch\nCOPY --from=base /etc/hostname /x\n",
        )
        .destination("127.0.0.1:1/never/pushed:1")
        .arg("--dryrun")
        .run_ok();
    assert!(out.stdout.is_empty(), "no image, nothing on stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for want in [
        "stage base: FROM 127.0.0.1:1/never/pulled:1",
        "[base 2/2] RUN echo never-run",
        "stage stage-1 (target): FROM scratch",
        "[stage-1 2/2] COPY --from=base /etc/hostname /x",
        "dry run: nothing built, nothing pushed",
    ] {
        assert!(stderr.contains(want), "{want:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains("never-run\n"), "a RUN ran");
    let left: Vec<_> = std::fs::read_dir(scratch.kiln_dir())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        !left
            .iter()
            .any(|n| n.to_string_lossy().starts_with("build-")),
        "a dry run made a stage root: {left:?}"
    );
}

#[test]
fn json_logs_are_one_object_a_line_with_run_output_and_the_error() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let out = scratch
        .build(&format!(
            "FROM {base} AS build\nRUN echo first-line && echo \"quote \\\" and tab\t\"\nRUN echo failing-now && exit 3\n"
        ))
        .arg("--no-push")
        .arg("--log-format=json")
        .run();
    assert_eq!(out.status.code(), Some(3), "a failed RUN's code is kiln's");
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events = json_lines(&stderr);
    for e in &events {
        for key in ["level", "msg", "time"] {
            assert!(e.get(key).is_some_and(Value::is_string), "no {key}: {e}");
        }
    }
    let run_line = events
        .iter()
        .find(|e| e["msg"] == "first-line")
        .unwrap_or_else(|| panic!("RUN output is not an event:\n{stderr}"));
    assert_eq!(run_line["stream"], "stdout");
    assert_eq!(run_line["stage"], "build");
    assert_eq!(run_line["step"], "2/3");
    assert_eq!(run_line["line"], 2);
    assert!(events.iter().any(|e| e["msg"] == "quote \" and tab\t"));
    let last = events.last().expect("events");
    assert_eq!(last["level"], "error");
    assert_eq!(last["exit_code"], 3);
    assert!(
        last["msg"].as_str().unwrap().contains("Dockerfile:3"),
        "{last}"
    );
}
