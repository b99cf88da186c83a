//! The conformance harness of `../shared/conformance/`: every public case built by
//! buildah (the reference) and by kiln, compared file by file and field by field.
//!
//! The harness owns the machine-wide registry on 127.0.0.1:5000, so each run holds a
//! file lock for its whole run (the harness's `run_conformance` takes it); anything else
//! that uses that registry (the bench, `run::isolation`) takes the same lock.
//! `KILN_CONFORMANCE_DIR` overrides where the harness is.

use kiln_tests::{conformance_dir, conformance_tally, kiln_bin, run_conformance, workspace_root};

/// Cases in `public.cases` at the time of writing; fewer passes means cases went missing.
const MIN_PASSED: u32 = 9;

/// kiln's own cases (`tests/conformance/kiln.cases`): what the public ones do not show.
const OWN_CASES: u32 = 12;

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
    let run = run_conformance(cases, &kiln.display().to_string());
    assert_eq!(run.failed, 0, "conformance failures:\n{}", run.report);
    assert!(
        run.passed >= min_passed,
        "only {} cases passed (want at least {min_passed}):\n{}",
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
