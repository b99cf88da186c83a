//! The isolation modes: a non-root user builds in rootless mode (a user namespace mapping it
//! to root; with /etc/subuid ranges and newuidmap, its subordinate ids too, so RUN can chown
//! to any owner); root without CAP_SYS_ADMIN still builds, in a plain chroot, with a warning
//! that names what is missing (passes the conformance cases, and leaves no daemon
//! behind even when it called setsid); in-place mode builds over a throwaway root, one stage
//! after another, leaves ignored paths alone, and is refused where no container is detected.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiln_tests::{
    busybox_image, kiln_bin, require, require_root, run_conformance, run_differential,
    run_with_timeout, shared_conformance_dir, umoci_unpack, workspace_root, Build, Registry,
    Scratch,
};

/// `chown -R uid:gid path`.
pub(super) fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for e in fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

/// `setpriv` arguments that drop CAP_SYS_ADMIN from kiln, root otherwise.
const WITHOUT_SYS_ADMIN: [&str; 3] = ["--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"];

/// `build` run by root without CAP_SYS_ADMIN, through `setpriv`.
fn without_sys_admin(build: Build) -> Build {
    build.launched_by(&require("setpriv", "util-linux"), &WITHOUT_SYS_ADMIN)
}

#[test]
fn a_non_root_user_builds_in_rootless_mode() {
    require_root("switching to an unprivileged user for the build");
    let setpriv = require("setpriv", "util-linux");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    scratch.write("ctx/greeting", "hello from the context\n");
    let layout = scratch.join("out");
    let destination = registry.reference("e2e/rootless:latest");
    let build = scratch
        .build(&format!(
            "FROM {base}\n\
             COPY greeting /greeting\n\
             RUN id -u > /uid && hostname > /host && echo \"pid=$$\" > /pid\n\
             RUN --mount=type=cache,target=/cache touch /cache/x && ls /cache > /cache-listing\n\
             RUN --mount=type=bind,source=greeting,target=/mnt/g cp /mnt/g /bound\n"
        ))
        .launched_by(
            &setpriv,
            &[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--",
            ],
        )
        .destination(&destination)
        .arg("--oci-layout-path")
        .arg(&layout)
        .env("HOME", scratch.path());
    chown_tree(scratch.path(), 65534, 65534);
    let out = build.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rootless build failed:\n{stderr}");
    assert!(
        stderr.contains("RUN isolation: rootless (default when not root)"),
        "the chosen mode is logged:\n{stderr}"
    );
    let image = umoci_unpack(&destination);
    assert_eq!(
        image.read("uid"),
        "0\n",
        "RUN runs as root of the namespace"
    );
    assert_eq!(image.read("host"), "buildkitsandbox\n");
    assert_eq!(image.read("pid"), "pid=1\n");
    assert_eq!(image.read("greeting"), "hello from the context\n");
    assert_eq!(image.read("cache-listing"), "x\n");
    assert_eq!(image.read("bound"), "hello from the context\n");
    // owned by root in the image, not by the building user
    let meta = fs::metadata(image.path("uid")).unwrap();
    assert_eq!(meta.uid(), 0);
    image.assert_absent(&["proc", "cache", "mnt"]);
}

/// The user `scripts/test.sh setup` creates for the subordinate-id test, with its uid and gid; panics
/// with the commands that create it when it or its /etc/subuid and /etc/subgid ranges are
/// missing.
pub(super) fn subid_user() -> (&'static str, u32, u32) {
    const USER: &str = "kiln-test";
    let how =
        "run scripts/test.sh setup, or: useradd --create-home kiln-test && usermod --add-subuids \
               100000-165535 --add-subgids 100000-165535 kiln-test";
    let passwd = fs::read_to_string("/etc/passwd").unwrap();
    let Some((uid, gid)): Option<(u32, u32)> = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == USER).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
    }) else {
        panic!("missing user {USER}: {how}");
    };
    for file in ["/etc/subuid", "/etc/subgid"] {
        let ranges = fs::read_to_string(file).unwrap_or_default();
        let count = ranges.lines().find_map(|l| {
            let f: Vec<&str> = l.trim().split(':').collect();
            (f.len() == 3 && (f[0] == USER || f[0] == uid.to_string()))
                .then(|| f[2].parse::<u32>().unwrap_or(0))
        });
        assert!(
            count.is_some_and(|c| c >= 65536),
            "{file} gives {USER} no range of 65536 ids: {how}"
        );
    }
    (USER, uid, gid)
}

