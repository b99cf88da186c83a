//! Conformance with buildah, the reference builder: kiln's own cases
//! (`tests/conformance/kiln.cases`, with `df/` and `ctx/`) through the project's differential
//! harness (`kiln_tests::run_differential`: both builds compared file by file and field by
//! field), the harness itself seeing a difference, and, as an extra check, the public cases
//! of the shared harness in `../shared/conformance/` when it is there (`KILN_SHARED=1`, as CI
//! sets it, makes it required; `KILN_SHARED=0` turns it off).
//!
//! The shared harness owns the machine-wide registry on 127.0.0.1:5000, so each run holds a
//! file lock for its whole run (`run_conformance` takes it); anything else that uses that
//! registry (the bench, `run::isolation`) takes the same lock. The own harness uses the
//! test process's registry.

use std::fs;

use kiln_tests::{
    conformance_tally, kiln_bin, run_conformance, run_differential, shared_conformance_dir,
    workspace_root, Registry, Scratch,
};

/// Cases in the shared `public.cases` at the time of writing; fewer passes means cases went
/// missing.
const MIN_PUBLIC_PASSED: u32 = 9;

/// kiln's own cases (`tests/conformance/kiln.cases`) at the time of writing.
const OWN_CASES: u32 = 12;

#[test]
fn own_cases_match_buildah() {
    kiln_bin();
    let cases = workspace_root().join("tests/conformance/kiln.cases");
    let run = run_differential(&cases, &Registry::shared(), &|b| b);
    println!("{}", run.report);
    assert_eq!(run.failed, 0, "conformance failures:\n{}", run.report);
    assert!(
        run.passed >= OWN_CASES,
        "only {} cases passed (want at least {OWN_CASES}):\n{}",
        run.passed,
        run.report
    );
}

/// The harness fails a case whose images differ in a file's mode, a file's content and the
/// config, and names each.
#[test]
fn the_differential_harness_sees_differences() {
    kiln_bin();
    let scratch = Scratch::new();
    scratch.write(
        "kiln.df",
        "FROM busybox\nRUN echo one > /f && chmod 600 /f\nENV A=1\n",
    );
    scratch.write(
        "buildah.df",
        "FROM busybox\nRUN echo two > /f && chmod 644 /f\nENV A=2\n",
    );
    let cases = scratch.join("differ.cases");
    fs::write(&cases, "differ | kiln.df | ctx | - | - | buildah.df\n").unwrap();
    let run = run_differential(&cases, &Registry::shared(), &|b| b);
    println!("{}", run.report);
    assert_eq!((run.passed, run.failed), (0, 1), "{}", run.report);
    for needle in ["/f: reference", "mode: 420", "mode: 384", "config Env"] {
        assert!(
            run.report.contains(needle),
            "no {needle:?} in:\n{}",
            run.report
        );
    }
}

#[test]
fn shared_public_cases_match_buildah() {
    let Some(dir) = shared_conformance_dir() else {
        return;
    };
    let run = run_conformance(
        &dir,
        &dir.join("public.cases"),
        &kiln_bin().display().to_string(),
    );
    assert_eq!(run.failed, 0, "conformance failures:\n{}", run.report);
    assert!(
        run.passed >= MIN_PUBLIC_PASSED,
        "only {} cases passed (want at least {MIN_PUBLIC_PASSED}):\n{}",
        run.passed,
        run.report
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
        assert_eq!(conformance_tally(line), want, "{line:?}");
    }
}
