//! Errors that point at the line and say what was meant: a Dockerfile error names the file as
//! given (`-f lint/bad2.Dockerfile`) and its line, quotes the line with a marker; unknown
//! instructions, stage names, `--target`, build-arg names and flags get a "did you mean"; a
//! stage typo fails before any network call; registry failures start with their cause;
//! `--check` prints each lint with its line and fails, and is silent on a clean file.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use kiln_tests::{kiln_bin, Build, Scratch};

/// `kiln build -f FILE -c ctx --kiln-dir k` from the scratch dir, the Dockerfile path relative.
fn build_from(scratch: &Scratch, file: &str, text: &str) -> Build {
    scratch.write(file, text);
    std::fs::create_dir_all(scratch.context()).unwrap();
    Build::new(Path::new(file), Path::new("ctx"), Path::new("k")).current_dir(scratch.path())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_contains(text: &str, wants: &[&str]) {
    for want in wants {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
}

#[test]
fn unknown_instruction_names_the_real_file_quotes_the_line_and_suggests() {
    kiln_bin();
    let scratch = Scratch::new();
    let out = build_from(
        &scratch,
        "lint/bad2.Dockerfile",
        "FROM scratch\nCOPY a /a\nRUNN echo hi\nCMD [\"x\"]\n",
    )
    .arg("--no-push")
    .arg("--tar-path=o.tar")
    .run();
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert_contains(
        &text,
        &[
            "error: lint/bad2.Dockerfile:3: unknown instruction \"RUNN\" (did you mean RUN?)",
            "   2 |     COPY a /a\n",
            "   3 | >>> RUNN echo hi\n",
            "   4 |     CMD [\"x\"]\n",
        ],
    );
    assert!(!text.contains(" Dockerfile:3"), "the generic name: {text}");
}

#[test]
fn stage_typos_fail_before_any_network_call() {
    kiln_bin();
    for (text, want) in [
        (
            "FROM scratch AS build\nFROM scratch\nCOPY --from=biuld /a /b\n",
            "s.Dockerfile:3: COPY names \"biuld\", which is no stage (did you mean stage \"build\"?)",
        ),
        (
            "FROM scratch AS build\nFROM biuld\n",
            "s.Dockerfile:2: FROM biuld: no stage \"biuld\" before this one (did you mean stage \"build\"?)",
        ),
    ] {
        let scratch = Scratch::new();
        let started = Instant::now();
        let out = build_from(&scratch, "s.Dockerfile", text)
            .arg("--no-push")
            .arg("--tar-path=o.tar")
            .run();
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_contains(&err, &[want, ">>> "]);
        for never in ["retrying", "docker.io", "credentials"] {
            assert!(!err.contains(never), "{never:?} in:\n{err}");
        }
        assert!(started.elapsed() < Duration::from_secs(20), "slow: a pull was tried");
    }
}

#[test]
fn target_build_args_and_flags_get_suggestions() {
    kiln_bin();
    let scratch = Scratch::new();
    let text = "FROM scratch AS build\nARG VERSION\nFROM scratch AS test\n";
    let out = build_from(&scratch, "t.Dockerfile", text)
        .arg("--dryrun")
        .arg("--no-push")
        .arg("--target=tset")
        .run();
    assert_eq!(out.status.code(), Some(1));
    assert_contains(
        &stderr(&out),
        &["--target \"tset\": no such stage (did you mean \"test\"?); the named stages are: build, test"],
    );
    let out = build_from(&scratch, "t.Dockerfile", text)
        .arg("--dryrun")
        .arg("--no-push")
        .arg("--target=build")
        .arg("--build-arg=VERSOIN=1")
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stderr(&out), &["VERSOIN (did you mean VERSION?)"]);
    let out = build_from(&scratch, "t.Dockerfile", text)
        .arg("--tga")
        .arg("x")
        .run();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    let err = stderr(&out);
    assert_contains(
        &err,
        &["unexpected argument '--tga'", "did you mean '--tag'?"],
    );
    assert!(!err.contains("--target"), "clap's guess: {err}");
}

#[test]
fn registry_failures_start_with_their_cause() {
    kiln_bin();
    for (base, cause) in [
        ("127.0.0.1:1/nothing/listens:1", "error: connection refused"),
        ("no-such-host.invalid/x:1", "error: DNS lookup failed"),
    ] {
        let scratch = Scratch::new();
        let out = build_from(&scratch, "r.Dockerfile", &format!("FROM {base}\n"))
            .arg("--no-push")
            .arg("--tar-path=o.tar")
            .arg("--image-download-retry=0")
            .run();
        assert_eq!(out.status.code(), Some(1));
        assert_contains(&stderr(&out), &[cause, "r.Dockerfile:1: FROM "]);
    }
}

#[test]
fn check_reports_each_lint_and_is_silent_on_a_clean_file() {
    kiln_bin();
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/dockerfile/tests/fixtures/lint");
    let every = std::fs::read_to_string(fixtures.join("every-rule.Dockerfile")).unwrap();
    let scratch = Scratch::new();
    let out = build_from(&scratch, "lint/every.Dockerfile", &every)
        .arg("--check")
        .run();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for (line, rule) in [
        (1, "StageNameCasing"),
        (1, "UnreachableStage"),
        (2, "FromAsCasing"),
        (3, "MaintainerDeprecated"),
        (4, "LegacyKeyValueFormat"),
        (5, "SecretsUsedInArgOrEnv"),
        (6, "WorkdirRelativePath"),
        (7, "UndefinedVar"),
        (8, "MultipleSourcesToFile"),
        (9, "MultipleInstructionsDisallowed"),
        (10, "JSONArgsRecommended"),
    ] {
        assert_contains(&err, &[&format!("lint/every.Dockerfile:{line}: {rule}: ")]);
    }
    assert_contains(&err, &["lint/every.Dockerfile: 11 lint warnings"]);
    let clean = std::fs::read_to_string(fixtures.join("clean.Dockerfile")).unwrap();
    let out = build_from(&scratch, "clean.Dockerfile", &clean)
        .arg("--check")
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("WARN"), "{}", stderr(&out));
    // a build prints the same warnings and goes on
    let out = build_from(&scratch, "w.Dockerfile", "FROM scratch\nMAINTAINER me\n")
        .arg("--dryrun")
        .arg("--no-push")
        .run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_contains(&stderr(&out), &["w.Dockerfile:2: MaintainerDeprecated: "]);
}
