//! Symlinks that try to make kiln read host files or write outside a destination.
//!
//! A context (a tarball, or a directory) whose `Dockerfile` or `.dockerignore` links to a
//! host file, or whose `--context-sub-path` links to a host directory: kiln resolves each
//! inside the context and never reads the host's. `.dockerignore` is decided on the path a
//! COPY source really names (`link -> .env`, `d/.env` with `d -> .`). An `ADD` archive
//! holding `l -> /` then `l/etc/x` writes below its destination, and the layer says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_tests::{
    busybox_image, require, run_checked, umoci_unpack, unique_token, Registry, Scratch, Unpacked,
};

use super::{kiln, stderr};

/// `kiln build --context SPEC --kiln-dir … --no-push --oci-layout-path <layout>` plus
/// `extra`; returns the output and the layout.
fn build(scratch: &Scratch, spec: &str, extra: &[&str]) -> (Output, PathBuf) {
    let layout = scratch.join(&format!("out-{}", unique_token()));
    let mut args: Vec<String> = ["build", "--context", spec, "--no-push", "--kiln-dir"]
        .into_iter()
        .map(String::from)
        .collect();
    args.push(scratch.kiln_dir().display().to_string());
    args.push("--oci-layout-path".into());
    args.push(layout.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    (kiln(&args, &[]), layout)
}

fn unpack(layout: &Path) -> Unpacked {
    umoci_unpack(&format!("oci:{}:latest", layout.display()))
}

/// `tar -czf <scratch>/<name> -C dir .`; returns `tar://<path>`.
fn tarball(scratch: &Scratch, dir: &Path, name: &str) -> String {
    let out = scratch.join(name);
    run_checked(
        Command::new(require("tar", "tar"))
            .arg("-czf")
            .arg(&out)
            .arg("-C")
            .arg(dir)
            .arg("."),
    );
    format!("tar://{}", out.display())
}

/// A file outside every context, standing for the host's files.
fn host_file(scratch: &Scratch, content: &str) -> PathBuf {
    scratch.write(&format!("host/file-{}", unique_token()), content)
}

#[test]
fn a_dockerfile_that_links_to_a_host_file_is_not_read() {
    let scratch = Scratch::new();
    let mark = format!("hostmark{}", unique_token());
    let target = host_file(&scratch, &format!("FROM scratch\nLABEL leaked={mark}\n"));
    let ctx = scratch.context();
    symlink(&target, ctx.join("Dockerfile")).unwrap();
    let spec = tarball(&scratch, &ctx, "ctx.tar.gz");
    let local = ctx.display().to_string();
    let given = ctx.join("Dockerfile").display().to_string();
    for (spec, extra) in [
        (spec.as_str(), vec![]),
        (local.as_str(), vec![]),
        (local.as_str(), vec!["--dockerfile", given.as_str()]),
    ] {
        let (out, _) = build(&scratch, spec, &extra);
        assert!(
            !out.status.success(),
            "{spec} {extra:?}: built from the host file"
        );
        assert!(
            !stderr(&out).contains(&mark),
            "{spec}: the host file shows in the output"
        );
    }
}

#[test]
fn a_dockerignore_that_links_to_a_host_file_is_not_read() {
    let scratch = Scratch::new();
    let target = host_file(&scratch, "kept.txt\n");
    let ctx = scratch.context();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /out/\n").unwrap();
    fs::write(ctx.join("kept.txt"), "kept\n").unwrap();
    symlink(&target, ctx.join(".dockerignore")).unwrap();
    let spec = tarball(&scratch, &ctx, "ctx.tar.gz");
    for spec in [spec, ctx.display().to_string()] {
        let (out, layout) = build(&scratch, &spec, &[]);
        assert!(out.status.success(), "{spec}: {}", stderr(&out));
        let image = unpack(&layout);
        assert_eq!(
            image.read("/out/kept.txt"),
            "kept\n",
            "{spec}: the host file's rules were applied"
        );
    }
}

#[test]
fn a_context_sub_path_that_links_to_a_host_dir_is_refused() {
    let scratch = Scratch::new();
    let mark = format!("hostmark{}", unique_token());
    let host_dir = scratch.join(&format!("host/dir-{}", unique_token()));
    fs::create_dir_all(&host_dir).unwrap();
    fs::write(host_dir.join("Dockerfile"), "FROM scratch\nCOPY f /f\n").unwrap();
    fs::write(host_dir.join("f"), &mark).unwrap();
    let ctx = scratch.context();
    symlink(&host_dir, ctx.join("sub")).unwrap();
    let spec = tarball(&scratch, &ctx, "ctx.tar.gz");
    for spec in [spec, ctx.display().to_string()] {
        let (out, layout) = build(&scratch, &spec, &["--context-sub-path", "sub"]);
        assert!(
            !out.status.success(),
            "{spec}: the host directory became the context"
        );
        assert!(stderr(&out).contains("sub"), "the error names the sub-path");
        assert!(!layout.exists(), "{spec}: an image was written");
    }
}

#[test]
fn dockerignore_is_decided_on_the_path_a_source_really_names() {
    let scratch = Scratch::new();
    let mark = format!("secret{}", unique_token());
    let ctx = scratch.context();
    fs::write(ctx.join(".env"), &mark).unwrap();
    fs::write(ctx.join(".dockerignore"), ".env\n").unwrap();
    fs::write(ctx.join("plain.txt"), "plain\n").unwrap();
    symlink(".env", ctx.join("link")).unwrap();
    symlink(".", ctx.join("d")).unwrap();
    for copy in ["COPY link /a", "COPY d/.env /b", "COPY d/ /c/"] {
        fs::write(ctx.join("Dockerfile"), format!("FROM scratch\n{copy}\n")).unwrap();
        let (out, layout) = build(&scratch, &ctx.display().to_string(), &[]);
        if !out.status.success() {
            continue;
        }
        let image = unpack(&layout);
        let leaked: Vec<String> = image
            .listing("/")
            .into_iter()
            .filter(|p| {
                let path = image.path(p);
                path.is_file()
                    && !path.is_symlink()
                    && fs::read_to_string(&path).is_ok_and(|t| t.contains(&mark))
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "{copy}: the ignored .env was copied: {leaked:?}"
        );
    }
}

/// A tar holding `l -> /`, then `l/etc/x`.
fn escaping_tar(path: &Path) {
    let script = r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w") as t:
    link = tarfile.TarInfo("l"); link.type = tarfile.SYMTYPE; link.linkname = "/"
    t.addfile(link)
    data = b"planted\n"
    f = tarfile.TarInfo("l/etc/x"); f.size = len(data); f.mode = 0o644
    t.addfile(f, io.BytesIO(data))
"#;
    run_checked(
        Command::new(require("python3", "python3"))
            .arg("-c")
            .arg(script)
            .arg(path),
    );
}

#[test]
fn an_add_archive_cannot_write_above_its_destination() {
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    escaping_tar(&scratch.join("ctx/app.tar"));
    let dockerfile = format!(
        "FROM {base}\nADD app.tar /app/\n\
         RUN test ! -e /etc/x && test \"$(cat /app/etc/x)\" = planted\n"
    );
    let dest = registry.reference(&format!("e2e/hostile-add-{}:latest", unique_token()));
    let image = scratch.build(&dockerfile).push_and_unpack(&dest);
    assert!(
        !image.path("/etc/x").exists(),
        "the archive wrote the image's /etc"
    );
    assert_eq!(
        image.read("/app/etc/x"),
        "planted\n",
        "the layer misses /app/etc/x"
    );
    assert_eq!(
        fs::read_link(image.path("/app/l")).unwrap(),
        Path::new("/"),
        "the archive's link is kept"
    );
}
