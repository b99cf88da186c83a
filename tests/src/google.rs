//! Google's token endpoints on a loopback port: the OAuth2 token URI a service-account key
//! names (`POST /token` with a JWT-bearer assertion) and the metadata server's
//! `/computeMetadata/v1/instance/service-accounts/default/token`. Both answer one fixed
//! access token; every request is recorded so a test can check the assertion kiln signed
//! (with openssl, against the key's public half) and the headers it sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;

use crate::tools::{require, run_checked};

/// One request the endpoint saw.
#[derive(Clone, Debug)]
pub struct GoogleRequest {
    /// `POST /token` or `GET /computeMetadata/…`.
    pub line: String,
    /// Header lines, lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The loopback token endpoints.
pub struct GoogleAuth {
    /// `127.0.0.1:PORT`, for `GCE_METADATA_HOST`.
    pub host: String,
    /// The access token every valid request gets.
    pub token: String,
    requests: Arc<Mutex<Vec<GoogleRequest>>>,
}

impl GoogleAuth {
    pub fn start(token: &str) -> GoogleAuth {
        let listener = TcpListener::bind("127.0.0.1:0").expect("google auth listen");
        let host = listener.local_addr().expect("addr").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (seen, answer) = (requests.clone(), token.to_string());
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = serve(conn, &answer, &seen);
            }
        });
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

    pub fn requests(&self) -> Vec<GoogleRequest> {
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

fn serve(
    conn: std::net::TcpStream,
    token: &str,
    seen: &Mutex<Vec<GoogleRequest>>,
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
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let flavor = headers
        .iter()
        .any(|(k, v)| k == "metadata-flavor" && v == "Google");
    let ok = if line.starts_with("POST ") && path == "/token" {
        body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
            && body.contains("assertion=")
    } else {
        line.starts_with("GET ")
            && path.starts_with("/computeMetadata/v1/instance/service-accounts/default/token")
            && flavor
    };
    seen.lock().unwrap().push(GoogleRequest {
        line,
        headers,
        body,
    });
    let mut conn = conn;
    let (status, answer) = if ok {
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
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )
}
