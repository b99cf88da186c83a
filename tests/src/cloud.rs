//! Cloud credential endpoints on loopback ports, each recording every request so a test can
//! check what kiln sent:
//!
//! - [`GoogleAuth`]: the OAuth2 token URI a service-account key names (`POST /token` with a
//!   JWT-bearer assertion) and the metadata server's
//!   `/computeMetadata/v1/instance/service-accounts/default/token`, both answering one fixed
//!   access token (a test checks the assertion kiln signed with openssl, against the key's
//!   public half);
//! - [`EcrApi`]: ECR's `GetAuthorizationToken` (a SigV4-signed JSON POST), answering one
//!   fixed `user:password`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::registry::loopback_listener;
use crate::tools::{require, run_checked};

/// One request an endpoint saw.
#[derive(Clone, Debug)]
pub struct CloudRequest {
    /// `POST /token` or `GET /computeMetadata/…`.
    pub line: String,
    /// Header lines, lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What an endpoint answers a request with: status line and JSON body.
type Respond = dyn Fn(&CloudRequest) -> (&'static str, String) + Send + Sync;

/// Accepts connections on `listener` until the process ends, answering with `respond`.
fn serve_all(
    listener: TcpListener,
    requests: Arc<Mutex<Vec<CloudRequest>>>,
    respond: Box<Respond>,
) {
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = serve(conn, &requests, &*respond);
        }
    });
}

/// ECR's API endpoint (`AWS_ENDPOINT_URL_ECR`): `GetAuthorizationToken` answers
/// `user:password` when the request carries a SigV4 `Authorization` for the `ecr` service.
pub struct EcrApi {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    requests: Arc<Mutex<Vec<CloudRequest>>>,
}

impl EcrApi {
    pub fn start(user: &str, password: &str) -> EcrApi {
        let listener = loopback_listener();
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let token = base64_encode(format!("{user}:{password}").as_bytes());
        serve_all(
            listener,
            requests.clone(),
            Box::new(move |r: &CloudRequest| {
                let header = |name: &str| {
                    r.headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                        .unwrap_or("")
                };
                let signed = header("authorization").starts_with("AWS4-HMAC-SHA256 Credential=")
                    && header("authorization").contains("/ecr/aws4_request")
                    && !header("x-amz-date").is_empty();
                let target = header("x-amz-target")
                    == "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";
                if r.line.starts_with("POST / ") && signed && target {
                    (
                        "200 OK",
                        serde_json::json!({"authorizationData": [{
                            "authorizationToken": token,
                            "expiresAt": 4102444800u64,
                            "proxyEndpoint": "https://123456789012.dkr.ecr.us-west-2.amazonaws.com",
                        }]})
                        .to_string(),
                    )
                } else {
                    (
                        "400 Bad Request",
                        r#"{"__type":"UnrecognizedClientException"}"#.to_string(),
                    )
                }
            }),
        );
        EcrApi { endpoint, requests }
    }

    pub fn requests(&self) -> Vec<CloudRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The loopback Google token endpoints.
pub struct GoogleAuth {
    /// `127.0.0.1:PORT`, for `GCE_METADATA_HOST`.
    pub host: String,
    /// The access token every valid request gets.
    pub token: String,
    requests: Arc<Mutex<Vec<CloudRequest>>>,
}

impl GoogleAuth {
    pub fn start(token: &str) -> GoogleAuth {
        let listener = loopback_listener();
        let host = listener.local_addr().expect("addr").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer = token.to_string();
        serve_all(
            listener,
            requests.clone(),
            Box::new(move |r: &CloudRequest| google_answer(r, &answer)),
        );
        GoogleAuth {
            host,
            token: token.to_string(),
            requests,
        }
    }

    /// The token URI a service-account key file should name.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.host)
    }

    pub fn requests(&self) -> Vec<CloudRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Writes a service-account key file (a fresh RSA key made with openssl) naming this
    /// endpoint as its token URI; returns the key file and the public key (PEM) beside it.
    pub fn service_account_key(&self, dir: &Path, email: &str) -> (PathBuf, PathBuf) {
        let openssl = require("openssl", "openssl");
        let private = dir.join("sa-private.pem");
        let public = dir.join("sa-public.pem");
        run_checked(
            Command::new(&openssl)
                .args([
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ])
                .arg("-out")
                .arg(&private),
        );
        run_checked(
            Command::new(&openssl)
                .args(["pkey", "-pubout", "-in"])
                .arg(&private)
                .arg("-out")
                .arg(&public),
        );
        let pem = std::fs::read_to_string(&private).expect("private key");
        let key = serde_json::json!({
            "type": "service_account",
            "project_id": "kiln-test",
            "private_key_id": "kiln-test-key",
            "private_key": pem,
            "client_email": email,
            "client_id": "1234567890",
            "token_uri": self.token_uri(),
        });
        let file = dir.join("service-account.json");
        std::fs::write(&file, key.to_string()).expect("key file");
        (file, public)
    }
}

/// Google's answer: a token for a JWT-bearer grant at `/token` or a metadata request with
/// `Metadata-Flavor: Google`.
fn google_answer(r: &CloudRequest, token: &str) -> (&'static str, String) {
    let path = r.line.split_whitespace().nth(1).unwrap_or("");
    let flavor = r
        .headers
        .iter()
        .any(|(k, v)| k == "metadata-flavor" && v == "Google");
    let ok = if r.line.starts_with("POST ") && path == "/token" {
        r.body
            .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
            && r.body.contains("assertion=")
    } else {
        r.line.starts_with("GET ")
            && path.starts_with("/computeMetadata/v1/instance/service-accounts/default/token")
            && flavor
    };
    if ok {
        (
            "200 OK",
            serde_json::json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
                .to_string(),
        )
    } else {
        (
            "400 Bad Request",
            r#"{"error":"invalid_request"}"#.to_string(),
        )
    }
}

fn serve(
    conn: std::net::TcpStream,
    seen: &Mutex<Vec<CloudRequest>>,
    respond: &Respond,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let request = CloudRequest {
        line,
        headers,
        body,
    };
    let (status, answer) = respond(&request);
    seen.lock().unwrap().push(request);
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )
}
