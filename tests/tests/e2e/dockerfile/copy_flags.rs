//! COPY/ADD `--exclude`, `--parents` and symbolic `--chmod`, checked on pushed images
//! unpacked with umoci: each test lists the exact entries (kind, mode, owner, path) under
//! the directories it copied to.

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use kiln_tests::{busybox_image, kiln_bin, require_root, Registry, Scratch};

/// Writes a context file with an exact mode.
fn file(scratch: &Scratch, rel: &str, mode: u32) {
    let path = scratch.write(&format!("ctx/{rel}"), rel);
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Sets the mode of a context directory.
fn dir_mode(scratch: &Scratch, rel: &str, mode: u32) {
    let path = scratch.join(&format!("ctx/{rel}"));
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn want(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

#[test]
fn exclude_leaves_out_matching_paths() {
    kiln_bin();
    require_root("owners in the unpacked image are compared");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    for rel in [
        "proj/README.md",
        "proj/docs/a.md",
        "proj/docs/img/x.png",
        "proj/src/main.rs",
        "proj/src/gen/out.rs",
        "proj/build/obj.o",
    ] {
        file(&scratch, rel, 0o644);
    }
    for rel in [
        "proj",
        "proj/docs",
        "proj/docs/img",
        "proj/src",
        "proj/src/gen",
        "proj/build",
    ] {
        dir_mode(&scratch, rel, 0o755);
    }
    let dockerfile = format!(
        "FROM {base} AS builder
RUN mkdir -p /out/keep /out/skip && echo k > /out/keep/k.txt && echo s > /out/skip/s.txt \\
 && echo t > /out/log.tmp && chown -R 7:8 /out && chmod 0750 /out/keep && chmod 0640 /out/keep/k.txt

FROM {base}
COPY --exclude=**/*.md --exclude=build proj /ex/all/
COPY --exclude=docs/** --exclude=*/gen proj/ /ex/dirs
ADD --exclude=*/*.png --exclude=*.md proj/docs /ex/add/
COPY --from=builder --exclude=skip --exclude=*.tmp /out /ex/from/
"
    );
    let image = scratch
        .build(&dockerfile)
        .push_and_unpack(&registry.reference("e2e/copy-exclude:v1"));

    assert_eq!(
        image.entries("/ex/all"),
        want(&[
            "d 0755 0:0 docs",
            "d 0755 0:0 docs/img",
            "f 0644 0:0 docs/img/x.png",
            "d 0755 0:0 src",
            "d 0755 0:0 src/gen",
            "f 0644 0:0 src/gen/out.rs",
            "f 0644 0:0 src/main.rs",
        ])
    );
    // `docs/**` empties docs but keeps it; `*/gen` takes src/gen with everything in it
    assert_eq!(
        image.entries("/ex/dirs"),
        want(&[
            "f 0644 0:0 README.md",
            "d 0755 0:0 build",
            "f 0644 0:0 build/obj.o",
            "d 0755 0:0 docs",
            "d 0755 0:0 src",
            "f 0644 0:0 src/main.rs",
        ])
    );
    // patterns are relative to the source being copied (here proj/docs)
    assert_eq!(image.entries("/ex/add"), want(&["d 0755 0:0 img"]));
    // --from keeps the source owners of what it copies
    assert_eq!(
        image.entries("/ex/from"),
        want(&["d 0750 7:8 keep", "f 0640 7:8 keep/k.txt"])
    );
}

#[test]
fn parents_keep_the_source_path() {
    kiln_bin();
    require_root("owners in the unpacked image are compared");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    for rel in [
        "a/b/c.txt",
        "x/y.txt",
        "src/app1/main.go",
        "src/app2/main.go",
        "src/app2/util.go",
        "src/lib/readme.txt",
    ] {
        file(&scratch, rel, 0o644);
    }
    // source directories with unusual modes: the kept parents take them, as in BuildKit
    for (rel, mode) in [
        ("a", 0o700),
        ("a/b", 0o750),
        ("x", 0o711),
        ("src", 0o755),
        ("src/app1", 0o755),
        ("src/app2", 0o755),
        ("src/lib", 0o755),
    ] {
        dir_mode(&scratch, rel, mode);
    }
    let dockerfile = format!(
        "FROM {base}
COPY --parents a/b/c.txt x/y.txt /par/plain/
COPY --parents ./a/./b/c.txt /par/pivot/
COPY --parents src/*/main.go /par/glob
COPY --parents=true --chown=1234:5678 x/y.txt /par/owned/
COPY --parents=false a/b/c.txt /par/flat/
"
    );
    let image = scratch
        .build(&dockerfile)
        .push_and_unpack(&registry.reference("e2e/copy-parents:v1"));

    assert_eq!(
        image.entries("/par/plain"),
        want(&[
            "d 0700 0:0 a",
            "d 0750 0:0 a/b",
            "f 0644 0:0 a/b/c.txt",
            "d 0711 0:0 x",
            "f 0644 0:0 x/y.txt",
        ])
    );
    assert_eq!(
        image.entries("/par/pivot"),
        want(&["d 0750 0:0 b", "f 0644 0:0 b/c.txt"])
    );
    assert_eq!(
        image.entries("/par/glob"),
        want(&[
            "d 0755 0:0 src",
            "d 0755 0:0 src/app1",
            "f 0644 0:0 src/app1/main.go",
            "d 0755 0:0 src/app2",
            "f 0644 0:0 src/app2/main.go",
        ])
    );
    assert_eq!(image.mode_owner("/par/owned"), "0755 1234:5678");
    assert_eq!(
        image.entries("/par/owned"),
        want(&["d 0711 1234:5678 x", "f 0644 1234:5678 x/y.txt"])
    );
    assert_eq!(image.entries("/par/flat"), want(&["f 0644 0:0 c.txt"]));
}

#[test]
fn symbolic_chmod_applies_to_each_mode() {
    kiln_bin();
    require_root("owners in the unpacked image are compared");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    for (rel, mode) in [
        ("m/tool", 0o644),
        ("m/script.sh", 0o755),
        ("m/secret", 0o600),
        ("m/sub/data", 0o640),
    ] {
        file(&scratch, rel, mode);
    }
    dir_mode(&scratch, "m", 0o755);
    dir_mode(&scratch, "m/sub", 0o750);
    let dockerfile = format!(
        "FROM {base}
COPY --chmod=u+x,go-w m /c/ux/
COPY --chmod=a=rX m /c/rx/
COPY --chmod=g=u m /c/gu/
COPY --chmod=+x m/tool /c/plusx
COPY --chmod=0640 m/script.sh /c/octal
"
    );
    let image = scratch
        .build(&dockerfile)
        .push_and_unpack(&registry.reference("e2e/copy-chmod:v1"));

    for (dir, dest_mode, lines) in [
        (
            "/c/ux",
            "0755 0:0",
            [
                "f 0755 0:0 script.sh",
                "f 0700 0:0 secret",
                "d 0750 0:0 sub",
                "f 0740 0:0 sub/data",
                "f 0744 0:0 tool",
            ],
        ),
        (
            "/c/rx",
            "0555 0:0",
            [
                "f 0555 0:0 script.sh",
                "f 0444 0:0 secret",
                "d 0555 0:0 sub",
                "f 0444 0:0 sub/data",
                "f 0444 0:0 tool",
            ],
        ),
        (
            "/c/gu",
            "0775 0:0",
            [
                "f 0775 0:0 script.sh",
                "f 0660 0:0 secret",
                "d 0770 0:0 sub",
                "f 0660 0:0 sub/data",
                "f 0664 0:0 tool",
            ],
        ),
    ] {
        assert_eq!(image.entries(dir), want(&lines), "{dir}");
        assert_eq!(image.mode_owner(dir), dest_mode, "{dir}");
    }
    assert_eq!(image.mode_owner("/c/plusx"), "0755 0:0");
    assert_eq!(image.mode_owner("/c/octal"), "0640 0:0");
}

#[test]
fn directory_copies_keep_fifos_devices_and_hardlinks() {
    use std::os::unix::fs::FileTypeExt;
    kiln_bin();
    require_root("device nodes are created and compared");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/x", "x");
    let dockerfile = format!(
        "FROM {base} AS src
RUN mkdir -p /t/sub && mkfifo -m 0640 /t/pipe && echo data > /t/a && ln /t/a /t/sub/b \\
 && mknod -m 0600 /t/null c 1 3
FROM {base}
COPY --from=src /t /copied/
"
    );
    let image = scratch
        .build(&dockerfile)
        .push_and_unpack(&registry.reference("e2e/copy-special:v1"));
    let root = image.rootfs.join("copied");
    let pipe = fs::symlink_metadata(root.join("pipe")).expect("pipe");
    assert!(pipe.file_type().is_fifo(), "{pipe:?}");
    assert_eq!(pipe.permissions().mode() & 0o7777, 0o640);
    let null = fs::symlink_metadata(root.join("null")).expect("null");
    assert!(null.file_type().is_char_device(), "{null:?}");
    assert_eq!(null.rdev(), rustix_dev(1, 3));
    assert_eq!(null.permissions().mode() & 0o7777, 0o600);
    let a = fs::metadata(root.join("a")).expect("a");
    let b = fs::metadata(root.join("sub/b")).expect("sub/b");
    assert_eq!(a.ino(), b.ino(), "a and sub/b stay one hardlinked file");
    assert_eq!(fs::read(root.join("sub/b")).expect("read b"), b"data\n");
}

/// Linux's `makedev` for small numbers.
fn rustix_dev(major: u64, minor: u64) -> u64 {
    (major << 8) | minor
}
