//! A real Debian `docker-registry` (distribution 2.x) on a free loopback port.
//!
//! Owns the registry process: its config and storage (a tempdir), start-up (pick a port,
//! spawn, poll `/v2/`), sharing one instance between the tests of a binary, and killing it
//! when the last user drops it; the ports of stopped registries are not handed out again
//! ([`free_port`], [`loopback_listener`]). A watchdog shell also kills it if the test process dies
//! without unwinding. What gets pushed into it is `images.rs`'s business.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::tools::require;

/// How long a fresh registry gets to answer `/v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts with different ports (another process may grab the port we picked).
const START_ATTEMPTS: usize = 5;

/// A running registry; killed on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    watchdog: Option<Child>,
    host: String,
    storage: TempDir,
    /// Fixture images already pushed here (`repo:tag`), so each is pushed once.
    pub(crate) pushed: Mutex<HashSet<String>>,
}

impl Registry {
    /// Starts a private registry on a free 127.0.0.1 port and waits until it serves `/v2/`.
    pub fn start() -> Registry {
        Registry::start_with("127.0.0.1", "127.0.0.1", &|_| String::new())
    }

    /// Starts a registry listening on `bind_ip`, addressed as `name:PORT`, with `extra(dir)`
    /// appended to its config (TLS under `http:`, indented two spaces, then top-level
    /// sections such as `auth:`); `dir` is the registry's own directory, for files the extra
    /// config refers to. It counts as started once anything answers on the port.
    pub fn start_with(bind_ip: &str, name: &str, extra: &dyn Fn(&Path) -> String) -> Registry {
        let bin = require("docker-registry", "docker-registry");
        let storage = tempfile::Builder::new()
            .prefix("kiln-registry-")
            .tempdir()
            .expect("registry storage dir");
        let plain = extra(storage.path()).is_empty();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port_on(bind_ip);
            let addr = format!("{bind_ip}:{port}");
            let host = format!("{name}:{port}");
            let config = storage.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp:\n  addr: {addr}\n{}",
                    storage.path().join("data").display(),
                    extra(storage.path()),
                ),
            )
            .expect("writing registry config");
            let log_path = storage.path().join("registry.log");
            let log = fs::File::create(&log_path).expect("registry log");
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                let status = http_status(&addr, "/v2/");
                if status == Some(200) || (!plain && status.is_some()) {
                    let watchdog = spawn_watchdog(child.id());
                    return Registry {
                        child,
                        watchdog,
                        host,
                        storage,
                        pushed: Mutex::new(HashSet::new()),
                    };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    failures.push(format!(
                        "{host}: exited {status}: {}",
                        fs::read_to_string(&log_path).unwrap_or_default()
                    ));
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!(
                        "{host}: no answer on /v2/ within {START_TIMEOUT:?}"
                    ));
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("docker-registry did not start:\n{}", failures.join("\n"));
    }

    /// The registry shared by the tests of this process (every area's) that run at the
    /// same time; a new one is started when every earlier user has dropped its handle.
    pub fn shared() -> Arc<Registry> {
        static SHARED: Mutex<Weak<Registry>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = slot.upgrade() {
            return running;
        }
        let fresh = Arc::new(Registry::start());
        *slot = Arc::downgrade(&fresh);
        fresh
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `127.0.0.1:PORT/<repo_and_tag>`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("{}/{}", self.host, repo_and_tag)
    }

    /// The registry's storage directory (for debugging output only).
    pub fn storage(&self) -> &std::path::Path {
        self.storage.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(port) = self.host.rsplit(':').next().and_then(|p| p.parse().ok()) {
            RETIRED_PORTS
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(port);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// A port the kernel just handed out on 127.0.0.1 (released again before returning), so
/// nothing listens on it until someone binds it again.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A free port on the local address `ip`, never one a stopped registry of this process
/// listened on.
pub fn free_port_on(ip: &str) -> u16 {
    listen_on(ip)
        .local_addr()
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// A listener on a free 127.0.0.1 port, never one a stopped registry of this process
/// listened on: for servers the tests run in-process.
pub fn loopback_listener() -> TcpListener {
    listen_on("127.0.0.1")
}

/// Ports of registries this process stopped. Tests check that a stopped registry is gone
/// (nothing answers there, a build needing it fails); with every area's tests in one
/// process, a server another test starts meanwhile must not take its port.
static RETIRED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn listen_on(ip: &str) -> TcpListener {
    let mut refused = Vec::new();
    loop {
        let listener =
            TcpListener::bind(format!("{ip}:0")).expect("binding an ephemeral loopback port");
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let retired = RETIRED_PORTS.lock().unwrap_or_else(|p| p.into_inner());
        if !retired.contains(&port) {
            return listener;
        }
        // kept bound until a good port is found, so the kernel hands out another one
        refused.push(listener);
    }
}

/// Kills `pid` once this test process is gone, in case it dies without running `Drop`.
fn spawn_watchdog(pid: u32) -> Option<Child> {
    let script = "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; kill \"$2\" 2>/dev/null";
    Command::new("sh")
        .args(["-c", script, "kiln-registry-watchdog"])
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// The status code of a plain HTTP/1.0 GET, or `None` when nothing answers.
pub(crate) fn http_status(host: &str, path: &str) -> Option<u16> {
    let addr = host.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let mut len = 0;
    while len < 12 {
        match stream.read(&mut head[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    let line = std::str::from_utf8(&head[..len]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}
