//! File names that are not UTF-8 keep their bytes: in a base layer (extracted for RUN, and
//! deleted by a whiteout or an opaque marker naming them), in an `ADD` archive and from a
//! RUN. The guest sees paths as strings, so a context file with such a name cannot be
//! carried by COPY: the build fails naming it, never copies it under another name.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kiln_tests::{
    busybox_layer, kiln_bin, push_layout, require_root, ImageLayout, LayerTar, Registry, RunConfig,
    Scratch, DEFAULT_PATH,
};
use tar::EntryType;

fn odd(dir: &Path, name: &[u8]) -> std::path::PathBuf {
    dir.join(OsStr::from_bytes(name))
}

/// Every name below `dir` that holds U+FFFD: what a lossy conversion leaves behind.
fn replaced_names(dir: &Path, found: &mut Vec<String>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let name = entry.file_name();
        if String::from_utf8_lossy(name.as_bytes()).contains('\u{fffd}')
            && std::str::from_utf8(name.as_bytes()).is_ok()
        {
            found.push(entry.path().display().to_string());
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            replaced_names(&entry.path(), found);
        }
    }
}

#[test]
fn names_that_are_not_utf8_keep_their_bytes() {
    require_root("RUN in the stage root");
    kiln_bin();
    let registry = Registry::shared();
    let scratch = Scratch::new();
    let file = |t: &mut LayerTar, name: &[u8], data: &[u8]| {
        t.raw(EntryType::Regular, name, b"", data, 0o644, 0, 0);
    };
    let mut names = LayerTar::new();
    names.dir("dir", 0o755).dir("opq", 0o755);
    file(&mut names, b"dir/base-\xff", b"base\n");
    file(&mut names, b"dir/gone-\xfe", b"gone\n");
    file(&mut names, b"opq/old-\xfb", b"old\n");
    let mut deletes = LayerTar::new();
    deletes.dir("opq", 0o755);
    file(&mut deletes, b"dir/.wh.gone-\xfe", b"");
    file(&mut deletes, b"opq/.wh..wh..opq", b"");
    let mut layout = ImageLayout::create(&scratch.join("layout"));
    layout
        .add_layer(busybox_layer(), "busybox")
        .add_layer(&names.into_bytes(), "odd names")
        .add_layer(&deletes.into_bytes(), "odd deletes");
    let layout_dir = layout.finish(
        "latest",
        &RunConfig {
            env: vec![DEFAULT_PATH.to_string()],
            cmd: vec!["/bin/sh".to_string()],
        },
    );
    let base = push_layout(&registry, &layout_dir, "latest", "e2e/odd-names");

    let mut archive = LayerTar::new();
    file(&mut archive, b"add-\xfd", b"added\n");
    fs::create_dir_all(scratch.context()).unwrap();
    fs::write(scratch.context().join("odd.tar"), archive.into_bytes()).unwrap();
    let image = scratch
        .build(&format!(
            "FROM {base}\n\
             RUN cat \"/dir/base-$(printf '\\377')\" > /seen-base && \
                 test ! -e \"/dir/gone-$(printf '\\376')\" && test ! -e \"/opq/old-$(printf '\\373')\"\n\
             ADD odd.tar /added/\n\
             RUN cat \"/added/add-$(printf '\\375')\" > /seen-added && \
                 echo run > \"/run-$(printf '\\374')\"\n"
        ))
        .push_and_unpack(&registry.reference("e2e/odd-names-built:1"));
    assert_eq!(
        image.read("seen-base"),
        "base\n",
        "the base's name kept its byte"
    );
    assert_eq!(
        image.read("seen-added"),
        "added\n",
        "the archive's name kept its byte"
    );
    let root = &image.rootfs;
    assert_eq!(fs::read(odd(root, b"added/add-\xfd")).unwrap(), b"added\n");
    assert_eq!(fs::read(odd(root, b"run-\xfc")).unwrap(), b"run\n");
    assert_eq!(fs::read(odd(root, b"dir/base-\xff")).unwrap(), b"base\n");
    assert!(fs::symlink_metadata(odd(root, b"dir/gone-\xfe")).is_err());
    assert!(fs::symlink_metadata(odd(root, b"opq/old-\xfb")).is_err());
    let mut replaced = Vec::new();
    replaced_names(root, &mut replaced);
    assert!(replaced.is_empty(), "renamed: {replaced:?}");
}

#[test]
fn copy_of_a_name_that_is_not_utf8_fails_naming_it() {
    kiln_bin();
    let scratch = Scratch::new();
    let dir = scratch.context().join("odd");
    fs::create_dir_all(&dir).unwrap();
    fs::write(odd(&dir, b"name-\xff"), "x").unwrap();
    fs::write(dir.join("plain"), "y").unwrap();
    let out = scratch
        .build("FROM scratch\nCOPY odd/ /odd/\n")
        .arg("--no-push")
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("/odd/name-\\xff") && stderr.contains("not UTF-8"),
        "{stderr}"
    );
}
