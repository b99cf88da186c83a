//! kiln's command line outside of a build: `--version` and `kiln version`, completions and
//! the manual page, a bad `--dockerfile` path reported with the path named, and the README's
//! table of every kaniko and docker flag: each example passes `kiln check-args`, and the
//! table names every flag kiln's `build` has and every flag kaniko's executor has.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

use kiln_tests::{kiln_bin, run_kiln, workspace_root, Scratch};

/// kaniko's executor flags (long names, deprecated spellings included), from its
/// `cmd/executor/cmd/root.go`, the original project and the maintained fork together.
const KANIKO_FLAGS: &[&str] = &[
    "dockerfile",
    "context",
    "context-sub-path",
    "bucket",
    "destination",
    "snapshot-mode",
    "custom-platform",
    "build-arg",
    "image-fs-extract-retry",
    "kaniko-dir",
    "tar-path",
    "single-snapshot",
    "reproducible",
    "target",
    "no-push",
    "no-push-cache",
    "cache-repo",
    "cache-dir",
    "digest-file",
    "image-name-with-digest-file",
    "image-name-tag-with-digest-file",
    "oci-layout-path",
    "compression",
    "image-format",
    "compression-level",
    "cache",
    "compressed-caching",
    "pre-cleanup",
    "cleanup",
    "cache-ttl",
    "ignore-var-run",
    "label",
    "use-new-run",
    "git",
    "cache-copy-layers",
    "cache-run-layers",
    "ignore-path",
    "skip-push-permission-check",
    "annotation",
    "preserve-context",
    "materialize",
    "secret",
    "dryrun",
    "snapshotMode",
    "customPlatform",
    "tarPath",
    "force-build-metadata",
    "skip-unused-stages",
    "insecure",
    "skip-tls-verify",
    "insecure-pull",
    "skip-tls-verify-pull",
    "push-retry",
    "push-ignore-immutable-tag-errors",
    "image-download-retry",
    "insecure-registry",
    "skip-tls-verify-registry",
    "registry-certificate",
    "registry-client-cert",
    "registry-map",
    "registry-mirror",
    "skip-default-registry-fallback",
    "credential-helpers",
    "verbosity",
    "log-format",
    "log-timestamp",
    "force",
    "whitelist-var-run",
];

/// The environment variables kaniko reads for its flags.
const KANIKO_VARIABLES: &[&str] = &[
    "KANIKO_DIR",
    "KANIKO_NO_PUSH",
    "KANIKO_REGISTRY_MIRROR",
    "KANIKO_REGISTRY_MAP",
    "KANIKO_PRE_CLEANUP",
    "KANIKO_CLEANUP",
    "KANIKO_PRESERVE_CONTEXT",
];

/// The `docker build` flags kiln takes.
const DOCKER_FLAGS: &[&str] = &[
    "file",
    "tag",
    "platform",
    "no-cache",
    "push",
    "output",
    "iidfile",
    "progress",
    "metadata-file",
    "build-arg",
    "target",
    "label",
    "secret",
];

/// One row of the README's flag table: what it names (column 1) and its example.
struct Row {
    names: String,
    example: String,
}

fn table() -> Vec<Row> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let start = readme
        .find("<!-- flags:start -->")
        .expect("README: <!-- flags:start --> marker");
    let end = readme
        .find("<!-- flags:end -->")
        .expect("README: <!-- flags:end --> marker");
    let rows: Vec<Row> = readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `") || l.starts_with("| -"))
        .map(|l| {
            let cols: Vec<&str> = l.split(" | ").collect();
            assert_eq!(cols.len(), 4, "a row has 4 columns: {l}");
            Row {
                names: cols[0].to_string(),
                example: cols[3].trim_end_matches(" |").trim_matches('`').to_string(),
            }
        })
        .collect();
    assert!(rows.len() > 50, "the flag table has {} rows", rows.len());
    rows
}

