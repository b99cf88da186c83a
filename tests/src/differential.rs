//! kiln's own differential harness: every case of a cases file built by buildah (the
//! reference) and by kiln, both pushed to a test registry and compared as a runtime sees
//! them ([`ImageView`]). The reference is built twice (the second time without buildah's
//! cache); paths that differ between those two builds (a timestamp a RUN wrote) are not
//! compared. A reference is built once per process: a second run of the same case (kiln
//! under another launcher) compares with the view kept from the first.
//!
//! A cases file has one case a line, `NAME | DOCKERFILE | CONTEXT | BUILD-ARGS | TARGET
//! [| MODE]` (paths relative to the file, `-` for none, build args `K=V,K=V`). MODE is a
//! reference Dockerfile for syntax buildah lacks (heredocs), or `self` (the Dockerfile
//! checks itself with RUN tests: it passes when kiln builds it), `self-fail` (passes when
//! kiln refuses it) or `diverge` with a reason in a seventh column (a documented difference
//! from buildah, listed, not scored). `<DOCKERFILE>.dockerignore` applies when present.
//! `FROM busybox`/`alpine` and `debian`/`ubuntu` (and `--from=`/`from=` naming them) are
//! pointed at the test registry's fixture images; other names (stages, `scratch`, `$ARG`)
//! are left as written.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::build::Build;
use crate::image_view::ImageView;
use crate::images::{busybox_image, debian_image};
use crate::registry::Registry;
use crate::tools::{require, require_root, run_with_timeout, unique_token};

/// How long one buildah build or push may take.
const BUILDAH_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Differences shown per failing case.
const SHOWN_DIFFERENCES: usize = 12;

/// How a case is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseMode {
    /// Compared with buildah's build of this Dockerfile (the case's own, or an equivalent).
    Compare(PathBuf),
    /// Passes when kiln builds it (its RUN lines test the result).
    SelfCheck,
    /// Passes when kiln refuses it.
    SelfFail,
    /// A documented difference from buildah: listed with its reason, not built.
    Diverge(String),
}

/// One line of a cases file.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub dockerfile: PathBuf,
    pub context: PathBuf,
    pub build_args: Vec<String>,
    pub target: Option<String>,
    pub mode: CaseMode,
}

/// What one run of the harness found.
#[derive(Debug)]
pub struct DifferentialRun {
    pub passed: u32,
    pub failed: u32,
    /// One line per case, with the differences of those that failed.
    pub report: String,
}

/// Reads a cases file; panics naming the line of a malformed case.
pub fn read_cases(file: &Path) -> Vec<Case> {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let base = file.parent().expect("a cases file has a directory");
    let optional = |v: &str| (v != "-").then(|| v.to_string());
    let mut cases = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(
            cols.len() >= 5,
            "{}:{}: want NAME | DOCKERFILE | CONTEXT | BUILD-ARGS | TARGET",
            file.display(),
            number + 1
        );
        let dockerfile = base.join(cols[1]);
        let mode = match cols.get(5).copied() {
            None => CaseMode::Compare(dockerfile.clone()),
            Some("self") => CaseMode::SelfCheck,
            Some("self-fail") => CaseMode::SelfFail,
            Some("diverge") => CaseMode::Diverge(cols.get(6).unwrap_or(&"").to_string()),
            Some(reference) => CaseMode::Compare(base.join(reference)),
        };
        cases.push(Case {
            name: cols[0].to_string(),
            dockerfile,
            context: base.join(cols[2]),
            build_args: optional(cols[3])
                .map(|a| a.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            target: optional(cols[4]),
            mode,
        });
    }
    cases
}

/// The test registry's image for a public base image name, if it is one the fixtures make.
fn local_image(name: &str, registry: &Registry) -> Option<String> {
    let bare = name.trim_start_matches("docker.io/");
    let bare = bare.trim_start_matches("library/");
    let repo = bare.split(['@', ':']).next().unwrap_or(bare);
    match repo {
        "busybox" | "alpine" => Some(busybox_image(registry)),
        "debian" | "ubuntu" => Some(debian_image(registry)),
        _ => None,
    }
}

/// The Dockerfile with its base images pointed at the test registry.
pub fn rewrite_bases(text: &str, registry: &Registry) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let keyword = words.first().map(|w| w.to_ascii_uppercase());
        let rewritten = match keyword.as_deref() {
            Some("FROM") => {
                let image = words.iter().skip(1).position(|w| !w.starts_with("--"));
                let mut words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
                if let Some(local) = image.and_then(|i| local_image(&words[i + 1], registry)) {
                    words[image.expect("found") + 1] = local;
                }
                words.join(" ")
            }
            Some("COPY" | "ADD" | "RUN") => rewrite_from_flags(line, registry),
            _ => line.to_string(),
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    out
}