#[test]
fn rootless_maps_subordinate_ids_so_run_can_chown_to_any_owner() {
    require_root("switching to the unprivileged user kiln-test for the build");
    let setpriv = require("setpriv", "util-linux");
    require("newuidmap", "uidmap");
    require("newgidmap", "uidmap");
    let (user, uid, gid) = subid_user();
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    fs::set_permissions(scratch.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let layout = scratch.join("out");
    let build = scratch
        .build(&format!(
            "FROM {base}\n\
             RUN touch /f && chown 1000:1000 /f && mkdir /d && chown 1234:4321 /d \
                 && touch /top && chown 65535:65535 /top && id -u > /uid \
                 && mkdir -p /home/app && chown 2000:2000 /home/app\n\
             USER 2000:2000\n\
             RUN touch /home/app/mine && id -u > /home/app/uid\n"
        ))
        .launched_by(
            &setpriv,
            &[
                format!("--reuid={user}"),
                format!("--regid={user}"),
                "--init-groups".to_string(),
                "--inh-caps=-all".to_string(),
                "--".to_string(),
            ],
        )
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(&layout)
        .env("HOME", scratch.path());
    chown_tree(scratch.path(), uid, gid);
    let out = build.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "rootless build as {user} failed:\n{stderr}"
    );
    assert!(
        stderr.contains("RUN isolation: rootless (default when not root)")
            && stderr.contains("with 65536 subordinate ids"),
        "the subordinate range is used and logged:\n{stderr}"
    );
    let image = umoci_unpack(&format!("oci:{}:latest", layout.display()));
    let owner = |path: &str| {
        let meta = fs::symlink_metadata(image.path(path)).unwrap();
        (meta.uid(), meta.gid())
    };
    assert_eq!(
        image.read("uid"),
        "0\n",
        "RUN runs as root of the namespace"
    );
    assert_eq!(owner("f"), (1000, 1000));
    assert_eq!(owner("d"), (1234, 4321));
    assert_eq!(
        owner("top"),
        (65535, 65535),
        "the top of the range is mapped"
    );
    assert_eq!(owner("uid"), (0, 0), "not owned by the building user");
    assert_eq!(
        image.read("home/app/uid"),
        "2000\n",
        "USER 2000 runs as 2000"
    );
    assert_eq!(owner("home/app/mine"), (2000, 2000));
}

#[test]
fn root_without_cap_sys_admin_builds_in_a_plain_chroot() {
    require_root("chroot isolation");
    require("setpriv", "util-linux");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/src/a", "bound\n");
    let build = without_sys_admin(scratch.build(&format!(
        "FROM {base}\n\
         RUN echo plain > /plain && cat /etc/resolv.conf > /dev/null && echo ok > /resolv\n\
         RUN --mount=type=cache,target=/cache echo $(( $(cat /cache/n 2>/dev/null || echo 0) + 1 )) > /cache/n \
             && cp /cache/n /n\n\
         RUN --mount=type=bind,source=src,target=/src cp /src/a /a\n\
         RUN --mount=type=tmpfs,target=/t touch /t/x\n"
    )));
    let build = |tag: &str| {
        let destination = registry.reference(&format!("e2e/no-sys-admin:{tag}"));
        let out = build.clone().destination(&destination).run();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "build without CAP_SYS_ADMIN failed:\n{stderr}"
        );
        (destination, stderr)
    };
    let (first, stderr) = build("1");
    assert!(
        stderr.contains("no CAP_SYS_ADMIN") && stderr.contains("/proc"),
        "a warning names what is missing:\n{stderr}"
    );
    let (second, _) = build("2");
    let image = umoci_unpack(&first);
    assert_eq!(image.read("plain"), "plain\n");
    assert_eq!(image.read("resolv"), "ok\n", "resolv.conf is provided");
    assert_eq!(image.read("a"), "bound\n");
    assert_eq!(image.read("n"), "1\n");
    image.assert_absent(&["etc/resolv.conf", "etc/hosts", "cache", "src", "t"]);
    assert_eq!(
        umoci_unpack(&second).read("n"),
        "2\n",
        "the cache persisted"
    );
}

