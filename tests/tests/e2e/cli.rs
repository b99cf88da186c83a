//! kiln's command line outside of a build: `--version`, and a bad `--dockerfile` path
//! reported on stderr with the path named.

use kiln_tests::{run_kiln, Scratch};

#[test]
fn version_names_the_workspace_version() {
    let out = run_kiln(["--version"]);
    assert!(out.status.success(), "kiln --version exited {}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want = format!("kiln {}", env!("CARGO_PKG_VERSION"));
    assert!(
        stdout.trim().starts_with(&want),
        "`kiln --version` printed {stdout:?}, want {want:?}"
    );
}

#[test]
fn missing_dockerfile_is_an_error_naming_the_path() {
    let scratch = Scratch::new();
    let missing = scratch.join("no-such-dir/Dockerfile.missing");
    let out = kiln_tests::Build::new(&missing, &scratch.context(), &scratch.kiln_dir())
        .destination("127.0.0.1:1/e2e/never:latest")
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "kiln must fail cleanly, got {}",
        out.status
    );
    assert!(
        stderr.contains("Dockerfile.missing"),
        "the error must name the Dockerfile path:\n{stderr}"
    );
}
