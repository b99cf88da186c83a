//! `kiln warm` fills a `--cache-dir`; a build with that cache dir then needs no registry:
//! the registry is stopped before the build. Cached blobs are verified (a damaged one is not
//! used), and `--custom-platform` is written into the image config.

use std::fs;

use kiln_tests::{busybox_image, kiln_bin, run_kiln, skopeo_config, Registry, Scratch};

fn build_from(base: &str, scratch: &Scratch, flags: &[&str]) -> std::process::Output {
    scratch.write("ctx/hello.txt", "cached");
    let mut build = scratch
        .build(&format!("FROM {base}\nCOPY hello.txt /hello.txt\n"))
        .arg("--no-push")
        .arg("--tar-path")
        .arg(scratch.join("out.tar"));
    for f in flags {
        build = build.arg(f);
    }
    build.run()
}

#[test]
fn warm_then_build_with_the_registry_stopped() {
    kiln_bin();
    let registry = Registry::start();
    let base = busybox_image(&registry);
    let work = Scratch::new();
    let by_image = work.join("cache-image");
    let by_dockerfile = work.join("cache-dockerfile");
    let out = run_kiln([
        "warm",
        "--image",
        base.as_str(),
        "--cache-dir",
        by_image.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dockerfile = work.write(
        "Dockerfile.warm",
        "ARG BASE\nFROM ${BASE} AS one\nFROM one\nFROM scratch\nCOPY --from=one /bin/sh /sh\n",
    );
    let out = run_kiln([
        "warm",
        "--dockerfile",
        dockerfile.to_str().expect("utf-8 path"),
        "--build-arg",
        &format!("BASE={base}"),
        "--cache-dir",
        by_dockerfile.to_str().expect("utf-8 path"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{base}@sha256:")),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    drop(registry);

    for cache in [&by_image, &by_dockerfile] {
        let scratch = Scratch::new();
        let cache = cache.to_str().expect("utf-8 path");
        let out = build_from(&base, &scratch, &["--cache-dir", cache]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "build from {cache} failed:\n{err}");
        assert!(err.contains("base image from the cache"), "{err}");
    }
    // Without the cache the registry is needed, and it is gone.
    let scratch = Scratch::new();
    let out = build_from(&base, &scratch, &[]);
    assert!(!out.status.success(), "built without cache and registry");

    // A damaged blob is not used: with the registry gone, the build fails.
    let blobs = by_image.join("blobs/sha256");
    let mut damaged = 0;
    for entry in fs::read_dir(&blobs).expect("cache blobs") {
        let path = entry.expect("entry").path();
        if fs::metadata(&path).expect("meta").len() > 100_000 {
            let mut bytes = fs::read(&path).expect("read blob");
            bytes[1000] ^= 0xff;
            fs::write(&path, bytes).expect("damage blob");
            damaged += 1;
        }
    }
    assert!(damaged > 0, "no layer blob in {}", blobs.display());
    let scratch = Scratch::new();
    let out = build_from(
        &base,
        &scratch,
        &["--cache-dir", by_image.to_str().expect("utf-8 path")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged cached layer was used");
    assert!(err.contains("damaged"), "{err}");
}

#[test]
fn custom_platform_is_written_into_the_config() {
    kiln_bin();
    let scratch = Scratch::new();
    scratch.write("ctx/f", "f");
    scratch
        .build("FROM scratch\nARG TARGETPLATFORM\nCOPY f /f\n")
        .arg("--no-push")
        .arg("--tar-path")
        .arg(scratch.join("out.tar"))
        .arg("--custom-platform")
        .arg("linux/arm64/v8")
        .run_ok();
    let config = skopeo_config(&format!(
        "docker-archive:{}",
        scratch.join("out.tar").display()
    ));
    assert_eq!(config["architecture"], "arm64", "{config}");
    assert_eq!(config["os"], "linux", "{config}");
    assert_eq!(config["variant"], "v8", "{config}");

    let out = scratch
        .build("FROM scratch\nCOPY f /f\n")
        .arg("--no-push")
        .arg("--custom-platform")
        .arg("linux")
        .run();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid platform"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
