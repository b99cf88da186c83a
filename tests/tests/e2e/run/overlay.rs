//! RUN on an overlay (the default as root): the snapshot after each RUN comes from the
//! overlay's upper directory instead of a walk of the stage root. The same Dockerfile of
//! deletes, replaced directories, type changes, links, special files and metadata-only
//! changes is built both ways with `--reproducible`. Python's tarfile lists every entry of
//! every new layer (name, type, mode, owner, link, size, content hash); the lists must be
//! the same, and so must the images' digests; umoci's unpacking of the result must show
//! every change.
//!
//! kiln makes the `resolv.conf` and `hosts` mountpoints in `/etc` for each RUN and restores
//! the directory's mtime afterwards, but its ctime still moves: the walk is told which
//! directories those were, so `/etc` stays out of its layers as it stays out of the overlay's.
//!
//! A hardlinked file changed through one name in a later RUN (the overlay copies it up as a
//! new inode) keeps every name, in the image and in the layer.

// Test fixtures outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use kiln_tests::{busybox_image, kiln_bin, require, require_root, umoci_unpack, Registry, Scratch};

/// One line per entry of each layer after the base: `layer name type mode uid gid link size
/// sha256 pax-records` (xattrs among them), from Python's tarfile.
const LIST: &str = r#"
import hashlib, json, sys, tarfile
top = sys.argv[1]
blob = lambda d: f"{top}/blobs/sha256/{d.split(':')[1]}"
index = json.load(open(f"{top}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
for n, layer in enumerate(manifest["layers"][1:]):
    with tarfile.open(blob(layer["digest"])) as tar:
        for t in tar:
            data = tar.extractfile(t).read() if t.isreg() else b""
            print(n, t.name, t.type.decode(), oct(t.mode), t.uid, t.gid, t.linkname, t.size,
                  hashlib.sha256(data).hexdigest()[:16], sorted(t.pax_headers.items()))
"#;

fn layer_entries(layout: &std::path::Path) -> Vec<String> {
    let python = require("python3", "python3");
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(LIST)
        .arg(layout)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "listing {}: {}",
        layout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

const SETUP: &str = "mkdir -p /t/keep/sub /t/gone/deep /t/redo/inner /t/dir2file /t/meta \
    && echo 1 > /t/keep/sub/f && echo 2 > /t/gone/deep/f && echo 3 > /t/redo/inner/old \
    && echo 4 > /t/dir2file/x && echo 5 > /t/file2dir && echo 6 > /t/meta/m \
    && echo h > /t/hard1 && ln -s first /t/link && echo s > /t/suid && chmod 4755 /t/suid \
    && echo gone > /t/plain-gone && echo mv > /t/keep/to-move";

const CHANGE: &str = "rm -rf /t/gone /t/plain-gone \
    && rm -rf /t/redo && mkdir /t/redo && echo new > /t/redo/new \
    && rm -rf /t/dir2file && echo now-a-file > /t/dir2file \
    && rm /t/file2dir && mkdir /t/file2dir && echo in > /t/file2dir/in \
    && ln -sf second /t/link && ln /t/hard1 /t/hard2 \
    && echo more >> /t/keep/sub/f && chmod 700 /t/keep && chown 1:2 /t/keep/sub \
    && chmod 600 /t/meta/m && mv /t/keep/to-move /t/moved \
    && mkdir -p /t/new/a/b && echo x > /t/new/a/b/x && mkfifo /t/new/fifo \
    && mknod /t/new/null c 1 3 && echo more >> /t/suid && chmod 4755 /t/suid";

/// The layers' entries and the image's digest.
fn build(
    registry: &Registry,
    scratch: &Scratch,
    tag: &str,
    overlay: bool,
) -> (Vec<String>, String) {
    let base = busybox_image(registry);
    let ctx = format!("ctx-{tag}");
    scratch.write(
        &format!("{ctx}/Dockerfile"),
        &format!("FROM {base}\nRUN {SETUP}\nRUN {CHANGE}\nRUN rm -rf /t/new/a\n"),
    );
    let destination = registry.reference(&format!("e2e/run-overlay:{tag}"));
    let layout = scratch.join(&format!("layout-{tag}"));
    let out = kiln_tests::Build::new(
        &scratch.join(&format!("{ctx}/Dockerfile")),
        &scratch.join(&ctx),
        &scratch.kiln_dir(),
    )
    .destination(&destination)
    .arg("--reproducible")
    .arg(format!("--run-overlay={overlay}"))
    .arg("--oci-layout-path")
    .arg(&layout)
    .run_ok();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let (want, not) = match overlay {
        true => ("snapshot (overlay)", "snapshot (walk)"),
        false => ("snapshot (walk)", "snapshot (overlay)"),
    };
    assert_eq!(
        log.matches(want).count(),
        3,
        "3 RUN snapshots {want}:\n{log}"
    );
    assert!(!log.contains(not), "no {not}:\n{log}");
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (layer_entries(&layout), digest)
}

#[test]
fn overlay_and_walk_give_the_same_image() {
    require_root("RUN on an overlay needs CAP_SYS_ADMIN");
    kiln_bin();
    let registry = Registry::shared();
    let scratch = Scratch::new();
    let (walked, walked_digest) = build(&registry, &scratch, "walk", false);
    let (overlaid, overlaid_digest) = build(&registry, &scratch, "overlay", true);
    assert!(overlaid.len() > 30, "too few entries: {overlaid:#?}");
    let etc = |e: &String| e.split(' ').nth(1) == Some("etc");
    assert!(
        !overlaid.iter().any(etc) && !walked.iter().any(etc),
        "/etc in a layer: overlay {overlaid:#?}\nwalk {walked:#?}"
    );
    assert_eq!(walked, overlaid, "overlay and walk layers differ");
    assert_eq!(walked_digest, overlaid_digest, "the same image either way");
    let destination = registry.reference("e2e/run-overlay:overlay");

    let root = umoci_unpack(&destination);
    let p = |rel: &str| root.path(rel);
    let exists = |rel: &str| fs::symlink_metadata(p(rel)).is_ok();
    let read = |rel: &str| fs::read_to_string(p(rel)).expect(rel);
    for gone in [
        "t/gone",
        "t/plain-gone",
        "t/redo/inner",
        "t/keep/to-move",
        "t/new/a",
    ] {
        assert!(!exists(gone), "/{gone} is still there");
    }
    assert_eq!(read("t/redo/new"), "new\n");
    assert!(fs::metadata(p("t/dir2file")).expect("dir2file").is_file());
    assert_eq!(read("t/dir2file"), "now-a-file\n");
    assert_eq!(read("t/file2dir/in"), "in\n");
    assert_eq!(
        fs::read_link(p("t/link")).expect("link"),
        std::path::Path::new("second")
    );
    let (h1, h2) = (
        fs::metadata(p("t/hard1")).expect("hard1"),
        fs::metadata(p("t/hard2")).expect("hard2"),
    );
    assert_eq!(h1.ino(), h2.ino(), "hard1 and hard2 are one file");
    assert_eq!(read("t/keep/sub/f"), "1\nmore\n");
    assert_eq!(read("t/moved"), "mv\n");
    let keep = fs::metadata(p("t/keep")).expect("keep");
    assert_eq!(keep.mode() & 0o7777, 0o700);
    let sub = fs::metadata(p("t/keep/sub")).expect("sub");
    assert_eq!((sub.uid(), sub.gid()), (1, 2));
    assert_eq!(
        fs::metadata(p("t/meta/m")).expect("m").mode() & 0o7777,
        0o600
    );
    assert_eq!(
        fs::metadata(p("t/suid")).expect("suid").mode() & 0o7777,
        0o4755
    );
    let fifo = fs::symlink_metadata(p("t/new/fifo")).expect("fifo");
    assert!(fifo.file_type().is_fifo());
    let null = fs::symlink_metadata(p("t/new/null")).expect("null");
    assert!(null.file_type().is_char_device() && null.rdev() == libc_makedev(1, 3));
}

#[test]
fn hardlinks_survive_a_copy_up() {
    require_root("RUN on an overlay needs CAP_SYS_ADMIN");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let layout = scratch.join("layout");
    let destination = registry.reference("e2e/run-overlay-hardlinks:1");
    // default isolation as root: the overlay
    let out = scratch
        .build(&format!(
            "FROM {base}\n\
             RUN mkdir -p /etc && echo welcome > /etc/issue\n\
             RUN ln /etc/issue /etc/issue.hard\n\
             RUN chown 12:34 /etc/issue\n\
             RUN echo more >> /etc/issue.hard\n"
        ))
        .destination(&destination)
        .arg("--oci-layout-path")
        .arg(&layout)
        .run_ok();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("snapshot (overlay)").count(), 4, "{log}");

    let root = umoci_unpack(&destination);
    let (a, b) = (
        fs::metadata(root.path("etc/issue")).expect("issue"),
        fs::metadata(root.path("etc/issue.hard")).expect("issue.hard"),
    );
    assert_eq!((a.uid(), a.gid()), (12, 34), "/etc/issue");
    assert_eq!((b.uid(), b.gid()), (12, 34), "/etc/issue.hard");
    assert_eq!(a.ino(), b.ino(), "still one file");
    assert_eq!(root.read("etc/issue"), "welcome\nmore\n");

    // each layer after the link holds the pair as a file and a tar hardlink to it
    let entries = layer_entries(&layout);
    for layer in ["2", "3"] {
        let pair: Vec<Vec<&str>> = entries
            .iter()
            .map(|e| e.split(' ').collect::<Vec<_>>())
            .filter(|f| f[0] == layer && f[1].starts_with("etc/issue"))
            .collect();
        assert_eq!(pair.len(), 2, "layer {layer}: {entries:#?}");
        let file = pair.iter().find(|f| f[2] == "0").expect("a regular file");
        let link = pair.iter().find(|f| f[2] == "1").expect("a hardlink");
        assert_eq!(link[6], file[1], "layer {layer}: {pair:?}");
        for f in &pair {
            assert_eq!((f[4], f[5]), ("12", "34"), "layer {layer}: {f:?}");
        }
    }
}

fn libc_makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32)
}
