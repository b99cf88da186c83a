//! The layer cache without a root: a rebuild in a fresh kiln dir (a new pod) where every
//! step hits downloads no layer and extracts nothing, and gives the same image; a changed
//! COPY source re-runs only the steps after it; a later stage reading an entirely cached
//! stage still gets its files. Every request goes through a recording proxy, so the blob
//! downloads are counted, not guessed.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;

use kiln_tests::{
    busybox_image, skopeo_inspect, umoci_unpack, Build, FaultProxy, Registry, Scratch,
};

/// Line numbers matter: the log names them.
const DOCKERFILE: &str = "\
ARG BASE
FROM ${BASE}
RUN mkdir /many && for i in $(seq 1 300); do echo $i > /many/$i; done
COPY a.txt /a.txt
RUN cat /a.txt /many/7 > /b.txt
ENV X=1
RUN echo $X > /x.txt
";
const MANY: usize = 3;
const COPY_A: usize = 4;
const B: usize = 5;
const X: usize = 7;

pub(super) struct Fixture {
    _registry: Registry,
    pub(super) proxy: FaultProxy,
    base: String,
    scratch: Scratch,
    pub(super) context: PathBuf,
    builds: std::cell::Cell<usize>,
}

/// What one build did.
#[derive(Debug)]
pub(super) struct Built {
    pub(super) log: String,
    pub(super) digest: String,
    /// GETs of blobs through the proxy during the build (`GET /v2/…/blobs/sha256:…`)
    blob_gets: Vec<String>,
    /// every request through the proxy during the build (`METHOD PATH -> OUTCOME`)
    requests: Vec<String>,
    kiln_dir: PathBuf,
}

impl Built {
    /// Layers extracted onto a root (the debug line of each).
    pub(super) fn extracted(&self) -> usize {
        self.log
            .lines()
            .filter(|l| l.contains("layer extracted"))
            .count()
    }

    /// Whether line `n` hit (Some(true)), missed (Some(false)) or was not looked up.
    pub(super) fn outcome(&self, n: usize) -> Option<bool> {
        let hit = format!("cache hit: Dockerfile:{n}:");
        let miss = format!("cache miss: Dockerfile:{n}:");
        self.log
            .lines()
            .find_map(|l| (l.contains(&hit) || l.contains(&miss)).then(|| l.contains(&hit)))
    }

    /// The miss line of `n`.
    fn miss_line(&self, n: usize) -> &str {
        let miss = format!("cache miss: Dockerfile:{n}:");
        self.log
            .lines()
            .find(|l| l.contains(&miss))
            .unwrap_or_else(|| panic!("no miss line for Dockerfile:{n}:\n{}", self.log))
    }
}

impl Fixture {
    pub(super) fn new(dockerfile: &str) -> Fixture {
        let registry = Registry::start();
        let proxy = FaultProxy::start(registry.host());
        let base = busybox_image(&registry).replace(registry.host(), proxy.host());
        let scratch = Scratch::new();
        let context = scratch.path().join("context");
        fs::create_dir_all(&context).expect("context");
        fs::write(context.join("Dockerfile"), dockerfile).expect("Dockerfile");
        fs::write(context.join("a.txt"), "alpha\n").expect("a");
        Fixture {
            _registry: registry,
            proxy,
            base,
            scratch,
            context,
            builds: std::cell::Cell::new(0),
        }
    }

    /// Builds into a kiln dir of its own (a new pod), with the cache in the proxied registry.
    pub(super) fn build(&self, tag: &str, cache: bool) -> Built {
        self.build_with(tag, cache, &[])
    }

    /// `build` with more arguments; the build must succeed.
    pub(super) fn build_with(&self, tag: &str, cache: bool, args: &[&str]) -> Built {
        self.try_build(tag, cache, args)
            .unwrap_or_else(|log| panic!("the build failed:\n{log}"))
    }

    /// `build` with more arguments; `Err` with the log when the build fails.
    pub(super) fn try_build(&self, tag: &str, cache: bool, args: &[&str]) -> Result<Built, String> {
        let n = self.builds.get();
        self.builds.set(n + 1);
        let kiln_dir = self.scratch.path().join(format!("kiln-{n}"));
        let mut b = Build::new(&self.context.join("Dockerfile"), &self.context, &kiln_dir)
            .destination(&self.proxy.reference(tag))
            .arg("--reproducible")
            .arg("--log-format=text")
            .arg("--verbosity=debug")
            .arg("--build-arg")
            .arg(format!("BASE={}", self.base));
        if cache {
            b = b
                .arg("--cache")
                .arg("--cache-copy-layers")
                .arg(format!("--cache-repo={}", self.proxy.reference("cache")));
        }
        for a in args {
            b = b.arg(a);
        }
        let before = self.proxy.log().len();
        let out = b.run();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(log);
        }
        let requests = self.proxy.log()[before..].to_vec();
        let blob_gets = requests
            .iter()
            .filter(|l| l.starts_with("GET ") && l.contains("/blobs/sha256:"))
            .cloned()
            .collect();
        Ok(Built {
            log,
            digest: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            blob_gets,
            requests,
            kiln_dir,
        })
    }

    /// The layer digests of the image at `tag`.
    fn layers(&self, tag: &str) -> Vec<String> {
        skopeo_inspect(&self.proxy.reference(tag))["Layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l.as_str().expect("digest").to_string())
            .collect()
    }
}

