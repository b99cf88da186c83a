//! `.dockerignore` (comments, `**`, `!` exceptions, a leading `/`) and BuildKit's
//! `<Dockerfile>.dockerignore` beside the Dockerfile taking precedence over it, checked on
//! pushed images unpacked with umoci.

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use std::fs;
use std::path::Path;

use kiln_tests::{busybox_image, kiln_bin, umoci_unpack, Registry, Scratch};

/// Every path under `dir` of the unpacked image, sorted, directories with a trailing `/`.
fn listing(rootfs: &Path, dir: &str) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut paths: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        paths.sort();
        for path in paths {
            let rel = path.strip_prefix(base).expect("under base").display();
            if path.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &path, out);
            } else {
                out.push(rel.to_string());
            }
        }
    }
    let base = rootfs.join(dir.trim_start_matches('/'));
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out
}

fn context(scratch: &Scratch) {
    for rel in [
        "a.txt",
        "b.log",
        "keep.log",
        "docs/x.md",
        "docs/keep/y.md",
        "sub/a.txt",
        "sub/deep/.git/HEAD",
        ".git/HEAD",
    ] {
        scratch.write(&format!("ctx/{rel}"), rel);
    }
    scratch.write(
        "ctx/.dockerignore",
        "# comments and blank lines are ignored\n\n*.log\n!keep.log\n/docs\n!docs/keep\n**/.git\nsub/a.txt\n",
    );
}

#[test]
fn dockerignore_patterns() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    context(&scratch);
    let destination = registry.reference("e2e/dockerignore:v1");
    scratch
        .build(&format!(
            "FROM {base}\nCOPY . /ctx/\nCOPY --exclude=docs --exclude=!docs/keep/*.md --exclude=*.txt . /ex/\n"
        ))
        .destination(&destination)
        .run_ok();
    let image = umoci_unpack(&destination);
    // --exclude with a `!` exception: docs comes back only for what is taken back in it
    assert_eq!(
        listing(&image.rootfs, "/ex"),
        [
            ".dockerignore",
            "docs/",
            "docs/keep/",
            "docs/keep/y.md",
            "keep.log",
            "sub/",
            "sub/deep/",
        ]
    );
    assert_eq!(
        listing(&image.rootfs, "/ctx"),
        [
            ".dockerignore",
            "a.txt",
            "docs/",
            "docs/keep/",
            "docs/keep/y.md",
            "keep.log",
            "sub/",
            "sub/deep/",
        ]
    );
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    context(&scratch);
    // beside the Dockerfile (scratch/Dockerfile), named after it
    scratch.write("Dockerfile.dockerignore", "a.txt\n**/.git\n");
    let destination = registry.reference("e2e/dockerignore-own:v1");
    scratch
        .build(&format!("FROM {base}\nCOPY . /ctx/\n"))
        .destination(&destination)
        .run_ok();
    let image = umoci_unpack(&destination);
    assert_eq!(
        listing(&image.rootfs, "/ctx"),
        [
            ".dockerignore",
            "b.log",
            "docs/",
            "docs/keep/",
            "docs/keep/y.md",
            "docs/x.md",
            "keep.log",
            "sub/",
            "sub/a.txt",
            "sub/deep/",
        ]
    );
}
