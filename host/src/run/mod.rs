//! RUN: executes a command natively in the stage root, under the build's isolation.
//!
//! `Runner` (`runner`) is the build's one handle on isolation: every mode, in place
//! included, is decided there. The parent side of one command lives here: it makes the
//! mountpoints the command needs and removes them afterwards (`scaffold`), readies each
//! `RUN --mount` (`mount_spec` reads the flag, `mounts` prepares source and target), forks
//! the child (`child`), waits and reports the exit code or signal; the forked middle process
//! kills whatever the command left running (`reaper`). Which mode is chosen and the rootless
//! user namespace are `isolation`'s; in-place mechanics are `in_place`'s, RUN on an overlay
//! `overlay`'s, build secrets `secrets`'. Which instructions run and how their env is built
//! is the orchestrator's business.

pub mod binfmt;
mod child;
mod confine;
mod in_place;
pub mod isolation;
pub mod mount_spec;
mod mounts;
mod overlay;
mod reaper;
pub mod removal;
mod runner;
mod scaffold;
mod seccomp;
pub mod secrets;

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

pub use isolation::Isolation;
pub use mount_spec::{MountKind, MountSpec, Network};
pub use runner::{Runner, RunnerOptions, StageRoot};
pub use secrets::Secrets;

use crate::rootfs::{Kind, Root};
use scaffold::Scaffold;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("command exited with code {code}")]
    NonZeroExit { code: i32 },
    #[error("command was killed by signal {signal}")]
    Signal { signal: i32 },
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("preparing the stage root for RUN: {0}")]
    Prepare(#[from] crate::rootfs::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RUN needs a command")]
    Empty,
    #[error("--mount type=secret,id={id}: no such secret; pass it with --secret id={id},src=FILE")]
    SecretMissing { id: String },
    #[error("--mount type={kind},{what}: {why}")]
    Mount {
        kind: &'static str,
        what: String,
        why: String,
    },
    #[error("{what} needs CAP_SYS_ADMIN (a mount namespace), which kiln does not have")]
    NeedsNamespaces { what: &'static str },
    #[error("--cleanup: removing {path}: {source}")]
    Cleanup {
        path: String,
        source: crate::rootfs::Error,
    },
    #[error("scanning {what}: {source}")]
    Scan {
        what: &'static str,
        source: Box<crate::snapshot::Error>,
    },
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error("a blocking task of the runner failed: {why}")]
    Task { why: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// One `RUN --mount`, with the root its contents come from: a bind's stage or context, a
/// cache's `from` stage.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub spec: MountSpec,
    pub from: Option<Arc<Root>>,
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// working directory inside the root
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub mounts: Vec<MountRequest>,
    pub network: Network,
    /// put before each line the command prints (stages running side by side), or None to
    /// let it write to kiln's stderr directly (both its streams)
    pub output_prefix: Option<String>,
    /// the step shown by `progress`: when set, each line goes there instead (before the
    /// prefix and the JSON events)
    pub output: Option<crate::progress::StepOutput>,
}

/// What every RUN of one build shares (made by [`Runner::prepare`]).
#[derive(Debug)]
pub(crate) struct RunEnv {
    pub isolation: Isolation,
    /// whether mount/PID/UTS namespaces are available (CAP_SYS_ADMIN)
    pub namespaces: bool,
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    /// per-build scratch dir: secret files, copies of writable binds
    pub scratch: PathBuf,
    /// where cache mounts persist across builds
    pub cache_mounts: PathBuf,
    pub secrets: Secrets,
    /// host paths RUN must not see (in-place mode: kiln's dir, the credentials)
    pub hide: Vec<PathBuf>,
    /// whether RUN goes on an overlay (`overlay::probe` on `scratch`'s filesystem)
    pub overlay: overlay::Probe,
    /// the seccomp filters every RUN gets (`seccomp::compile`)
    pub seccomp: Option<Arc<Vec<seccompiler::BpfProgram>>>,
}

/// The middle processes of running commands (each its process group's leader), stopped on
/// SIGINT/SIGTERM.
static RUNNING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Kills every running command and everything it started: SIGTERM asks each middle process
/// to kill its command and every descendant (however detached) before it exits.
pub fn kill_running() {
    let middles = RUNNING.lock().map(|g| g.clone()).unwrap_or_default();
    for pid in middles {
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on a process kiln forked and has not reaped yet
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

fn kill_group(pgid: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on a process group kiln created; a vanished group is ESRCH, ignored
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

pub(crate) fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| Error::Io {
        path: p.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })
}

/// Writes kiln's own resolv.conf and hosts for RUN into `dir`.
pub fn network_files(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let resolv = dir.join("resolv.conf");
    let hosts = dir.join("hosts");
    let resolv_text = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    std::fs::write(&resolv, resolv_text).map_err(|source| Error::Io {
        path: resolv.clone(),
        source,
    })?;
    std::fs::write(&hosts, hosts_text()).map_err(|source| Error::Io {
        path: hosts.clone(),
        source,
    })?;
    Ok((resolv, hosts))
}

fn hosts_text() -> String {
    let name = child::HOSTNAME.to_string_lossy();
    format!("127.0.0.1\tlocalhost {name}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// The most of a stage's /etc/passwd read to find a HOME (as the guest reads users).
const MAX_PASSWD_BYTES: u64 = 8 << 20;

/// HOME for a user without one in the env, as Docker picks it: the user's entry in the
/// root's /etc/passwd (a regular file, its first `MAX_PASSWD_BYTES`), else `/`.
pub fn default_home(root: &Root, uid: u32) -> String {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    if let Ok(f) = root.open_read("etc/passwd") {
        let _ = f.take(MAX_PASSWD_BYTES).read_to_end(&mut bytes);
    }
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 5 && f[2] == uid.to_string() && !f[5].is_empty()).then(|| f[5].to_string())
        })
        .unwrap_or_else(|| if uid == 0 { "/root" } else { "/" }.to_string())
}

/// What a RUN that exited 0 changed, as far as kiln knows.
#[derive(Debug)]
pub struct Ran {
    /// on an overlay (`RunEnv::overlay`), what the command changed, merged into the root:
    /// nothing else there changed; `None`: the root must be walked to find out
    pub upper: Option<Vec<crate::snapshot::Touch>>,
    /// directories (root-relative) kiln made mountpoints in and restored the mtime of: their
    /// ctime moved by kiln's doing, not the command's (`Scaffold::undo`)
    pub settled: Vec<String>,
}

/// Runs the command in the root; Ok only for exit code 0 (see [`Ran`]).
pub(crate) fn run(root: &Root, spec: &RunSpec, env: &RunEnv) -> Result<Ran> {
    let program = spec.argv.first().ok_or(Error::Empty)?;
    let in_place = env.isolation == Isolation::InPlace;
    if spec.network == Network::None && !env.namespaces {
        return Err(Error::NeedsNamespaces {
            what: "RUN --network=none",
        });
    }
    if root.stat(&spec.cwd).is_err() {
        root.mkdir_all(&spec.cwd, 0o755)?;
    }
    let mut scaffold = Scaffold::new(root);
    let result = (|| -> Result<Result<Option<Vec<crate::snapshot::Touch>>>> {
        let points = mountpoints(&mut scaffold, env)?;
        let mut prepared = mounts::Prepared::default();
        let mut cmd_env = spec.env.clone();
        for (i, req) in spec.mounts.iter().enumerate() {
            mounts::mount(root, req, i, &spec.cwd, env, &mut scaffold, &mut prepared)?;
        }
        for (k, v) in prepared.env.drain(..) {
            cmd_env.retain(|(ek, _)| ek != &k);
            cmd_env.push((k, v));
        }
        let overlay = match env.namespaces && !in_place && env.overlay.usable() {
            true => overlay::prepare(&env.scratch, root.path()).map_err(|source| Error::Io {
                path: env.scratch.clone(),
                source,
            })?,
            false => None,
        };
        let config = child::ChildConfig {
            root: cstring(root.path())?,
            cwd: cstring(&Path::new("/").join(crate::rootfs::clean(&spec.cwd)))?,
            namespaces: env.namespaces,
            confined: env.namespaces && !in_place,
            overlay: overlay.as_ref().map(|o| o.data.clone()),
            new_net: spec.network == Network::None,
            proc_: points.proc_,
            dev: points.dev,
            sys: points.sys,
            resolv: points.resolv,
            hosts: points.hosts,
            mounts: std::mem::take(&mut prepared.child_mounts),
            hide: if env.namespaces {
                env.hide
                    .iter()
                    .filter(|p| p.is_dir())
                    .map(|p| cstring(p))
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            },
            uid: spec.uid,
            gid: spec.gid,
            groups: spec.groups.clone(),
            seccomp: env.seccomp.clone(),
            report: -1,
        };
        let status = spawn_and_wait(
            program,
            &spec.argv[1..],
            &cmd_env,
            config,
            Relay {
                prefix: spec.output_prefix.as_deref(),
                step: spec.output.as_ref(),
            },
        );
        let finished = prepared.finish(root);
        let status = status?;
        finished?;
        let (Ok(()), Some(overlay)) = (&status, &overlay) else {
            return Ok(status.map(|()| None));
        };
        merge_overlay(overlay, root).map(|touched| Ok(Some(touched)))
    })();
    let undone = scaffold.undo();
    let code = result?;
    let settled = undone?;
    Ok(Ran {
        upper: code?,
        settled,
    })
}

/// Which kernel filesystems and network files the child mounts, made ready in the root.
struct Mountpoints {
    proc_: bool,
    dev: bool,
    sys: bool,
    resolv: Option<CString>,
    hosts: Option<CString>,
}

/// Readies the mountpoints of the mode: in place `/` has its own (only a fresh /proc with
/// namespaces); with namespaces the child mounts /proc, /dev, /sys and the network files on
/// points made here; in a plain chroot devices and network files are copied in instead.
fn mountpoints(scaffold: &mut Scaffold<'_>, env: &RunEnv) -> Result<Mountpoints> {
    let none = Mountpoints {
        proc_: false,
        dev: false,
        sys: false,
        resolv: None,
        hosts: None,
    };
    if env.isolation == Isolation::InPlace {
        return Ok(Mountpoints {
            proc_: env.namespaces,
            ..none
        });
    }
    if !env.namespaces {
        // plain chroot: device nodes and network files only where the image has none
        scaffold.provide_devices()?;
        scaffold.provide_file("etc/resolv.conf", &env.resolv_conf)?;
        scaffold.provide_file("etc/hosts", &env.hosts)?;
        return Ok(none);
    }
    Ok(Mountpoints {
        proc_: scaffold.ensure("proc", Kind::Dir)?,
        dev: scaffold.ensure("dev", Kind::Dir)?,
        sys: scaffold.ensure("sys", Kind::Dir)?,
        resolv: scaffold
            .ensure("etc/resolv.conf", Kind::File)?
            .then(|| cstring(&env.resolv_conf))
            .transpose()?,
        hosts: scaffold
            .ensure("etc/hosts", Kind::File)?
            .then(|| cstring(&env.hosts))
            .transpose()?,
    })
}

/// Moves what the command changed on the overlay into the root; returns those paths.
fn merge_overlay(overlay: &overlay::Overlay, root: &Root) -> Result<Vec<crate::snapshot::Touch>> {
    let t = std::time::Instant::now();
    let touched = overlay::merge(overlay, root.path()).map_err(|source| Error::Io {
        path: root.path().to_path_buf(),
        source,
    })?;
    tracing::info!(
        paths = touched.len(),
        took = %crate::progress::human(t.elapsed()),
        "merged the overlay's upper directory"
    );
    Ok(touched)
}

/// How long the output of a finished command may take to drain.
const RELAY_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a command's output lines go when kiln reads them: to a progress step, as JSON
/// events, or to stderr after a prefix.
#[derive(Clone, Copy)]
struct Relay<'a> {
    prefix: Option<&'a str>,
    step: Option<&'a crate::progress::StepOutput>,
}