fn layer_gets<'a>(built: &'a Built, layers: &[String]) -> Vec<&'a String> {
    built
        .blob_gets
        .iter()
        .filter(|l| layers.iter().any(|d| l.contains(d.as_str())))
        .collect()
}

#[test]
fn a_no_change_rebuild_in_a_fresh_kiln_dir_downloads_and_extracts_nothing() {
    let f = Fixture::new(DOCKERFILE);
    let first = f.build("app:1", true);
    let layers = f.layers("app:1");
    assert!(layers.len() >= 4, "base + 3 RUNs + COPY: {layers:?}");

    let again = f.build("app:1", true);
    for n in [MANY, COPY_A, B, X] {
        assert_eq!(again.outcome(n), Some(true), "line {n}:\n{}", again.log);
    }
    assert_eq!(
        layer_gets(&again, &layers),
        Vec::<&String>::new(),
        "no layer is downloaded when the destination has them all"
    );
    // (the extraction line is the debug one of `images::extract_layers`)
    assert!(first.extracted() > 0, "the first build extracts its base");
    assert_eq!(
        again.extracted(),
        0,
        "nothing is extracted when every step hits:\n{}",
        again.log
    );
    assert_eq!(again.digest, first.digest, "the same image");

    // a new destination repository on the same registry: layers are mounted, not downloaded
    let moved = f.build("other:1", true);
    assert_eq!(layer_gets(&moved, &layers), Vec::<&String>::new());
    assert_eq!(moved.digest, first.digest);
    // the config (about a kilobyte) is the one blob uploaded
    let uploaded = f.proxy.uploaded_bytes("other");
    assert!(
        uploaded < 4096,
        "{uploaded} bytes uploaded: a layer went up"
    );

    // --reproducible: a build without the cache gives the image the cached one did
    let clean = f.build("clean:1", false);
    assert_eq!(clean.digest, first.digest, "clean and cached builds differ");
}

/// The names directly in `dir` (none when it does not exist).
fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Where a kiln dir remembers the overlay probe's answer (`run/overlay.rs`).
fn probe_answers(kiln_dir: &std::path::Path) -> Vec<String> {
    names_in(kiln_dir)
        .into_iter()
        .filter(|n| n.starts_with("overlay-probe"))
        .collect()
}

#[test]
fn a_no_change_rebuild_asks_the_registry_little_and_probes_nothing() {
    let f = Fixture::new(DOCKERFILE);
    let first = f.build("app:1", true);
    // the first build ran its RUNs: where the machine allows an overlay, it probed for one
    if first
        .log
        .contains("snapshots after RUN: from an overlay's upper directory")
    {
        assert_eq!(probe_answers(&first.kiln_dir).len(), 1, "{}", first.log);
    }

    let again = f.build_with("app:1", true, &["--cleanup=false"]);
    let hits = [MANY, COPY_A, B, X];
    for n in hits {
        assert_eq!(again.outcome(n), Some(true), "line {n}:\n{}", again.log);
    }
    assert_eq!(again.digest, first.digest, "the same image");
    let requests = again.requests.join("\n");
    let count = |method: &str, path: &str| {
        again
            .requests
            .iter()
            .filter(|l| l.starts_with(&format!("{method} ")) && l.contains(path))
            .count()
    };
    // the registry asks for no token: its /v2/ is asked once, never again per lookup or push
    assert_eq!(
        count("GET", "/v2/ "),
        1,
        "one question to /v2/, no token request:\n{requests}"
    );
    // a lookup is one manifest read: the entry's config travels in its manifest; the one
    // blob read is the base's config
    let cache_blobs: Vec<&String> = (again.blob_gets.iter())
        .filter(|l| l.contains("/v2/cache/"))
        .collect();
    assert_eq!(
        cache_blobs,
        Vec::<&String>::new(),
        "no cache entry's config is read:\n{requests}"
    );
    assert_eq!(
        again.blob_gets.len(),
        1,
        "the base's config alone:\n{requests}"
    );
    assert_eq!(
        count("GET", "/v2/cache/manifests/"),
        hits.len(),
        "one request per cache hit:\n{requests}"
    );
    // nothing ran: no overlay probe, and no stage root was filled
    assert_eq!(probe_answers(&again.kiln_dir), Vec::<String>::new());
    let work: Vec<PathBuf> = names_in(&again.kiln_dir)
        .into_iter()
        .filter(|n| n.starts_with("build-"))
        .map(|n| again.kiln_dir.join(n))
        .collect();
    assert_eq!(
        work.len(),
        1,
        "--cleanup=false keeps the build's dir: {work:?}"
    );
    assert!(
        !work[0].join("run/overlay-probe").exists(),
        "no probe ran in {}",
        work[0].display()
    );
    assert_eq!(
        names_in(&work[0].join("stage-0")),
        Vec::<String>::new(),
        "the stage root holds nothing"
    );
}

