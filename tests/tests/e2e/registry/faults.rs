//! Registry faults injected by a proxy in front of a real `docker-registry` (issue 23, §5 and
//! §6): bodies reset, cut short, damaged (a wrong digest) or stalled midway, answers that
//! never come, 500s and 429s. With a short idle timeout (`KILN_NETWORK_IDLE_TIMEOUT_SECS`) a
//! stall is noticed in seconds and the request retried (a blob is downloaded again from the
//! start); a push that cannot finish fails naming the destination and leaves no tag; an image
//! that was pushed has every blob its manifest names. Also: SIGTERM in the middle of a push
//! keeps the tag's previous image, and a full kiln dir fails naming the path and leaves
//! nothing behind. And the bounds on what a registry may make kiln do: a manifest over 4 MiB
//! under a tag is refused at the cap, a 429's `Retry-After` is waited for, and a body that
//! trickles under the minimum rate is abandoned and retried.

#![allow(clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kiln_tests::{
    assert_not_in_registry, busybox_image, kiln_bin, require_root, run_checked, skopeo_inspect,
    Build, Fault, FaultProxy, Registry, Scratch,
};

/// The idle timeout the builds here run with, in seconds.
const IDLE_SECS: &str = "2";
/// A stall far longer than any build here may take: noticed only through the idle timeout.
const LONG_STALL: Duration = Duration::from_secs(90);
/// How long a build that meets one fault may take (retries and their waits included).
const RECOVERY: Duration = Duration::from_secs(40);

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `FROM <base>` plus one new file, with the short idle timeout.
fn small_build(scratch: &Scratch, base: &str, content: &str) -> Build {
    scratch.write("ctx/hello.txt", content);
    scratch
        .build(&format!("FROM {base}\nCOPY hello.txt /hello.txt\n"))
        .env("KILN_NETWORK_IDLE_TIMEOUT_SECS", IDLE_SECS)
}

/// Asks the registry at `host` (plain HTTP) whether `repository` has blob `digest`.
fn has_blob(host: &str, repository: &str, digest: &str) -> bool {
    let mut conn = TcpStream::connect(host).expect("connecting to the registry");
    write!(
        conn,
        "HEAD /v2/{repository}/blobs/{digest} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("asking the registry");
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .expect("the registry's answer");
    answer.starts_with("HTTP/1.1 200")
}

/// Panics unless `repository:tag` exists and every blob its manifest names is there.
fn assert_complete(registry: &Registry, repository: &str, tag: &str) {
    let raw = run_checked(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!(
                "docker://{}",
                registry.reference(&format!("{repository}:{tag}"))
            )),
    );
    let manifest: serde_json::Value = serde_json::from_str(&raw).expect("manifest json");
    let mut digests = vec![manifest["config"]["digest"]
        .as_str()
        .expect("config digest")];
    for layer in manifest["layers"].as_array().expect("layers") {
        digests.push(layer["digest"].as_str().expect("layer digest"));
    }
    for digest in digests {
        assert!(
            has_blob(registry.host(), repository, digest),
            "{repository}:{tag} names blob {digest}, which the registry does not have"
        );
    }
}

#[test]
fn pulls_recover_from_broken_blob_bodies() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    for fault in [
        Fault::Reset,
        Fault::Truncate,
        Fault::Corrupt,
        Fault::StallBody(LONG_STALL),
        Fault::Stall(LONG_STALL),
        Fault::TooMany(1),
        Fault::Status(500),
    ] {
        let proxy = FaultProxy::start(registry.host());
        // the config and the layer each meet the fault once (or one of them twice)
        proxy.inject("GET", "/blobs/sha256:", fault, 2);
        let scratch = Scratch::new();
        let started = Instant::now();
        let out = small_build(&scratch, &proxy.reference("busybox:latest"), "pull")
            .arg("--no-push")
            .arg("--tar-path")
            .arg(scratch.join("out.tar"))
            .run();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "{fault:?}: the pull did not recover:\n{}\n{:#?}",
            stderr(&out),
            proxy.log()
        );
        assert!(
            took < RECOVERY,
            "{fault:?}: the build took {took:?}: the fault was not noticed in time"
        );
        assert_eq!(
            proxy.remaining(),
            [0],
            "{fault:?} was not hit: {:#?}",
            proxy.log()
        );
    }
}