/// `--from=IMAGE` and a mount's `from=IMAGE` pointed at the test registry.
fn rewrite_from_flags(line: &str, registry: &Registry) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find("from=") {
        let (head, tail) = rest.split_at(at + "from=".len());
        out.push_str(head);
        let end = tail.find([' ', '\t', ',']).unwrap_or(tail.len());
        let (value, after) = tail.split_at(end);
        out.push_str(&local_image(value, registry).unwrap_or_else(|| value.to_string()));
        rest = after;
    }
    out.push_str(rest);
    out
}

/// What kiln is compared with: buildah's image and the paths that differ between two of its
/// builds.
type Reference = Arc<(ImageView, BTreeSet<String>)>;

/// The references built by this process, by case and staged reference Dockerfile.
fn references() -> &'static Mutex<HashMap<String, Reference>> {
    static BUILT: OnceLock<Mutex<HashMap<String, Reference>>> = OnceLock::new();
    BUILT.get_or_init(Default::default)
}

/// Runs every case of `cases` against buildah, kiln started through `launch` (`&|b| b` for
/// the plain binary); as root (buildah and umoci need it).
pub fn run_differential(
    cases: &Path,
    registry: &Registry,
    launch: &dyn Fn(Build) -> Build,
) -> DifferentialRun {
    require_root("buildah builds the reference images");
    for (bin, package) in [
        ("buildah", "buildah"),
        ("skopeo", "skopeo"),
        ("umoci", "umoci"),
    ] {
        require(bin, package);
    }
    let kiln_dir = tempfile::Builder::new()
        .prefix("kiln-differential-")
        .tempdir()
        .expect("kiln dir");
    let (mut passed, mut failed, mut report) = (0, 0, String::new());
    for case in read_cases(cases) {
        let started = Instant::now();
        let verdict = match &case.mode {
            CaseMode::Diverge(why) => {
                report.push_str(&format!("DIVERGE {}: {why}\n", case.name));
                continue;
            }
            CaseMode::SelfCheck | CaseMode::SelfFail => {
                run_self(&case, registry, &|b| launch(b), kiln_dir.path())
            }
            CaseMode::Compare(reference) => {
                compare(&case, reference, registry, &|b| launch(b), kiln_dir.path())
            }
        };
        let secs = started.elapsed().as_secs_f64();
        match verdict {
            Ok(()) => {
                passed += 1;
                report.push_str(&format!("PASS {} ({secs:.1}s)\n", case.name));
            }
            Err(why) => {
                failed += 1;
                report.push_str(&format!("FAIL {} ({secs:.1}s): {why}\n", case.name));
            }
        }
    }
    report.push_str(&format!("{passed} passed, {failed} failed\n"));
    DifferentialRun {
        passed,
        failed,
        report,
    }
}

/// A scratch dir with the case's Dockerfile (bases rewritten) as `Dockerfile`, and its
/// `.dockerignore` beside it where kiln looks (`Dockerfile.dockerignore`).
fn stage_dockerfile(case: &Case, dir: &Path, registry: &Registry) -> PathBuf {
    let text = fs::read_to_string(&case.dockerfile)
        .unwrap_or_else(|e| panic!("{}: {e}", case.dockerfile.display()));
    let staged = dir.join("Dockerfile");
    fs::write(&staged, rewrite_bases(&text, registry)).expect("staging the Dockerfile");
    if let Some(ignore) = ignore_file(case) {
        fs::copy(ignore, dir.join("Dockerfile.dockerignore")).expect("staging .dockerignore");
    }
    staged
}

fn ignore_file(case: &Case) -> Option<PathBuf> {
    let mut name = case.dockerfile.clone().into_os_string();
    name.push(".dockerignore");
    Some(PathBuf::from(name)).filter(|p| p.is_file())
}

/// kiln's build of the case, pushed to `destination`; `Err` with its last lines on failure.
fn kiln_build(
    case: &Case,
    dockerfile: &Path,
    launch: &dyn Fn(Build) -> Build,
    kiln_dir: &Path,
    destination: &str,
) -> Result<(), String> {
    let mut build =
        launch(Build::new(dockerfile, &case.context, kiln_dir)).destination(destination);
    for arg in &case.build_args {
        build = build.arg("--build-arg").arg(arg);
    }
    if let Some(target) = &case.target {
        build = build.arg("--target").arg(target);
    }
    let out = build.run();
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
    Err(format!("kiln exited {}: {}", out.status, tail.join(" / ")))
}

