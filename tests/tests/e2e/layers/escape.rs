//! A hostile base image must not write outside the stage root.
//!
//! The base's second layer holds `..`-prefixed files at several depths, an absolute
//! symlink `x -> /` and a relative one `up -> ../../..…` each followed by a file written
//! through it, and hardlinks to `/etc/hostname`, `../../etc/hostname` and to a canary file
//! beside kiln's work dir; a RUN then appends to every hardlink. Whatever kiln decides
//! (refuse with an error naming the entry, or confine everything to the root the way a
//! chroot would), nothing may appear or change outside the image roots.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kiln_tests::{
    assert_not_in_registry, busybox_layer, kiln_bin, push_layout, umoci_unpack, unique_token,
    ImageLayout, LayerTar, Registry, RunConfig, Scratch, DEFAULT_PATH,
};

/// What must stay unchanged about a host file.
#[derive(Debug, PartialEq, Eq)]
struct FileState {
    content: Vec<u8>,
    inode: u64,
    nlink: u64,
    mode: u32,
    mtime: SystemTime,
}

impl FileState {
    fn of(path: &Path) -> Option<FileState> {
        let meta = fs::symlink_metadata(path).ok()?;
        Some(FileState {
            content: fs::read(path).ok()?,
            inode: meta.ino(),
            nlink: meta.nlink(),
            mode: meta.mode(),
            mtime: meta.modified().ok()?,
        })
    }

    /// Puts content, mode and mtime back (the inode and link count cannot be).
    fn restore(&self, path: &Path) {
        let _ = fs::write(path, &self.content);
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(self.mode & 0o7777));
        if let Ok(file) = fs::File::options().write(true).open(path) {
            let _ = file.set_modified(self.mtime);
        }
    }
}

/// Every path under `dir` (not following symlinks) whose file name is one of `names`.
fn find_named(dir: &Path, names: &[&str], found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if names.iter().any(|n| entry.file_name() == *n) {
            found.push(path.clone());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_named(&path, names, found);
        }
    }
}

/// Whether `path` lies inside an extracted copy of the image (some directory between it
/// and `top` holds the fixture's `bin/busybox`).
fn inside_an_image_root(path: &Path, top: &Path) -> bool {
    path.ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(top) && *a != top)
        .any(|a| fs::symlink_metadata(a.join("bin/busybox")).is_ok_and(|m| m.is_file()))
}