/// A registry that serves a 256 MiB "manifest" under a tag: kiln stops reading at the 4 MiB
/// manifest cap and fails naming the image and the bound, instead of buffering it all.
#[test]
fn a_huge_manifest_under_a_tag_is_refused_at_the_cap() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    proxy.inject("GET", "/manifests/latest", Fault::Huge(256 << 20), 1000);
    let scratch = Scratch::new();
    let started = Instant::now();
    let out = small_build(&scratch, &proxy.reference("busybox:latest"), "huge")
        .arg("--no-push")
        .run();
    let took = started.elapsed();
    let err = stderr(&out);
    assert!(!out.status.success(), "a 256 MiB manifest was accepted");
    assert!(
        err.contains("busybox:latest") && err.contains("kiln reads at most 4194304 bytes"),
        "the error does not name the image and the bound:\n{err}"
    );
    assert!(took < RECOVERY, "refusing the manifest took {took:?}");
    for line in proxy.log() {
        if let Some(taken) = line.split("huge body: ").nth(1) {
            let taken: u64 = taken
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("bytes taken");
            assert!(
                taken < 32 << 20,
                "kiln read {taken} bytes of a manifest before refusing it"
            );
        }
    }
}

/// A registry that answers 429 with `Retry-After: 2`, twice for the manifest and twice for
/// the blobs: the build completes and each retry waits at least the 2 s asked for.
#[test]
fn retry_after_of_a_429_is_waited_for() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    proxy.inject("GET", "/manifests/", Fault::TooMany(2), 2);
    proxy.inject("GET", "/blobs/sha256:", Fault::TooMany(2), 2);
    let scratch = Scratch::new();
    let out = small_build(&scratch, &proxy.reference("busybox:latest"), "429")
        .arg("--no-push")
        .run();
    assert!(
        out.status.success(),
        "the pull did not get past the 429s:\n{}",
        stderr(&out)
    );
    assert_eq!(proxy.remaining(), [0, 0], "{:#?}", proxy.log());
    let log = proxy.timed_log();
    let mut checked = 0;
    for (i, (at, line)) in log.iter().enumerate() {
        if !line.contains("injected 429") {
            continue;
        }
        let request = line.split(" -> ").next().unwrap_or_default();
        let (next_at, _) = log[i + 1..]
            .iter()
            .find(|(_, l)| l.starts_with(request))
            .unwrap_or_else(|| panic!("{request} was not retried: {log:#?}"));
        let waited = next_at.duration_since(*at);
        assert!(
            waited >= Duration::from_millis(1900),
            "{request} was retried {waited:?} after a 429 asking for 2 s: {log:#?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "{log:#?}");
}

/// A registry that sends a blob one byte every 200 ms (never silent for the idle timeout):
/// with a minimum rate of 1 KiB/s over 2 s windows the transfer is abandoned after 3 s and
/// retried, and the build completes in seconds.
#[test]
fn a_trickling_blob_is_abandoned_and_retried() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    proxy.inject(
        "GET",
        "/blobs/sha256:",
        Fault::Trickle(Duration::from_millis(200)),
        1,
    );
    let scratch = Scratch::new();
    let started = Instant::now();
    let out = small_build(&scratch, &proxy.reference("busybox:latest"), "trickle")
        .env("KILN_NETWORK_MIN_RATE", "1024")
        .env("KILN_NETWORK_MIN_RATE_WINDOW_SECS", "2")
        .arg("--no-push")
        .run();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "the pull did not recover:\n{}\n{:#?}",
        stderr(&out),
        proxy.log()
    );
    assert!(
        took < RECOVERY,
        "the build took {took:?}: the trickle was not abandoned"
    );
    assert!(
        stderr(&out).contains("too slow"),
        "no retry said why:\n{}",
        stderr(&out)
    );
    assert_eq!(proxy.remaining(), [0], "{:#?}", proxy.log());
}

#[test]
fn pushes_recover_from_faults_and_leave_complete_images() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    for (n, fault) in [
        Fault::Stall(LONG_STALL),
        Fault::Drop,
        Fault::TooMany(1),
        Fault::Status(500),
    ]
    .into_iter()
    .enumerate()
    {
        let proxy = FaultProxy::start(registry.host());
        proxy.inject("PUT", "/blobs/uploads/", fault, 1);
        proxy.inject("PUT", "/manifests/", fault, 1);
        let scratch = Scratch::new();
        let repository = format!("faults/push{n}");
        let started = Instant::now();
        let out = small_build(&scratch, &proxy.reference("busybox:latest"), "push")
            .destination(&proxy.reference(&format!("{repository}:1")))
            .run();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "{fault:?}: the push did not recover:\n{}\n{:#?}",
            stderr(&out),
            proxy.log()
        );
        assert!(
            took < RECOVERY,
            "{fault:?}: the build took {took:?}: the fault was not noticed in time"
        );
        assert_eq!(proxy.remaining(), [0, 0], "{fault:?}: {:#?}", proxy.log());
        assert_complete(&registry, &repository, "1");
    }
}

