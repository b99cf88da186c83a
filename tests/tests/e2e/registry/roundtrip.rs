//! Push and pull against a real `docker-registry` on loopback, checked with `skopeo`.
//!
//! Each test starts its own registry on a free port (killed on drop) with the tests
//! crate's [`kiln_tests::Registry`]. Needs the Debian packages `docker-registry` and
//! `skopeo`; fails naming them when missing.

// Test fixtures outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln::oci::media_type::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use kiln::registry::{BlobFile, Platform, PushImage, Registry, RegistryOptions};
use kiln_tests::{
    assert_not_in_registry, free_port, isolate_docker_credentials, require, run_checked,
    skopeo_inspect, LayerTar, Scratch,
};
use sha2::{Digest as _, Sha256};

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kiln=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A private registry for one test (the tests crate's fixture), with skopeo checked for
/// and the process's Docker credentials isolated first.
fn start_registry() -> kiln_tests::Registry {
    require("skopeo", "skopeo");
    isolate_docker_credentials();
    init_tracing();
    kiln_tests::Registry::start()
}

/// Runs `skopeo` with `args`, panicking with its stderr unless it exits 0; returns stdout.
fn skopeo(args: &[&str]) -> String {
    run_checked(Command::new(require("skopeo", "skopeo")).args(args))
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A one-layer image written to `dir`: a gzip tar holding `/hello.txt`, its config, its
/// OCI manifest.
struct TestImage {
    push: PushImage,
    config: Vec<u8>,
    config_digest: String,
    layer: Vec<u8>,
    layer_digest: String,
    layer_path: PathBuf,
    manifest_digest: String,
}

fn make_image(dir: &Path, arch: &str, content: &[u8]) -> TestImage {
    let mut tar = LayerTar::new();
    tar.file("hello.txt", content, 0o644);
    let tar = tar.into_bytes();
    let diff_id = sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let layer = gz.finish().unwrap();
    let layer_digest = sha256(&layer);

    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "kiln registry_roundtrip test"}]
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": layer.len()}]
    }))
    .unwrap();
    let manifest_digest = sha256(&manifest);

    std::fs::create_dir_all(dir).unwrap();
    let layer_path = dir.join(layer_digest.trim_start_matches("sha256:"));
    let config_path = dir.join(config_digest.trim_start_matches("sha256:"));
    std::fs::write(&layer_path, &layer).unwrap();
    std::fs::write(&config_path, &config).unwrap();
    TestImage {
        push: PushImage {
            manifest,
            manifest_media_type: OCI_MANIFEST.to_string(),
            blobs: vec![
                BlobFile {
                    digest: config_digest.clone(),
                    size: config.len() as u64,
                    path: config_path,
                },
                BlobFile {
                    digest: layer_digest.clone(),
                    size: layer.len() as u64,
                    path: layer_path.clone(),
                },
            ],
        },
        config,
        config_digest,
        layer,
        layer_digest,
        layer_path,
        manifest_digest,
    }
}

fn amd64() -> Platform {
    "linux/amd64".parse().unwrap()
}

