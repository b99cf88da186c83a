//! Every parse or semantic error of a Dockerfile names `Dockerfile:LINE`, the instruction,
//! and what is wrong, in BuildKit's spirit (`Dockerfile:7: unknown flag: --foo`).

use kiln_tests::{kiln_bin, Scratch};

#[test]
fn errors_name_line_instruction_and_problem() {
    kiln_bin();
    for (dockerfile, want) in [
        (
            "FROM scratch\nCOPY --foo=1 x /x\n",
            vec!["Dockerfile:2", "COPY", "--foo"],
        ),
        ("FROM scratch\n\nBOGUS x\n", vec!["Dockerfile:3", "BOGUS"]),
        (
            "FROM scratch\nCMD [\"a\", 1]\n",
            vec!["Dockerfile:2", "CMD", "must all be strings"],
        ),
        (
            "FROM scratch\nCOPY x\n",
            vec!["Dockerfile:2", "COPY", "requires at least two arguments"],
        ),
        (
            "FROM scratch\nRUN <<EOF\nnever ends\n",
            vec!["Dockerfile:2", "RUN", "<<EOF", "never terminated"],
        ),
        (
            "FROM scratch\nCOPY --from=a --from=b x /x\n",
            vec!["Dockerfile:2", "COPY", "--from", "more than once"],
        ),
        (
            "FROM scratch\nENV =x\n",
            vec!["Dockerfile:2", "ENV", "name=value"],
        ),
        (
            "FROM scratch\nCOPY missing.txt /x\n",
            vec!["Dockerfile:2", "COPY missing.txt /x", "missing.txt"],
        ),
        (
            "FROM scratch\nCOPY --chmod=9999 x /x\n",
            vec!["Dockerfile:2", "COPY --chmod=9999", "9999"],
        ),
        (
            "FROM scratch\nADD --checksum=md5:00 http://127.0.0.1:9/f /f\n",
            vec!["Dockerfile:2", "ADD", "md5"],
        ),
        (
            "FROM scratch\nENV A=\"${B:?B is required}\"\n",
            vec!["Dockerfile:2", "ENV", "B is required"],
        ),
        (
            "FROM scratch\nUSER nobody\nCOPY --chown=ghost x /x\n",
            vec!["Dockerfile:3", "COPY --chown=ghost", "ghost"],
        ),
    ] {
        let scratch = Scratch::new();
        scratch.write("ctx/x", "x");
        let out = scratch.build(dockerfile).arg("--no-push").run();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{dockerfile:?} should fail");
        for part in want {
            assert!(
                stderr.contains(part),
                "{dockerfile:?}: the error should contain {part:?}:\n{stderr}"
            );
        }
    }
}
