//! A base layer extracted while it downloads (`registry::stream`, `pipeline::layer_stream`),
//! through a fault-injecting proxy in front of a real `docker-registry`: a registry that
//! serves other bytes than the digest it names fails the build naming the image and the
//! digest, though extraction had started, with nothing pushed and no stage root left; a body
//! cut, reset or damaged midway is fetched again and the root is the one a clean pull gives
//! (a RUN's checksums over the base's files compared with a build without faults).

#![allow(clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use kiln_tests::{
    assert_not_in_registry, busybox_image, kiln_bin, skopeo_inspect, Build, Fault, FaultProxy,
    Registry, Scratch,
};

/// A RUN that reads every file of the base it names (and lists /bin), so a damaged root
/// shows in its output. The listing leaves out `..`: `/` is made when the stage starts, and
/// its mtime (shown to the minute) would differ between two builds a minute boundary apart.
const SUMS: &str = "RUN busybox md5sum /bin/busybox /etc/passwd /etc/group > /sums && ls -la /bin | busybox grep -v ' \\.\\.$' | busybox md5sum >> /sums\n";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The digest of the one layer of `reference`.
fn only_layer(reference: &str) -> String {
    let layers = skopeo_inspect(reference)["Layers"].clone();
    let layers = layers.as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{reference}: one layer expected");
    layers[0].as_str().expect("layer digest").to_string()
}

/// `FROM base` + [`SUMS`], with a short idle timeout and debug logs.
fn sums_build(scratch: &Scratch, base: &str) -> Build {
    scratch
        .build(&format!("FROM {base}\n{SUMS}"))
        .env("KILN_NETWORK_IDLE_TIMEOUT_SECS", "2")
        .arg("--verbosity")
        .arg("debug")
}

/// Entries of the kiln dir that are a build's scratch directory.
fn build_dirs(kiln_dir: &Path) -> Vec<String> {
    fs::read_dir(kiln_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("build-"))
        .collect()
}

/// The shared registry holding busybox, a fault proxy in front of it, the base as the proxy
/// names it, and the digest of its one layer.
fn proxied_busybox() -> (std::sync::Arc<Registry>, FaultProxy, String, String) {
    kiln_bin();
    let registry = Registry::shared();
    busybox_image(&registry);
    let proxy = FaultProxy::start(registry.host());
    let base = proxy.reference("busybox:latest");
    let layer = only_layer(&base);
    (registry, proxy, base, layer)
}

#[test]
fn a_registry_that_lies_about_a_layer_fails_the_build_naming_it() {
    let (registry, proxy, base, layer) = proxied_busybox();
    // every answer for the layer has one byte changed: more than all the retries
    proxy.inject("GET", &format!("/blobs/{layer}"), Fault::Corrupt, 100);
    let scratch = Scratch::new();
    let destination = registry.reference("streamed/lied:1");
    let out = sums_build(&scratch, &base).destination(&destination).run();
    let err = stderr(&out);
    assert!(!out.status.success(), "a lying registry passed:\n{err}");
    assert!(
        err.contains("extracting as it downloads"),
        "the layer was not streamed:\n{err}"
    );
    let error = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    for want in [
        layer.as_str(),
        base.as_str(),
        "downloaded content has digest",
    ] {
        assert!(error.contains(want), "{want:?} not in the error: {error}");
    }
    assert!(
        proxy.remaining()[0] < 100,
        "the layer was never asked for: {:#?}",
        proxy.log()
    );
    assert_not_in_registry(&destination);
    let left = build_dirs(&scratch.kiln_dir());
    assert!(left.is_empty(), "stage roots left: {left:?}");
}

#[test]
fn a_layer_body_cut_or_damaged_midway_is_fetched_again_into_a_right_root() {
    let (registry, proxy, base, layer) = proxied_busybox();
    let clean = Scratch::new();
    let sums = |scratch: &Scratch, tag: &str| {
        let destination = registry.reference(&format!("streamed/cut:{tag}"));
        let image = sums_build(scratch, &base).push_and_unpack(&destination);
        image.read("sums")
    };
    let want = sums(&clean, "clean");
    assert_eq!(want.lines().count(), 4, "{want}");
    for (fault, tag) in [
        (Fault::Truncate, "truncate"),
        (Fault::Reset, "reset"),
        (Fault::Corrupt, "corrupt"),
    ] {
        proxy.clear();
        proxy.inject("GET", &format!("/blobs/{layer}"), fault, 1);
        let scratch = Scratch::new();
        let started = Instant::now();
        let destination = registry.reference(&format!("streamed/cut:{tag}"));
        let out = sums_build(&scratch, &base).destination(&destination).run();
        let err = stderr(&out);
        assert!(out.status.success(), "{tag}: not recovered:\n{err}");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{tag}: too slow"
        );
        assert_eq!(proxy.remaining(), [0], "{tag}: the fault was not hit");
        assert!(err.contains("extracting as it downloads"), "{tag}:\n{err}");
        if tag == "corrupt" {
            // the damaged bytes had reached the extraction: the root started over
            assert!(
                err.contains("extracting the verified blob again"),
                "{tag}: the root did not start over:\n{err}"
            );
        }
        let image = kiln_tests::umoci_unpack(&destination);
        assert_eq!(image.read("sums"), want, "{tag}: the root differs");
    }
}
