//! TLS client certificates: `--registry-client-cert REGISTRY=client.crt,client.key`.
//!
//! oci-client builds its own HTTP client and has no setting for a client identity, so for a
//! registry that needs one kiln runs a forwarder: a plain-HTTP listener on a loopback port
//! that sends each request on to the registry over TLS, presenting the certificate and
//! trusting the same CAs (and honouring the same verification flags) a direct connection
//! would. References to that registry resolve to the forwarder through oci-client's
//! mirror-registry slot, so credentials, scopes and messages still name the real registry.
//! Absolute URLs that point back at the registry (`Location` of an upload session, a bearer
//! `realm` on the same host) are rewritten to the forwarder, so they go through it too.
//!
//! Only connections kiln itself made are served (`peer`): the port is open to every local
//! process, kiln's identity is not.
//!
//! One request per connection (`Connection: close`); request bodies are streamed through with
//! their `Content-Length` (every request kiln makes has one), responses as they arrive.

use std::path::Path;
use std::sync::Arc;

use futures_util::TryStreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// Largest request head accepted from oci-client.
const MAX_HEAD: usize = 64 * 1024;

/// Reads `--registry-client-cert`'s two PEM files into an identity.
pub(crate) fn identity(
    registry: &str,
    cert: &Path,
    key: &Path,
) -> Result<reqwest::Identity, String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| {
            format!(
                "reading {} (--registry-client-cert {registry}): {e}",
                path.display()
            )
        })
    };
    let mut pem = read(cert)?;
    pem.push(b'\n');
    pem.extend(read(key)?);
    reqwest::Identity::from_pem(&pem).map_err(|e| {
        format!(
            "--registry-client-cert {registry}: {} and {} are not a PEM certificate and key: {e}",
            cert.display(),
            key.display()
        )
    })
}

struct Upstream {
    /// `host[:port]` of the registry.
    host: String,
    /// `127.0.0.1:PORT` of the forwarder.
    local: String,
    http: reqwest::Client,
}

/// Starts a forwarder to `https://<upstream>` using `http` (which carries the identity);
/// returns its `127.0.0.1:PORT`.
pub(crate) async fn start(upstream: &str, http: reqwest::Client) -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?.to_string();
    let up = Arc::new(Upstream {
        host: upstream.to_string(),
        local: local.clone(),
        http,
    });
    debug!(registry = %upstream, forwarder = %local, "TLS client-certificate forwarder");
    tokio::spawn(async move {
        loop {
            let Ok((conn, peer)) = listener.accept().await else {
                continue;
            };
            // kiln's identity is lent to kiln alone, not to a RUN or another local process
            let local = listener.local_addr();
            if !local.is_ok_and(|local| super::peer::is_own(peer, local)) {
                debug!(registry = %up.host, %peer, "refused a connection not made by kiln");
                continue;
            }
            let up = up.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(conn, &up).await {
                    debug!(registry = %up.host, error = %e, "forwarded request failed");
                }
            });
        }
    });
    Ok(local)
}

/// A request as oci-client sent it, ready to go on to the registry.
struct Request {
    method: reqwest::Method,
    /// The path and query.
    target: String,
    headers: reqwest::header::HeaderMap,
    /// `Content-Length`; the body follows the head on the connection.
    length: u64,
}

