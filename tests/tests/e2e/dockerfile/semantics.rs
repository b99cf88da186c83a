//! Dockerfile semantics that the public conformance cases don't show, checked on the pushed
//! image with skopeo and umoci: the base image's ONBUILD triggers run in the child (and are
//! not inherited), BuildKit's automatic platform ARGs reach FROM and declared stages, and
//! predefined proxy ARGs reach RUN without a declaration; the warnings for an empty COPY source
//! and a VOLUME path used before it exists.

use kiln_tests::{busybox_image, kiln_bin, skopeo_config, umoci_unpack, Registry, Scratch};
use serde_json::json;

#[test]
fn onbuild_triggers_run_in_the_child_and_are_not_inherited() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/payload.txt", "from the child's context\n");

    let parent = registry.reference("e2e/onbuild-parent:1");
    scratch
        .build(&format!(
            "FROM {base}\nONBUILD COPY payload.txt /triggered/\nONBUILD RUN echo ran > /triggered/run.txt\nRUN echo parent > /parent.txt\n"
        ))
        .destination(&parent)
        .run_ok();
    let parent_config = skopeo_config(&parent);
    assert_eq!(
        parent_config["config"]["OnBuild"],
        json!([
            "COPY payload.txt /triggered/",
            "RUN echo ran > /triggered/run.txt"
        ])
    );
    let parent_root = umoci_unpack(&parent);
    assert!(
        !parent_root.path("triggered").exists(),
        "triggers must not run in the image that declares them"
    );

    let child = registry.reference("e2e/onbuild-child:1");
    let child_root = scratch
        .build(&format!(
            "FROM {parent}\nRUN cat /triggered/run.txt > /child.txt\n"
        ))
        .push_and_unpack(&child);
    assert_eq!(
        child_root.read("triggered/payload.txt"),
        "from the child's context\n"
    );
    assert_eq!(child_root.read("triggered/run.txt"), "ran\n");
    assert_eq!(child_root.read("child.txt"), "ran\n");
    let child_config = skopeo_config(&child);
    assert!(
        child_config["config"]["OnBuild"].is_null(),
        "ONBUILD must not be inherited: {}",
        child_config["config"]
    );
}

#[test]
fn platform_and_proxy_args() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    // the base is pushed as <host>/busybox:latest; FROM reaches it through TARGETOS
    let base_template = base.replace(":latest", ":${TAG}");
    let scratch = Scratch::new();
    scratch.write("ctx/.keep", "");
    let destination = registry.reference("e2e/args:1");
    let dockerfile = format!(
        "ARG TAG=latest\nFROM {base_template} AS b-${{TARGETOS}}\nARG TARGETARCH\nARG TARGETPLATFORM\nRUN echo \"$TARGETARCH $TARGETPLATFORM [$BUILDOS]\" > /platform.txt && echo \"[$HTTP_PROXY] [$no_proxy]\" > /proxy.txt\n"
    );
    let out = scratch
        .build(&dockerfile)
        .destination(&destination)
        .arg("--build-arg")
        .arg("HTTP_PROXY=http://proxy.invalid:3128")
        .arg("--build-arg")
        .arg("UNUSED_ARG=1")
        .run_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("UNUSED_ARG"),
        "an unused --build-arg is warned about: {stderr}"
    );
    let root = umoci_unpack(&destination);
    // undeclared BUILDOS stays invisible in the stage, declared TARGET* are set
    assert_eq!(root.read("platform.txt"), "amd64 linux/amd64 []\n");
    assert_eq!(root.read("proxy.txt"), "[http://proxy.invalid:3128] []\n");
    let config = skopeo_config(&destination);
    let history = serde_json::to_string(&config["history"]).expect("history");
    assert!(
        !history.contains("proxy.invalid"),
        "proxy values stay out of history: {history}"
    );
    let env = serde_json::to_string(&config["config"]["Env"]).expect("env");
    assert!(!env.contains("proxy.invalid"), "nor in Env: {env}");
}

#[test]
fn empty_sources_and_missing_volume_paths_are_warned_about() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/a.txt", "a\n");
    // as in BuildKit, an empty source stands for the whole context, and VOLUME creates
    // nothing; both are built, with a warning naming the line
    let dockerfile = format!(
        "FROM {base}\nARG NOPE\nCOPY ${{NOPE}} /whole/\nRUN test -f /whole/a.txt && mkdir /kept\nVOLUME /data /kept\nCOPY a.txt /kept/\nRUN mkdir -p /data && echo x > /data/f\n"
    );
    let out = scratch.build(&dockerfile).arg("--no-push").run_ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Dockerfile:3: COPY source \"${NOPE}\" expands to nothing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Dockerfile:7: RUN uses /data, declared a VOLUME on line 5"),
        "{stderr}"
    );
    // /kept exists when COPY names it: no warning
    assert_eq!(stderr.matches("declared a VOLUME").count(), 1, "{stderr}");
}
