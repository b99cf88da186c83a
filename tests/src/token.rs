//! A registry behind a token issuer: Bearer auth as Docker Hub and most cloud registries do
//! it. The registry is a real `docker-registry` configured with `auth.token`; the issuer is a
//! small HTTP server here that checks Basic credentials (a GET, as most clients ask) or a
//! refresh token (a POST with `grant_type=refresh_token`, as Docker exchanges an
//! `identitytoken`), signs RS256 JWTs (with openssl) granting exactly the scopes asked for,
//! and logs every scope it was asked for.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::registry::{loopback_listener, Registry};
use crate::tools::{require, run_checked, unique_token};

const SERVICE: &str = "kiln-test-registry";
const ISSUER: &str = "kiln-test-issuer";

/// A registry whose tokens come from [`TokenRegistry`]'s issuer.
pub struct TokenRegistry {
    pub registry: Registry,
    pub user: String,
    pub password: String,
    /// The OAuth2 refresh token (Docker's `identitytoken`) the issuer accepts for `user`.
    pub refresh_token: String,
    scopes: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl TokenRegistry {
    /// Starts the issuer and a registry trusting it; `user`/`password` get every scope.
    pub fn start(user: &str, password: &str) -> TokenRegistry {
        let openssl = require("openssl", "openssl");
        let dir = tempfile::Builder::new()
            .prefix("kiln-token-")
            .tempdir()
            .expect("token dir");
        let d = dir.path().to_path_buf();
        run_checked(
            Command::new(&openssl)
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=kiln token signer"])
                .arg("-keyout")
                .arg(d.join("signer.key"))
                .arg("-out")
                .arg(d.join("signer.crt")),
        );
        let der = run_checked(
            Command::new(&openssl)
                .args(["x509", "-outform", "DER", "-in"])
                .arg(d.join("signer.crt"))
                .args(["-out"])
                .arg(d.join("signer.der")),
        );
        drop(der);
        let cert_der = std::fs::read(d.join("signer.der")).expect("signer.der");
        let listener = loopback_listener();
        let realm = format!("http://{}/token", listener.local_addr().expect("addr"));
        let scopes = Arc::new(Mutex::new(Vec::new()));
        let expected = format!(
            "Basic {}",
            encode(format!("{user}:{password}").as_bytes(), STANDARD)
        );
        let refresh_token = format!("refresh-{}", unique_token());
        let issuer = Issuer {
            key: d.join("signer.key"),
            x5c: encode(&cert_der, STANDARD),
            expected,
            refresh_token: refresh_token.clone(),
            user: user.to_string(),
            scopes: scopes.clone(),
        };
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let _ = issuer.serve(conn);
            }
        });
        let crt = d.join("signer.crt");
        let registry = Registry::start_with("127.0.0.1", "localhost", &|_: &Path| {
            format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
                crt.display()
            )
        });
        TokenRegistry {
            registry,
            user: user.to_string(),
            password: password.to_string(),
            refresh_token,
            scopes,
            _dir: dir,
        }
    }

    /// `localhost:PORT`.
    pub fn host(&self) -> &str {
        self.registry.host()
    }

    /// `localhost:PORT/<repo_and_tag>`.
    pub fn reference(&self, repo_and_tag: &str) -> String {
        self.registry.reference(repo_and_tag)
    }

    /// One line per token request so far: the account (`-` when anonymous), then every
    /// scope asked for, space-separated.
    pub fn scopes(&self) -> Vec<String> {
        self.scopes.lock().unwrap().clone()
    }
}

struct Issuer {
    key: std::path::PathBuf,
    x5c: String,
    expected: String,
    refresh_token: String,
    user: String,
    scopes: Arc<Mutex<Vec<String>>>,
}

impl Issuer {
    fn serve(&self, conn: std::net::TcpStream) -> std::io::Result<()> {
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            lines.push(line.trim_end().to_string());
        }
        let target = lines
            .first()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_string();
        let header = |name: &str| {
            lines.iter().find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_string())
            })
        };
        let post = lines.first().is_some_and(|l| l.starts_with("POST "));
        let mut body = vec![
            0u8;
            header("content-length")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        ];
        std::io::Read::read_exact(&mut reader, &mut body)?;
        let body = String::from_utf8_lossy(&body).into_owned();
        // GET: Basic credentials and repeated `scope` query parameters; POST: a form with a
        // refresh token and space-separated scopes.
        let (params, authorized, refreshed) = if post {
            let (scopes, ok) = self.refresh_claim(&body);
            (scopes, ok, true)
        } else {
            let query = target.split_once('?').map_or("", |(_, q)| q);
            let scopes = query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .filter(|(k, _)| *k == "scope")
                .map(|(_, v)| percent_decode(v))
                .collect();
            (
                scopes,
                header("authorization").as_deref() == Some(self.expected.as_str()),
                false,
            )
        };
        let (access, asked) = grant(params, authorized);
        self.scopes.lock().unwrap().push(format!(
            "{}{} {}",
            if authorized { self.user.as_str() } else { "-" },
            if refreshed { " (refresh token)" } else { "" },
            asked.join(" ")
        ));
        let mut conn = conn;
        if (post || header("authorization").is_some()) && !authorized {
            let body = r#"{"details":"bad credentials"}"#;
            write!(
                conn,
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(());
        }
        let token = self.sign(&access);
        let body = serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
            .to_string();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        Ok(())
    }

    /// The scopes a refresh-token form asks for, and whether its token is the right one.
    fn refresh_claim(&self, body: &str) -> (Vec<String>, bool) {
        let form: Vec<(String, String)> = body
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), percent_decode(v)))
            .collect();
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let ok = field("grant_type").as_deref() == Some("refresh_token")
            && field("refresh_token").as_deref() == Some(self.refresh_token.as_str());
        let scopes = field("scope").unwrap_or_default();
        let scopes = scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        (scopes, ok)
    }

    fn sign(&self, access: &[serde_json::Value]) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": self.user, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": unique_token(), "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            encode(header.to_string().as_bytes(), URL_SAFE),
            encode(claims.to_string().as_bytes(), URL_SAFE)
        );
        let mut child = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl dgst");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(signing_input.as_bytes())
            .expect("signing input");
        let out = child.wait_with_output().expect("openssl dgst output");
        assert!(out.status.success(), "openssl dgst -sign failed");
        format!("{signing_input}.{}", encode(&out.stdout, URL_SAFE))
    }
}

/// The token's `access` claims for the asked `scopes` (every action when `authorized`,
/// none otherwise), and the scopes as asked, for the log.
fn grant(scopes: Vec<String>, authorized: bool) -> (Vec<serde_json::Value>, Vec<String>) {
    let mut access = Vec::new();
    for scope in &scopes {
        // repository:NAME:ACTIONS (NAME has no colon in these tests)
        let parts: Vec<&str> = scope.splitn(3, ':').collect();
        if let [kind, name, actions] = parts.as_slice() {
            let actions: Vec<&str> = if authorized {
                actions.split(',').collect()
            } else {
                Vec::new()
            };
            access.push(serde_json::json!({"type": kind, "name": name, "actions": actions}));
        }
    }
    (access, scopes)
}

const STANDARD: (&[u8; 64], bool) = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    true,
);
const URL_SAFE: (&[u8; 64], bool) = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    false,
);

/// Base64 with the given alphabet, padded or not.
fn encode(data: &[u8], (alphabet, pad): (&[u8; 64], bool)) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
        if pad {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
