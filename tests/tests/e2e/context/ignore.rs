//! `.dockerignore` (comments, `**`, `!` exceptions, a leading `/`) and BuildKit's
//! `<Dockerfile>.dockerignore` beside the Dockerfile taking precedence over it, checked on
//! pushed images unpacked with umoci.

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use kiln_tests::{busybox_image, kiln_bin, Registry, Scratch};

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
    let image = scratch
        .build(&format!(
            "FROM {base}\nCOPY . /ctx/\nCOPY --exclude=docs --exclude=!docs/keep/*.md --exclude=*.txt . /ex/\n"
        ))
        .push_and_unpack(&registry.reference("e2e/dockerignore:v1"));
    // --exclude with a `!` exception: docs comes back only for what is taken back in it
    assert_eq!(
        image.listing("/ex"),
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
        image.listing("/ctx"),
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
    let image = scratch
        .build(&format!("FROM {base}\nCOPY . /ctx/\n"))
        .push_and_unpack(&registry.reference("e2e/dockerignore-own:v1"));
    assert_eq!(
        image.listing("/ctx"),
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
