//! kaniko's documented pods and CI usages, run: each kaniko-compat manifest's container
//! arguments, unchanged but for the registry and bucket endpoints (swapped for a loopback
//! registry, the GCS emulator and a local git server), run by the kiln binary in a mount
//! namespace where the manifest's volumes sit at their mount paths, as root with the
//! container runtime's default capabilities (the pods set no securityContext), with the executor
//! image's working directory and `DOCKER_CONFIG`. The build must push; the image must hold
//! what the context holds. GitLab's and Tekton's documented argument lists run the same way.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{
    busybox_image, fixture_cache_dir, gcs_server, git_http_server, kiln_bin, require, require_root,
    run_checked, umoci_unpack, workspace_root, Registry, Scratch, Server,
};

use super::{documents, kiln_containers};

/// One container to run: its arguments, environment and volumes (mount path → host dir).
pub(super) struct Container {
    pub(super) args: Vec<String>,
    pub(super) env: Vec<(String, String)>,
    pub(super) volumes: Vec<(String, PathBuf)>,
}

/// A container's `securityContext` as the runtime applies it: its user and the capabilities
/// it adds back after dropping all (the bounding set; root's permitted and effective sets
/// follow it).
pub(super) struct Confinement {
    pub(super) user: u64,
    pub(super) caps: Vec<String>,
    /// `allowPrivilegeEscalation: false`: `no_new_privs`
    pub(super) no_new_privs: bool,
}

impl Confinement {
    /// The `setpriv` command line that applies it.
    fn setpriv(&self) -> String {
        let mut bounding = String::from("-all");
        for cap in &self.caps {
            bounding.push_str(&format!(",+{}", cap.to_ascii_lowercase()));
        }
        let nnp = if self.no_new_privs {
            " --no-new-privs"
        } else {
            ""
        };
        format!(
            "setpriv --reuid={0} --regid=0 --clear-groups --inh-caps=-all --bounding-set={bounding}{nnp}",
            self.user
        )
    }
}

