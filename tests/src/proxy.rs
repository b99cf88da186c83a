//! A fault-injecting HTTP/1.1 proxy on a loopback port, put between kiln and a registry.
//!
//! Owns relaying requests (one upstream connection per request, `Connection: close`),
//! injecting faults into the requests that match a rule (an HTTP error status, 429 with
//! `Retry-After`, a dropped connection, a stall before the answer, a huge body, and in the
//! answer's body: a stall, a cut, a reset, a flipped byte, a trickle), logging every request
//! line with the time it arrived, and counting the blob bytes uploaded
//! per repository, so tests can prove retries, the manifest-last order and cross-repository
//! mounts. Request bodies are read whole before relaying: test blobs are small.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::registry::loopback_listener;

/// What to do to a matching request.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer with this HTTP status and an empty body.
    Status(u16),
    /// Close the connection without answering.
    Drop,
    /// Wait this long, then relay the request normally.
    Stall(Duration),
    /// Answer 429 Too Many Requests with `Retry-After: <seconds>`.
    TooMany(u32),
    /// Relay the headers and half the body, wait this long, then send the rest.
    StallBody(Duration),
    /// Relay the headers (the full `Content-Length`) and half the body, then close.
    Truncate,
    /// Relay the headers and half the body, then reset the connection (RST).
    Reset,
    /// Relay the answer with one byte of its body changed (a wrong digest).
    Corrupt,
    /// Answer 200 with an OCI manifest media type and this many bytes of body (no
    /// `Content-Length`, the end is the connection's close); the log says how many the client
    /// took before it hung up.
    Huge(u64),
    /// Answer 200 with the real answer's headers, then its body one byte every this long.
    Trickle(Duration),
}

#[derive(Debug)]
struct Rule {
    method: String,
    path_contains: String,
    fault: Fault,
    remaining: usize,
}

#[derive(Debug, Default)]
struct State {
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<String>>,
    /// When each log entry's request arrived.
    times: Mutex<Vec<Instant>>,
    uploaded: Mutex<HashMap<String, u64>>,
}

/// The proxy; it stops accepting when dropped.
pub struct FaultProxy {
    host: String,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    /// Relays `127.0.0.1:<free port>` to `upstream` (`host:port`, plain HTTP).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = loopback_listener();
        let host = listener.local_addr().expect("proxy addr").to_string();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp, up) = (state.clone(), stop.clone(), upstream.to_string());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, up) = (st.clone(), up.clone());
                thread::spawn(move || {
                    let _ = relay(conn, &up, &st);
                });
            }
        });
        FaultProxy { host, state, stop }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `127.0.0.1:PORT/<repo_and_tag>`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        format!("{}/{repo_and_tag}", self.host)
    }

    /// Applies `fault` to the next `times` requests with `method` whose path contains
    /// `path_contains`.
    pub fn inject(&self, method: &str, path_contains: &str, fault: Fault, times: usize) {
        self.state.rules.lock().unwrap().push(Rule {
            method: method.to_string(),
            path_contains: path_contains.to_string(),
            fault,
            remaining: times,
        });
    }

    /// How many injections of each rule are still to come, in the order added.
    pub fn remaining(&self) -> Vec<usize> {
        self.state
            .rules
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.remaining)
            .collect()
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// `METHOD path -> outcome` for every request so far.
    pub fn log(&self) -> Vec<String> {
        self.state.log.lock().unwrap().clone()
    }

    /// Each log entry with the time its request arrived.
    pub fn timed_log(&self) -> Vec<(Instant, String)> {
        let times = self.state.times.lock().unwrap().clone();
        times.into_iter().zip(self.log()).collect()
    }

    /// Request body bytes sent to blob upload URLs of `repository`.
    pub fn uploaded_bytes(&self, repository: &str) -> u64 {
        self.state
            .uploaded
            .lock()
            .unwrap()
            .get(repository)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.host);
    }
}

