//! The Kubernetes manifests in deploy/: every one validates against the Kubernetes schemas
//! (kubernetes-validate, strict), every kiln container's arguments parse as kiln's command
//! line (`kiln check-args`), and a broken copy of each kind fails the check that should catch it.
//! The kaniko-compat examples differ from kaniko's documented pods only in the image and
//! the registry config path; `kaniko_pods` runs them. `pods` runs kiln's own manifests' containers with
//! their users and capabilities, `gvisor` runs `gvisor.yaml`'s container under runsc; `ci` checks the CI-system templates in `deploy/ci/`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod ci;
pub(crate) mod gvisor;
mod kaniko_pods;
mod pods;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{require, run_kiln, run_with_timeout, workspace_root};
use serde_json::Value;

const EXECUTOR_IMAGE: &str = "registry.example.com/kiln/executor:latest";

fn manifests() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![workspace_root().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("deploy/ is readable") {
            let path = entry.expect("deploy/ entry").path();
            if path.is_dir() {
                // the CI templates are no Kubernetes manifests (or of kinds without an
                // offline schema): `ci` checks them
                if path.file_name().is_some_and(|n| n != "ci") {
                    dirs.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 6,
        "expected the deploy/ manifests, found {out:?}"
    );
    out
}

/// Runs kubernetes-validate --strict on `file`; Ok(()) or its output.
fn validate(file: &Path) -> Result<(), String> {
    let tool = require(
        "kubernetes-validate",
        "kubernetes-validate (PyPI; scripts/test.sh setup installs it)",
    );
    let out = run_with_timeout(
        Command::new(tool).arg("--strict").arg(file),
        std::time::Duration::from_secs(120),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !text.contains("ERROR") {
        Ok(())
    } else {
        Err(text)
    }
}

/// The documents of a YAML file, as JSON values (Debian's python3-yaml reads them).
fn documents(file: &Path) -> Vec<Value> {
    let python = require("python3", "python3 python3-yaml");
    let out = run_with_timeout(
        Command::new(python).arg("-c").arg(
            "import sys, json, yaml\n\
             print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        )
        .arg(file),
        std::time::Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "reading {} as YAML (apt-get install python3-yaml): {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python printed JSON")
}

/// Every container of a Pod or a Job (init containers too) that runs the kiln executor,
/// with its arguments.
fn kiln_containers(doc: &Value) -> Vec<(String, Vec<String>)> {
    let spec = match doc["kind"].as_str() {
        Some("Pod") => &doc["spec"],
        Some("Job") => &doc["spec"]["template"]["spec"],
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            if c["image"].as_str() != Some(EXECUTOR_IMAGE) {
                continue;
            }
            let args = c["args"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().expect("args are strings").to_string())
                        .collect()
                })
                .unwrap_or_default();
            out.push((c["name"].as_str().unwrap_or("?").to_string(), args));
        }
    }
    out
}

fn check_args(args: &[String]) -> Result<(), String> {
    let mut argv = vec!["check-args".to_string(), "--".to_string()];
    argv.extend(args.iter().cloned());
    let out = run_kiln(&argv);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn every_manifest_validates_against_the_kubernetes_schemas() {
    for file in manifests() {
        if let Err(text) = validate(&file) {
            panic!("{} does not validate:\n{text}", file.display());
        }
    }
}

#[test]
fn a_broken_manifest_fails_schema_validation() {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let source = workspace_root().join("deploy/job-git-context.yaml");
    let text = fs::read_to_string(&source).expect("job manifest");
    // an unknown field, and a field with the wrong type: either must be rejected
    let cases = [
        (
            "restartPolicy: Never",
            "restartPolicy: Never\n      hostNetwrok: true",
        ),
        ("backoffLimit: 1", "backoffLimit: one"),
    ];
    for (from, to) in cases {
        assert!(text.contains(from), "{from} is in the Job manifest");
        let broken = scratch.path().join("broken.yaml");
        fs::write(&broken, text.replacen(from, to, 1)).expect("write broken copy");
        assert!(
            validate(&broken).is_err(),
            "a manifest with `{to}` passed validation"
        );
    }
}

#[test]
fn every_kiln_container_has_arguments_kiln_accepts() {
    let mut checked = 0;
    for file in manifests() {
        for doc in documents(&file) {
            for (name, args) in kiln_containers(&doc) {
                if let Err(e) = check_args(&args) {
                    panic!(
                        "{} container {name}: kiln rejects {args:?}:\n{e}",
                        file.display()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 8,
        "expected every example's containers, checked {checked}"
    );
}

#[test]
fn a_flag_typo_is_rejected_by_check_args() {
    let good = vec![
        "--context=gs://b/context.tar.gz".to_string(),
        "--destination=registry.example.com/a:b".to_string(),
    ];
    check_args(&good).expect("the correct arguments pass");
    let typo = vec![
        "--context=gs://b/context.tar.gz".to_string(),
        "--destinaton=registry.example.com/a:b".to_string(),
    ];
    let err = check_args(&typo).expect_err("a misspelt flag must fail");
    assert!(
        err.contains("--destinaton"),
        "the error names the flag: {err}"
    );
}

#[test]
fn kaniko_compat_examples_differ_from_kaniko_only_in_image_and_config_path() {
    let dir = workspace_root().join("deploy/kaniko-compat");
    for name in [
        "gcs-bucket.yaml",
        "ecr.yaml",
        "volume.yaml",
        "cache.yaml",
        "git-job.yaml",
    ] {
        let file = dir.join(name);
        let docs = documents(&file);
        let pod = docs
            .iter()
            .find(|d| d["kind"] == "Pod" || d["kind"] == "Job")
            .unwrap_or_else(|| panic!("{name} has a Pod or a Job"));
        let containers = kiln_containers(pod);
        assert_eq!(containers.len(), 1, "{name}: one kiln container");
        // Put kaniko's image and config path back: nothing kiln-specific may remain.
        let kaniko = serde_json::to_string(pod)
            .expect("json")
            .replace(EXECUTOR_IMAGE, "gcr.io/kaniko-project/executor:latest")
            .replace("/kiln/.docker", "/kaniko/.docker");
        assert!(
            !kaniko.contains("kiln"),
            "{name} differs from kaniko's pod beyond the image and config path: {kaniko}"
        );
        let args = &containers[0].1;
        for flag in ["--dockerfile=", "--context=", "--destination="] {
            assert!(
                args.iter().any(|a| a.starts_with(flag)),
                "{name}: {flag} as in kaniko's example"
            );
        }
        check_args(args).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
