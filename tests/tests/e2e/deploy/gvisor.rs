//! kiln under real gVisor: an OCI runtime bundle whose root is an executor image, run by
//! `runsc --platform=ptrace run` as GKE Sandbox runs `deploy/gvisor.yaml`'s Pod: that
//! container's arguments (the context and destination swapped for a mounted directory and an
//! OCI layout on a mounted volume), its user and exactly its capability set, no network. The
//! base image comes from a `--cache-dir` that `kiln warm` filled outside, mounted read-only.
//! The Dockerfile has RUN, COPY and a multi-stage `COPY --from`; the image must equal the one
//! the same Dockerfile gives outside gVisor (files, modes, owners, config).
//!
//! Two roots are checked: one made here like the executor image from the kiln binary under
//! test (scratch + `/kiln/executor` + certificates + the registry config; the binary's shared
//! libraries copied beside it), and the real executor image, which `executor_image.rs` builds
//! once and hands to [`builds_like_outside`].

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kiln_tests::{
    busybox_image, kiln_bin, require, require_root, run_kiln, run_with_timeout, workspace_root,
    Build, ImageView, Registry, Scratch,
};
use serde_json::{json, Value};

/// The image's environment (the top-level Dockerfile's `executor` stage).
const EXECUTOR_ENV: [&str; 6] = [
    "HOME=/root",
    "USER=root",
    "PATH=/kiln",
    "DOCKER_CONFIG=/kiln/.docker/",
    "SSL_CERT_FILE=/kiln/ssl/certs/ca-certificates.crt",
    "SSL_CERT_DIR=/kiln/ssl/certs",
];

/// The Dockerfile built in and outside the sandbox: RUN in both stages, COPY from the
/// context, `COPY --from` a stage, owners and modes set by RUN and by COPY. (Not under
/// `/out`: that is a volume in the sandbox, and an in-place build never snapshots a mount.)
fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base} AS build\n\
         RUN mkdir -p /made/sub && echo built > /made/built.txt && chmod 640 /made/built.txt \\\n \
         && chown 1:2 /made/built.txt && ln -s built.txt /made/link\n\
         FROM {base}\n\
         COPY --chown=3:4 hello.txt /app/hello.txt\n\
         COPY --from=build /made/ /app/\n\
         RUN cat /app/built.txt /app/hello.txt > /app/both && id -u > /app/uid\n\
         ENV BUILT_IN=sandbox\n\
         WORKDIR /app\n\
         CMD [\"cat\", \"/app/both\"]\n"
    )
}

/// The kiln container of `deploy/gvisor.yaml`: its arguments, user and added capabilities.
struct Manifest {
    args: Vec<String>,
    user: u64,
    caps: Vec<String>,
    /// `allowPrivilegeEscalation: false`: the runtime sets `no_new_privs`
    no_new_privileges: bool,
}

fn manifest() -> Manifest {
    let file = workspace_root().join("deploy/gvisor.yaml");
    let pod = super::documents(&file)
        .into_iter()
        .find(|d| d["kind"] == "Pod")
        .expect("gvisor.yaml has a Pod");
    assert_eq!(pod["spec"]["runtimeClassName"], "gvisor");
    let c = &pod["spec"]["containers"][0];
    let security = &c["securityContext"];
    assert_eq!(
        security["capabilities"]["drop"],
        json!(["ALL"]),
        "the manifest drops every capability and adds back a list"
    );
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|s| s.as_str().expect("strings").to_string())
            .collect()
    };
    Manifest {
        args: strings(&c["args"]),
        user: security["runAsUser"].as_u64().unwrap_or(0),
        caps: strings(&security["capabilities"]["add"]),
        no_new_privileges: security["allowPrivilegeEscalation"] == json!(false),
    }
}

/// The manifest's arguments with the endpoints swapped for what the sandbox can reach.
fn sandbox_args(manifest: &Manifest) -> Vec<String> {
    let mut args = vec!["/kiln/executor".to_string()];
    for arg in &manifest.args {
        if arg.starts_with("--context=") {
            args.push("--context=dir:///context".into());
        } else if arg.starts_with("--destination=") {
            args.push("--destination=registry.example.com/team/app:1.0".into());
        } else {
            args.push(arg.clone());
        }
    }
    args.extend(
        [
            "--no-push",
            "--oci-layout-path=/out/layout",
            "--cache-dir=/cache",
        ]
        .map(String::from),
    );
    args
}

fn bind(destination: &str, source: &Path, readonly: bool) -> Value {
    let mode = if readonly { "ro" } else { "rw" };
    json!({"destination": destination, "type": "bind",
           "source": source.to_str().expect("utf-8 path"), "options": ["rbind", mode]})
}

/// An OCI runtime config: the process as the Pod describes it, the volumes bound in. The
/// Pod's `seccompProfile: RuntimeDefault` has no counterpart here: under gVisor the runtime's
/// default profile filters the sandbox's calls into the host kernel, not the calls kiln makes
/// (gVisor's own kernel answers those), so there is nothing of it kiln could trip over.
fn runtime_config(manifest: &Manifest, args: &[String], work: &Path) -> Value {
    let caps: Vec<String> = manifest.caps.iter().map(|c| format!("CAP_{c}")).collect();
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": manifest.user, "gid": 0},
            "args": args,
            "env": EXECUTOR_ENV,
            "cwd": "/workspace",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": manifest.no_new_privileges
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "kiln-gvisor",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            bind("/context", &work.join("context"), true),
            bind("/cache", &work.join("cache"), true),
            bind("/kiln/.docker", &work.join("registry-config"), true),
            bind("/kiln/work", &work.join("kiln-work"), false),
            bind("/out", &work.join("out"), false)
        ],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                                 {"type": "mount"}, {"type": "network"}]}
    })
}

