//! `kiln build --dry-run`: the plan printed without building. Over kiln's conformance
//! Dockerfiles it makes no stage root; with a warm `--cache`, its hit/miss column is what the
//! real build then does, step by step (`?` where it cannot know, never a wrong answer).

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_tests::{busybox_image, read_cases, rewrite_bases, Build, Registry, Scratch};

/// Every entry below `dir` whose name marks a stage root or a build's work dir (the trash of
/// earlier builds, `.removing`, aside).
fn stage_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name == ".removing" {
                continue; // an earlier real build's scratch, still being removed
            }
            if name.starts_with("build-") || name.starts_with("stage-") {
                found.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
                todo.push(e.path());
            }
        }
    }
    found
}

/// `[stage n/m]` → the dry run's column (`hit`, `miss`, `-`, `?`) from its log.
fn predicted(log: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in log.lines() {
        let Some(at) = line.find("  [") else { continue };
        let rest = &line[at + 2..];
        let Some(end) = rest.find("] ") else { continue };
        let label = rest[..=end].to_string();
        let fields: Vec<&str> = rest[end + 2..].split("  ").collect();
        if fields.len() >= 2 {
            m.insert(label, fields[1].trim().to_string());
        }
    }
    m
}

/// `[stage n/m]` → whether the real build took it from the cache (`--progress plain`).
fn done(log: &str) -> BTreeMap<String, bool> {
    let mut m = BTreeMap::new();
    for line in log.lines() {
        let Some(end) = line.find("] ").filter(|_| line.starts_with('[')) else {
            continue;
        };
        let (label, how) = (&line[..=end], &line[end + 2..]);
        if how == "CACHED" {
            m.insert(label.to_string(), true);
        } else if how.starts_with("DONE ") {
            m.insert(label.to_string(), false);
        }
    }
    m
}

#[test]
fn dry_run_over_the_conformance_dockerfiles_makes_no_stage_root() {
    let registry = Registry::shared();
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/kiln.cases");
    let all = read_cases(&cases);
    assert!(all.len() >= 10, "the cases file lists kiln's cases");
    for case in all {
        let scratch = Scratch::new();
        let text = fs::read_to_string(&case.dockerfile).expect("Dockerfile");
        // bases the test registry serves (busybox); the cases name no other image
        let rewritten = rewrite_bases(&text, &registry);
        let dockerfile = scratch.write("Dockerfile", &rewritten);
        let ignore = case.dockerfile.with_extension("dockerignore");
        let own = PathBuf::from(format!("{}.dockerignore", case.dockerfile.display()));
        for candidate in [ignore, own] {
            if candidate.is_file() {
                fs::copy(&candidate, scratch.join("Dockerfile.dockerignore")).expect("ignore");
            }
        }
        let mut b = Build::new(&dockerfile, &case.context, &scratch.kiln_dir())
            .arg("--no-push")
            .arg("--dry-run");
        for arg in &case.build_args {
            b = b.arg("--build-arg").arg(arg);
        }
        if let Some(target) = &case.target {
            b = b.arg("--target").arg(target);
        }
        let out = b.run_ok();
        assert!(out.stdout.is_empty(), "{}: nothing on stdout", case.name);
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains("dry run: nothing built, nothing pushed"),
            "{}: {log}",
            case.name
        );
        let steps = predicted(&log);
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count();
        assert!(
            !steps.is_empty() && steps.len() <= lines,
            "{}: {steps:?}",
            case.name
        );
        assert!(
            steps.values().all(|c| ["-", "?"].contains(&c.as_str())),
            "{}: without --cache nothing hits or misses: {steps:?}",
            case.name
        );
        let left = stage_dirs(&scratch.kiln_dir());
        assert!(left.is_empty(), "{}: a dry run made {left:?}", case.name);
    }
}

/// A context, a Dockerfile over it, a registry with busybox and a cache repository.
struct Fixture {
    registry: Registry,
    scratch: Scratch,
}

impl Fixture {
    fn new(files: &[(&str, &str)], dockerfile: &str) -> Fixture {
        let registry = Registry::start();
        let base = busybox_image(&registry);
        let scratch = Scratch::new();
        for (name, content) in files {
            scratch.write(&format!("ctx/{name}"), content);
        }
        scratch.write("Dockerfile", &dockerfile.replace("{base}", &base));
        Fixture { registry, scratch }
    }

    fn build(&self, extra: &[&str]) -> String {
        let mut b = Build::new(
            &self.scratch.join("Dockerfile"),
            &self.scratch.context(),
            &self.scratch.kiln_dir(),
        )
        .destination(&self.registry.reference("app:1"))
        .arg("--cache")
        .arg("--cache-copy-layers")
        .arg(format!("--cache-repo={}", self.registry.reference("cache")))
        .arg("--progress=plain")
        .arg("--log-format=text");
        for a in extra {
            b = b.arg(a);
        }
        String::from_utf8_lossy(&b.run_ok().stderr).to_string()
    }

