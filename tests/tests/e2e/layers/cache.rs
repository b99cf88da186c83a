//! The layer cache (`--cache`): one input changed at a time, and the build's log must show a
//! miss exactly at the steps that can observe it, hits before, and hits after where the
//! produced layer is identical. Touching mtimes misses nothing; a cached RUN is not run (its
//! timestamp marker keeps the first build's value); both stores (a real registry and a local
//! OCI layout read back by skopeo) work.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::{busybox_image, require, run_checked, umoci_unpack, Build, Registry, Scratch};

/// The Dockerfile under test; line numbers matter (the log names them).
const DOCKERFILE: &str = "\
ARG BASE
FROM ${BASE}
RUN head -c 16 /dev/urandom | od -An -tx1 > /stamp1
COPY src/ /src/
RUN cat /src/a > /s2
ARG A=1
RUN echo \"A=$A\" > /s3
ARG B=1
RUN echo \"B=$B\" > /s4
ARG C=1
RUN echo fixed > /s5
COPY b.txt /b.txt
RUN ls -l /src > /s6 && cat /s2 /s4 /b.txt > /s6b
";

/// Line numbers of the cacheable steps.
const STAMP1: usize = 3;
const COPY_SRC: usize = 4;
const S2: usize = 5;
const S3: usize = 7;
const S4: usize = 9;
const S5: usize = 11;
const COPY_B: usize = 12;
const S6: usize = 13;
const ALL: [usize; 8] = [STAMP1, COPY_SRC, S2, S3, S4, S5, COPY_B, S6];

struct Fixture {
    registry: Registry,
    base: String,
    scratch: Scratch,
    context: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let registry = Registry::start();
        let base = busybox_image(&registry);
        let scratch = Scratch::new();
        let context = scratch.path().join("context");
        fs::create_dir_all(context.join("src")).expect("context");
        fs::write(context.join("Dockerfile"), DOCKERFILE).expect("Dockerfile");
        fs::write(context.join("src/a"), "alpha\n").expect("a");
        fs::write(context.join("src/unused"), "not copied by name\n").expect("unused");
        fs::write(context.join("b.txt"), "bee\n").expect("b");
        fs::write(context.join("outside.txt"), "never copied\n").expect("outside");
        Fixture {
            registry,
            base,
            scratch,
            context,
        }
    }

    /// Builds with the cache (copy layers too) and returns each step line's hit (true) or
    /// miss (false), read from kiln's log.
    fn build(&self, extra: &[&str]) -> BTreeMap<usize, bool> {
        self.build_to(extra, "app:1").0
    }

    fn build_to(&self, extra: &[&str], tag: &str) -> (BTreeMap<usize, bool>, String) {
        let dest = self.registry.reference(tag);
        let mut b = Build::new(
            &self.context.join("Dockerfile"),
            &self.context,
            &self.scratch.path().join("kiln"),
        )
        .destination(&dest)
        .arg("--cache")
        .arg("--cache-copy-layers")
        .arg("--reproducible")
        .arg("--log-format=text")
        .arg("--build-arg")
        .arg(format!("BASE={}", self.base));
        for a in extra {
            b = b.arg(a);
        }
        let out = b.run_ok();
        (outcomes(&String::from_utf8_lossy(&out.stderr)), dest)
    }
}

/// `cache hit: Dockerfile:N` / `cache miss: Dockerfile:N` from the log.
fn outcomes(log: &str) -> BTreeMap<usize, bool> {
    let mut m = BTreeMap::new();
    for line in log.lines() {
        for (marker, hit) in [
            ("cache hit: Dockerfile:", true),
            ("cache miss: Dockerfile:", false),
        ] {
            if let Some(rest) = line.split(marker).nth(1) {
                let n: usize = rest
                    .split(':')
                    .next()
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or_else(|| panic!("unparsable cache log line: {line}"));
                assert!(m.insert(n, hit).is_none(), "line {n} reported twice");
            }
        }
    }
    m
}

/// Asserts that exactly `misses` missed and every other step hit.
fn expect(what: &str, got: &BTreeMap<usize, bool>, misses: &[usize]) {
    let want: BTreeMap<usize, bool> = ALL.iter().map(|&l| (l, !misses.contains(&l))).collect();
    assert_eq!(
        got, &want,
        "{what}: expected misses exactly at {misses:?} (true = hit)"
    );
}

fn sub(registry: &Registry, kiln_dir: &Path, base: &str, tag: &str) -> String {
    // a different base image: busybox plus one file, built by kiln
    let dir = tempfile::tempdir().expect("dir");
    fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {base}\nRUN echo other > /base-version\n"),
    )
    .expect("Dockerfile");
    let dest = registry.reference(tag);
    Build::new(&dir.path().join("Dockerfile"), dir.path(), kiln_dir)
        .destination(&dest)
        .run_ok();
    dest
}

