//! `--reproducible`: the same Dockerfile built from two copies of a context whose files have
//! different mtimes, at different times, gives the same manifest digest; with
//! SOURCE_DATE_EPOCH the image's `created` is that time. Also `--label` and kaniko's
//! image-name digest files, read back with skopeo.

// Test fixtures outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::expect_used)]

use std::fs;
use std::time::{Duration, SystemTime};

use kiln_tests::{
    busybox_image, kiln_bin, skopeo_config, skopeo_inspect, umoci_unpack, Registry, Scratch,
};

fn set_mtime(path: &std::path::Path, secs: u64) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(t)
        .expect("set mtime");
}

#[test]
fn same_inputs_same_digest() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    for (n, mtime) in [(1, 1_000_000_000u64), (2, 1_600_000_000u64)] {
        let file = scratch.write(&format!("ctx{n}/app.txt"), "same content\n");
        set_mtime(&file, mtime);
    }
    let deterministic = format!(
        "FROM {base}\nCOPY app.txt /app/\nRUN echo built > /app/built && mkdir -p /var/data\nWORKDIR /srv\n"
    );
    let mut seen = Vec::new();
    for n in [1, 2] {
        let ctx = format!("ctx{n}");
        scratch.write(&format!("{ctx}/Dockerfile"), &deterministic);
        let digest_file = scratch.join(&format!("real-digest{n}"));
        let names = scratch.join(&format!("names{n}"));
        let destination = registry.reference(&format!("e2e/repro-real:{n}"));
        kiln_tests::Build::new(
            &scratch.join(&format!("{ctx}/Dockerfile")),
            &scratch.join(&ctx),
            &scratch.kiln_dir(),
        )
        .destination(&destination)
        .arg("--reproducible")
        .arg("--build-arg")
        .arg("SOURCE_DATE_EPOCH=1700000000")
        .arg("--label")
        .arg("org.example.repro=yes")
        .arg("--digest-file")
        .arg(&digest_file)
        .arg("--image-name-tag-with-digest-file")
        .arg(&names)
        .run_ok();
        let digest = fs::read_to_string(&digest_file).expect("digest file");
        assert_eq!(
            fs::read_to_string(&names).expect("names file"),
            format!("{destination}@{digest}\n")
        );
        assert_eq!(skopeo_inspect(&destination)["Digest"], digest.as_str());
        seen.push(digest);
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(seen[0], seen[1], "two reproducible builds differ");

    let destination = registry.reference("e2e/repro-real:1");
    let config = skopeo_config(&destination);
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    assert_eq!(config["config"]["Labels"]["org.example.repro"], "yes");
    let root = umoci_unpack(&destination);
    let meta = fs::metadata(root.path("app/app.txt")).expect("copied file");
    assert_eq!(
        meta.modified().expect("mtime"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        "layer mtimes are fixed to SOURCE_DATE_EPOCH"
    );
    assert_eq!(root.read("app/built"), "built\n");
}