fn run_self(
    case: &Case,
    registry: &Registry,
    launch: &dyn Fn(Build) -> Build,
    kiln_dir: &Path,
) -> Result<(), String> {
    let work = tempfile::tempdir().expect("scratch dir");
    let dockerfile = stage_dockerfile(case, work.path(), registry);
    let destination = registry.reference(&format!("cand/{}:{}", repo(case), unique_token()));
    match (
        kiln_build(case, &dockerfile, launch, kiln_dir, &destination),
        &case.mode,
    ) {
        (Ok(()), CaseMode::SelfCheck) | (Err(_), CaseMode::SelfFail) => Ok(()),
        (Err(why), _) => Err(why),
        (Ok(()), _) => Err("kiln built a Dockerfile it must refuse".to_string()),
    }
}

fn repo(case: &Case) -> String {
    case.name.to_ascii_lowercase()
}

/// buildah's build of `dockerfile` pushed to `destination`.
fn buildah_build(
    case: &Case,
    dockerfile: &Path,
    destination: &str,
    no_cache: bool,
) -> Result<(), String> {
    let mut bud = buildah();
    bud.args(["bud", "-q", "--isolation", "chroot", "--tls-verify=false"]);
    if no_cache {
        bud.arg("--no-cache");
    }
    bud.arg("-f").arg(dockerfile).arg("-t").arg(destination);
    if let Some(ignore) = ignore_file(case) {
        bud.arg("--ignorefile").arg(ignore);
    }
    for arg in &case.build_args {
        bud.arg("--build-arg").arg(arg);
    }
    if let Some(target) = &case.target {
        bud.arg("--target").arg(target);
    }
    bud.arg(&case.context);
    checked(&mut bud)?;
    let mut push = buildah();
    push.args(["push", "-q", "--tls-verify=false", destination])
        .arg(format!("docker://{destination}"));
    checked(&mut push)?;
    // the pushed copy is what is compared; vfs storage is large
    let _ = checked(buildah().args(["rmi", "-f", destination]));
    Ok(())
}

/// buildah without a container daemon or overlay: vfs storage, chroot isolation.
fn buildah() -> Command {
    let mut cmd = Command::new("buildah");
    cmd.env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot");
    cmd
}

fn checked(cmd: &mut Command) -> Result<(), String> {
    let out = run_with_timeout(cmd, BUILDAH_TIMEOUT);
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(format!(
        "buildah exited {}: {}",
        out.status,
        stderr.lines().last().unwrap_or_default()
    ))
}

/// buildah's image of the case (built twice to find its unstable paths), once per process.
fn reference(
    case: &Case,
    reference: &Path,
    registry: &Registry,
    work: &Path,
) -> Result<Reference, String> {
    let text =
        fs::read_to_string(reference).unwrap_or_else(|e| panic!("{}: {e}", reference.display()));
    let staged = rewrite_bases(&text, registry);
    let key = format!(
        "{}\n{:?}\n{:?}\n{staged}",
        case.name, case.build_args, case.target
    );
    // one reference build at a time: a test running the same case meanwhile waits for it
    static BUILDING: Mutex<()> = Mutex::new(());
    let _building = BUILDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(built) = references().lock().expect("references").get(&key) {
        return Ok(built.clone());
    }
    let reference_df = work.join("Dockerfile.reference");
    fs::write(&reference_df, staged).expect("staging the reference");
    let token = unique_token();
    let at = |role: &str| registry.reference(&format!("{role}/{}:{token}", repo(case)));
    let (first, second) = (at("ref"), at("ref-again"));
    buildah_build(case, &reference_df, &first, false).map_err(|e| format!("reference: {e}"))?;
    buildah_build(case, &reference_df, &second, true).map_err(|e| format!("reference: {e}"))?;
    let view = ImageView::read(&first);
    let unstable = view.differing_paths(&ImageView::read(&second));
    let built = Arc::new((view, unstable));
    references()
        .lock()
        .expect("references")
        .insert(key, built.clone());
    Ok(built)
}

fn compare(
    case: &Case,
    reference_df: &Path,
    registry: &Registry,
    launch: &dyn Fn(Build) -> Build,
    kiln_dir: &Path,
) -> Result<(), String> {
    let work = tempfile::tempdir().expect("scratch dir");
    let dockerfile = stage_dockerfile(case, work.path(), registry);
    let built = reference(case, reference_df, registry, work.path())?;
    let (reference_view, unstable) = &*built;
    let candidate = registry.reference(&format!("cand/{}:{}", repo(case), unique_token()));
    kiln_build(case, &dockerfile, launch, kiln_dir, &candidate)?;
    let differences = reference_view.differences(&ImageView::read(&candidate), unstable);
    if differences.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = differences
        .iter()
        .take(SHOWN_DIFFERENCES)
        .map(String::as_str)
        .collect();
    Err(format!(
        "{} difference(s) ({} unstable path(s) ignored)\n     {}",
        differences.len(),
        unstable.len(),
        shown.join("\n     ")
    ))
}
