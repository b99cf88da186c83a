//! Snapshot and layer flags end to end: `--compression=zstd` (OCI zstd media types, read back
//! by skopeo and umoci), `--single-snapshot`, `--ignore-path`, `--ignore-var-run`, and a
//! RUN-made layer whose whiteouts, opaque dir, type change and hardlink umoci applies.

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use std::fs;
use std::os::unix::fs::MetadataExt;

use std::process::Command;

use kiln_tests::{
    busybox_image, kiln_bin, require, run_checked, skopeo_inspect, umoci_unpack, Registry, Scratch,
};

/// The layer media types of the layout's manifest (skopeo must be able to read it too).
fn layer_types(layout: &std::path::Path, tag: &str) -> Vec<String> {
    skopeo_inspect(&format!("oci:{}:{tag}", layout.display()));
    let json = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs::read(&path).expect("layout file")).expect("json")
    };
    let index = json(layout.join("index.json"));
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("manifest digest");
    let manifest = json(layout.join("blobs/sha256").join(&digest["sha256:".len()..]));
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn zstd_layers_single_snapshot_and_ignored_paths() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let dockerfile = format!(
        "FROM {base}\n\
         RUN mkdir -p /opq/old /tc && echo 1 > /opq/old/f && echo gone > /gone && mkdir /tc/d\n\
         RUN rm -rf /opq /gone && mkdir /opq && echo new > /opq/new && rmdir /tc/d && echo f > /tc/d \
             && echo data > /orig && ln /orig /hard\n\
         RUN mkdir -p /var/cache/skip /var/run && echo no > /var/cache/skip/f && echo no > /var/run/pid \
             && echo yes > /kept\n"
    );
    // zstd, a layer per RUN
    let zstd = scratch.join("zstd");
    scratch
        .build(&dockerfile)
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(&zstd)
        .arg("--compression=zstd")
        .arg("--compression-level=9")
        .arg("--ignore-path=/var/cache/skip")
        .run_ok();
    let types = layer_types(&zstd, "latest");
    assert_eq!(types.len(), 4, "base + three RUN layers: {types:?}");
    assert!(types[0].ends_with("tar+gzip"), "{types:?}");
    for t in &types[1..] {
        assert_eq!(t, "application/vnd.oci.image.layer.v1.tar+zstd");
    }
    // umoci 0.4 reads no zstd: containers/image (skopeo) decompresses it to gzip first
    let gz = scratch.join("regz");
    run_checked(
        Command::new(require("skopeo", "skopeo"))
            .args(["copy", "--quiet", "--dest-compress-format=gzip"])
            .arg(format!("oci:{}:latest", zstd.display()))
            .arg(format!("oci:{}:latest", gz.display())),
    );
    let image = umoci_unpack(&format!("oci:{}:latest", gz.display()));
    assert_eq!(image.read("opq/new"), "new\n");
    assert!(
        !image.path("opq/old").exists(),
        "replaced dir kept old content"
    );
    assert!(!image.path("gone").exists(), "whiteout not applied");
    assert_eq!(image.read("tc/d"), "f\n");
    let (a, b) = (
        fs::metadata(image.path("orig")).expect("orig"),
        fs::metadata(image.path("hard")).expect("hard"),
    );
    assert_eq!(a.ino(), b.ino(), "hardlink lost");
    assert_eq!(image.read("kept"), "yes\n");
    assert!(
        !image.path("var/cache/skip").exists(),
        "--ignore-path content in a layer"
    );
    assert!(
        !image.path("var/run/pid").exists(),
        "/var/run content in a layer"
    );

    // one layer for the stage, /var/run kept when asked
    let single = scratch.join("single");
    scratch
        .build(&dockerfile)
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(&single)
        .arg("--single-snapshot")
        .arg("--ignore-var-run=false")
        .run_ok();
    let types = layer_types(&single, "latest");
    assert_eq!(types.len(), 2, "base + one layer: {types:?}");
    let image = umoci_unpack(&format!("oci:{}:latest", single.display()));
    assert_eq!(image.read("opq/new"), "new\n");
    assert!(!image.path("opq/old").exists());
    assert_eq!(image.read("var/run/pid"), "no\n");
    assert_eq!(image.read("var/cache/skip/f"), "no\n");
}

#[test]
fn bad_layer_flags_are_refused() {
    kiln_bin();
    let scratch = Scratch::new();
    for (args, want) in [
        (
            &["--compression-level=12"][..],
            "--compression-level 12: gzip takes 0..=9",
        ),
        (
            &["--compression=zstd", "--compression-level=30"][..],
            "zstd takes 1..=22",
        ),
        (
            &["--ignore-path=var/x"][..],
            "--ignore-path var/x: expected an absolute path",
        ),
    ] {
        let mut build = scratch.build("FROM scratch\nENV A=1\n").arg("--no-push");
        for a in args {
            build = build.arg(a);
        }
        let out = build.run();
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}