#[test]
fn one_input_at_a_time_misses_exactly_where_it_is_observed() {
    let f = Fixture::new();
    expect("first build", &f.build(&[]), &ALL);
    expect("unchanged rebuild", &f.build(&[]), &[]);

    // touching every context file's mtime is no change
    for name in ["src/a", "src/unused", "b.txt", "Dockerfile"] {
        let p = f.context.join(name);
        let content = fs::read(&p).expect("read");
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&p, content).expect("rewrite");
    }
    expect("mtimes touched", &f.build(&[]), &[]);

    // an ARG value: every RUN after its declaration sees it in its environment, and a step
    // whose layer changed changes what every later step starts from
    expect(
        "ARG A changed",
        &f.build(&["--build-arg", "A=2"]),
        &[S3, S4, S5, COPY_B, S6],
    );
    // a build-arg only the later RUNs read
    expect(
        "build-arg B changed",
        &f.build(&["--build-arg", "A=2", "--build-arg", "B=2"]),
        &[S4, S5, COPY_B, S6],
    );
    // ARG C changes what RUN line 11 sees, not what it writes: the steps after it hit
    expect(
        "build-arg C changed",
        &f.build(&[
            "--build-arg",
            "A=2",
            "--build-arg",
            "B=2",
            "--build-arg",
            "C=2",
        ]),
        &[S5, S6],
    );
    let args = [
        "--build-arg",
        "A=2",
        "--build-arg",
        "B=2",
        "--build-arg",
        "C=2",
    ];
    expect("settled", &f.build(&args), &[]);

    // one byte of a COPY source
    fs::write(f.context.join("src/a"), "alphA\n").expect("a");
    expect(
        "one byte of src/a",
        &f.build(&args),
        &[COPY_SRC, S2, S3, S4, S5, COPY_B, S6],
    );
    // a file the build never copies
    fs::write(f.context.join("outside.txt"), "changed\n").expect("outside");
    expect("a file no COPY selects", &f.build(&args), &[]);
    // a source's mode
    fs::set_permissions(
        f.context.join("src/unused"),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    expect(
        "mode of src/unused",
        &f.build(&args),
        &[COPY_SRC, S2, S3, S4, S5, COPY_B, S6],
    );
    // .dockerignore: hiding a file COPY src/ would copy is a change; hiding one no COPY
    // selects is none
    fs::write(f.context.join(".dockerignore"), "outside.txt\n").expect("ignore");
    expect(".dockerignore of an unselected file", &f.build(&args), &[]);
    fs::write(f.context.join(".dockerignore"), "outside.txt\nsrc/unused\n").expect("ignore");
    expect(
        ".dockerignore hides src/unused",
        &f.build(&args),
        &[COPY_SRC, S2, S3, S4, S5, COPY_B, S6],
    );
    // the base image
    let other = sub(
        &f.registry,
        &f.scratch.path().join("kiln"),
        &f.base,
        "other-base:1",
    );
    let mut with_base = args.to_vec();
    let base_arg = format!("BASE={other}");
    with_base.extend(["--build-arg", base_arg.as_str()]);
    expect("base image", &f.build(&with_base), &ALL);
}

#[test]
fn a_cached_run_is_not_executed_and_the_image_is_the_same() {
    let f = Fixture::new();
    let (first, dest1) = f.build_to(&[], "same:1");
    expect("first", &first, &ALL);
    let (second, dest2) = f.build_to(&[], "same:2");
    expect("second", &second, &[]);
    // the RUN at line 3 writes the time in nanoseconds: run again, it would differ
    let a = umoci_unpack(&dest1);
    let b = umoci_unpack(&dest2);
    assert_eq!(a.read("stamp1"), b.read("stamp1"), "line 3 ran again");
    // and the whole image is the same (reproducible, every layer from the cache)
    let digest = |r: &str| {
        run_checked(
            Command::new(require("skopeo", "skopeo"))
                .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
                .arg(format!("docker://{r}")),
        )
    };
    assert_eq!(digest(&dest1), digest(&dest2));
    // entries older than --cache-ttl are not used
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (expired, _) = f.build_to(&["--cache-ttl=1s"], "same:3");
    expect("--cache-ttl=1s", &expired, &ALL);
}

#[test]
fn a_local_oci_layout_store_is_shared_and_readable_by_skopeo() {
    let f = Fixture::new();
    let layout = f.scratch.path().join("cache-layout");
    let repo = format!("--cache-repo=oci:{}", layout.display());
    expect("first", &f.build_to(&[repo.as_str()], "oci-0:1").0, &ALL);
    // two builds at once share the store without corrupting it: both hit what the first
    // build stored, and each stores the steps where it differs
    let (r1, r2) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            f.build_to(&[repo.as_str(), "--build-arg", "A=2"], "oci-a:1")
                .0
        });
        let b = s.spawn(|| {
            f.build_to(&[repo.as_str(), "--build-arg", "A=3"], "oci-b:1")
                .0
        });
        (a.join().expect("a"), b.join().expect("b"))
    });
    expect("concurrent A=2", &r1, &[S3, S4, S5, COPY_B, S6]);
    expect("concurrent A=3", &r2, &[S3, S4, S5, COPY_B, S6]);
    expect(
        "after both, A=2",
        &f.build_to(&[repo.as_str(), "--build-arg", "A=2"], "oci-c:1")
            .0,
        &[],
    );
    expect(
        "after both, A=3",
        &f.build_to(&[repo.as_str(), "--build-arg", "A=3"], "oci-d:1")
            .0,
        &[],
    );
    // every entry in the layout is a valid image for an independent reader
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("json");
    let names: Vec<String> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(String::from)
        .collect();
    assert!(names.len() >= ALL.len(), "entries: {names:?}");
    for name in names.iter().filter(|n| !n.starts_with("step-")) {
        run_checked(
            Command::new(require("skopeo", "skopeo"))
                .arg("inspect")
                .arg(format!("oci:{}:{name}", layout.display())),
        );
    }
}
