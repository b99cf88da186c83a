//! A base layer that changes the tree under the extractor's feet: a directory replaced by a
//! symlink to `/etc` between two entries (the entry after it must land in the root's `/etc`,
//! never in the removed directory nor on the host), a hardlink in one directory to a file
//! written in another just before it, and whiteouts of files the same base wrote many
//! entries earlier, applied by a later layer and by the same one.

use std::fs;
use std::path::Path;

use kiln_tests::{
    busybox_layer, kiln_bin, push_layout, require_root, unique_token, ImageLayout, LayerTar,
    Registry, RunConfig, Scratch, DEFAULT_PATH,
};

#[test]
fn a_layer_that_replaces_a_directory_with_a_symlink_between_entries() {
    require_root("RUN in the stage root");
    kiln_bin();
    let registry = Registry::shared();
    let scratch = Scratch::new();
    let token = unique_token();
    let after = format!("after-{token}");
    let mut tree = LayerTar::new();
    tree.dir("d", 0o755)
        .file("d/before", b"before\n", 0o644)
        .symlink("d", "/etc")
        .file(&format!("d/{after}"), b"after\n", 0o644)
        .dir("a", 0o755)
        .dir("b", 0o755);
    for i in 0..400 {
        tree.file(&format!("a/f{i}"), format!("{i}\n").as_bytes(), 0o644);
    }
    tree.hardlink("b/h", "a/f399")
        .file("a/.wh.f398", b"", 0o644);
    let mut later = LayerTar::new();
    later.file("a/.wh.f3", b"", 0o644);
    let mut layout = ImageLayout::create(&scratch.join("layout"));
    layout
        .add_layer(busybox_layer(), "busybox")
        .add_layer(&tree.into_bytes(), "a directory replaced by a symlink")
        .add_layer(&later.into_bytes(), "a whiteout");
    let layout_dir = layout.finish(
        "latest",
        &RunConfig {
            env: vec![DEFAULT_PATH.to_string()],
            cmd: vec!["/bin/sh".to_string()],
        },
    );
    let base = push_layout(&registry, &layout_dir, "latest", "e2e/replaced");
    let image = scratch
        .build(&format!(
            "FROM {base}\n\
             RUN test -L /d && cat /etc/{after} > /seen && test ! -e /etc/before && \
                 [ \"$(stat -c %i /b/h)\" = \"$(stat -c %i /a/f399)\" ] && \
                 test ! -e /a/f3 && test ! -e /a/f398 && ls /a | wc -l > /count\n"
        ))
        .push_and_unpack(&registry.reference("e2e/replaced-built:1"));
    assert!(
        !Path::new("/etc").join(&after).exists(),
        "kiln wrote /etc/{after} on the host"
    );
    assert_eq!(image.read("seen"), "after\n");
    assert_eq!(image.read("count").trim(), "398");
    assert_eq!(fs::read(image.rootfs.join("b/h")).unwrap(), b"399\n");
}