/// Forwards one request read from `conn` to the registry and streams the answer back.
async fn serve(conn: TcpStream, up: &Upstream) -> std::io::Result<()> {
    let (read, mut write) = conn.into_split();
    let mut reader = BufReader::new(read);
    let head = match read_head(&mut reader).await? {
        Head::Closed => return Ok(()),
        Head::TooLarge => {
            return reply(&mut write, "431 Request Header Fields Too Large", "").await;
        }
        Head::Complete(head) => head,
    };
    let request = match parse_request(&head) {
        Ok(request) => request,
        Err((status, text)) => return reply(&mut write, status, text).await,
    };
    let url = format!("https://{}{}", up.host, request.target);
    let mut outgoing = up
        .http
        .request(request.method.clone(), &url)
        .headers(request.headers);
    if request.length > 0 {
        let body = tokio_util::io::ReaderStream::new(reader.take(request.length));
        outgoing = outgoing.body(reqwest::Body::wrap_stream(body));
    }
    let response = match outgoing.send().await {
        Ok(r) => r,
        Err(e) => {
            let msg = format!(
                "forwarding to https://{}: {}",
                up.host,
                crate::error::chain(&e)
            );
            return reply(&mut write, "502 Bad Gateway", &msg).await;
        }
    };
    let status = response.status();
    write
        .write_all(response_head(&response, up).as_bytes())
        .await?;
    let bodiless = request.method == reqwest::Method::HEAD
        || status == reqwest::StatusCode::NO_CONTENT
        || status == reqwest::StatusCode::NOT_MODIFIED;
    if !bodiless {
        let mut body = response.bytes_stream().map_err(std::io::Error::other);
        while let Some(chunk) = body.try_next().await? {
            write.write_all(&chunk).await?;
        }
    }
    write.shutdown().await
}

/// What reading a request head gave.
enum Head {
    /// The connection closed before the head ended.
    Closed,
    /// The head is longer than [`MAX_HEAD`].
    TooLarge,
    /// The request line and headers, up to and including the empty line.
    Complete(String),
}

/// Reads a request head, line by line, up to the empty line that ends it.
async fn read_head(reader: &mut BufReader<OwnedReadHalf>) -> std::io::Result<Head> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        let n = reader.read_until(b'\n', &mut head).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        if head.len() > MAX_HEAD {
            return Ok(Head::TooLarge);
        }
        if &head[before..] == b"\r\n" || &head[before..] == b"\n" {
            break;
        }
    }
    Ok(Head::Complete(String::from_utf8_lossy(&head).into_owned()))
}

/// Reads the method, target and headers of a request head; hop-by-hop headers and `Host` are
/// left out. A request that cannot be forwarded gives the status and text to answer with.
fn parse_request(head: &str) -> Result<Request, (&'static str, &'static str)> {
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(("400 Bad Request", "malformed request line"));
    };
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return Err(("400 Bad Request", "unknown method"));
    };
    let mut headers = reqwest::header::HeaderMap::new();
    let mut length = 0u64;
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        match name.to_ascii_lowercase().as_str() {
            "host" | "connection" | "keep-alive" | "proxy-connection" => continue,
            "transfer-encoding" => {
                return Err(("411 Length Required", "chunked bodies are not forwarded"));
            }
            "content-length" => length = value.parse().unwrap_or(0),
            _ => {}
        }
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    Ok(Request {
        method,
        target: target.to_string(),
        headers,
        length,
    })
}

/// The status line and headers of the registry's answer as sent back to oci-client: absolute
/// URLs that point at the registry (`Location`, a bearer `realm`) point at the forwarder
/// instead, and the connection closes after the body.
fn response_head(response: &reqwest::Response, up: &Upstream) -> String {
    let status = response.status();
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let remote = format!("https://{}", up.host);
    let local = format!("http://{}", up.local);
    for (name, value) in response.headers() {
        let lower = name.as_str();
        if matches!(lower, "connection" | "keep-alive" | "transfer-encoding") {
            continue;
        }
        let Ok(value) = value.to_str() else {
            continue;
        };
        let value = match lower {
            "location" => match value.strip_prefix(&remote) {
                Some(rest) => format!("{local}{rest}"),
                None => value.to_string(),
            },
            "www-authenticate" => value.replace(&format!("\"{remote}"), &format!("\"{local}")),
            _ => value.to_string(),
        };
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

async fn reply(
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    status: &str,
    text: &str,
) -> std::io::Result<()> {
    let out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    write.write_all(out.as_bytes()).await?;
    write.shutdown().await
}
