//! Cache keys that need no root: `COPY --chown=<name>` resolved in `/etc/passwd` and
//! `/etc/group` read out of the stage's layers, `COPY --from=<stage>` keyed on that stage's
//! layers (its root filled only when the COPY runs), and a `RUN <<EOF` keyed on its body. A
//! rebuild in a fresh kiln dir (a new pod) where every step hits extracts no layer (the debug
//! line `layer extracted` of every extraction is counted) and gives the same image.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;

use kiln_tests::umoci_unpack;

use super::cache_lazy::Fixture;

/// Line numbers matter: the log names them.
const MULTI: &str = "\
ARG BASE
FROM ${BASE} AS build
RUN echo built > /out.txt && mkdir /many && for i in $(seq 1 50); do echo $i > /many/$i; done
FROM ${BASE}
ARG UID=4321
RUN echo \"app:x:${UID}:${UID}::/:/bin/sh\" >> /etc/passwd && echo \"app:x:${UID}:\" >> /etc/group
RUN echo unrelated > /unrelated.txt
COPY --chown=app a.txt /a.txt
COPY --from=build /out.txt /out.txt
COPY --from=build --chown=nobody:app /out.txt /out2.txt
";
const PASSWD: usize = 6;
const UNRELATED: usize = 7;
const CHOWN: usize = 8;
const FROM: usize = 9;
const FROM_CHOWN: usize = 10;

#[test]
fn a_cached_rebuild_with_chown_names_and_copy_from_a_stage_extracts_nothing() {
    let f = Fixture::new(MULTI);
    let first = f.build("multi:1", true);
    assert!(first.extracted() > 0, "the first build extracts its bases");
    let again = f.build("multi:2", true);
    for n in [3, PASSWD, UNRELATED, CHOWN, FROM, FROM_CHOWN] {
        assert_eq!(again.outcome(n), Some(true), "line {n}:\n{}", again.log);
    }
    assert_eq!(
        again.extracted(),
        0,
        "no root is filled when every step hits:\n{}",
        again.log
    );
    assert_eq!(again.digest, first.digest, "the same image");
    let image = umoci_unpack(&f.proxy.reference("multi:2"));
    assert_eq!(image.mode_owner("a.txt"), "0644 4321:4321");
    assert_eq!(image.read("out.txt"), "built\n");
    assert_eq!(image.mode_owner("out2.txt"), "0644 65534:4321");
    assert!(
        !image.path("many").exists(),
        "only the COPY's file came over"
    );
}

#[test]
fn the_chown_key_follows_the_passwd_of_a_lower_layer() {
    let f = Fixture::new(MULTI);
    f.build("multi:1", true);
    // the passwd entry changes two layers below the COPY; the layer between stays the same
    let changed = f.build_with("multi:2", true, &["--build-arg", "UID=5555"]);
    assert_eq!(changed.outcome(PASSWD), Some(false), "{}", changed.log);
    assert_eq!(changed.outcome(CHOWN), Some(false), "{}", changed.log);
    let image = umoci_unpack(&f.proxy.reference("multi:2"));
    assert_eq!(image.mode_owner("a.txt"), "0644 5555:5555");
    assert_eq!(image.mode_owner("out2.txt"), "0644 65534:5555");

    // back to the first uid: every step hits, the owner read from the layers again
    let back = f.build("multi:3", true);
    for n in [PASSWD, UNRELATED, CHOWN, FROM_CHOWN] {
        assert_eq!(back.outcome(n), Some(true), "line {n}:\n{}", back.log);
    }
    assert_eq!(back.extracted(), 0, "{}", back.log);
    let image = umoci_unpack(&f.proxy.reference("multi:3"));
    assert_eq!(image.mode_owner("a.txt"), "0644 4321:4321");
}

#[test]
fn an_unknown_chown_name_fails_as_when_the_copy_runs() {
    let dockerfile = |user: &str| {
        format!(
            "ARG BASE\nFROM ${{BASE}}\nRUN echo one > /one.txt\nCOPY --chown={user} a.txt /a.txt\n"
        )
    };
    let f = Fixture::new(&dockerfile("nobody"));
    f.build("ghost:1", true);
    fs::write(f.context.join("Dockerfile"), dockerfile("ghost")).expect("Dockerfile");
    // with the cache the RUN hits and the name is looked up in the layers, without a root
    let cached = f
        .try_build("ghost:2", true, &[])
        .expect_err("no user ghost");
    assert!(
        !cached.contains("layer extracted"),
        "the name is resolved without a root:\n{cached}"
    );
    // without the cache the guest resolves it in the filled root when the COPY runs
    let uncached = f
        .try_build("ghost:3", false, &[])
        .expect_err("no user ghost");
    for log in [&cached, &uncached] {
        assert!(
            log.contains("Dockerfile:4") && log.contains("unable to find user ghost"),
            "{log}"
        );
    }
}

#[test]
fn a_changed_run_heredoc_body_reruns_and_an_unchanged_one_needs_no_root() {
    let dockerfile = |body: &str| {
        format!(
            "ARG BASE\nFROM ${{BASE}}\nRUN <<EOF\necho {body} > /h.txt\nEOF\nRUN <<EOF\n#!/bin/sh\necho {body} > /s.txt\nEOF\n"
        )
    };
    let f = Fixture::new(&dockerfile("one"));
    let first = f.build("doc:1", true);
    let again = f.build("doc:2", true);
    assert_eq!(again.outcome(3), Some(true), "{}", again.log);
    assert_eq!(again.outcome(6), Some(true), "{}", again.log);
    assert_eq!(again.extracted(), 0, "{}", again.log);
    assert_eq!(again.digest, first.digest);

    fs::write(f.context.join("Dockerfile"), dockerfile("two")).expect("Dockerfile");
    let changed = f.build("doc:3", true);
    assert_eq!(changed.outcome(3), Some(false), "{}", changed.log);
    assert_eq!(changed.outcome(6), Some(false), "{}", changed.log);
    let image = umoci_unpack(&f.proxy.reference("doc:3"));
    assert_eq!(image.read("h.txt"), "two\n");
    assert_eq!(image.read("s.txt"), "two\n");
    assert!(!image.path(".kiln-heredoc").exists());
}
