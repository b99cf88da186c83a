//! The conformance harness of `../shared/conformance/`: every public case built by
//! buildah (the reference) and by kiln, compared file by file and field by field.
//!
//! The harness owns the machine-wide registry on 127.0.0.1:5000, so this test holds a
//! file lock for its whole run; anything else that uses that registry (the bench) takes
//! the same lock. `KILN_CONFORMANCE_DIR` overrides where the harness is.

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kiln_tests::{fixture_cache_dir, kiln_bin, require, run_with_timeout, workspace_root};

/// Cases in `public.cases` at the time of writing; fewer passes means cases went missing.
const MIN_PASSED: u32 = 9;

fn conformance_dir() -> PathBuf {
    match std::env::var_os("KILN_CONFORMANCE_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("../shared/conformance"),
    }
}

/// Parses the harness's closing `N passed, N failed`.
fn tally(line: &str) -> Option<(u32, u32)> {
    let (passed, failed) = line.trim().split_once(", ")?;
    let passed = passed.strip_suffix(" passed")?.parse().ok()?;
    let failed = failed.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

/// kiln's own cases (`tests/conformance/kiln.cases`): what the public ones do not show.
const OWN_CASES: u32 = 7;

#[test]
fn public_cases_match_buildah() {
    run_suite(&conformance_dir().join("public.cases"), MIN_PASSED);
}

#[test]
fn own_cases_match_buildah() {
    run_suite(
        &workspace_root().join("tests/conformance/kiln.cases"),
        OWN_CASES,
    );
}

/// Runs the harness on one cases file; every case must pass and at least `min_passed`.
fn run_suite(cases: &std::path::Path, min_passed: u32) {
    let kiln = kiln_bin();
    let dir = conformance_dir();
    let setup = dir.join("setup.sh");
    let suite = dir.join("diffsuite.py");
    for needed in [&setup, &suite, &cases.to_path_buf()] {
        assert!(
            needed.is_file(),
            "conformance harness missing: {} (set KILN_CONFORMANCE_DIR)",
            needed.display()
        );
    }
    for (bin, package) in [
        ("python3", "python3"),
        ("buildah", "buildah"),
        ("skopeo", "skopeo"),
        ("docker-registry", "docker-registry"),
        ("curl", "curl"),
    ] {
        require(bin, package);
    }

    let lock_path = fixture_cache_dir().join("registry-5000.lock");
    let lock = std::fs::File::create(&lock_path).expect("registry lock file");
    lock.lock().expect("locking the 127.0.0.1:5000 registry");

    let out = run_with_timeout(Command::new("sh").arg(&setup), Duration::from_secs(30 * 60));
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}{}",
        setup.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let template = format!(
        "{} build --dockerfile {{dockerfile}} --context {{context}} --destination {{dest}} {{buildargs}} {{target}}",
        kiln.display()
    );
    let out = run_with_timeout(
        Command::new("python3")
            .arg(&suite)
            .arg(cases)
            .arg("--kiln")
            .arg(&template)
            .current_dir(workspace_root()),
        Duration::from_secs(45 * 60),
    );
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "diffsuite.py exited {}", out.status);
    let last = report.lines().last().unwrap_or_default();
    let (passed, failed) =
        tally(last).unwrap_or_else(|| panic!("no tally line at the end: {last:?}"));
    assert_eq!(failed, 0, "conformance failures:\n{report}");
    assert!(
        passed >= min_passed,
        "only {passed} cases passed (want at least {min_passed}):\n{report}"
    );
}

#[test]
fn tally_line_is_parsed() {
    for (line, want) in [
        ("9 passed, 0 failed", Some((9, 0))),
        ("3 passed, 6 failed\n", Some((3, 6))),
        ("skipped 2", None),
        ("9 passed", None),
    ] {
        assert_eq!(tally(line), want, "{line:?}");
    }
}