/// Runs `kiln check-args ARGS` with `env`; the exit code and stderr.
fn check_args(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(kiln_bin());
    cmd.arg("check-args").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running kiln check-args");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_example_in_the_flag_table_is_accepted() {
    let mut failures = Vec::new();
    for row in table() {
        let words: Vec<&str> = row.example.split_whitespace().collect();
        let (code, stderr) = match words.as_slice() {
            ["kiln", rest @ ..] => {
                let out = run_kiln(rest);
                let printed = !out.stdout.is_empty() || rest.first() == Some(&"check-args");
                let ok = out.status.success() && printed;
                (
                    Some(if ok { 0 } else { 1 }),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            }
            [assignment] if assignment.contains('=') && assignment.starts_with("KANIKO_") => {
                // a variable alone must make the command line valid: KANIKO_NO_PUSH=true
                // stands in for --no-push
                let (k, v) = assignment.split_once('=').unwrap();
                check_args(&["build"], &[(k, v)])
            }
            args => {
                let mut all = vec!["--destination=127.0.0.1:1/e2e/flags:1"];
                all.extend_from_slice(args);
                check_args(&all, &[])
            }
        };
        if code != Some(0) {
            failures.push(format!("{} ({}): {stderr}", row.names, row.example));
        }
    }
    assert!(
        failures.is_empty(),
        "examples refused:\n{}",
        failures.join("\n")
    );

    // the walk can fail: an unknown flag and a contradiction are refused with exit 2
    for bad in [
        vec!["--destination=127.0.0.1:1/x:1", "--no-such-flag"],
        vec!["--tag=127.0.0.1:1/x:1", "--push", "--no-push"],
        vec!["--no-push", "--build-arg==x"],
        vec!["--no-push", "--output=type=local,dest=out"],
    ] {
        let (code, stderr) = check_args(&bad, &[]);
        assert_eq!(code, Some(2), "{bad:?} must be refused:\n{stderr}");
    }
    let (code, stderr) = check_args(&["build"], &[]);
    assert_eq!(code, Some(2), "no destination and no --no-push is refused");
    assert!(stderr.contains("no destination given"), "{stderr}");
}

#[test]
fn the_flag_table_names_every_flag_of_kiln_kaniko_and_docker() {
    let names: String = table().iter().map(|r| r.names.clone() + "\n").collect();
    let named = |flag: &str| {
        names.contains(&format!("`--{flag}`"))
            || names.contains(&format!("--{flag},"))
            || names.contains(&format!(" --{flag}`"))
    };
    let mut missing = BTreeSet::new();
    for flag in KANIKO_FLAGS.iter().chain(DOCKER_FLAGS) {
        if !named(flag) {
            missing.insert(format!("--{flag}"));
        }
    }
    for var in KANIKO_VARIABLES {
        if !names.contains(&format!("`{var}`")) {
            missing.insert(var.to_string());
        }
    }
    // every long flag of `kiln build` (and its visible aliases), from its own help
    let out = run_kiln(["build", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let listed = help_flags(&help);
    assert!(
        listed.len() > 60,
        "too few flags read from the help: {listed:?}"
    );
    for name in &listed {
        if !named(name) {
            missing.insert(format!("--{name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "not in the README's flag table: {missing:?}"
    );

    // and kiln takes every one of kaniko's flags (aliases are hidden from the help)
    let hidden = [
        "snapshotMode",
        "customPlatform",
        "tarPath",
        "whitelist-var-run",
        "kaniko-dir",
    ];
    for flag in KANIKO_FLAGS {
        assert!(
            listed.contains(*flag) || hidden.contains(flag),
            "kiln build --help does not list --{flag}"
        );
    }
}

/// The long flags a clap help text defines: the `--name`s on lines that start with a flag,
/// and those in `[aliases: …]`.
fn help_flags(help: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let mut words: Vec<&str> = Vec::new();
        if trimmed.starts_with('-') {
            words.extend(
                trimmed
                    .split("  ")
                    .next()
                    .unwrap_or_default()
                    .split_whitespace(),
            );
        }
        if let Some(i) = line.find("[alias") {
            words.extend(line[i..].split_whitespace());
        }
        for word in words {
            let Some(name) = word.trim_end_matches([',', ']']).strip_prefix("--") else {
                continue;
            };
            let name = name.split(['=', '[', '<']).next().unwrap_or_default();
            if !name.is_empty() && name != "help" && name != "version" {
                out.insert(name.to_string());
            }
        }
    }
    out
}

#[test]
fn version_names_the_workspace_version() {
    let want = format!("kiln {}", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["version"][..]] {
        let out = run_kiln(args);
        assert!(out.status.success(), "kiln {args:?} exited {}", out.status);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.trim().starts_with(&want),
            "`kiln {args:?}` printed {stdout:?}, want {want:?}"
        );
    }
}

#[test]
fn completions_and_the_manual_page_come_from_the_flag_definitions() {
    let bash = run_kiln(["completion", "bash"]);
    assert!(bash.status.success());
    let bash = String::from_utf8_lossy(&bash.stdout);
    for flag in ["--destination", "--kaniko-dir", "--tag", "--log-timestamp"] {
        assert!(bash.contains(flag), "bash completion lacks {flag}");
    }
    // the script is valid bash
    let scratch = Scratch::new();
    let script = scratch.write("kiln.bash", &bash);
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "bash -n refuses the completion script");
    for shell in ["zsh", "fish"] {
        let out = run_kiln(["completion", shell]);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let page = run_kiln(["manpage", "build"]);
    assert!(page.status.success());
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH"),
        "not roff:\n{page}"
    );
    assert!(page.contains("destination") && page.contains("kaniko"));
    assert_eq!(run_kiln(["manpage", "nosuch"]).status.code(), Some(2));
}

#[test]
fn missing_dockerfile_is_an_error_naming_the_path() {
    let scratch = Scratch::new();
    let missing = scratch.join("no-such-dir/Dockerfile.missing");
    let out = kiln_tests::Build::new(&missing, &scratch.context(), &scratch.kiln_dir())
        .destination("127.0.0.1:1/e2e/never:latest")
        .run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "kiln must fail cleanly, got {}",
        out.status
    );
    assert!(
        stderr.contains("Dockerfile.missing"),
        "the error must name the Dockerfile path:\n{stderr}"
    );
}