#[tokio::test]
async fn push_inspect_pull_and_push_again() {
    let reg = start_registry();
    let work = Scratch::new();
    let image = make_image(&work.join("build"), "amd64", b"hello from kiln\n");
    let registry = Registry::new(RegistryOptions::default());
    let reference = reg.reference("x:1");

    let digest = registry.push(&reference, &image.push).await.unwrap();
    assert_eq!(digest, image.manifest_digest);

    // skopeo, which kiln did not write, accepts the image.
    let inspect = skopeo_inspect(&reference);
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Layers"], serde_json::json!([image.layer_digest]));
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]);
    assert_eq!(
        raw.into_bytes(),
        image.push.manifest,
        "registry stores the exact manifest bytes"
    );

    // Pull it back.
    let blobs = work.join("blobs");
    let pulled = registry.pull(&reference, &amd64(), &blobs).await.unwrap();
    assert_eq!(pulled.reference, reference);
    assert_eq!(pulled.manifest_digest, digest);
    assert_eq!(pulled.manifest_media_type, OCI_MANIFEST);
    assert_eq!(pulled.config, image.config);
    assert_eq!(pulled.config_digest, image.config_digest);
    assert_eq!(pulled.layers.len(), 1);
    let layer = &pulled.layers[0];
    assert_eq!(layer.digest, image.layer_digest);
    assert_eq!(
        layer.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(layer.size, image.layer.len() as u64);
    assert_eq!(
        layer.path,
        blobs
            .join("sha256")
            .join(image.layer_digest.trim_start_matches("sha256:"))
    );
    assert_eq!(std::fs::read(&layer.path).unwrap(), image.layer);
    let leftovers: Vec<_> = std::fs::read_dir(blobs.join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A second push finds every blob in the registry and never opens the files: remove them
    // and it still succeeds, under a new tag.
    for blob in &image.push.blobs {
        std::fs::remove_file(&blob.path).unwrap();
    }
    let again = registry
        .push(&reg.reference("x:2"), &image.push)
        .await
        .unwrap();
    assert_eq!(again, digest);
    // skopeo finds the new tag (skopeo_inspect panics when it cannot read it).
    skopeo_inspect(&reg.reference("x:2"));
}

#[tokio::test]
async fn failed_push_leaves_no_tag() {
    let reg = start_registry();
    let work = Scratch::new();
    let image = make_image(&work.join("build"), "amd64", b"never pushed\n");
    std::fs::remove_file(&image.layer_path).unwrap();
    let registry = Registry::new(RegistryOptions::default());
    let reference = reg.reference("broken:1");
    let err = registry.push(&reference, &image.push).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&image.layer_digest), "{message}");
    assert!(message.contains("broken:1"), "{message}");
    // No tag exists after a failed push.
    assert_not_in_registry(&reference);

    // A blob file whose size does not match its descriptor is refused before upload.
    let image = make_image(&work.join("build2"), "amd64", b"short\n");
    std::fs::write(&image.layer_path, b"x").unwrap();
    let err = registry.push(&reference, &image.push).await.unwrap_err();
    assert!(err.to_string().contains("expected"), "{err}");
}

#[tokio::test]
async fn corrupt_cached_blob_is_downloaded_again() {
    let reg = start_registry();
    let work = Scratch::new();
    let image = make_image(&work.join("build"), "amd64", b"integrity matters\n");
    let registry = Registry::new(RegistryOptions::default());
    let reference = reg.reference("corrupt:1");
    registry.push(&reference, &image.push).await.unwrap();

    // Files with the right names but wrong content: the layer keeps its size, the config not.
    let sha_dir = work.join("blobs").join("sha256");
    std::fs::create_dir_all(&sha_dir).unwrap();
    let layer_file = sha_dir.join(image.layer_digest.trim_start_matches("sha256:"));
    let config_file = sha_dir.join(image.config_digest.trim_start_matches("sha256:"));
    std::fs::write(&layer_file, vec![0u8; image.layer.len()]).unwrap();
    std::fs::write(&config_file, b"{}").unwrap();

    let pulled = registry
        .pull(&reference, &amd64(), &work.join("blobs"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&layer_file).unwrap(), image.layer);
    assert_eq!(std::fs::read(&config_file).unwrap(), image.config);
    assert_eq!(pulled.config, image.config);

    // An intact cache is reused as is (same inode: not rewritten).
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(&layer_file).unwrap().ino();
    registry
        .pull(&reference, &amd64(), &work.join("blobs"))
        .await
        .unwrap();
    assert_eq!(std::fs::metadata(&layer_file).unwrap().ino(), inode);
}

