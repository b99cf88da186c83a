//! Independent stages build at the same time. The proof needs no clock: two stages meet in
//! a shared cache mount, each waiting for the other's marker, so the build completes only
//! when both RUNs are alive together; with `--sequential-stages` the same Dockerfile fails
//! on its timeout, naming the line. Output does not depend on the schedule: a parallel and a
//! sequential `--reproducible` build give the same manifest digest, and each RUN's output
//! line names its stage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use kiln_tests::{busybox_image, kiln_bin, require_root, umoci_unpack, Registry, Scratch};

/// Stage `me` marks its arrival in the shared cache mount, then waits up to `$WAIT` seconds
/// for stage `other`'s mark. Line numbers matter: the timeout test names line 4.
fn rendezvous(me: &str, other: &str) -> String {
    format!(
        "RUN --mount=type=cache,id=rendezvous-$ROUND,target=/r,sharing=shared \
         touch /r/{me}; i=0; \
         while [ ! -e /r/{other} ]; do \
           i=$((i+1)); if [ $i -gt $WAIT ]; then echo \"stage {me}: timed out waiting for stage {other}\" >&2; exit 1; fi; \
           sleep 1; \
         done; echo \"{me} met {other}\"; echo {me} > /{me}.txt"
    )
}

fn dockerfile(base: &str) -> String {
    format!(
        "ARG WAIT=60
FROM {base} AS a
ARG WAIT ROUND
{}
FROM {base} AS b
ARG WAIT ROUND
{}
FROM {base}
COPY --from=a /a.txt /
COPY --from=b /b.txt /
",
        rendezvous("a", "b"),
        rendezvous("b", "a"),
    )
}

#[test]
fn independent_stages_run_at_the_same_time() {
    require_root("cache mounts are bind-mounted in chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let destination = registry.reference("e2e/parallel-stages:v1");
    let out = scratch
        .build(&dockerfile(&base))
        .destination(&destination)
        .arg("--build-arg")
        .arg("ROUND=1")
        .run_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // RUN output of stages running side by side carries its step (stage and number), on stderr
    assert!(stderr.contains("[a 3/3] a met b"), "stderr:\n{stderr}");
    assert!(stderr.contains("[b 3/3] b met a"), "stderr:\n{stderr}");
    let image = umoci_unpack(&destination);
    assert_eq!(fs::read_to_string(image.path("/a.txt")).unwrap(), "a\n");
    assert_eq!(fs::read_to_string(image.path("/b.txt")).unwrap(), "b\n");

    // one stage at a time, stage a waits in vain: the same Dockerfile cannot complete
    let out = scratch
        .build(&dockerfile(&base))
        .arg("--no-push")
        .arg("--sequential-stages")
        .arg("--build-arg")
        .arg("ROUND=2")
        .arg("--build-arg")
        .arg("WAIT=3")
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sequential stages met:\n{stderr}");
    assert!(
        stderr.contains("stage a: timed out waiting for stage b")
            && stderr.contains("Dockerfile:4: RUN"),
        "{stderr}"
    );
}

#[test]
fn parallel_and_sequential_builds_give_the_same_image() {
    require_root("RUN in chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/seed.txt", "seed\n");
    // two stages writing many files each, one reading the context, gathered by a third
    let dockerfile = format!(
        "FROM {base} AS left
RUN mkdir /out && cd /out && i=0; while [ $i -lt 2000 ]; do echo left $i > f$i; i=$((i+1)); done
FROM {base} AS right
COPY seed.txt /out/
RUN cd /out && i=0; while [ $i -lt 2000 ]; do echo right $i > g$i; i=$((i+1)); done
FROM left AS unused
RUN echo never > /never
FROM {base}
COPY --from=left /out /left
COPY --from=right /out /right
RUN ls /left /right | wc -l > /count
"
    );
    let digest = |extra: &[&str], tag: &str| {
        let destination = registry.reference(&format!("e2e/parallel-repro:{tag}"));
        let digest_file = scratch.join(&format!("digest-{tag}"));
        let mut build = scratch
            .build(&dockerfile)
            .destination(&destination)
            .arg("--reproducible")
            .arg("--digest-file")
            .arg(&digest_file);
        for a in extra {
            build = build.arg(a);
        }
        build.run_ok();
        (fs::read_to_string(&digest_file).unwrap(), destination)
    };
    let (parallel, destination) = digest(&[], "parallel");
    let (sequential, _) = digest(&["--sequential-stages"], "sequential");
    assert!(parallel.starts_with("sha256:"), "{parallel}");
    assert_eq!(parallel, sequential, "the schedule changed the image");
    let image = umoci_unpack(&destination);
    assert_eq!(
        fs::read_to_string(image.path("/left/f1999")).unwrap(),
        "left 1999\n"
    );
    assert_eq!(
        fs::read_to_string(image.path("/right/seed.txt")).unwrap(),
        "seed\n"
    );
    // 2000 + 2001 names, the two directory headers `ls` prints and the blank line between
    assert_eq!(
        fs::read_to_string(image.path("/count")).unwrap().trim(),
        "4004"
    );
    assert!(!image.path("/never").exists());
}
