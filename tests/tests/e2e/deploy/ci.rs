//! The CI-system templates in `deploy/ci/` (GitLab CI, a Tekton Task, an Argo Workflows
//! template, a GitHub Actions job): each parses as YAML, each names the executor image, the
//! executor's arguments in each pass `kiln check-args`, and the containers of the two
//! Kubernetes kinds (whose own schemas are not available offline) validate as containers of a
//! Pod against the Kubernetes schemas.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_tests::{workspace_root, Scratch};
use serde_json::{json, Value};

use super::{check_args, documents, validate};

/// The executor image's repository in every template.
const EXECUTOR_REPOSITORY: &str = "registry.example.com/kiln/executor:";

fn template(name: &str) -> (PathBuf, Value) {
    let path = workspace_root().join("deploy/ci").join(name);
    let mut docs = documents(&path);
    assert_eq!(docs.len(), 1, "{} holds one document", path.display());
    (path, docs.remove(0))
}

/// Words of a shell command line: quotes removed, nothing expanded (variables stay as
/// written, which `check-args` takes as values).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for ch in line.chars() {
        match (quote, ch) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(ch);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The arguments of every `/kiln/executor` command among `lines`.
fn executor_commands<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<Vec<String>> {
    lines
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|l| l.starts_with("/kiln/executor "))
        .map(|l| shell_words(l).split_off(1))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("strings").to_string())
        .collect()
}

/// `container` validated as the only container of a Pod (with `volumes`).
fn validate_as_pod(scratch: &Scratch, name: &str, container: &Value, volumes: &Value) {
    let mut container = container.clone();
    if container["name"].is_null() {
        container["name"] = json!("kiln");
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                     "spec": {"containers": [container], "volumes": volumes}});
    let file = scratch.join(&format!("{name}.json"));
    fs::write(&file, serde_json::to_vec_pretty(&pod).unwrap()).unwrap();
    if let Err(text) = validate(&file) {
        panic!("{name}'s container is no valid Pod container:\n{text}\n{pod:#}");
    }
}

fn assert_accepted(what: &Path, runs: &[Vec<String>]) {
    assert!(!runs.is_empty(), "{} runs the executor", what.display());
    for args in runs {
        if let Err(text) = check_args(args) {
            panic!("{}: kiln check-args {args:?}:\n{text}", what.display());
        }
    }
}

#[test]
fn gitlab_and_github_jobs_run_the_executor_with_arguments_kiln_accepts() {
    let (path, gitlab) = template("gitlab-ci.yml");
    let job = &gitlab["build"];
    let image = job["image"]["name"].as_str().expect("image.name");
    assert!(image.starts_with(EXECUTOR_REPOSITORY), "{image}");
    assert_eq!(
        job["image"]["entrypoint"],
        json!([""]),
        "the shell runs script"
    );
    let script = strings(&job["script"]);
    assert_accepted(&path, &executor_commands(script.iter().map(String::as_str)));

    let (path, github) = template("github-actions.yml");
    let job = &github["jobs"]["build"];
    let image = job["container"]["image"].as_str().expect("container.image");
    assert!(image.starts_with(EXECUTOR_REPOSITORY), "{image}");
    let runs: Vec<&str> = job["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    assert_accepted(&path, &executor_commands(runs.into_iter()));
}

#[test]
fn tekton_and_argo_templates_hold_valid_containers_with_arguments_kiln_accepts() {
    let scratch = Scratch::new();
    let (path, task) = template("tekton-task.yaml");
    assert_eq!(task["kind"], "Task");
    let builder = task["spec"]["params"]
        .as_array()
        .expect("params")
        .iter()
        .find(|p| p["name"] == "BUILDER_IMAGE")
        .expect("a BUILDER_IMAGE param");
    let default = builder["default"].as_str().expect("its default");
    assert!(default.starts_with(EXECUTOR_REPOSITORY), "{default}");
    let step = task["spec"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["image"] == "$(params.BUILDER_IMAGE)")
        .expect("a step running the builder image");
    // EXTRA_ARGS is an array param, empty by default: Tekton expands it to nothing
    let args: Vec<String> = strings(&step["args"])
        .into_iter()
        .filter(|a| a != "$(params.EXTRA_ARGS[*])")
        .collect();
    assert_accepted(&path, &[args]);
    let mut container = step.clone();
    container["image"] = json!(default);
    validate_as_pod(&scratch, "tekton-step", &container, &json!([]));

    let (path, workflow) = template("argo-workflow.yaml");
    assert_eq!(workflow["kind"], "WorkflowTemplate");
    let build = workflow["spec"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .find(|t| !t["container"].is_null())
        .expect("a container template");
    let container = &build["container"];
    let image = container["image"].as_str().expect("image");
    assert!(image.starts_with(EXECUTOR_REPOSITORY), "{image}");
    assert_accepted(&path, &[strings(&container["args"])]);
    validate_as_pod(
        &scratch,
        "argo-build",
        container,
        &workflow["spec"]["volumes"],
    );
}