/// The container of `manifest` (deploy/kaniko-compat/…), with its env; volumes are given.
fn container(manifest: &str) -> (Vec<String>, Vec<(String, String)>) {
    let file = workspace_root().join("deploy/kaniko-compat").join(manifest);
    for doc in documents(&file) {
        if let Some((_, args)) = kiln_containers(&doc).into_iter().next() {
            let spec = if doc["kind"] == "Job" {
                &doc["spec"]["template"]["spec"]
            } else {
                &doc["spec"]
            };
            let env = spec["containers"][0]["env"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        e["name"].as_str().unwrap().to_string(),
                        e["value"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            return (args, env);
        }
    }
    panic!("{manifest}: no kiln container");
}

/// The capabilities a container runtime (containerd, CRI-O) gives a root container whose
/// manifest names none, as kaniko's documented pods do.
const RUNTIME_DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Runs `c` as the pod would: the volumes bind-mounted at their paths in a private mount
/// namespace, the working directory /workspace, the executor image's `DOCKER_CONFIG`, as
/// root with the runtime's default capabilities (the kaniko pods set no securityContext).
fn run(c: &Container, scratch: &Scratch) -> std::process::Output {
    let runtime_default = Confinement {
        user: 0,
        caps: RUNTIME_DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
        no_new_privs: false,
    };
    run_confined(c, scratch, Some(&runtime_default))
}

/// [`run`], the container's user and capabilities applied with setpriv (when given) once
/// the volumes are mounted.
pub(super) fn run_confined(
    c: &Container,
    scratch: &Scratch,
    confinement: Option<&Confinement>,
) -> std::process::Output {
    let unshare = require("unshare", "util-linux");
    let kiln = kiln_bin();
    // Held (shared) while the pod runs. A mount point this run makes on the machine (/cache,
    // /workspace, ...) is removed only when no other pod run, in any test process, holds it:
    // removing a directory another mount namespace has a mount on detaches that mount there.
    let mount_points = mount_point_lock();
    mount_points
        .lock_shared()
        .expect("locking the pods' mount points");
    // kiln's own dir in the pod: a scratch directory, mounted first so that volumes below
    // it (/kiln/.docker) land on top
    let mut volumes = vec![("/kiln".to_string(), scratch.join("pod-kiln"))];
    volumes.extend(c.volumes.iter().cloned());
    let mut script = String::from("set -e\n");
    let mut created = Vec::new();
    for (path, dir) in &volumes {
        fs::create_dir_all(dir).unwrap();
        if !Path::new(path).exists() && !path.starts_with("/kiln/") {
            created.push(path.clone());
        }
        script.push_str(&format!(
            "mkdir -p '{path}'\nmount --bind '{}' '{path}'\n",
            dir.display()
        ));
    }
    script.push_str("mkdir -p /workspace\ncd /workspace\n");
    match confinement {
        Some(confinement) => {
            require("setpriv", "util-linux");
            script.push_str(&format!("exec {} \"$@\"\n", confinement.setpriv()));
        }
        None => script.push_str("exec \"$@\"\n"),
    }
    let mut cmd = Command::new(unshare);
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .arg(kiln)
    .args(&c.args)
    .env("DOCKER_CONFIG", "/kiln/.docker/");
    if !created.contains(&"/workspace".to_string()) && !Path::new("/workspace").exists() {
        created.push("/workspace".into());
    }
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    eprintln!("$ {cmd:?}");
    let out = cmd.output().expect("running kiln in a mount namespace");
    eprintln!(
        "--- kiln {} ---\n{}{}--- end ---",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // the mount points this test made on the machine go again (empty: the mounts were
    // private), unless another pod run is still using them
    // (the list of mount points made holds those of runs that could not remove theirs)
    let list = fixture_cache_dir().join("pod-mount-points.list");
    let mut record = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&list)
        .unwrap_or_else(|e| panic!("{}: {e}", list.display()));
    for path in &created {
        writeln!(record, "{path}").unwrap();
    }
    mount_points
        .unlock()
        .expect("unlocking the pods' mount points");
    if mount_points.try_lock().is_ok() {
        let recorded = fs::read_to_string(&list).unwrap_or_default();
        for path in recorded.lines() {
            let _ = fs::remove_dir(path);
        }
        let _ = fs::remove_file(&list);
    }
    out
}

/// The lock file pod runs share (see [`run_confined`]); each call opens it anew, and `flock`
/// locks of separate opens exclude each other between threads of one process too.
fn mount_point_lock() -> fs::File {
    let path = fixture_cache_dir().join("pod-mount-points.lock");
    fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(super) fn assert_pushed(
    out: &std::process::Output,
    reference: &str,
    file: &str,
    content: &str,
) {
    assert!(
        out.status.success(),
        "the pod's build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(umoci_unpack(reference).read(file), content, "{reference}");
}

/// Replaces `from` in every argument by `to` (an endpoint swapped for a stand-in).
pub(super) fn swap(args: &[String], from: &str, to: &str) -> Vec<String> {
    args.iter().map(|a| a.replace(from, to)).collect()
}

pub(super) fn context_dir(scratch: &Scratch, base: &str, name: &str, marker: &str) -> PathBuf {
    let dir = scratch.join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("marker.txt"), marker).unwrap();
    let df = format!("FROM {base}\nCOPY marker.txt /marker.txt\nRUN cat /marker.txt\n");
    fs::write(dir.join("Dockerfile"), &df).unwrap();
    fs::write(dir.join("dockerfile"), &df).unwrap();
    dir
}

/// A smart-HTTP git server holding `example/app.git`, whose `main` is [`context_dir`] with
/// `marker`.
pub(super) fn serve_git_context(scratch: &Scratch, base: &str, marker: &str) -> Server {
    let repos = scratch.join("repos");
    let work = context_dir(scratch, base, "git-work", marker);
    let git = require("git", "git");
    let g = |dir: &Path, a: &[&str]| {
        run_checked(
            Command::new(&git)
                .arg("-C")
                .arg(dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(a),
        )
    };
    g(&work, &["init", "-q", "-b", "main"]);
    g(&work, &["add", "."]);
    g(&work, &["commit", "-q", "-m", "ctx"]);
    fs::create_dir_all(repos.join("example")).unwrap();
    g(
        scratch.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            repos.join("example/app.git").to_str().unwrap(),
        ],
    );
    git_http_server(&repos, None, &scratch.join("git.log"))
}

#[test]
fn kaniko_documented_pods_run_unchanged_but_for_endpoints() {
    require_root("mount namespaces and bind mounts at the pods' volume paths");
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let docker_config = scratch.join("docker-config");
    fs::create_dir_all(&docker_config).unwrap();
    fs::write(docker_config.join("config.json"), "{}\n").unwrap();

    // the volume pod: the Dockerfile and context on a volume at /workspace
    let (args, env) = container("volume.yaml");
    let dest = registry.reference("my-user/my-repo:latest");
    let workspace = context_dir(&scratch, &base, "volume-ws", "from the volume\n");
    let c = Container {
        args: swap(&args, "my-user/my-repo", &dest),
        env,
        volumes: vec![
            ("/kiln/.docker".into(), docker_config.clone()),
            ("/workspace".into(), workspace),
        ],
    };
    assert_pushed(&run(&c, &scratch), &dest, "marker.txt", "from the volume\n");

    // the warmer pod: kaniko's warmer arguments fill the cache volume the next pod reads
    let (args, env) = container("warmer.yaml");
    let c = Container {
        args: swap(&args, "gcr.io/google-appengine/debian9", &base),
        env,
        volumes: vec![
            ("/secret".into(), scratch.join("secret")),
            ("/cache".into(), scratch.join("cache")),
        ],
    };
    let warmed = run(&c, &scratch);
    assert!(warmed.status.success(), "the warmer pod failed");
    let printed = String::from_utf8_lossy(&warmed.stdout);
    assert!(
        printed.contains(&format!("{base}@sha256:")),
        "warmed: {printed}"
    );

    // the cache pod: --cache with the repository beside the destination, twice; the base
    // image from the warmed /cache
    let (args, env) = container("cache.yaml");
    let dest = registry.reference("team/app:latest");
    let workspace = context_dir(&scratch, &base, "cache-ws", "cached\n");
    let c = Container {
        args: swap(&args, "registry.example.com/team/app:latest", &dest),
        env,
        volumes: vec![
            ("/secret".into(), scratch.join("secret")),
            ("/cache".into(), scratch.join("cache")),
            ("/workspace".into(), workspace),
        ],
    };
    let first = run(&c, &scratch);
    assert_pushed(&first, &dest, "marker.txt", "cached\n");
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("base image from the cache"),
        "the base image came from the warmed cache"
    );
    let again = run(&c, &scratch);
    assert_pushed(&again, &dest, "marker.txt", "cached\n");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("cache hit"),
        "the second run of the cache pod hits the cache"
    );

    // the GCS pod: the context tarball in a bucket (the GCS emulator)
    let (args, env) = container("gcs-bucket.yaml");
    let ctx = context_dir(&scratch, &base, "gcs-ctx", "from a bucket\n");
    let data = scratch.join("gcs");
    fs::create_dir_all(data.join("my-bucket/path")).unwrap();
    run_checked(
        Command::new(require("tar", "tar"))
            .arg("-czf")
            .arg(data.join("my-bucket/path/context.tar.gz"))
            .arg("-C")
            .arg(&ctx)
            .arg("."),
    );
    let gcs = gcs_server(&data, &scratch.join("gcs.log"));
    let dest = registry.reference("my-project/my-image:latest");
    let mut env = env;
    env.push(("STORAGE_EMULATOR_HOST".into(), gcs.addr.clone()));
    let c = Container {
        args: swap(&args, "gcr.io/my-project/my-image:latest", &dest),
        env,
        volumes: vec![("/secret".into(), scratch.join("gcs-secret"))],
    };
    assert_pushed(&run(&c, &scratch), &dest, "marker.txt", "from a bucket\n");

    // the git job: a branch of a repository (a local smart-HTTP git server)
    let (args, env) = container("git-job.yaml");
    let server = serve_git_context(&scratch, &base, "from git\n");
    let dest = registry.reference("team/app:git");
    let mut env = env;
    env.push(("GIT_PULL_METHOD".into(), "http".into()));
    let args = swap(&args, "registry.example.com/team/app:git", &dest);
    let c = Container {
        args: swap(&args, "github.com", &server.addr),
        env,
        volumes: Vec::new(),
    };
    assert_pushed(&run(&c, &scratch), &dest, "marker.txt", "from git\n");
}

#[test]
fn gitlab_and_tekton_argument_lists_run_as_documented() {
    kiln_bin();
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    // GitLab CI: /kaniko/executor --context "${CI_PROJECT_DIR}" --dockerfile
    // "${CI_PROJECT_DIR}/Dockerfile" --destination "${CI_REGISTRY_IMAGE}:${CI_COMMIT_TAG}"
    let project = context_dir(&scratch, &base, "gitlab-project", "gitlab\n");
    let dest = registry.reference("group/project:v1.0.0");
    let out = kiln_tests::run_kiln([
        "--context".to_string(),
        project.display().to_string(),
        "--dockerfile".to_string(),
        format!("{}/Dockerfile", project.display()),
        "--destination".to_string(),
        dest.clone(),
        format!("--kiln-dir={}", scratch.join("k1").display()),
    ]);
    assert_pushed(&out, &dest, "marker.txt", "gitlab\n");

    // Tekton's kaniko Task: --dockerfile=$(params.DOCKERFILE)
    // --context=$(workspaces.source.path)/$(params.CONTEXT) --destination=$(params.IMAGE)
    // --digest-file=$(results.IMAGE_DIGEST.path)
    let source = scratch.join("tekton-source");
    let ctx = context_dir(&scratch, &base, "tekton-source/app", "tekton\n");
    let digest_file = scratch.join("IMAGE_DIGEST");
    let dest = registry.reference("tekton/app:latest");
    let out = kiln_tests::run_kiln([
        "--dockerfile=./Dockerfile".to_string(),
        format!("--context={}/app", source.display()),
        format!("--destination={dest}"),
        format!("--digest-file={}", digest_file.display()),
        format!("--kiln-dir={}", scratch.join("k2").display()),
    ]);
    assert_pushed(&out, &dest, "marker.txt", "tekton\n");
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(fs::read_to_string(&digest_file).unwrap(), printed);
    assert!(ctx.join("Dockerfile").is_file());
}