/// Serves one client connection: reads one request, applies a fault or relays it, closes.
fn relay(client: TcpStream, upstream: &str, state: &State) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(request) = Request::read(&mut reader)? else {
        return Ok(());
    };
    let arrived = Instant::now();
    request.count_upload(state);
    let fault = {
        let mut rules = state.rules.lock().unwrap();
        rules
            .iter_mut()
            .find(|r| {
                r.remaining > 0
                    && r.method == request.method
                    && request.path.contains(&r.path_contains)
            })
            .map(|r| {
                r.remaining -= 1;
                r.fault
            })
    };
    let mut client = client;
    let outcome = match fault {
        Some(Fault::Status(code)) => {
            write!(
                client,
                "HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            format!("injected {code}")
        }
        Some(Fault::TooMany(secs)) => {
            write!(
                client,
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {secs}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            format!("injected 429, retry after {secs}s")
        }
        Some(Fault::Drop) => "dropped".to_string(),
        Some(Fault::Huge(size)) => {
            format!("huge body: {} bytes taken", send_huge(&mut client, size))
        }
        Some(Fault::Trickle(every)) => {
            let response = request.forward(upstream)?;
            format!(
                "trickled {} body bytes",
                trickle(&response, every, &mut client)
            )
        }
        Some(Fault::Stall(d)) => {
            thread::sleep(d);
            let response = request.forward(upstream)?;
            client.write_all(&response)?;
            format!("stalled {d:?}, {}", status_of(&response))
        }
        Some(fault) => {
            let response = request.forward(upstream)?;
            let outcome = format!("{fault:?} of {}", status_of(&response));
            damage(&response, fault, &mut client)?;
            outcome
        }
        None => {
            let response = request.forward(upstream)?;
            client.write_all(&response)?;
            status_of(&response)
        }
    };
    let mut log = state.log.lock().unwrap();
    log.push(format!("{} {} -> {outcome}", request.method, request.path));
    state.times.lock().unwrap().push(arrived);
    Ok(())
}

/// One HTTP/1.1 request as the client sent it, its body de-chunked.
struct Request {
    /// The request line, then the header lines, without line ends.
    lines: Vec<String>,
    method: String,
    path: String,
    body: Vec<u8>,
}

impl Request {
    /// Reads a request; `None` when the client closed the connection first.
    fn read(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            lines.push(line.trim_end().to_string());
        }
        let request_line = lines.first().cloned().unwrap_or_default();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut request = Request {
            lines,
            method,
            path,
            body: Vec::new(),
        };
        request.body = request.read_body(reader)?;
        Ok(Some(request))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.lines.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The body after the headers: chunked, by `Content-Length`, or none.
    fn read_body(&self, reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                    .unwrap_or(0);
                if n == 0 {
                    // trailers up to the empty line
                    loop {
                        let mut t = String::new();
                        if reader.read_line(&mut t)? == 0 || t == "\r\n" {
                            break;
                        }
                    }
                    break;
                }
                let start = body.len();
                body.resize(start + n, 0);
                reader.read_exact(&mut body[start..])?;
                let mut crlf = [0u8; 2];
                reader.read_exact(&mut crlf)?;
            }
        } else if let Some(len) = self
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            body.resize(len, 0);
            reader.read_exact(&mut body)?;
        }
        Ok(body)
    }

    /// Adds the body of a blob upload to its repository's byte count.
    fn count_upload(&self, state: &State) {
        let Some(rest) = self.path.strip_prefix("/v2/") else {
            return;
        };
        if let Some((repo, _)) = rest.split_once("/blobs/uploads") {
            if matches!(self.method.as_str(), "PUT" | "PATCH" | "POST") {
                *state
                    .uploaded
                    .lock()
                    .unwrap()
                    .entry(repo.to_string())
                    .or_default() += self.body.len() as u64;
            }
        }
    }

    /// Sends the request upstream (with its own framing and `Connection: close`) and returns
    /// the whole response, headers and body.
    fn forward(&self, upstream: &str) -> std::io::Result<Vec<u8>> {
        let mut up = TcpStream::connect(upstream)?;
        let mut out = format!("{}\r\n", self.lines.first().map_or("", String::as_str));
        for l in self.lines.iter().skip(1) {
            let name = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if matches!(
                name.as_str(),
                "connection" | "transfer-encoding" | "content-length" | "keep-alive"
            ) {
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "PUT" | "PATCH" | "POST") {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("Connection: close\r\n\r\n");
        up.write_all(out.as_bytes())?;
        up.write_all(&self.body)?;
        let mut response = Vec::new();
        up.read_to_end(&mut response)?;
        Ok(response)
    }
}

/// Sends a 200 answer with `size` bytes of manifest-looking body; returns how many bytes of
/// body the client took before it closed the connection.
fn send_huge(client: &mut TcpStream, size: u64) -> u64 {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n";
    if client.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    let chunk = vec![b' '; 64 << 10];
    let mut sent = 0;
    while sent < size {
        let n = chunk
            .len()
            .min(usize::try_from(size - sent).unwrap_or(usize::MAX));
        if client.write_all(&chunk[..n]).is_err() {
            break;
        }
        sent += n as u64;
    }
    sent
}

/// Sends `response`'s headers, then its body one byte every `every`; returns how many body
/// bytes went out before the client closed the connection.
fn trickle(response: &[u8], every: Duration, client: &mut TcpStream) -> u64 {
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    if client.write_all(&response[..body_at]).is_err() {
        return 0;
    }
    let mut sent = 0;
    for byte in &response[body_at..] {
        if client.write_all(std::slice::from_ref(byte)).is_err() || client.flush().is_err() {
            break;
        }
        sent += 1;
        thread::sleep(every);
    }
    sent
}

/// The status code of a raw HTTP response.
fn status_of(response: &[u8]) -> String {
    String::from_utf8_lossy(&response[..response.len().min(12)])
        .split_whitespace()
        .nth(1)
        .unwrap_or("?")
        .to_string()
}

/// Sends `response` to `client` damaged by `fault` (one of the body faults). A response
/// without a body is sent as it is.
fn damage(response: &[u8], fault: Fault, client: &mut TcpStream) -> std::io::Result<()> {
    let body_at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    let half = body_at + (response.len() - body_at) / 2;
    match fault {
        Fault::StallBody(d) => {
            client.write_all(&response[..half])?;
            client.flush()?;
            thread::sleep(d);
            client.write_all(&response[half..])
        }
        Fault::Truncate => client.write_all(&response[..half]),
        Fault::Reset => {
            client.write_all(&response[..half])?;
            client.flush()?;
            reset(client)
        }
        Fault::Corrupt => {
            let mut changed = response.to_vec();
            if half < changed.len() {
                changed[half] ^= 0xff;
            }
            client.write_all(&changed)
        }
        _ => client.write_all(response),
    }
}

/// Makes closing `conn` send a TCP reset rather than a FIN (`SO_LINGER` with a zero wait).
#[allow(unsafe_code)]
fn reset(conn: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a pointer to a live `linger` of the given size.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
