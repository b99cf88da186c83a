//! Multi-platform builds: `--custom-platform linux/amd64,linux/arm64` pushes one OCI index
//! (read by skopeo), each image built for its platform from the two-platform busybox base,
//! its RUNs executed through the kernel's binfmt_misc handler (qemu-user-static); the arm64
//! image's busybox runs under `qemu-aarch64-static` in a chroot. A RUN-less build needs no
//! emulator, a RUN without one fails naming the line and the package (an empty
//! `KILN_BINFMT_MISC_DIR` stands for a machine without handlers). A stage that does not
//! depend on the target platform runs once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::process::Command;

use kiln_tests::{
    busybox_multiarch_image, kiln_bin, require, require_root, umoci_unpack, Registry, Scratch,
    Unpacked,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const PLATFORMS: &str = "linux/amd64,linux/arm64";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The index at `reference` as skopeo reads it (raw), checked to list both platforms, and
/// the digest of its bytes.
fn read_index(reference: &str) -> (Value, String) {
    let out = Command::new(require("skopeo", "skopeo"))
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect --raw {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index: Value = serde_json::from_slice(&out.stdout).expect("index JSON");
    assert_eq!(index["mediaType"], INDEX, "{index}");
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            assert_eq!(m["platform"]["os"], "linux", "{m}");
            m["platform"]["architecture"]
                .as_str()
                .expect("architecture")
        })
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{index}");
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&out.stdout)));
    (index, digest)
}

/// The image of `architecture` in the index at `reference`, unpacked by umoci.
fn unpack_platform(reference: &str, index: &Value, architecture: &str) -> Unpacked {
    let digest = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == architecture)
        .and_then(|m| m["digest"].as_str())
        .expect("a manifest for the architecture");
    let repo = reference.rsplit_once(':').map_or(reference, |(r, _)| r);
    umoci_unpack(&format!("{repo}@{digest}"))
}

#[test]
fn two_platforms_push_an_index_and_run_through_binfmt() {
    require_root("RUN and chroot");
    kiln_bin();
    require("qemu-aarch64-static", "qemu-user-static");
    let registry = Registry::shared();
    let base = busybox_multiarch_image(&registry);
    let scratch = Scratch::new();
    let destination = registry.reference("e2e/platforms-run:v1");
    let layout = scratch.join("layout");
    let out = scratch
        .build(&format!(
            "FROM {base}\nARG TARGETARCH\nRUN uname -m > /arch && echo $TARGETARCH > /targetarch\n"
        ))
        .destination(&destination)
        .arg("--custom-platform")
        .arg(PLATFORMS)
        .arg("--oci-layout-path")
        .arg(&layout)
        .run_ok();
    let (index, index_digest) = read_index(&destination);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.trim(), index_digest, "kiln prints the index digest");

    let amd = unpack_platform(&destination, &index, "amd64");
    assert_eq!(amd.read("/arch"), "x86_64\n");
    assert_eq!(amd.read("/targetarch"), "amd64\n");
    let arm = unpack_platform(&destination, &index, "arm64");
    assert_eq!(arm.read("/arch"), "aarch64\n");
    assert_eq!(arm.read("/targetarch"), "arm64\n");

    // the arm64 image's own busybox, under qemu-user in a chroot of its root
    let qemu = require("qemu-aarch64-static", "qemu-user-static");
    fs::copy(&qemu, arm.path("/qemu-aarch64-static")).unwrap();
    let ran = Command::new("chroot")
        .arg(arm.path("/"))
        .args(["/qemu-aarch64-static", "/bin/busybox", "uname", "-m"])
        .output()
        .unwrap();
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "aarch64\n");

    // the same index in the OCI layout, which umoci reads per platform
    let top: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(top["manifests"][0]["mediaType"], INDEX, "{top}");
    let digest = top["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(digest, index_digest);
    let inner: Value = serde_json::from_slice(
        &fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(inner, index);
}

#[test]
fn runless_builds_need_no_emulator_and_a_run_names_the_package() {
    require_root("RUN");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_multiarch_image(&registry);
    let scratch = Scratch::new();
    // a binfmt_misc directory with no handler in it
    let no_handlers = scratch.join("binfmt_misc");
    fs::create_dir_all(&no_handlers).unwrap();
    fs::write(no_handlers.join("status"), "enabled\n").unwrap();
    let destination = registry.reference("e2e/platforms-runless:v1");
    scratch.write("ctx/hello.txt", "hello\n");
    scratch
        .build(&format!(
            "FROM {base}\nENV A=1\nCOPY hello.txt /hello.txt\n"
        ))
        .destination(&destination)
        .arg("--custom-platform")
        .arg(PLATFORMS)
        .env("KILN_BINFMT_MISC_DIR", &no_handlers)
        .run_ok();
    let (index, _) = read_index(&destination);
    let arm = unpack_platform(&destination, &index, "arm64");
    assert_eq!(arm.read("/hello.txt"), "hello\n");
    assert!(arm.path("/bin/busybox").is_file());

    let out = scratch
        .build(&format!("FROM {base}\nENV A=1\nRUN uname -m\n"))
        .destination(&registry.reference("e2e/platforms-no-emulator:v1"))
        .arg("--custom-platform")
        .arg(PLATFORMS)
        .env("KILN_BINFMT_MISC_DIR", &no_handlers)
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "built without an emulator:\n{stderr}"
    );
    assert!(
        stderr.contains("Dockerfile:3: RUN for linux/arm64 needs an emulator"),
        "{stderr}"
    );
    assert!(stderr.contains("qemu-user-static"), "{stderr}");
    assert!(stderr.contains("binfmt_misc"), "{stderr}");
}

#[test]
fn a_stage_free_of_the_target_platform_runs_once() {
    require_root("RUN");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_multiarch_image(&registry);
    let scratch = Scratch::new();
    let destination = registry.reference("e2e/platforms-shared:v1");
    let out = scratch
        .build(&format!(
            "FROM --platform=$BUILDPLATFORM {base} AS tools\n\
             RUN echo shared-stage-ran-$((6*7)) && uname -m > /built-on\n\
             FROM {base}\n\
             ARG TARGETARCH\n\
             COPY --from=tools /built-on /built-on\n\
             RUN echo per-platform-ran-$((6*7))-$TARGETARCH\n"
        ))
        .destination(&destination)
        .arg("--custom-platform")
        .arg(PLATFORMS)
        .run_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("shared-stage-ran-42").count(),
        1,
        "the shared stage ran once:\n{stderr}"
    );
    for arch in ["amd64", "arm64"] {
        assert_eq!(
            stderr
                .matches(&format!("per-platform-ran-42-{arch}"))
                .count(),
            1,
            "{stderr}"
        );
    }
    let (index, _) = read_index(&destination);
    // built on the machine, for both platforms
    for arch in ["amd64", "arm64"] {
        let image = unpack_platform(&destination, &index, arch);
        assert_eq!(image.read("/built-on"), "x86_64\n", "{arch}");
    }
}

#[test]
fn tar_path_with_two_platforms_is_refused_before_building() {
    kiln_bin();
    let scratch = Scratch::new();
    scratch.write("ctx/hello.txt", "hello\n");
    let out = scratch
        .build("FROM scratch\nCOPY hello.txt /\n")
        .arg("--no-push")
        .arg("--tar-path")
        .arg(scratch.join("image.tar"))
        .arg("--custom-platform")
        .arg(PLATFORMS)
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--tar-path holds one image, but --custom-platform linux/amd64,linux/arm64 builds an index"),
        "{stderr}"
    );
    assert!(!scratch.join("image.tar").exists());
}
