//! `RUN --mount` of every type and `RUN --network=none`, checked in the image with umoci:
//! a cache persists across builds and never enters a layer; a bind from the context or a
//! stage is visible and its writes are discarded; a tmpfs is empty and leaves nothing; the
//! mountpoints kiln had to create are gone from the image.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;

use kiln_tests::{busybox_image, kiln_bin, require_root, umoci_unpack, Registry, Scratch};

#[test]
fn cache_mount_persists_across_builds_and_stays_out_of_the_image() {
    require_root("mounts in chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let dockerfile = format!(
        "FROM {base}\n\
         RUN --mount=type=cache,target=/var/cache/app,id=app-cache,mode=0700,uid=65534 \
             n=$(cat /var/cache/app/count 2>/dev/null || echo 0); n=$((n+1)); \
             echo $n > /var/cache/app/count; echo $n > /count; \
             stat -c '%a %u' /var/cache/app > /cache-meta\n"
    );
    let first = registry.reference("e2e/mount-cache:1");
    scratch.build(&dockerfile).destination(&first).run_ok();
    let second = registry.reference("e2e/mount-cache:2");
    scratch.build(&dockerfile).destination(&second).run_ok();

    let image = umoci_unpack(&first);
    assert_eq!(image.read("count"), "1\n");
    assert_eq!(image.read("cache-meta"), "700 65534\n");
    assert!(
        fs::symlink_metadata(image.path("var")).is_err(),
        "the cache mountpoint leaked into the image"
    );
    let image = umoci_unpack(&second);
    assert_eq!(image.read("count"), "2\n", "the cache did not persist");
    assert!(fs::symlink_metadata(image.path("var/cache/app/count")).is_err());
    // it lives in the kiln dir
    let mounts = scratch.kiln_dir().join("cache/mounts");
    let dirs: Vec<_> = fs::read_dir(&mounts).unwrap().flatten().collect();
    assert!(
        dirs.iter().any(|d| d.path().join("count").is_file()),
        "no cache dir under {}",
        mounts.display()
    );
}

#[test]
fn bind_mounts_from_context_and_stage_discard_writes() {
    require_root("mounts in chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/src/a.txt", "from the context\n");
    let image = scratch
        .build(&format!(
            "FROM {base} AS build\n\
             RUN mkdir /out && echo built > /out/artifact\n\
             FROM {base}\n\
             RUN --mount=type=bind,source=src,target=/src cat /src/a.txt > /ctx-copy\n\
             RUN --mount=type=bind,from=build,source=/out,target=/mnt/out \
                 cp /mnt/out/artifact /artifact; \
                 if touch /mnt/out/x 2>/dev/null; then echo writable; else echo ro; fi > /ro\n\
             RUN --mount=type=bind,source=src,target=/src,rw \
                 echo changed > /src/a.txt && echo scribbled > /src/new && cat /src/a.txt > /rw\n\
             RUN --mount=type=bind,source=src/a.txt,target=/etc/a.txt cp /etc/a.txt /file-bind\n"
        ))
        .push_and_unpack(&registry.reference("e2e/mount-bind:latest"));
    assert_eq!(image.read("ctx-copy"), "from the context\n");
    assert_eq!(image.read("artifact"), "built\n");
    assert_eq!(image.read("ro"), "ro\n", "a bind is read-only by default");
    assert_eq!(image.read("rw"), "changed\n");
    assert_eq!(image.read("file-bind"), "from the context\n");
    image.assert_absent(&["src", "mnt", "etc/a.txt"]);
    // writes through an rw bind never reach the context
    assert_eq!(
        fs::read_to_string(scratch.join("ctx/src/a.txt")).unwrap(),
        "from the context\n"
    );
    assert!(!scratch.join("ctx/src/new").exists());
}

#[test]
fn tmpfs_mount_and_network_none() {
    require_root("mounts in chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let image = scratch
        .build(&format!(
            "FROM {base}\n\
             RUN mkdir -p /work && echo image > /work/kept\n\
             RUN --mount=type=tmpfs,target=/work,size=1m \
                 ls -A /work > /tmpfs-listing; echo scratch > /work/temp; \
                 grep ' /work ' /proc/mounts | cut -d' ' -f3 > /tmpfs-type\n\
             RUN --network=none tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' > /net-none\n\
             RUN --network=host true\n"
        ))
        .push_and_unpack(&registry.reference("e2e/mount-tmpfs:latest"));
    assert_eq!(image.read("tmpfs-listing"), "", "a tmpfs starts empty");
    assert_eq!(image.read("tmpfs-type"), "tmpfs\n");
    assert_eq!(
        image.read("work/kept"),
        "image\n",
        "the tmpfs hid, not replaced"
    );
    assert!(fs::symlink_metadata(image.path("work/temp")).is_err());
    assert_eq!(
        image.read("net-none"),
        "lo\n",
        "--network=none: loopback only"
    );
}

#[test]
fn cache_mounts_are_keyed_by_the_cleaned_target() {
    require_root("mounts in chroot isolation");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    // BuildKit's default id is the target after path.Clean: all three spellings share one
    // cache, a fourth path is another.
    let image = scratch
        .build(&format!(
            "FROM {base}\n\
             RUN --mount=type=cache,target=/a/b/ echo one > /a/b/mark\n\
             RUN --mount=type=cache,target=/a/b cat /a/b/mark > /seen-plain\n\
             RUN --mount=type=cache,target=/a/./b// cat /a/b/mark > /seen-dotted\n\
             RUN --mount=type=cache,target=/a/c ls -A /a/c > /other\n"
        ))
        .push_and_unpack(&registry.reference("e2e/mount-cache-clean:1"));
    assert_eq!(
        image.read("seen-plain"),
        "one\n",
        "/a/b/ and /a/b are one cache"
    );
    assert_eq!(image.read("seen-dotted"), "one\n", "/a/./b// is /a/b");
    assert_eq!(image.read("other"), "", "another target is another cache");
}

#[test]
fn bad_mount_values_name_the_line() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    for (line, want) in [
        ("RUN --mount=type=cache true", "a target is required"),
        (
            "RUN --mount=type=bogus,target=/x true",
            "unknown type \"bogus\"",
        ),
        (
            "RUN --network=bridge true",
            "expected default, none or host",
        ),
        (
            "RUN --mount=type=secret,id=nope,required true",
            "no such secret",
        ),
    ] {
        let out = scratch
            .build(&format!("FROM {base}\nRUN true\n{line}\n"))
            .arg("--no-push")
            .run();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line}");
        assert!(
            stderr.contains("Dockerfile:3") && stderr.contains(want),
            "{line}: want `Dockerfile:3` and {want:?} in:\n{stderr}"
        );
    }
}
