//! External programs the tests call: finding kiln and other binaries (failing with the
//! Debian package to install when one is missing), running a process with a deadline
//! while capturing its output, and turning skopeo results into values the tests can
//! assert on. Also the process-wide `DOCKER_CONFIG` every test's kiln sees.
//!
//! The kiln command line is `build.rs`'s, umoci unpacking `unpacked.rs`'s; registry
//! processes live in `registry.rs`; image assembly in `layout.rs` and `images.rs`.

use std::env;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

/// How long a skopeo or umoci call may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The cargo workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate sits inside the workspace")
        .to_path_buf()
}

/// Points `DOCKER_CONFIG` of this whole test process (and so of every kiln, skopeo, buildah
/// and in-process registry client it starts afterwards) at a directory of its own holding a
/// `config.json` without credentials, once, so no test sees the machine's Docker
/// credentials. Tests that give kiln credentials set `DOCKER_CONFIG` on that kiln's command
/// ([`crate::Build::env`]). Done by [`kiln_bin`], which every test running kiln calls
/// first, so what a test sees does not depend on which test of the process started first.
/// The file must exist: buildah (in the conformance runs) refuses a `DOCKER_CONFIG`
/// without one.
pub fn isolate_docker_credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = env::temp_dir().join(format!("kiln-docker-config-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let config = dir.join("config.json");
        fs::write(&config, "{\"auths\":{}}\n")
            .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        env::set_var("DOCKER_CONFIG", &dir);
    });
}

/// The kiln binary under test: `$KILN_BIN`, else `<workspace>/target/release/kiln`.
pub fn kiln_bin() -> PathBuf {
    isolate_docker_credentials();
    let path = match env::var_os("KILN_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/release/kiln"),
    };
    if !path.is_file() {
        panic!(
            "build kiln first: cargo build --release (no kiln binary at {})",
            path.display()
        );
    }
    path
}

/// Looks `bin` up in `$PATH` plus the sbin directories (a non-root `$PATH` often lacks
/// them, and debootstrap lives in /usr/sbin).
fn find_in_path(bin: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
    env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(bin))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// The path of `bin`; panics naming the Debian package that provides it when it is absent.
pub fn require(bin: &str, debian_package: &str) -> PathBuf {
    match find_in_path(bin) {
        Some(path) => path,
        None => panic!("missing {bin}: apt-get install {debian_package}"),
    }
}

/// Whether this process runs with effective uid 0 (`/proc/self` is owned by the euid).
pub fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Panics unless running as root; `why` says what needs it. Such tests run as root in
/// `.ci/run` and must never pass silently elsewhere.
pub fn require_root(why: &str) {
    if !is_root() {
        panic!("this test needs root ({why}); run it as root like .ci/run does");
    }
}

/// A short random-enough hex token for names that must not collide between runs.
pub fn unique_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    hex::encode(Sha256::digest(seed.as_bytes()))[..10].to_string()
}

/// `program arg…` as one line, for logs and panics.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Runs `cmd` to completion with captured output, killing it and panicking after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let what = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!(
                "`{what}` did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs `cmd`, panicking with its stderr unless it exits 0; returns stdout as text.
pub fn run_checked(cmd: &mut Command) -> String {
    let what = describe(cmd);
    let out = run_with_timeout(cmd, TOOL_TIMEOUT);
    if !out.status.success() {
        panic!(
            "`{what}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Adds the docker transport to a bare registry reference; leaves explicit transports alone.
pub(crate) fn with_transport(reference: &str) -> String {
    let transports = [
        "docker://",
        "docker-archive:",
        "oci:",
        "oci-archive:",
        "dir:",
    ];
    if transports.iter().any(|t| reference.starts_with(t)) {
        reference.to_string()
    } else {
        format!("docker://{reference}")
    }
}

pub(crate) fn skopeo() -> PathBuf {
    require("skopeo", "skopeo")
}

fn inspect(reference: &str, config: bool) -> Result<serde_json::Value, String> {
    let mut cmd = Command::new(skopeo());
    cmd.arg("inspect").arg("--tls-verify=false");
    if config {
        // the config blob as pushed: skopeo's parsed form drops Docker-only fields (OnBuild)
        cmd.args(["--raw", "--config"]);
    }
    cmd.arg(with_transport(reference));
    let out = run_with_timeout(&mut cmd, TOOL_TIMEOUT);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("skopeo printed bad json: {e}"))
}

/// `skopeo inspect` of `reference` (bare registry refs get `docker://`), or skopeo's stderr.
pub fn try_skopeo_inspect(reference: &str) -> Result<serde_json::Value, String> {
    inspect(reference, false)
}

/// `skopeo inspect`; panics when skopeo cannot read the image.
pub fn skopeo_inspect(reference: &str) -> serde_json::Value {
    inspect(reference, false).unwrap_or_else(|e| panic!("skopeo inspect {reference} failed:\n{e}"))
}

/// `skopeo inspect --config`: the OCI image config; panics when skopeo cannot read it.
pub fn skopeo_config(reference: &str) -> serde_json::Value {
    inspect(reference, true)
        .unwrap_or_else(|e| panic!("skopeo inspect --config {reference} failed:\n{e}"))
}

/// Panics if skopeo can read `reference`: used to prove that nothing was pushed.
pub fn assert_not_in_registry(reference: &str) {
    if let Ok(found) = try_skopeo_inspect(reference) {
        panic!(
            "{reference} exists in the registry but must not (digest {})",
            found["Digest"]
        );
    }
}

/// Processes whose command line contains `marker`, as `pid: cmdline` lines: what a test
/// looks for when a RUN's daemon must not survive the build.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(marker) {
            found.push(format!("{name}: {text}"));
        }
    }
    found
}