#[test]
fn without_cap_sys_admin_a_detached_daemon_neither_blocks_the_build_nor_survives_it() {
    require_root("chroot isolation");
    require("setpriv", "util-linux");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    // no PID namespace here: one daemon leaves the process group with setsid, one is
    // orphaned by a subshell, and both would outlive a process-group kill
    let destination = registry.reference("e2e/no-sys-admin-daemon:latest");
    let build = without_sys_admin(scratch.build(&format!(
        "FROM {base}\n\
         RUN setsid sleep 1000617 >/dev/null 2>&1 < /dev/null &\n\
         RUN (sleep 1000618 >/dev/null 2>&1 < /dev/null &) ; echo started\n\
         RUN echo next > /next\n"
    )))
    .destination(&destination)
    .arg("--verbosity")
    .arg("debug");
    let started = std::time::Instant::now();
    let out = build.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "build without CAP_SYS_ADMIN failed:\n{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the build waited for the daemon"
    );
    assert!(stderr.contains("no CAP_SYS_ADMIN"), "{stderr}");
    for marker in ["sleep 1000617", "sleep 1000618"] {
        let left = kiln_tests::processes_with(marker);
        assert!(left.is_empty(), "the RUN's daemon survived: {left:?}");
    }
    // how many processes each RUN left depends on how far the shell's fork and exec had got
    // when the RUN ended (under load a daemon's RUN may still hold an intermediate process):
    // each of the two daemon RUNs kills at least one, the last RUN none
    let killed: Vec<u32> = stderr
        .lines()
        .filter_map(|l| {
            let (before, _) = l.split_once(" process(es) the command left running")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .collect();
    assert!(
        killed.len() == 2 && killed.iter().all(|&n| n >= 1),
        "each daemon is killed after its RUN (killed per RUN: {killed:?}):\n{stderr}"
    );
    assert_eq!(umoci_unpack(&destination).read("next"), "next\n");
}

#[test]
fn without_cap_sys_admin_sigterm_to_kiln_kills_a_detached_daemon_too() {
    require_root("chroot isolation");
    require("setpriv", "util-linux");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let mut child = without_sys_admin(scratch.build(&format!(
        "FROM {base}\n\
         RUN setsid sleep 1000627 >/dev/null 2>&1 < /dev/null & sleep 1000628\n"
    )))
    .arg("--no-push")
    .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while kiln_tests::processes_with("sleep 1000627").is_empty()
        || kiln_tests::processes_with("sleep 1000628").is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "kiln ended early");
        std::thread::sleep(Duration::from_millis(100));
    }
    // setpriv execs kiln: the child's pid is kiln's
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("kiln did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "kiln must fail when stopped");
    for marker in ["sleep 1000627", "sleep 1000628"] {
        let left = kiln_tests::processes_with(marker);
        assert!(left.is_empty(), "the RUN survived kiln: {left:?}");
    }
}

