//! The shared conformance harness of `../shared/conformance/` beside the checkout (or
//! `$KILN_CONFORMANCE_DIR`), an extra check beside the project's own harness
//! (`differential.rs`): its `setup.sh` prepares the machine-wide registry on 127.0.0.1:5000
//! and `diffsuite.py` builds every public case with buildah and with a given kiln command
//! line, then compares the images. Owns whether it runs ([`shared_conformance_dir`]: when
//! present; required with `KILN_SHARED=1`, as CI sets it; off with `KILN_SHARED=0`), running
//! it ([`run_conformance`]) under the lock on that registry (kept by `images.rs`, whose
//! Debian fixture may read from it) and reading its closing tally.
//!
//! What counts as a pass (how many cases, which kiln command line) is the calling test's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::images::lock_conformance_registry;
use crate::tools::{require, run_with_timeout, workspace_root};

/// How long `setup.sh` may take (debootstrap on a fresh machine).
const SETUP_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long one run of `diffsuite.py` may take.
const SUITE_TIMEOUT: Duration = Duration::from_secs(45 * 60);

/// The shared harness directory, or `None` (said on stderr) when it is not to be run here:
/// `$KILN_CONFORMANCE_DIR` (required), else `../shared/conformance` when it exists or when
/// `KILN_SHARED` is set to anything but `0` (then required: a missing one panics).
pub fn shared_conformance_dir() -> Option<PathBuf> {
    let shared = std::env::var("KILN_SHARED").unwrap_or_default();
    let (dir, required) = match std::env::var_os("KILN_CONFORMANCE_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => (PathBuf::from(dir), true),
        None if shared == "0" => {
            eprintln!("shared conformance harness not run: KILN_SHARED=0");
            return None;
        }
        None => (
            workspace_root().join("../shared/conformance"),
            !shared.is_empty(),
        ),
    };
    if !dir.is_dir() && !required {
        eprintln!(
            "shared conformance harness not run: {} is absent (KILN_SHARED=1 requires it)",
            dir.display()
        );
        return None;
    }
    assert!(
        dir.join("diffsuite.py").is_file(),
        "shared conformance harness missing: {}/diffsuite.py (KILN_SHARED or KILN_CONFORMANCE_DIR requires it)",
        dir.display()
    );
    Some(dir)
}

/// Parses the harness's closing `N passed, N failed`.
pub fn conformance_tally(line: &str) -> Option<(u32, u32)> {
    let (passed, failed) = line.trim().split_once(", ")?;
    let passed = passed.strip_suffix(" passed")?.parse().ok()?;
    let failed = failed.strip_suffix(" failed")?.parse().ok()?;
    Some((passed, failed))
}

/// What one run of the harness reported.
#[derive(Debug)]
pub struct ConformanceRun {
    /// Cases whose kiln image matched buildah's.
    pub passed: u32,
    /// Cases that differed or failed to build.
    pub failed: u32,
    /// The harness's whole report (its stdout).
    pub report: String,
}

/// Runs the harness on `cases` with `kiln` as the command line that starts kiln (the binary,
/// or a launcher ending in it), holding the 127.0.0.1:5000 lock throughout; panics when a
/// tool or harness file is missing, when setup fails, or when the harness exits non-zero.
pub fn run_conformance(dir: &Path, cases: &Path, kiln: &str) -> ConformanceRun {
    let setup = dir.join("setup.sh");
    let suite = dir.join("diffsuite.py");
    for needed in [&setup, &suite, &cases.to_path_buf()] {
        assert!(
            needed.is_file(),
            "conformance harness file missing: {}",
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
    let _lock = lock_conformance_registry();
    let out = run_with_timeout(Command::new("sh").arg(&setup), SETUP_TIMEOUT);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}{}",
        setup.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let template = format!(
        "{kiln} build --dockerfile {{dockerfile}} --context {{context}} --destination {{dest}} {{buildargs}} {{target}}"
    );
    let out = run_with_timeout(
        Command::new("python3")
            .arg(&suite)
            .arg(cases)
            .arg("--kiln")
            .arg(&template)
            .current_dir(workspace_root()),
        SUITE_TIMEOUT,
    );
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{report}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "diffsuite.py exited {}", out.status);
    let last = report.lines().last().unwrap_or_default();
    let (passed, failed) =
        conformance_tally(last).unwrap_or_else(|| panic!("no tally line at the end: {last:?}"));
    ConformanceRun {
        passed,
        failed,
        report,
    }
}