/// Runs `args` in a bundle whose root is a copy of `rootfs`, with runsc; its output.
fn run_in_sandbox(rootfs: &Path, manifest: &Manifest, args: &[String], work: &Path) -> Output {
    let runsc = require("runsc", "runsc (Debian package runsc)");
    let bundle = work.join("bundle");
    fs::create_dir_all(&bundle).expect("bundle");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(rootfs)
        .arg(bundle.join("rootfs"))
        .status()
        .expect("cp");
    assert!(copied.success(), "copying {}", rootfs.display());
    let config = runtime_config(manifest, args, work);
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .expect("config.json");
    let id = format!("kiln-gvisor-{}", std::process::id());
    let out = run_with_timeout(
        Command::new(&runsc)
            .arg(format!("--root={}", work.join("runsc-state").display()))
            .args(["--network=none", "--platform=ptrace", "run", "--bundle"])
            .arg(&bundle)
            .arg(&id),
        Duration::from_secs(600),
    );
    // a sandbox left behind by a timeout or a crash is removed; nothing else is running
    let _ = run_with_timeout(
        Command::new(&runsc)
            .arg(format!("--root={}", work.join("runsc-state").display()))
            .args(["delete", "--force", &id]),
        Duration::from_secs(60),
    );
    out
}

/// The kiln binary under test in a root laid out like the executor image, its shared
/// libraries (when it is not static) at their paths.
fn executor_like_root(dir: &Path) -> PathBuf {
    let root = dir.join("executor-root");
    for sub in ["kiln/.docker", "kiln/ssl/certs", "workspace"] {
        fs::create_dir_all(root.join(sub)).expect("root dirs");
    }
    fs::copy(kiln_bin(), root.join("kiln/executor")).expect("the kiln binary");
    fs::write(root.join("kiln/.docker/config.json"), "{}\n").expect("config.json");
    fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        root.join("kiln/ssl/certs/ca-certificates.crt"),
    )
    .expect("the CA bundle");
    let ldd = run_with_timeout(Command::new("ldd").arg(kiln_bin()), Duration::from_secs(30));
    for word in String::from_utf8_lossy(&ldd.stdout).split_whitespace() {
        if word.starts_with('/') {
            let to = root.join(word.trim_start_matches('/'));
            fs::create_dir_all(to.parent().expect("parent")).expect("lib dir");
            fs::copy(word, &to).unwrap_or_else(|e| panic!("{word}: {e}"));
        }
    }
    root
}

/// Builds [`dockerfile`] in `rootfs` under runsc as `deploy/gvisor.yaml` runs it, and outside
/// with the kiln under test; asserts the two images are the same. `what` names the root. The
/// root is copied into the bundle (an in-place build writes over it); the image is written
/// to `/out/layout` with the tag of the manifest's destination.
pub(crate) fn builds_like_outside(rootfs: &Path, what: &str) {
    require_root("runsc runs sandboxes as root");
    let registry = Registry::start();
    let base = busybox_image(&registry);
    let work = Scratch::new();
    work.write("context/Dockerfile", &dockerfile(&base));
    work.write("context/hello.txt", "hello from the context\n");
    work.write("registry-config/config.json", "{}\n");
    fs::create_dir_all(work.join("out")).expect("out");
    fs::create_dir_all(work.join("kiln-work")).expect("the kiln dir volume");
    let cache = work.join("cache");
    let warmed = run_kiln([
        "warm",
        "--image",
        base.as_str(),
        "--cache-dir",
        cache.to_str().expect("utf-8"),
    ]);
    assert!(warmed.status.success(), "kiln warm: {warmed:?}");

    let manifest = manifest();
    let args = sandbox_args(&manifest);
    let out = run_in_sandbox(rootfs, &manifest, &args, work.path());
    assert!(
        out.status.success(),
        "{what} under runsc with {args:?} and capabilities {:?} failed:\n{}{}",
        manifest.caps,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let outside = work.join("outside");
    Build::new(
        &work.join("context/Dockerfile"),
        &work.join("context"),
        &work.kiln_dir(),
    )
    .arg("--destination=registry.example.com/team/app:1.0")
    .arg("--no-push")
    .arg("--cache-dir")
    .arg(&cache)
    .arg("--oci-layout-path")
    .arg(&outside)
    .run_ok();
    let inside = ImageView::read(&format!("oci:{}:1.0", work.join("out/layout").display()));
    let reference = ImageView::read(&format!("oci:{}:1.0", outside.display()));
    let differences = reference.differences(&inside, &Default::default());
    assert!(
        differences.is_empty(),
        "{what}: the image built under gVisor differs from the one built outside:\n{}",
        differences.join("\n")
    );
    let both = inside.files.get("app/both").map(|_| ());
    assert!(both.is_some(), "RUN wrote /app/both in the sandbox");
}

#[test]
fn the_gvisor_manifest_builds_under_runsc_like_outside() {
    kiln_bin();
    let scratch = Scratch::new();
    let root = executor_like_root(scratch.path());
    builds_like_outside(&root, "an executor-like root with the kiln under test");
}
