//! Local outputs with `--no-push`: a docker-archive (`--tar-path`) and an OCI layout
//! (`--oci-layout-path`), each read back by skopeo and umoci, with the registry left
//! untouched.

use std::fs;

use kiln_tests::{
    assert_not_in_registry, busybox_image, kiln_bin, skopeo_config, skopeo_inspect, umoci_unpack,
    Registry, Scratch, Unpacked,
};
use serde_json::json;

const NOTE: &str = "kept in a local output\n";

fn dockerfile(base: &str) -> String {
    format!(
        r#"FROM {base}
COPY note.txt /note.txt
RUN echo from-run > /run.txt
CMD ["cat", "/note.txt"]
"#
    )
}

fn assert_contents(image: &Unpacked) {
    assert_eq!(image.read("note.txt"), NOTE);
    assert_eq!(image.read("run.txt"), "from-run\n");
    assert!(image.path("bin/busybox").is_file(), "base layer missing");
}

#[test]
fn tar_path_writes_a_docker_archive_and_pushes_nothing() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/note.txt", NOTE);
    let destination = registry.reference("e2e/outputs:tar");
    let archive = scratch.join("app.tar");
    scratch
        .build(&dockerfile(&base))
        .destination(&destination)
        .arg("--no-push")
        .arg("--tar-path")
        .arg(&archive)
        .run_ok();

    let source = format!("docker-archive:{}", archive.display());
    let inspect = skopeo_inspect(&source);
    assert_eq!(inspect["Architecture"], "amd64");
    let config = skopeo_config(&source);
    assert_eq!(config["config"]["Cmd"], json!(["cat", "/note.txt"]));
    assert_contents(&umoci_unpack(&source));
    assert_not_in_registry(&destination);
}

#[test]
fn oci_layout_path_is_tagged_and_pushes_nothing() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/note.txt", NOTE);
    let destination = registry.reference("e2e/outputs:v2");
    let layout = scratch.join("out");
    scratch
        .build(&dockerfile(&base))
        .destination(&destination)
        .arg("--no-push")
        .arg("--oci-layout-path")
        .arg(&layout)
        .run_ok();

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index.json is json");
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert_eq!(names, ["v2"], "ref.name annotations in index.json");

    let source = format!("oci:{}:v2", layout.display());
    let config = skopeo_config(&source);
    assert_eq!(config["config"]["Cmd"], json!(["cat", "/note.txt"]));
    assert_contents(&umoci_unpack(&source));
    assert_not_in_registry(&destination);
}