    /// The dry run's column, checked to leave no stage root behind.
    fn plan(&self) -> BTreeMap<String, String> {
        let log = self.build(&["--dry-run"]);
        let left = stage_dirs(&self.scratch.kiln_dir());
        assert!(left.is_empty(), "a dry run made {left:?}");
        predicted(&log)
    }

    /// Runs the real build and checks the plan against it step by step; returns the plan.
    fn compare(&self, plan: &BTreeMap<String, String>) {
        let real = done(&self.build(&[]));
        for (label, column) in plan {
            let cached = real.get(label).copied();
            match column.as_str() {
                "?" => {}
                "hit" => assert_eq!(cached, Some(true), "{label}: predicted hit; {real:?}"),
                "miss" | "-" => {
                    assert_eq!(cached, Some(false), "{label}: predicted {column}; {real:?}")
                }
                other => panic!("{label}: unknown column {other:?}"),
            }
        }
        assert_eq!(
            plan.keys().collect::<Vec<_>>(),
            real.keys().collect::<Vec<_>>(),
            "the plan names the build's steps"
        );
    }
}

#[test]
fn dry_run_predicts_the_cache_after_a_changed_copy_source() {
    let f = Fixture::new(
        &[("a.txt", "a\n"), ("b.txt", "b\n"), ("c.txt", "c\n")],
        "FROM {base}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /a2\nCOPY b.txt /b.txt\n\
         ENV X=1\nCOPY c.txt /c.txt\nRUN cat /b.txt /c.txt > /bc\n",
    );
    f.build(&[]);
    // nothing changed: every cached step hits
    let plan = f.plan();
    let want = [
        ("[stage-0 2/7]", "hit"),
        ("[stage-0 3/7]", "hit"),
        ("[stage-0 4/7]", "hit"),
        ("[stage-0 5/7]", "-"),
        ("[stage-0 6/7]", "hit"),
        ("[stage-0 7/7]", "hit"),
    ];
    for (label, column) in want {
        assert_eq!(
            plan.get(label).map(String::as_str),
            Some(column),
            "{plan:?}"
        );
    }
    f.compare(&plan);
    // b.txt changed: hits before it, misses from it on (COPY keys chain on their keys)
    f.scratch.write("ctx/b.txt", "b changed\n");
    let plan = f.plan();
    let want = [
        ("[stage-0 2/7]", "hit"),
        ("[stage-0 3/7]", "hit"),
        ("[stage-0 4/7]", "miss"),
        ("[stage-0 5/7]", "-"),
        ("[stage-0 6/7]", "miss"),
        ("[stage-0 7/7]", "miss"),
    ];
    for (label, column) in want {
        assert_eq!(
            plan.get(label).map(String::as_str),
            Some(column),
            "{plan:?}"
        );
    }
    f.compare(&plan);
    // a.txt changed: the RUN after it misses, and what follows depends on its output
    f.scratch.write("ctx/a.txt", "a changed\n");
    let plan = f.plan();
    assert_eq!(plan["[stage-0 2/7]"], "miss", "{plan:?}");
    assert_eq!(plan["[stage-0 3/7]"], "miss", "{plan:?}");
    for label in ["[stage-0 4/7]", "[stage-0 6/7]", "[stage-0 7/7]"] {
        assert_eq!(plan[label], "?", "{plan:?}");
    }
    f.compare(&plan);
}

#[test]
fn dry_run_keys_a_copy_from_a_stage_and_a_chown_name_from_layers() {
    let f = Fixture::new(
        &[("a.txt", "a\n"), ("b.txt", "b\n")],
        "FROM {base} AS build\nCOPY a.txt /a.txt\n\
         FROM {base}\nCOPY --from=build /a.txt /x\nCOPY --chown=nobody b.txt /b.txt\n",
    );
    f.build(&[]);
    let log = f.build(&["--dry-run"]);
    assert!(
        log.contains("stage-1 depends on: build (COPY line 4)"),
        "dependencies not shown:\n{log}"
    );
    let plan = predicted(&log);
    // the stage's layers and the base's /etc/passwd are at hand: every key is known
    for label in ["[build 2/2]", "[stage-1 2/3]", "[stage-1 3/3]"] {
        assert_eq!(plan[label], "hit", "{plan:?}\n{log}");
    }
    assert!(
        log.contains("owner="),
        "the chown key names its owner:\n{log}"
    );
    assert!(stage_dirs(&f.scratch.kiln_dir()).is_empty());
    f.compare(&plan);

    // the stage copied from misses: what it will hold is not known, and never guessed
    f.scratch.write("ctx/a.txt", "a changed\n");
    let log = f.build(&["--dry-run"]);
    let plan = predicted(&log);
    assert_eq!(plan["[build 2/2]"], "miss", "{plan:?}");
    assert_eq!(plan["[stage-1 2/3]"], "?", "{plan:?}");
    assert_eq!(plan["[stage-1 3/3]"], "?", "{plan:?}");
    assert!(
        log.contains("--from=build: that stage's layers are not known"),
        "no reason:\n{log}"
    );
    f.compare(&plan);
}
