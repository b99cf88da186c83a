//! File names that are not UTF-8 keep their bytes: in a base layer (extracted for RUN, and
//! deleted by a whiteout or an opaque marker naming them), in an `ADD` archive, from a RUN,
//! and through COPY from the context and from a stage (the guest sees them escaped, see
//! `sandbox::names`).

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
fn copy_of_names_that_are_not_utf8_keeps_their_bytes() {
    kiln_bin();
    let registry = Registry::shared();
    let scratch = Scratch::new();
    let dir = scratch.context().join("odd");
    fs::create_dir_all(odd(&dir, b"sub-\xfe")).unwrap();
    fs::write(odd(&dir, b"name-\xff"), "x").unwrap();
    fs::write(odd(&dir, b"sub-\xfe/inner-\xfa"), "z").unwrap();
    fs::write(dir.join("plain"), "y").unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"name-\xff"), odd(&dir, b"link-\xf9")).unwrap();
    let image = scratch
        .build(
            "FROM scratch AS a\nCOPY odd/ /odd/\nCOPY odd/name-* /wild/\n\
             FROM scratch\nCOPY --from=a /odd/ /again/\nCOPY --from=a /wild/ /wild/\n",
        )
        .push_and_unpack(&registry.reference("e2e/odd-names-copied:1"));
    let root = &image.rootfs;
    assert_eq!(fs::read(odd(root, b"again/name-\xff")).unwrap(), b"x");
    assert_eq!(
        fs::read(odd(root, b"again/sub-\xfe/inner-\xfa")).unwrap(),
        b"z"
    );
    assert_eq!(fs::read(root.join("again/plain")).unwrap(), b"y");
    assert_eq!(
        fs::read_link(odd(root, b"again/link-\xf9"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"name-\xff"
    );
    assert_eq!(fs::read(odd(root, b"wild/name-\xff")).unwrap(), b"x");
    let mut replaced = Vec::new();
    replaced_names(root, &mut replaced);
    assert!(replaced.is_empty(), "renamed: {replaced:?}");
}
