//! Pushes and pulls through a fault-injecting proxy in front of a real `docker-registry`:
//! per-request retries under dropped connections, 5xx answers and stalls, the manifest-last
//! guarantee, `--push-retry`, `--image-download-retry`, cross-repository mounts (counted in
//! bytes at the proxy) and registry mirrors with fallback.

use std::process::Output;
use std::time::Duration;

use kiln_tests::{
    assert_not_in_registry, busybox_image, free_port, kiln_bin, run_checked, skopeo_inspect, Build,
    Fault, FaultProxy, Registry, Scratch,
};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `FROM <base>` plus one new file.
fn small_build(scratch: &Scratch, base: &str, content: &str) -> Build {
    scratch.write("ctx/hello.txt", content);
    scratch.build(&format!("FROM {base}\nCOPY hello.txt /hello.txt\n"))
}

#[test]
fn retries_recover_from_injected_faults() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    proxy.inject("GET", "/v2/", Fault::Stall(Duration::from_secs(2)), 1);
    proxy.inject("GET", "/manifests/", Fault::Drop, 1);
    proxy.inject("GET", "/blobs/sha256:", Fault::Status(502), 1);
    proxy.inject("HEAD", "/blobs/sha256:", Fault::Status(500), 1);
    proxy.inject("PUT", "/blobs/uploads/", Fault::Drop, 1);
    proxy.inject("PUT", "/manifests/", Fault::Status(503), 1);
    let scratch = Scratch::new();
    small_build(&scratch, &proxy.reference("busybox:latest"), "retry")
        .destination(&proxy.reference("retry/app:1"))
        .run_ok();
    assert_eq!(
        proxy.remaining(),
        [0; 6],
        "a fault was not hit:\n{:#?}",
        proxy.log()
    );
    let inspect = skopeo_inspect(&registry.reference("retry/app:1"));
    assert_eq!(
        inspect["Layers"].as_array().map(Vec::len),
        Some(2),
        "{inspect}"
    );
}

#[test]
fn manifest_is_never_pushed_after_a_failed_blob() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    proxy.inject("PUT", "/blobs/uploads/", Fault::Status(500), 1000);
    let scratch = Scratch::new();
    let out = small_build(&scratch, &proxy.reference("busybox:latest"), "partial")
        .destination(&proxy.reference("partial/app:1"))
        .run();
    assert!(
        !out.status.success(),
        "push succeeded with every upload failing"
    );
    assert!(stderr(&out).contains("partial/app"), "{}", stderr(&out));
    let log = proxy.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("PUT /v2/partial/app/blobs/uploads/")),
        "no blob upload was tried:\n{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("/manifests/") && l.starts_with("PUT")),
        "a manifest was pushed although a blob failed:\n{log:#?}"
    );
    assert_not_in_registry(&registry.reference("partial/app:1"));
}

#[test]
fn push_retry_retries_the_whole_push() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    let scratch = Scratch::new();
    let destination = proxy.reference("pushretry/app:1");
    // One attempt and its three per-request retries all fail.
    proxy.inject("PUT", "/manifests/", Fault::Status(500), 4);
    let out = small_build(&scratch, &proxy.reference("busybox:latest"), "pr")
        .destination(&destination)
        .run();
    assert!(!out.status.success(), "push succeeded through four 500s");
    assert_not_in_registry(&registry.reference("pushretry/app:1"));
    proxy.clear();
    proxy.inject("PUT", "/manifests/", Fault::Status(500), 4);
    small_build(&scratch, &proxy.reference("busybox:latest"), "pr")
        .destination(&destination)
        .arg("--push-retry")
        .arg("1")
        .run_ok();
    assert_eq!(proxy.remaining(), [0]);
    skopeo_inspect(&registry.reference("pushretry/app:1"));
}

#[test]
fn image_download_retry_retries_the_pull() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    let base = proxy.reference("busybox:latest");
    proxy.inject("GET", "/manifests/", Fault::Status(500), 4);
    let scratch = Scratch::new();
    let out = small_build(&scratch, &base, "dr")
        .arg("--no-push")
        .arg("--tar-path")
        .arg(scratch.join("out.tar"))
        .run();
    assert!(!out.status.success(), "pull succeeded through four 500s");
    proxy.clear();
    proxy.inject("GET", "/manifests/", Fault::Status(500), 4);
    small_build(&scratch, &base, "dr")
        .arg("--no-push")
        .arg("--tar-path")
        .arg(scratch.join("out.tar"))
        .arg("--image-download-retry")
        .arg("2")
        .run_ok();
    assert_eq!(proxy.remaining(), [0]);
}