/// Copies `from` to `to` line by line (to the progress step, as events of `span`, or each
/// line after `prefix`) on a thread of its own; signals `done` at the end of the stream.
fn relay_lines(
    from: impl std::io::Read + Send + 'static,
    stream: &'static str,
    (prefix, step): (&str, Option<crate::progress::StepOutput>),
    span: Option<tracing::Span>,
    done: std::sync::mpsc::Sender<()>,
) {
    let prefix = prefix.as_bytes().to_vec();
    std::thread::spawn(move || {
        use std::io::{BufRead as _, Write as _};
        let mut from = std::io::BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match from.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Some(step) = &step {
                        let text = String::from_utf8_lossy(&line);
                        step.line(stream, text.trim_end_matches(['\n', '\r']));
                        continue;
                    }
                    if let Some(span) = &span {
                        let text = String::from_utf8_lossy(&line);
                        let text = text.trim_end_matches(['\n', '\r']);
                        tracing::info!(parent: span, stream, "{text}");
                        continue;
                    }
                    if !line.ends_with(b"\n") {
                        line.push(b'\n');
                    }
                    // one write per line, so lines of different stages never mix
                    let mut out = prefix.clone();
                    out.extend_from_slice(&line);
                    let _ = std::io::stderr().lock().write_all(&out);
                }
            }
        }
        let _ = done.send(());
    });
}

