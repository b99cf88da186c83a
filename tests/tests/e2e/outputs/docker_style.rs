//! `docker build` habits and kaniko's manifest flags, checked on the images they give:
//! `kiln build -t REF --push CONTEXT`, `--output type=oci|docker`, `--iidfile` and
//! `--metadata-file` against what skopeo reports, `--tar-path` archives that load under the
//! destination's name, `--annotation` and `--image-format` on the manifest, and `--no-cache`
//! leaving the cache unread.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;

use kiln_tests::{
    assert_not_in_registry, busybox_image, kiln_bin, require, run_checked, skopeo_inspect,
    umoci_unpack, Build, Registry, Scratch,
};
use serde_json::Value;

fn dockerfile(base: &str) -> String {
    format!("FROM {base}\nCOPY note.txt /note.txt\nRUN echo built > /built.txt\n")
}

/// `skopeo inspect --raw`: the manifest as stored.
fn raw_manifest(reference: &str) -> Value {
    let skopeo = require("skopeo", "skopeo");
    let text = run_checked(
        std::process::Command::new(skopeo)
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(reference),
    );
    serde_json::from_str(&text).expect("manifest JSON")
}

#[test]
fn tag_push_and_a_positional_context_as_docker_build_takes_them() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/note.txt", "hello\n");
    let dockerfile_path = scratch.write("Dockerfile", &dockerfile(&base));
    let tag = registry.reference("e2e/docker-style:pushed");
    let iid = scratch.join("iid.txt");
    let meta = scratch.join("meta.json");
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for a in ["build", "--file"] {
        args.push(a.into());
    }
    args.push(dockerfile_path.into());
    for a in ["-t", &tag, "--push", "--kiln-dir"] {
        args.push(a.into());
    }
    args.push(scratch.kiln_dir().into());
    args.push("--iidfile".into());
    args.push(iid.clone().into());
    args.push("--metadata-file".into());
    args.push(meta.clone().into());
    // docker's habit: the context last, with no flag
    args.push(scratch.context().into());
    let out = kiln_tests::run_kiln(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspect = skopeo_inspect(&tag);
    let raw = raw_manifest(&format!("docker://{tag}"));
    let config_digest = raw["config"]["digest"].as_str().unwrap();
    assert_eq!(fs::read_to_string(&iid).unwrap(), config_digest);
    let meta: Value = serde_json::from_str(&fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], inspect["Digest"]);
    assert_eq!(meta["containerimage.config.digest"], config_digest);
    assert_eq!(
        meta["containerimage.descriptor"]["digest"],
        inspect["Digest"]
    );
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"],
        raw["mediaType"]
    );
    assert_eq!(meta["image.name"], tag.as_str());
    assert_eq!(umoci_unpack(&tag).read("note.txt"), "hello\n");

    // a tag without --push names the image and pushes nothing
    let unpushed = registry.reference("e2e/docker-style:named-only");
    let archive = scratch.join("named.tar");
    scratch
        .build(&dockerfile(&base))
        .arg("-t")
        .arg(&unpushed)
        .arg(format!("--output=type=docker,dest={}", archive.display()))
        .run_ok();
    assert_not_in_registry(&unpushed);
    // the archive loads under the tag's name
    let named = format!("docker-archive:{}:{unpushed}", archive.display());
    assert_eq!(umoci_unpack(&named).read("built.txt"), "built\n");
}

#[test]
fn oci_output_as_a_tar_or_a_directory() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/note.txt", "oci\n");
    let tar = scratch.join("image.tar");
    let dir = scratch.join("layout");
    scratch
        .build(&dockerfile(&base))
        .arg("-t")
        .arg("example.com/app:v3")
        .arg(format!("--output=type=oci,dest={}", tar.display()))
        .arg(format!("-o=type=oci,dest={},tar=false", dir.display()))
        .run_ok();
    let from_tar = umoci_unpack(&format!("oci-archive:{}:v3", tar.display()));
    assert_eq!(from_tar.read("note.txt"), "oci\n");
    let from_dir = umoci_unpack(&format!("oci:{}:v3", dir.display()));
    assert_eq!(from_dir.read("built.txt"), "built\n");
}

#[test]
fn tar_path_archives_carry_the_destination_names() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/note.txt", "tagged\n");
    let archive = scratch.join("app.tar");
    let first = registry.reference("e2e/docker-style:one");
    let second = registry.reference("e2e/other:two");
    scratch
        .build(&dockerfile(&base))
        .destination(&first)
        .destination(&second)
        .arg("--no-push")
        .arg("--tar-path")
        .arg(&archive)
        .run_ok();
    for name in [&first, &second] {
        let source = format!("docker-archive:{}:{name}", archive.display());
        assert_eq!(umoci_unpack(&source).read("note.txt"), "tagged\n", "{name}");
    }
}

#[test]
fn annotations_and_image_format_shape_the_manifest() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/note.txt", "x\n");
    for (format, media_type) in [
        ("oci", "application/vnd.oci.image.manifest.v1+json"),
        (
            "docker",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let destination = registry.reference(&format!("e2e/docker-style:{format}"));
        scratch
            .build(&dockerfile(&base))
            .destination(&destination)
            .arg(format!("--image-format={format}"))
            .arg("--annotation=org.example.team=builders")
            .arg("--annotation")
            .arg("org.opencontainers.image.source=https://example.com/app")
            .run_ok();
        let raw = raw_manifest(&format!("docker://{destination}"));
        assert_eq!(raw["mediaType"], media_type);
        assert_eq!(raw["annotations"]["org.example.team"], "builders");
        assert_eq!(
            raw["annotations"]["org.opencontainers.image.source"],
            "https://example.com/app"
        );
        for layer in raw["layers"].as_array().unwrap() {
            let t = layer["mediaType"].as_str().unwrap();
            let family = if format == "oci" {
                "vnd.oci"
            } else {
                "vnd.docker"
            };
            assert!(t.contains(family), "{format} image with a {t} layer");
        }
    }
    // zstd layers cannot be named in Docker's manifest: refused before anything is pushed
    let destination = registry.reference("e2e/docker-style:zstd-docker");
    let out = scratch
        .build(&dockerfile(&base))
        .destination(&destination)
        .arg("--image-format=docker")
        .arg("--compression=zstd")
        .run();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--image-format=docker"));
    assert_not_in_registry(&destination);
}

#[test]
fn no_cache_reads_no_entry_but_stores_them() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let cache = scratch.join("cache-layout");
    let df = format!("FROM {base}\nRUN echo ran-the-step > /step.txt\n");
    let cached = |extra: &[&str]| -> String {
        let mut build: Build = scratch
            .build(&df)
            .arg("--no-push")
            .arg("--cache=true")
            .arg(format!("--cache-repo=oci:{}", cache.display()));
        for a in extra {
            build = build.arg(a);
        }
        let out = build.run_ok();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = cached(&[]);
    assert!(first.contains("cache miss"), "{first}");
    let second = cached(&[]);
    assert!(second.contains("cache hit"), "the cache works:\n{second}");
    let third = cached(&["--no-cache"]);
    assert!(
        !third.contains("cache hit"),
        "--no-cache read the cache:\n{third}"
    );
    assert!(third.contains("cache not read (--no-cache)"), "{third}");
}
