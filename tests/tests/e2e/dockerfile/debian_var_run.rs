//! Slow tier: a COPY through an absolute symlink of a real Debian root.
//!
//! In Debian `/var/run -> /run`. `COPY f /var/run/f` must follow that link inside the
//! stage root (landing in `/run/f`) and leave `/var/run` a symlink, as Docker does. The
//! Debian base comes from debootstrap (cached per machine) or the conformance registry.

use std::fs;
use std::path::Path;

use kiln_tests::{debian_image, kiln_bin, Registry, Scratch};

#[test]
fn copy_into_var_run_follows_the_link_inside_the_root() {
    kiln_bin();
    let registry = Registry::shared();
    let base = debian_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/f", "copied through var/run\n");
    let image = scratch
        .build(&format!("FROM {base}\nCOPY f /var/run/f\n"))
        .push_and_unpack(&registry.reference("e2e/debian-var-run:latest"));
    let var_run = fs::symlink_metadata(image.path("var/run")).expect("var/run exists");
    assert!(
        var_run.file_type().is_symlink(),
        "var/run was replaced by a {:?}",
        var_run.file_type()
    );
    assert_eq!(
        fs::read_link(image.path("var/run")).expect("readlink var/run"),
        Path::new("/run")
    );
    assert!(fs::symlink_metadata(image.path("run")).is_ok_and(|m| m.is_dir()));
    assert_eq!(image.read("run/f"), "copied through var/run\n");
    // The rest of the Debian root is intact.
    assert!(image.read("etc/debian_version").starts_with("12."));
}
