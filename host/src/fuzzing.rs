//! Fuzz target bodies for kiln's readers of untrusted bytes outside the Dockerfile crate: the
//! layer extractor (tar, plain or gzip/zstd) and the registry's JSON readers (manifests,
//! indexes, image configs). Each takes arbitrary bytes and returns nothing; a panic is a bug.
//! The cargo-fuzz crate in `fuzz/` and the stable smoke test in the `kiln-tests` e2e binary
//! (`fuzz_smoke`) both call these (docs/fuzzing.md); the Dockerfile crate's targets are
//! `kiln::dockerfile::fuzzing`.

use std::path::Path;

use serde_json::Value;

use crate::layer::extract::{extract, is_archive, Whiteouts};
use crate::registry::{
    self, config_platform, describe_platforms, satisfies, select_entry, Manifest, Platform,
};
use crate::rootfs::Root;

/// The layer extractor: the bytes as an image layer applied to an empty root, then again as
/// an `ADD` archive into a directory of that root. Whatever the archive holds, nothing may
/// appear beside the root, and every path reported as written is inside it.
pub fn layer(data: &[u8]) {
    let Ok(outer) = tempfile::Builder::new().prefix("kiln-fuzz-").tempdir() else {
        panic!("cannot make a temporary directory");
    };
    let root_dir = outer.path().join("root");
    let Ok(()) = std::fs::create_dir(&root_dir) else {
        panic!("cannot make {}", root_dir.display());
    };
    let Ok(root) = Root::open(&root_dir) else {
        panic!("cannot open {} as a root", root_dir.display());
    };
    let _ = is_archive(data);
    for (dir, whiteouts) in [("", Whiteouts::Apply), ("add/dest", Whiteouts::Keep)] {
        if let Ok(written) = extract(&root, dir, data, whiteouts, "fuzz layer") {
            for rel in &written {
                assert!(
                    !rel.split(|&b| b == b'/').any(|name| name == b".."),
                    "extraction reported {:?} as written",
                    rel.escape_ascii().to_string()
                );
            }
        }
        assert_alone(outer.path(), &root_dir);
    }
}

/// Panics when anything but `root` is in `outer`.
fn assert_alone(outer: &Path, root: &Path) {
    let Ok(entries) = std::fs::read_dir(outer) else {
        panic!("cannot list {}", outer.display());
    };
    for entry in entries.flatten() {
        assert_eq!(
            entry.path(),
            root,
            "extraction wrote {} outside the root",
            entry.path().display()
        );
    }
}

/// The registry's JSON readers: the bytes as a manifest or index (classified, and the
/// platform chosen among an index's entries) and as an image config (parsed as a base image's
/// config, its platform and diff_ids read, a platform written back).
pub fn registry_json(data: &[u8]) {
    let want = Platform {
        os: "linux".into(),
        architecture: "arm".into(),
        variant: Some("v7".into()),
    };
    match Manifest::parse("fuzz/manifest", data) {
        Ok(Manifest::Index { entries }) => {
            if let Some(entry) = select_entry(&entries, &want) {
                assert!(entries.iter().any(|e| e.digest == entry.digest));
            }
            let _ = describe_platforms(&entries);
        }
        Ok(Manifest::Image { config, layers, .. }) => {
            let _ = (config.digest.len(), layers.len());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Some(have) = config_platform(data) {
        let _ = satisfies(&have, &want);
        let _ = have.to_string();
    }
    if let Ok(mut config) = crate::image::parse_config(data, "fuzz config") {
        assert!(config.is_object(), "a parsed config is not an object");
        let _ = config
            .pointer("/rootfs/diff_ids")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).count());
        registry::set_config_platform(&mut config, &want);
        assert_eq!(config["variant"], "v7", "the platform was not written");
    }
}