#[test]
fn a_registry_that_stops_answering_fails_the_push_without_a_tag() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    proxy.inject("PUT", "/blobs/uploads/", Fault::Stall(LONG_STALL), 1000);
    let scratch = Scratch::new();
    let started = Instant::now();
    let out = small_build(&scratch, &proxy.reference("busybox:latest"), "stalled")
        .destination(&proxy.reference("faults/stalled:1"))
        .run();
    let took = started.elapsed();
    assert!(!out.status.success(), "the push succeeded through stalls");
    assert!(
        took < Duration::from_secs(60),
        "the stalled push took {took:?} to fail"
    );
    let err = stderr(&out);
    assert!(err.contains("faults/stalled"), "{err}");
    assert!(
        err.contains("timed out"),
        "the error does not say why:\n{err}"
    );
    assert!(
        !proxy
            .log()
            .iter()
            .any(|l| l.starts_with("PUT") && l.contains("/manifests/")),
        "a manifest was pushed: {:#?}",
        proxy.log()
    );
    assert_not_in_registry(&registry.reference("faults/stalled:1"));
}

#[test]
fn sigterm_during_a_push_keeps_the_previous_image() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let scratch = Scratch::new();
    let base = registry.reference("busybox:latest");
    small_build(&scratch, &base, "before")
        .destination(&registry.reference("faults/term:1"))
        .run_ok();
    let before = skopeo_inspect(&registry.reference("faults/term:1"))["Digest"].clone();
    let proxy = FaultProxy::start(registry.host());
    proxy.inject("PUT", "/blobs/uploads/", Fault::Stall(LONG_STALL), 1000);
    let mut child = small_build(&scratch, &base, "after")
        .env("KILN_NETWORK_IDLE_TIMEOUT_SECS", "60")
        .destination(&proxy.reference("faults/term:1"))
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    while proxy.remaining() == [1000] {
        assert!(Instant::now() < deadline, "kiln never started uploading");
        assert!(
            child.try_wait().expect("kiln").is_none(),
            "kiln ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    run_checked(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("kiln") {
            break status;
        }
        assert!(Instant::now() < deadline, "kiln did not end after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(143), "exit status after SIGTERM");
    let after = skopeo_inspect(&registry.reference("faults/term:1"))["Digest"].clone();
    assert_eq!(after, before, "the tag moved to a half-pushed image");
    assert_complete(&registry, "faults/term", "1");
}

/// The kiln dir on a tmpfs too small for the build: the error names the path that could not
/// be written, kiln exits non-zero and the dir holds what it held before.
#[test]
fn a_full_kiln_dir_fails_naming_the_path() {
    kiln_bin();
    require_root("mounts a small tmpfs as the kiln dir");
    let scratch = Scratch::new();
    let dir = scratch.join("small");
    std::fs::create_dir_all(&dir).expect("mount point");
    run_checked(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "kiln-full-disk"])
            .arg(&dir),
    );
    let kiln_dir = dir.join("k");
    let result = std::panic::catch_unwind(|| {
        // 16 MiB that does not compress: more than the dir can hold
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let noise: Vec<u8> = (0..16 * 1024 * 1024 / 8)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()
            })
            .collect();
        std::fs::create_dir_all(scratch.join("ctx")).expect("ctx");
        std::fs::write(scratch.join("ctx/noise.bin"), &noise).expect("noise");
        // a build that fits leaves what kiln keeps between builds (the compiled guest)
        scratch.write("ctx/small.txt", "small\n");
        let fits = scratch.write("Fits", "FROM scratch\nCOPY small.txt /small.txt\n");
        Build::new(&fits, &scratch.context(), &kiln_dir)
            .arg("--no-push")
            .run_ok();
        let dockerfile = scratch.write("Dockerfile", "FROM scratch\nCOPY noise.bin /noise.bin\n");
        let before = listing(&dir);
        let out = Build::new(&dockerfile, &scratch.context(), &kiln_dir)
            .arg("--no-push")
            .arg("--tar-path")
            .arg(scratch.join("out.tar"))
            .run();
        assert!(!out.status.success(), "the build fit in 8 MiB");
        let err = stderr(&out);
        assert!(
            err.contains(&dir.display().to_string()),
            "the error names no path in the kiln dir:\n{err}"
        );
        assert!(
            err.to_lowercase().contains("no space left"),
            "the error does not say the disk is full:\n{err}"
        );
        let after = listing(&dir);
        let left: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
        assert!(left.is_empty(), "left behind in the kiln dir: {left:#?}");
    });
    run_checked(Command::new("umount").arg(&dir));
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Every path under `dir` that is not a directory, relative to it.
fn listing(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    found.sort();
    found
}