#[tokio::test]
async fn index_is_followed_to_the_platform() {
    let reg = start_registry();
    let work = Scratch::new();
    let registry = Registry::new(RegistryOptions::default());
    let amd = make_image(&work.join("amd"), "amd64", b"amd64\n");
    let arm = make_image(&work.join("arm"), "arm64", b"arm64\n");
    // Platform manifests pushed by digest, then an index tagged over them.
    for image in [&amd, &arm] {
        let by_digest = reg.reference(&format!("multi@{}", image.manifest_digest));
        let digest = registry.push(&by_digest, &image.push).await.unwrap();
        assert_eq!(digest, image.manifest_digest);
    }
    let entry = |image: &TestImage, arch: &str, variant: Option<&str>| {
        let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": image.manifest_digest,
                           "size": image.push.manifest.len(), "platform": platform})
    };
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(&amd, "amd64", None), entry(&arm, "arm64", Some("v8"))]
    }))
    .unwrap();
    let index_push = PushImage {
        manifest: index.clone(),
        manifest_media_type: OCI_INDEX.to_string(),
        blobs: Vec::new(),
    };
    let reference = reg.reference("multi:latest");
    let index_digest = registry.push(&reference, &index_push).await.unwrap();
    assert_eq!(index_digest, sha256(&index));

    for (platform, want) in [
        ("linux/amd64", &amd),
        ("linux/arm64", &arm),
        ("linux/arm64/v8", &arm),
    ] {
        let pulled = registry
            .pull(&reference, &platform.parse().unwrap(), &work.join("blobs"))
            .await
            .unwrap();
        assert_eq!(pulled.manifest_digest, want.manifest_digest, "{platform}");
        assert_eq!(pulled.config, want.config, "{platform}");
        assert_eq!(pulled.layers[0].digest, want.layer_digest, "{platform}");
    }
    // By the index digest too.
    let by_digest = reg.reference(&format!("multi@{index_digest}"));
    let pulled = registry
        .pull(
            &by_digest,
            &"linux/arm64".parse().unwrap(),
            &work.join("blobs"),
        )
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, arm.manifest_digest);

    let err = registry
        .pull(
            &reference,
            &"linux/s390x".parse().unwrap(),
            &work.join("blobs"),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64/v8"),
        "{err}"
    );
    assert!(err.contains("multi:latest"), "{err}");

    // A digest reference that does not match the manifest is refused.
    let wrong = reg.reference(&format!("multi@{}", amd.manifest_digest));
    assert!(registry.push(&wrong, &arm.push).await.is_err());
}

#[tokio::test]
async fn docker_schema2_manifest_is_pulled() {
    let reg = start_registry();
    let work = Scratch::new();
    let image = make_image(&work.join("build"), "amd64", b"docker flavour\n");
    let registry = Registry::new(RegistryOptions::default());
    let oci = reg.reference("conv:oci");
    registry.push(&oci, &image.push).await.unwrap();
    let docker = reg.reference("conv:docker");
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{oci}"),
        &format!("docker://{docker}"),
    ]);
    let pulled = registry
        .pull(&docker, &amd64(), &work.join("blobs"))
        .await
        .unwrap();
    assert_eq!(pulled.manifest_media_type, DOCKER_MANIFEST);
    assert_ne!(pulled.manifest_digest, image.manifest_digest);
    assert_eq!(
        pulled.layers[0].media_type,
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(pulled.layers[0].digest, image.layer_digest);
    assert_eq!(pulled.config_digest, image.config_digest);
}

#[tokio::test]
async fn unreachable_registry_fails_naming_the_reference() {
    isolate_docker_credentials();
    // A port nobody listens on: connection refused, retried, then reported.
    let port = free_port();
    let registry = Registry::new(RegistryOptions::default());
    let reference = format!("127.0.0.1:{port}/nothing:here");
    let started = Instant::now();
    let err = registry
        .pull(&reference, &amd64(), Path::new("/nonexistent"))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&reference), "{err}");
    // Three retries with 0.5 s, 1 s, 2 s backoff.
    assert!(
        started.elapsed() >= Duration::from_millis(3400),
        "{:?}",
        started.elapsed()
    );
}
