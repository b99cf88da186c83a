//! A failing RUN: kiln exits with the command's exit code, names the Dockerfile line on
//! stderr, and pushes no tag.

use kiln_tests::{assert_not_in_registry, busybox_image, kiln_bin, Registry, Scratch};

#[test]
fn failing_run_propagates_its_exit_code_and_line() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let destination = registry.reference("e2e/run-exit:latest");
    let out = scratch
        .build(&format!(
            "FROM {base}\nRUN exit 7\nRUN echo never > /never\n"
        ))
        .destination(&destination)
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "kiln must exit with the RUN's code; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("Dockerfile:2"),
        "the error must name the RUN's line (`line 2`):\n{stderr}"
    );
    assert_not_in_registry(&destination);
}

#[test]
fn run_failing_on_a_later_line_names_that_line() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let destination = registry.reference("e2e/run-exit:later");
    let out = scratch
        .build(&format!(
            "FROM {base}\n\n# a comment\nRUN true\nRUN echo about to fail && \\\n    false\n"
        ))
        .destination(&destination)
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains("Dockerfile:5"),
        "the error must name the line where the failing RUN starts (`line 5`):\n{stderr}"
    );
    assert_not_in_registry(&destination);
}
