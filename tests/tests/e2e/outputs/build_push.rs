//! Builds pushed to a real registry: a single-stage image whose config and files are read
//! back with skopeo and umoci, and a multi-stage build with `COPY --from` and `--target`.

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};

use kiln_tests::{
    busybox_image, kiln_bin, require_root, skopeo_config, skopeo_inspect, umoci_unpack, Registry,
    Scratch, DEFAULT_PATH,
};
use serde_json::json;

const HELLO: &str = "hello from the build context\n";

#[test]
fn single_stage_push_has_config_and_files() {
    kiln_bin();
    require_root("the context file is chowned and image owners are read back");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let hello = scratch.write("ctx/hello.txt", HELLO);
    fs::set_permissions(&hello, fs::Permissions::from_mode(0o640)).expect("chmod");
    // COPY without --chown must give 0:0 whatever the context file's owner is.
    chown(&hello, Some(1234), Some(4321)).expect("chown");

    let dockerfile = format!(
        r#"FROM {base}
ENV GREETING="hi there" APP_HOME=/app
WORKDIR /app
COPY hello.txt .
RUN echo "$GREETING from $APP_HOME" > greeting.txt && pwd > pwd.txt && id -u > uid.txt
LABEL org.example.suite="kiln e2e" tier=fast
EXPOSE 8080/tcp 9090/udp
CMD ["/bin/sh", "-c", "cat greeting.txt"]
USER nobody
"#
    );
    let destination = registry.reference("e2e/app:v1");
    let digest_file = scratch.join("digest.txt");
    scratch
        .build(&dockerfile)
        .destination(&destination)
        .arg("--digest-file")
        .arg(&digest_file)
        .run_ok();

    let inspect = skopeo_inspect(&destination);
    let digest = fs::read_to_string(&digest_file).expect("digest file written");
    assert!(
        digest.trim().starts_with("sha256:"),
        "digest file: {digest:?}"
    );
    assert_eq!(digest.trim(), inspect["Digest"].as_str().expect("Digest"));
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");

    let config = skopeo_config(&destination);
    let run = &config["config"];
    assert_eq!(run["Cmd"], json!(["/bin/sh", "-c", "cat greeting.txt"]));
    assert_eq!(run["WorkingDir"], "/app");
    assert_eq!(run["User"], "nobody");
    assert_eq!(run["Labels"]["org.example.suite"], "kiln e2e", "{run}");
    assert_eq!(run["Labels"]["tier"], "fast", "{run}");
    assert_eq!(run["ExposedPorts"], json!({"8080/tcp": {}, "9090/udp": {}}));
    let env: Vec<&str> = run["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for want in [DEFAULT_PATH, "GREETING=hi there", "APP_HOME=/app"] {
        assert!(env.contains(&want), "Env {env:?} lacks {want}");
    }
    assert_eq!(env.len(), 3, "unexpected Env entries: {env:?}");

    // The base layer is reused as is, and the build added layers on top of it.
    let base_config = skopeo_config(&base);
    let base_ids = base_config["rootfs"]["diff_ids"].as_array().expect("base");
    let ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    assert!(ids.len() > base_ids.len(), "no layer added: {ids:?}");
    assert_eq!(&ids[..base_ids.len()], &base_ids[..]);
    let layers = inspect["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), ids.len(), "manifest layers vs diff_ids");

    let image = umoci_unpack(&destination);
    assert!(image.path("app").is_dir());
    assert_eq!(image.read("app/hello.txt"), HELLO);
    let copied = fs::metadata(image.path("app/hello.txt")).expect("hello.txt");
    assert_eq!(
        copied.permissions().mode() & 0o7777,
        0o640,
        "source mode kept"
    );
    assert_eq!((copied.uid(), copied.gid()), (0, 0), "COPY default owner");
    assert_eq!(image.read("app/greeting.txt"), "hi there from /app\n");
    assert_eq!(image.read("app/pwd.txt"), "/app\n");
    assert_eq!(
        image.read("app/uid.txt"),
        "0\n",
        "RUN before USER runs as root"
    );
    // The base is still there underneath.
    assert!(image.path("bin/busybox").is_file());
    assert!(image.read("etc/passwd").starts_with("root:x:0:0:"));
}

#[test]
fn multi_stage_copy_from_and_target() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    // `unused` sits before the target but nothing needs it, and `broken` comes after the
    // target: neither may run (BuildKit prunes both).
    let dockerfile = format!(
        "FROM {base} AS builder
RUN mkdir -p /out && echo built-in-stage-0 > /out/artifact && chmod 0751 /out/artifact

FROM {base} AS unused
RUN echo unused stage ran && exit 4

FROM {base} AS final
COPY --from=0 /out/artifact /artifact
RUN cat /artifact > /seen-by-run

FROM final AS broken
RUN echo stage after target ran && exit 3
"
    );
    let destination = registry.reference("e2e/multi:final");
    let out = scratch
        .build(&dockerfile)
        .destination(&destination)
        .arg("--target")
        .arg("final")
        .run_ok();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!log.contains("unused stage ran"), "stage `unused` was run");
    assert!(
        !log.contains("stage after target ran"),
        "stage `broken` was run"
    );

    let image = umoci_unpack(&destination);
    assert_eq!(image.read("artifact"), "built-in-stage-0\n");
    assert_eq!(image.read("seen-by-run"), "built-in-stage-0\n");
    let artifact = fs::metadata(image.path("artifact")).expect("artifact");
    assert_eq!(artifact.permissions().mode() & 0o7777, 0o751);
    assert!(
        !image.path("out").exists(),
        "the builder stage's filesystem leaked into the final image"
    );
    let config = skopeo_config(&destination);
    assert_eq!(config["config"]["Cmd"], json!(["/bin/sh"]), "Cmd from base");
}