#[test]
fn a_changed_copy_source_reruns_only_the_steps_after_it() {
    let f = Fixture::new(DOCKERFILE);
    let first = f.build("app:1", true);
    fs::write(f.context.join("a.txt"), "alphA\n").expect("a");
    let changed = f.build("app:2", true);
    assert_eq!(changed.outcome(MANY), Some(true), "{}", changed.log);
    for n in [COPY_A, B, X] {
        assert_eq!(
            changed.outcome(n),
            Some(false),
            "line {n}:\n{}",
            changed.log
        );
    }
    assert!(
        changed
            .miss_line(B)
            .contains("the COPY at Dockerfile:4 before it changed"),
        "the miss says why: {}",
        changed.miss_line(B)
    );
    assert!(
        changed.miss_line(COPY_A).contains("sources changed"),
        "{}",
        changed.miss_line(COPY_A)
    );
    assert_ne!(changed.digest, first.digest);
    let image = umoci_unpack(&f.proxy.reference("app:2"));
    assert_eq!(image.read("b.txt"), "alphA\n7\n");
    assert_eq!(image.read("x.txt"), "1\n");
}

#[test]
fn a_stage_reading_an_entirely_cached_stage_gets_its_files() {
    let f = Fixture::new(
        "\
ARG BASE
FROM ${BASE} AS build
RUN echo built > /out.txt && mkdir /many && for i in $(seq 1 50); do echo $i > /many/$i; done
FROM ${BASE}
COPY --from=build /out.txt /out.txt
RUN cat /out.txt /out.txt > /twice.txt
",
    );
    let first = f.build("multi:1", true);
    let again = f.build("multi:2", true);
    for n in [3, 5, 6] {
        assert_eq!(again.outcome(n), Some(true), "line {n}:\n{}", again.log);
    }
    assert_eq!(again.digest, first.digest);
    let image = umoci_unpack(&f.proxy.reference("multi:2"));
    assert_eq!(image.read("out.txt"), "built\n");
    assert_eq!(image.read("twice.txt"), "built\nbuilt\n");
    assert!(
        !image.path("many").exists(),
        "only the COPY's file came over"
    );
}

#[test]
fn a_changed_copy_source_with_no_run_after_it_extracts_no_layer() {
    // the COPY and the last WORKDIR write through the link /app -> /opt/real (0750), made
    // by the RUN before them: what they reach must be followed out of the layers
    let f = Fixture::new(
        "\
ARG BASE
FROM ${BASE}
WORKDIR /srv
RUN mkdir /many && for i in $(seq 1 300); do echo $i > /many/$i; done && mkdir -p /opt/real && chmod 0750 /opt/real && ln -s /opt/real /app
COPY a.txt /app/sub/a.txt
ENV X=1
WORKDIR /app/w
",
    );
    let (run, copy, workdir) = (4, 5, 7);
    f.build("lazy:1", true);
    fs::write(f.context.join("a.txt"), "changed\n").expect("a");
    let changed = f.build("lazy:2", true);
    assert_eq!(changed.outcome(run), Some(true), "{}", changed.log);
    assert_eq!(changed.outcome(copy), Some(false), "{}", changed.log);
    assert_eq!(changed.outcome(workdir), Some(false), "{}", changed.log);
    assert_eq!(
        changed.extracted(),
        0,
        "no layer is extracted onto a root:\n{}",
        changed.log
    );
    assert!(
        changed
            .log
            .contains("the step writes into the paths it reaches"),
        "{}",
        changed.log
    );
    // the same image as a build that ran every step in a full root
    let full = f.build("lazy:full", false);
    assert_eq!(full.outcome(copy), None);
    assert_eq!(changed.digest, full.digest, "{}", changed.log);
    let image = umoci_unpack(&f.proxy.reference("lazy:2"));
    assert_eq!(image.read("opt/real/sub/a.txt"), "changed\n");
    assert_eq!(image.read("many/7"), "7\n");
    assert!(image.path("opt/real/w").is_dir());
    let link = fs::read_link(image.path("app")).expect("/app is a link");
    assert_eq!(link, PathBuf::from("/opt/real"));
}
