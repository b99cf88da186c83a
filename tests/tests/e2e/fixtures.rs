//! Checks of the test fixtures themselves, with no kiln involved: the registry starts and
//! stops, the busybox base image is accepted by skopeo and unpacked by umoci with the
//! expected files, and hostile layer entries keep their raw names and link targets. When
//! a kiln test fails, these tell whether the stage or the actor is at fault.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use kiln_tests::{
    busybox_image, busybox_layer, push_layout, require, run_checked, skopeo_config, skopeo_inspect,
    try_skopeo_inspect, umoci_unpack, ImageLayout, LayerTar, Registry, RunConfig, DEFAULT_PATH,
};

#[test]
fn registry_serves_v2_and_dies_on_drop() {
    let registry = Registry::start();
    let host = registry.host().to_string();
    let url = format!("http://{host}/v2/");
    let curl = require("curl", "curl");
    run_checked(Command::new(&curl).args(["-fsS", &url]));
    drop(registry);
    let after = Command::new(&curl)
        .args(["-fsS", "--max-time", "2", &url])
        .output()
        .expect("running curl");
    assert!(
        !after.status.success(),
        "registry at {host} still answers after drop"
    );
}

#[test]
fn busybox_image_is_pushed_and_unpacks() {
    let registry = Registry::shared();
    let reference = busybox_image(&registry);
    let inspect = skopeo_inspect(&reference);
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(1));
    let config = skopeo_config(&reference);
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(config["config"]["Env"], serde_json::json!([DEFAULT_PATH]));

    let image = umoci_unpack(&reference);
    let busybox = fs::metadata(image.path("bin/busybox")).expect("bin/busybox");
    assert!(busybox.is_file() && busybox.permissions().mode() & 0o111 != 0);
    assert_eq!(
        fs::read_link(image.path("bin/sh")).expect("bin/sh link"),
        std::path::Path::new("busybox")
    );
    assert!(image.read("etc/passwd").contains("nobody:x:65534:65534"));
    assert!(image.read("etc/group").contains("nobody:x:65534:"));
    let tmp = fs::metadata(image.path("tmp")).expect("tmp");
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    if kiln_tests::is_root() {
        assert_eq!((busybox.uid(), busybox.gid()), (0, 0));
    }

    // The fixture root really runs: the applet links resolve to a static busybox.
    let out = run_checked(
        Command::new(image.path("bin/busybox"))
            .args(["sh", "-c", "echo fixture-ok"])
            .env_clear(),
    );
    assert_eq!(out, "fixture-ok\n");
}

#[test]
fn hostile_entries_keep_their_raw_bytes() {
    let mut tar = LayerTar::new();
    tar.file("../escape", b"x", 0o644)
        .symlink("x", "/")
        .file("x/etc/kiln-canary", b"c", 0o644)
        .hardlink("hl", "/etc/hostname")
        .hardlink("hl-up", "../../etc/hostname");
    let bytes = tar.into_bytes();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut seen = Vec::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let mut data = String::new();
        entry.read_to_string(&mut data).expect("entry data");
        seen.push((name, link, data));
    }
    let want = [
        ("../escape", "", "x"),
        ("x", "/", ""),
        ("x/etc/kiln-canary", "", "c"),
        ("hl", "/etc/hostname", ""),
        ("hl-up", "../../etc/hostname", ""),
    ];
    let got: Vec<_> = seen
        .iter()
        .map(|(n, l, d)| (n.as_str(), l.as_str(), d.as_str()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn multi_layer_layout_round_trips_through_the_registry() {
    let registry = Registry::shared();
    let scratch = tempfile::tempdir().expect("scratch");
    let mut extra = LayerTar::new();
    extra
        .dir("srv", 0o750)
        .file("srv/data.txt", b"second layer\n", 0o600);
    let mut layout = ImageLayout::create(&scratch.path().join("layout"));
    layout
        .add_layer(busybox_layer(), "busybox")
        .add_layer(&extra.into_bytes(), "extra");
    let dir = layout.finish(
        "two",
        &RunConfig {
            env: vec![DEFAULT_PATH.to_string()],
            cmd: vec!["/bin/sh".to_string()],
        },
    );
    let reference = push_layout(&registry, &dir, "two", "fixture/layers");
    let inspect = skopeo_inspect(&reference);
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(2));
    assert!(try_skopeo_inspect(&registry.reference("fixture/layers:absent")).is_err());
    let image = umoci_unpack(&format!("oci:{}:two", dir.display()));
    assert_eq!(image.read("srv/data.txt"), "second layer\n");
    let data = fs::metadata(image.path("srv/data.txt")).expect("data.txt");
    assert_eq!(data.permissions().mode() & 0o7777, 0o600);
    assert!(image.path("bin/busybox").is_file());
}

#[test]
fn debian_image_has_var_run_link() {
    let registry = Registry::shared();
    let reference = kiln_tests::debian_image(&registry);
    let config = skopeo_config(&reference);
    assert_eq!(config["config"]["Env"], serde_json::json!([DEFAULT_PATH]));
    let image = umoci_unpack(&reference);
    assert_eq!(
        fs::read_link(image.path("var/run")).expect("var/run is a symlink"),
        std::path::Path::new("/run")
    );
    assert!(image.path("run").is_dir());
    assert!(image.read("etc/debian_version").starts_with("12."));
    assert!(image.path("usr/bin/dpkg").is_file());
}