#[test]
fn in_place_is_refused_outside_a_container_without_force() {
    require_root("a throwaway root without container markers");
    let unshare = require("unshare", "util-linux");
    let kiln = kiln_bin();
    let scratch = Scratch::new();
    let root = scratch.join("root");
    for dir in ["usr", "proc", "tmp", "work", "etc"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    fs::copy(&kiln, root.join("kiln")).unwrap();
    fs::write(
        root.join("work/Dockerfile"),
        "FROM scratch\nCOPY Dockerfile /\n",
    )
    .unwrap();
    // a private mount namespace: the host's /usr read-only, a fresh /proc, then chroot;
    // no /.dockerenv, no container variables
    let script = format!(
        "set -e; mount --bind -o ro /usr {root}/usr; mount -t proc proc {root}/proc; \
         cd /; exec env -i PATH=/usr/bin:/bin /usr/sbin/chroot {root} /kiln build --context /work \
         --kiln-dir /tmp/k --no-push --isolation=in-place",
        root = root.display()
    );
    let out = run_with_timeout(
        Command::new(&unshare)
            .args(["--mount", "--propagation", "private", "--fork", "sh", "-c"])
            .arg(&script),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "in-place ran outside a container:\n{stderr}"
    );
    assert!(
        stderr.contains("no container was detected") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(
        !root.join("Dockerfile").exists(),
        "nothing may be written to / when refused"
    );
}

#[test]
fn root_without_cap_sys_admin_passes_the_conformance_cases() {
    require_root("chroot isolation and the conformance registry");
    let cases = workspace_root().join("tests/conformance/kiln.cases");
    let run = run_differential(&cases, &Registry::shared(), &without_sys_admin);
    assert_eq!(
        run.failed, 0,
        "conformance failures without CAP_SYS_ADMIN:\n{}",
        run.report
    );
    assert!(
        run.passed >= 7,
        "only {} cases passed:\n{}",
        run.passed,
        run.report
    );
    // and the shared harness's public cases, where it is (see e2e::conformance)
    let Some(dir) = shared_conformance_dir() else {
        return;
    };
    let setpriv = require("setpriv", "util-linux");
    let launcher = format!(
        "{} {} {}",
        setpriv.display(),
        WITHOUT_SYS_ADMIN.join(" "),
        kiln_bin().display()
    );
    let run = run_conformance(&dir, &dir.join("public.cases"), &launcher);
    assert_eq!(
        run.failed, 0,
        "public conformance failures without CAP_SYS_ADMIN:\n{}",
        run.report
    );
    assert!(
        run.passed >= 9,
        "only {} cases passed:\n{}",
        run.passed,
        run.report
    );
}

#[test]
fn in_place_builds_over_a_throwaway_root_and_leaves_ignored_paths_alone() {
    require_root("a throwaway root, mounts and chroot");
    let unshare = require("unshare", "util-linux");
    let kiln = kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let root = scratch.join("root");
    for dir in [
        "lib/x86_64-linux-gnu",
        "lib64",
        "proc",
        "work",
        "keep",
        "var/run",
        "etc/ssl",
        "dev",
    ] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::copy(&kiln, root.join("kiln")).unwrap();
    fs::write(root.join(".dockerenv"), "").unwrap();
    fs::write(root.join("keep/host-file"), "host\n").unwrap();
    fs::write(root.join("var/run/host.pid"), "host\n").unwrap();
    fs::write(
        root.join("work/Dockerfile"),
        format!(
            "FROM {base}\n\
             RUN echo built > /built && echo run > /keep/from-run && echo run > /var/run/from-run \
                 && test ! -e /kiln-dir/blobs && ls /proc | grep -c '^[0-9]' > /procs\n"
        ),
    )
    .unwrap();
    let build_in = |context: &str, out: &str, extra: &str| {
        let script = format!(
            "set -e; mount --bind {root} {root}; \
             mount --bind -o ro /usr/lib/x86_64-linux-gnu {root}/lib/x86_64-linux-gnu; \
             mount --bind -o ro /usr/lib64 {root}/lib64; mount -t proc proc {root}/proc; \
             mount --bind -o ro /etc/ssl {root}/etc/ssl; mount --rbind /dev {root}/dev; cd /; exec env -i PATH=/bin /usr/sbin/chroot {root} /kiln build --context {context} \
             --kiln-dir /kiln-dir --no-push --oci-layout-path {out} --isolation=in-place \
             --ignore-path=/keep {extra}",
            root = root.display()
        );
        let out = run_with_timeout(
            Command::new(&unshare)
                .args(["--mount", "--propagation", "private", "--fork", "sh", "-c"])
                .arg(&script),
            Duration::from_secs(600),
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "in-place build failed:\n{stderr}");
        stderr
    };
    let build = |extra: &str| build_in("/work", "/out", extra);
    let stderr = build("");
    assert!(
        stderr.contains("RUN isolation: in-place (as requested)"),
        "{stderr}"
    );
    // the image has what the build made, not the ignored paths nor the container's own files
    let image = umoci_unpack(&format!("oci:{}:latest", root.join("out").display()));
    assert_eq!(image.read("built"), "built\n");
    let procs: u32 = image.read("procs").trim().parse().unwrap();
    assert!(
        procs <= 3,
        "RUN has its own PID namespace, yet sees {procs} processes"
    );
    assert!(
        image.path("bin/busybox").is_file(),
        "the base image is in the image"
    );
    image.assert_absent(&[
        "keep",
        "var/run",
        "kiln",
        "kiln-dir",
        "lib64",
        "proc",
        ".dockerenv",
        "work",
    ]);
    // the ignored paths in the root are as they were, apart from what RUN itself wrote
    assert_eq!(
        fs::read_to_string(root.join("keep/host-file")).unwrap(),
        "host\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("var/run/host.pid")).unwrap(),
        "host\n"
    );
    // the build ran over the root itself
    assert_eq!(fs::read_to_string(root.join("built")).unwrap(), "built\n");
    assert!(root.join("bin/busybox").is_file());

    // --cleanup removes what the build added
    fs::remove_file(root.join("built")).unwrap();
    fs::remove_dir_all(root.join("bin")).unwrap();
    fs::remove_dir_all(root.join("out")).unwrap();
    build("--cleanup");
    assert!(!root.join("built").exists(), "--cleanup left /built");
    assert!(
        !root.join("bin").exists(),
        "--cleanup left the base image's /bin"
    );
    assert_eq!(
        fs::read_to_string(root.join("keep/host-file")).unwrap(),
        "host\n"
    );

    // several stages: each in turn becomes /, and what later ones read of earlier ones
    // (COPY --from, RUN --mount from=, FROM <stage>) is kept beside
    fs::create_dir_all(root.join("work2")).unwrap();
    fs::write(
        root.join("work2/Dockerfile"),
        format!(
            "FROM {base} AS builder\n\
             RUN mkdir -p /artifact && echo made-in-builder > /artifact/file \
                 && echo builder-only > /builder-only\n\
             FROM builder AS derived\n\
             RUN cat /artifact/file /builder-only > /derived && test ! -e /built\n\
             FROM {base}\n\
             COPY --from=builder /artifact/file /copied\n\
             COPY --from=derived /derived /derived\n\
             RUN --mount=from=builder,source=/artifact,target=/mnt cat /mnt/file > /mounted \
                 && cat /copied > /from-run && test ! -e /builder-only && test ! -e /derived-only \
                 && echo run > /var/run/final-run && echo final > /final\n"
        ),
    )
    .unwrap();
    let listing = |dir: &str| {
        let mut names: Vec<String> = fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let (keep_before, var_run_before) = (listing("keep"), listing("var/run"));
    let stderr = build_in("/work2", "/out2", "");
    assert_eq!(
        stderr
            .matches("in place: / emptied for the next stage")
            .count(),
        2,
        "each stage after the first takes / over:\n{stderr}"
    );
    let image = umoci_unpack(&format!("oci:{}:latest", root.join("out2").display()));
    for (path, want) in [
        ("copied", "made-in-builder\n"),
        ("derived", "made-in-builder\nbuilder-only\n"),
        ("mounted", "made-in-builder\n"),
        ("from-run", "made-in-builder\n"),
        ("final", "final\n"),
    ] {
        assert_eq!(image.read(path), want, "/{path}");
    }
    image.assert_absent(&[
        "builder-only",
        "artifact",
        "mnt",
        "keep",
        "var/run",
        "kiln-dir",
    ]);
    // / holds the final stage; the never-touched paths kept their contents throughout
    assert_eq!(fs::read_to_string(root.join("final")).unwrap(), "final\n");
    assert!(
        !root.join("builder-only").exists(),
        "an earlier stage's file is left in /"
    );
    assert_eq!(listing("keep"), keep_before, "/keep changed");
    assert_eq!(
        fs::read_to_string(root.join("keep/host-file")).unwrap(),
        "host\n"
    );
    let mut var_run_after = listing("var/run");
    var_run_after.retain(|n| n != "final-run");
    assert_eq!(var_run_after, var_run_before, "/var/run changed");
    assert_eq!(
        fs::read_to_string(root.join("var/run/host.pid")).unwrap(),
        "host\n"
    );
    assert!(root.join("kiln").is_file(), "kiln's own binary was removed");
    assert!(
        root.join("work2/Dockerfile").is_file(),
        "the context was removed"
    );
    // (the build's read-only mounts are gone with its namespace; their points stay)
    for point in ["lib/x86_64-linux-gnu", "lib64", "etc/ssl", "proc", "dev"] {
        assert!(
            root.join(point).is_dir(),
            "mount point /{point} was removed"
        );
    }
}