#[test]
fn shared_layers_are_mounted_not_uploaded() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let raw = run_checked(
        std::process::Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{base}")),
    );
    let manifest: serde_json::Value = serde_json::from_str(&raw).expect("manifest json");
    let base_layer = manifest["layers"][0]["size"]
        .as_u64()
        .expect("base layer size");
    let proxy = FaultProxy::start(registry.host());
    let scratch = Scratch::new();
    small_build(&scratch, &proxy.reference("busybox:latest"), "mounted")
        .destination(&proxy.reference("mount/one:1"))
        .destination(&proxy.reference("mount/two:1"))
        .run_ok();
    let log = proxy.log();
    let one = proxy.uploaded_bytes("mount/one");
    assert!(
        one > 0 && one < base_layer,
        "mount/one uploaded {one} bytes; the base layer ({base_layer} bytes) should have been mounted:\n{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("/v2/mount/one/blobs/uploads/?mount=") && l.ends_with("201")),
        "{log:#?}"
    );
    assert_eq!(
        proxy.uploaded_bytes("mount/two"),
        0,
        "the second destination uploaded blob bytes:\n{log:#?}"
    );
    for dest in ["mount/one:1", "mount/two:1"] {
        let inspect = skopeo_inspect(&registry.reference(dest));
        assert_eq!(
            inspect["Layers"].as_array().map(Vec::len),
            Some(2),
            "{dest}"
        );
    }
}

#[test]
fn mirrors_are_tried_in_order_then_the_original() {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    let dead = format!("127.0.0.1:{}", free_port());
    let pull = |base: &str, flags: &[&str]| {
        let scratch = Scratch::new();
        let mut build = small_build(&scratch, base, "mirror")
            .arg("--no-push")
            .arg("--tar-path")
            .arg(scratch.join("out.tar"));
        for f in flags {
            build = build.arg(f);
        }
        build.run()
    };
    // The original registry is unreachable: the image comes from the second mirror.
    let map = format!("{dead}={dead};{dead}={}", proxy.host());
    let out = pull(
        &format!("{dead}/busybox:latest"),
        &["--registry-map", &map, "--skip-default-registry-fallback"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        proxy
            .log()
            .iter()
            .any(|l| l.starts_with("GET /v2/busybox/manifests/latest")),
        "{:#?}",
        proxy.log()
    );
    // Every mirror failing falls back to the original registry, unless told not to.
    let original = registry.reference("busybox:latest");
    let map = format!("{}={dead}", registry.host());
    let out = pull(&original, &["--registry-map", &map]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("trying the next registry"),
        "{}",
        stderr(&out)
    );
    let out = pull(
        &original,
        &["--registry-map", &map, "--skip-default-registry-fallback"],
    );
    assert!(!out.status.success(), "fell back although told not to");
    assert!(stderr(&out).contains(&dead), "{}", stderr(&out));
}

/// A blob above the chunking threshold goes up as an upload session of several `PATCH`es
/// and a closing `PUT`; below it, in one `PUT`. The registry checks the digest either way and
/// the layer reads back byte for byte.
#[test]
fn large_blobs_are_uploaded_in_chunks() {
    kiln_bin();
    let registry = Registry::shared();
    let proxy = FaultProxy::start(registry.host());
    // a dropped PATCH: the chunked upload starts over and still completes
    proxy.inject("PATCH", "/blobs/uploads/", Fault::Drop, 1);
    let scratch = Scratch::new();
    // 10 MiB that gzip cannot shrink (xorshift), so the layer spans three 4 MiB chunks
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..10 * 1024 * 1024 / 8)
        .flat_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()
        })
        .collect();
    std::fs::create_dir_all(scratch.join("ctx")).expect("ctx");
    std::fs::write(scratch.join("ctx/noise.bin"), &noise).expect("noise");
    scratch
        .build("FROM scratch\nCOPY noise.bin /noise.bin\n")
        .destination(&proxy.reference("chunk/img:1"))
        .env("KILN_PUSH_CHUNKED_ABOVE", "1048576")
        .run_ok();
    let log = proxy.log();
    let patches = log
        .iter()
        .filter(|l| l.starts_with("PATCH /v2/chunk/img/blobs/uploads/") && l.ends_with("202"))
        .count();
    assert!(patches >= 3, "{patches} chunks accepted:\n{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("PUT /v2/chunk/img/blobs/uploads/") && l.contains("digest=")),
        "no closing PUT:\n{log:#?}"
    );
    assert_eq!(proxy.remaining(), [0], "the injected drop was not hit");
    let unpacked = kiln_tests::umoci_unpack(&registry.reference("chunk/img:1"));
    let back = std::fs::read(unpacked.path("noise.bin")).expect("noise.bin in the image");
    assert!(back == noise, "the layer's file differs from the context's");

    // below the threshold (the default, 2 GiB): no PATCH at all
    let proxy = FaultProxy::start(registry.host());
    small_build(&scratch, "scratch", "one request")
        .destination(&proxy.reference("chunk/small:1"))
        .run_ok();
    let log = proxy.log();
    assert!(
        !log.iter().any(|l| l.starts_with("PATCH ")),
        "a small blob was chunked:\n{log:#?}"
    );
}