fn spawn_and_wait(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    mut config: child::ChildConfig,
    relay: Relay<'_>,
) -> Result<Result<()>> {
    let output_prefix = relay.prefix;
    use std::os::fd::AsRawFd as _;
    // the middle process writes how many leftover processes it killed; close-on-exec, so
    // only it keeps the write end past the command's exec
    let (mut report_rd, report_wr) = std::io::pipe().map_err(|source| Error::Spawn {
        program: program.to_string(),
        source,
    })?;
    config.report = report_wr.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))))
        .stdin(Stdio::null());
    // RUN's output is part of the log: kiln's stdout carries only the image digest
    let events = crate::logging::output_as_events();
    let read = output_prefix.is_some() || events || relay.step.is_some();
    if read {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else if let Ok(stderr) = std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned() {
        cmd.stdout(Stdio::from(stderr));
    }
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec. It makes raw syscalls on
    // data prepared before the fork (C strings, integers) and allocates nothing, so it is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(move || child::setup(&config));
    }
    let spawned = cmd.spawn();
    drop(report_wr);
    let mut child = spawned.map_err(|source| Error::Spawn {
        program: program.to_string(),
        source,
    })?;
    let pgid = child.id() as i32;
    if let Ok(mut g) = RUNNING.lock() {
        g.push(pgid);
    }
    let relays = read.then(|| {
        let prefix = output_prefix.unwrap_or_default();
        let step = relay.step.cloned();
        let span = events.then(tracing::Span::current);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if let Some(out) = child.stdout.take() {
            let to = (prefix, step.clone());
            relay_lines(out, "stdout", to, span.clone(), done_tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            relay_lines(err, "stderr", (prefix, step), span, done_tx);
        }
        done_rx
    });
    let status = child.wait();
    // the middle process has killed what the command left; the group is a last resort
    kill_group(pgid);
    let mut count = [0u8; 4];
    if std::io::Read::read_exact(&mut report_rd, &mut count).is_ok() {
        let killed = u32::from_le_bytes(count);
        if killed > 0 {
            tracing::debug!(
                killed,
                "killed {killed} process(es) the command left running"
            );
        }
    }
    if let Some(done) = relays {
        // the rest of the output, unless something that escaped the group holds the pipe
        for _ in 0..2 {
            if done.recv_timeout(RELAY_DRAIN).is_err() {
                break;
            }
        }
    }
    if let Ok(mut g) = RUNNING.lock() {
        g.retain(|p| *p != pgid);
    }
    let status = status.map_err(|source| Error::Spawn {
        program: program.to_string(),
        source,
    })?;
    Ok(match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(Error::NonZeroExit { code }),
        (None, Some(signal)) => Err(Error::Signal { signal }),
        (None, None) => Err(Error::NonZeroExit { code: 1 }),
    })
}
