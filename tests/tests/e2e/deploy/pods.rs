//! kiln's own manifests in `deploy/` run as their Pods describe them: every kiln container
//! (init containers too) with its arguments (registry, bucket and git endpoints swapped for a
//! loopback registry, the GCS emulator and a local git server), its volumes at their mount
//! paths, its user and exactly its capability set (`setpriv`: the bounding set of
//! `drop: [ALL]` plus `add`; `no_new_privs` for `allowPrivilegeEscalation: false`). Each build must push (or write its layout) and hold what its
//! context holds. `gvisor.yaml`'s container runs under runsc instead (`gvisor`).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::process::Command;

use kiln_tests::{
    busybox_image, gcs_server, kiln_bin, require, require_root, run_checked, umoci_unpack,
    workspace_root, Registry, Scratch,
};
use serde_json::Value;

use super::kaniko_pods::{
    assert_pushed, context_dir, run_confined, serve_git_context, swap, Confinement, Container,
};
use super::{documents, EXECUTOR_IMAGE};

/// The container `name` of `manifest` (deploy/…): arguments, env and confinement.
fn container(manifest: &str, name: &str) -> (Vec<String>, Vec<(String, String)>, Confinement) {
    let file = workspace_root().join("deploy").join(manifest);
    for doc in documents(&file) {
        let spec = match doc["kind"].as_str() {
            Some("Job") => &doc["spec"]["template"]["spec"],
            Some("Pod") => &doc["spec"],
            _ => continue,
        };
        let all = ["initContainers", "containers"]
            .iter()
            .flat_map(|list| spec[*list].as_array().cloned().unwrap_or_default());
        for c in all {
            if c["name"] != name {
                continue;
            }
            assert_eq!(c["image"], EXECUTOR_IMAGE, "{manifest}: {name}");
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| s.as_str().expect("strings").to_string())
                    .collect()
            };
            let security = &c["securityContext"];
            assert_eq!(
                strings(&security["capabilities"]["drop"]),
                ["ALL"],
                "{manifest}: {name} drops every capability"
            );
            let env = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let value = e["value"].as_str().unwrap_or_default();
                    (e["name"].as_str().unwrap().to_string(), value.to_string())
                })
                .collect();
            let confinement = Confinement {
                user: security["runAsUser"].as_u64().expect("runAsUser"),
                caps: strings(&security["capabilities"]["add"]),
                no_new_privs: security["allowPrivilegeEscalation"] == false,
            };
            return (strings(&c["args"]), env, confinement);
        }
    }
    panic!("{manifest}: no container {name}");
}

fn docker_config(scratch: &Scratch) -> std::path::PathBuf {
    let dir = scratch.join("docker-config");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config.json"), "{}\n").unwrap();
    dir
}

#[test]
fn deploy_manifests_run_with_their_users_capabilities_and_volumes() {
    require_root("mount namespaces, bind mounts at the pods' paths, setpriv");
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let config = docker_config(&scratch);

    // the volume pod: context and outputs on the claim at /workspace, nothing pushed
    let (args, env, confinement) = container("pod-volume-context.yaml", "kiln");
    let workspace = context_dir(&scratch, &base, "volume-ws", "from the volume\n");
    let c = Container {
        args,
        env,
        volumes: vec![("/workspace".into(), workspace.clone())],
    };
    let out = run_confined(&c, &scratch, Some(&confinement));
    assert!(
        out.status.success(),
        "pod-volume-context.yaml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout = umoci_unpack(&format!("oci:{}:dev", workspace.join("out/app").display()));
    assert_eq!(layout.read("marker.txt"), "from the volume\n");
    assert!(workspace.join("out/digest").is_file(), "the digest file");

    // the cache Job: the warm init container fills /cache, the build reads it and a git
    // context; both with their own capability sets
    let server = serve_git_context(&scratch, &base, "from git\n");
    let cache = scratch.join("cache");
    let (args, env, confinement) = container("job-cache-warm.yaml", "warm");
    let args = swap(&args, "docker.io/library/debian:bookworm-slim", &base);
    let c = Container {
        args: swap(&args, "docker.io/library/golang:1.23", &base),
        env,
        volumes: vec![
            ("/cache".into(), cache.clone()),
            ("/kiln/.docker".into(), config.clone()),
        ],
    };
    let warmed = run_confined(&c, &scratch, Some(&confinement));
    assert!(
        warmed.status.success(),
        "job-cache-warm.yaml warm: {}",
        String::from_utf8_lossy(&warmed.stderr)
    );
    let (args, mut env, confinement) = container("job-cache-warm.yaml", "kiln");
    env.push(("GIT_PULL_METHOD".into(), "http".into()));
    let dest = registry.reference("team/app:main");
    let args = swap(&args, "registry.example.com/team/app:main", &dest);
    let c = Container {
        args: swap(&args, "github.com", &server.addr),
        env,
        volumes: vec![
            ("/cache".into(), cache.clone()),
            ("/kiln/.docker".into(), config.clone()),
        ],
    };
    let out = run_confined(&c, &scratch, Some(&confinement));
    assert_pushed(&out, &dest, "marker.txt", "from git\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("base image from the cache"),
        "job-cache-warm.yaml: the base image came from the warmed cache"
    );

    // the git Job: a branch of the repository
    let (args, mut env, confinement) = container("job-git-context.yaml", "kiln");
    env.push(("GIT_PULL_METHOD".into(), "http".into()));
    let dest = registry.reference("team/app:git-job");
    let args = swap(&args, "registry.example.com/team/app:main", &dest);
    let c = Container {
        args: swap(&args, "github.com", &server.addr),
        env,
        volumes: vec![("/kiln/.docker".into(), config.clone())],
    };
    let out = run_confined(&c, &scratch, Some(&confinement));
    assert_pushed(&out, &dest, "marker.txt", "from git\n");

    // the GCS pod: the context tarball in a bucket (the GCS emulator)
    let (args, mut env, confinement) = container("pod-gcs-context.yaml", "kiln");
    let ctx = context_dir(&scratch, &base, "gcs-ctx", "from a bucket\n");
    let data = scratch.join("gcs");
    fs::create_dir_all(data.join("my-bucket/builds")).unwrap();
    run_checked(
        Command::new(require("tar", "tar"))
            .arg("-czf")
            .arg(data.join("my-bucket/builds/context.tar.gz"))
            .arg("-C")
            .arg(&ctx)
            .arg("."),
    );
    let gcs = gcs_server(&data, &scratch.join("gcs.log"));
    env.push(("STORAGE_EMULATOR_HOST".into(), gcs.addr.clone()));
    let dest = registry.reference("team/app:1.0");
    let c = Container {
        args: swap(&args, "registry.example.com/team/app:1.0", &dest),
        env,
        volumes: vec![
            ("/kiln/.docker".into(), config),
            ("/secret/gcs".into(), scratch.join("gcs-secret")),
        ],
    };
    let out = run_confined(&c, &scratch, Some(&confinement));
    assert_pushed(&out, &dest, "marker.txt", "from a bucket\n");
}