#[test]
fn hostile_base_layer_stays_inside_the_root() {
    kiln_bin();
    let registry = Registry::shared();
    let token = unique_token();
    let scratch = Scratch::new();
    let kiln_dir = scratch.kiln_dir();
    let cwd = scratch.join("cwd");
    fs::create_dir(&cwd).expect("cwd");

    let canary_name = format!("canary-{token}");
    let canary = scratch.write(&canary_name, "host canary, beside the kiln dir\n");
    let canary_before = FileState::of(&canary);
    let hostname = Path::new("/etc/hostname");
    let hostname_before = FileState::of(hostname);

    let escape = format!("escape-{token}");
    let through_x = format!("kiln-canary-{token}");
    let through_up = format!("kiln-up-{token}");
    let mut hostile = LayerTar::new();
    hostile
        .dir("etc", 0o755)
        .file("etc/hostname", b"fixture-hostname\n", 0o644)
        .file(&canary_name, b"image canary\n", 0o644);
    for depth in 1..=6 {
        let name = format!("{}{escape}", "../".repeat(depth));
        hostile.file(&name, b"escaped\n", 0o644);
    }
    hostile
        .symlink("x", "/")
        .file(&format!("x/etc/{through_x}"), b"through x\n", 0o644)
        .symlink("up", &format!("{}..", "../".repeat(11)))
        .file(&format!("up/tmp/{through_up}"), b"through up\n", 0o644)
        .hardlink("hl", "/etc/hostname")
        .hardlink("hl-up", "../../etc/hostname");
    let mut hardlinks = vec!["/hl".to_string(), "/hl-up".to_string()];
    for depth in 1..=6 {
        let name = format!("hc{depth}");
        hostile.hardlink(&name, &format!("{}{canary_name}", "../".repeat(depth)));
        hardlinks.push(format!("/{name}"));
    }
    let mut layout = ImageLayout::create(&scratch.join("hostile-layout"));
    layout
        .add_layer(busybox_layer(), "busybox")
        .add_layer(&hostile.into_bytes(), "hostile entries");
    let layout_dir = layout.finish(
        "latest",
        &RunConfig {
            env: vec![DEFAULT_PATH.to_string()],
            cmd: vec!["/bin/sh".to_string()],
        },
    );
    let base = push_layout(&registry, &layout_dir, "latest", "e2e/hostile");

    scratch.write("ctx/note.txt", "note\n");
    let dockerfile = format!(
        "FROM {base}\nCOPY note.txt /note.txt\nRUN for f in {}; do if [ -f \"$f\" ]; then echo written-by-run >> \"$f\"; fi; done; echo ok > /run-done\n",
        hardlinks.join(" ")
    );
    let destination = registry.reference("e2e/escaped:latest");
    let out = scratch
        .build(&dockerfile)
        .destination(&destination)
        .current_dir(&cwd)
        .run();

    // 1. The host: nothing appeared next to any directory the roots could climb to.
    let mut must_not_exist = vec![
        Path::new("/etc").join(&through_x),
        Path::new("/tmp").join(&through_up),
        Path::new("/").join(&through_up),
    ];
    for ancestor in kiln_dir.ancestors().chain(cwd.ancestors()) {
        must_not_exist.push(ancestor.join(&escape));
    }
    // Collect every problem and repair the host before asserting anything.
    let mut problems = Vec::new();
    for path in &must_not_exist {
        if fs::symlink_metadata(path).is_ok() {
            let _ = fs::remove_file(path);
            problems.push(format!(
                "kiln wrote {} outside the stage root",
                path.display()
            ));
        }
    }
    let hostname_after = FileState::of(hostname);
    if hostname_after != hostname_before {
        if let Some(before) = &hostname_before {
            before.restore(hostname);
        }
        problems.push(format!(
            "host /etc/hostname changed: {hostname_before:?} -> {hostname_after:?}"
        ));
    }
    let canary_after = FileState::of(&canary);
    if canary_after != canary_before {
        problems.push(format!(
            "canary beside the kiln dir was linked or written: {canary_before:?} -> {canary_after:?}"
        ));
    }

    // 2. The scratch area: the hostile names exist only inside extracted image roots.
    let mut found = Vec::new();
    find_named(
        scratch.path(),
        &[&escape, &through_x, &through_up],
        &mut found,
    );
    for path in &found {
        if !inside_an_image_root(path, scratch.path()) {
            problems.push(format!("{} lies outside every image root", path.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // 3. kiln's verdict: a clear refusal, or an image whose hostile entries stayed inside.
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let code = out.status.code();
        assert!(code.is_some(), "kiln died from a signal: {}", out.status);
        let names_entry = stderr.contains(&token)
            || stderr.contains("etc/hostname")
            || stderr.contains("hl-up")
            || stderr.contains("../");
        assert!(
            names_entry,
            "kiln refused the base but its error names no offending entry:\n{stderr}"
        );
        assert_not_in_registry(&destination);
        return;
    }
    let image = umoci_unpack(&destination);
    assert_eq!(image.read("run-done"), "ok\n", "the RUN step did not run");
    assert_eq!(
        image.read(&format!("etc/{through_x}")),
        "through x\n",
        "x -> / must resolve to the image's own root"
    );
    assert_eq!(
        image.read(&format!("tmp/{through_up}")),
        "through up\n",
        "up -> ../.. must resolve to the image's own root"
    );
    assert!(image.read("etc/hostname").starts_with("fixture-hostname\n"));
    for link in ["hl", "hl-up"] {
        if image.path(link).exists() {
            assert!(
                image.read(link).starts_with("fixture-hostname\n"),
                "/{link} is not the image's own /etc/hostname"
            );
        }
    }
    for depth in 1..=6 {
        let link = format!("hc{depth}");
        if image.path(&link).exists() {
            assert!(
                image.read(&link).starts_with("image canary\n"),
                "/{link} is not the image's own canary"
            );
        }
    }
}
