//! Hostile inputs aimed at what kiln holds (issue 23, sections 2, 3 and 5): servers on
//! loopback that want credentials they must not get (`credentials`), contexts, `.dockerignore`
//! files and ADD archives whose symlinks point at host files or out of their destination
//! (`links`), other users of the machine reaching into kiln's dirs (`machine`), servers that
//! stall mid-download (`stalls`) and inputs sized to exhaust kiln's memory or disk
//! (`bounds`). Each test is an attack that worked before kiln resisted it.

mod bounds;
mod credentials;
mod links;
mod machine;
mod stalls;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use kiln_tests::{kiln_bin, run_with_timeout};

/// `kiln ARGS…` with extra environment variables; echoes the run to the test log.
fn kiln(args: &[String], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(kiln_bin());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    eprintln!("$ {env:?} kiln {args:?}");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(600));
    eprintln!(
        "--- kiln {} ---\n{}{}--- end kiln ---",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
