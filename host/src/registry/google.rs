//! Access tokens for Google's registries (Container Registry and Artifact Registry) without
//! a helper binary.
//!
//! Google's registries take HTTP Basic auth with the user `oauth2accesstoken` and an OAuth2
//! access token as the password. kiln gets the token from the same Application Default
//! Credentials the `gs://` context reads, in the same order:
//!
//! 1. the JSON file named by `GOOGLE_APPLICATION_CREDENTIALS`;
//! 2. gcloud's `application_default_credentials.json` (`$CLOUDSDK_CONFIG`, else
//!    `~/.config/gcloud`);
//! 3. the metadata server of the VM or pod (`$GCE_METADATA_HOST`, else
//!    `metadata.google.internal`), which is how Workload Identity hands out tokens.
//!
//! A `service_account` key is turned into a signed JWT and exchanged at its `token_uri`
//! (the OAuth2 JWT-bearer grant); an `authorized_user` file's refresh token is exchanged at
//! its `token_uri`. The token is fetched once per build and shared by every Google registry.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Deserialize;
use tokio::sync::OnceCell;

use super::options::{connect_timeout, read_timeout, USER_AGENT};

/// The user name Google's registries expect with an access token.
pub(crate) const TOKEN_USER: &str = "oauth2accesstoken";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const METADATA_HOST: &str = "metadata.google.internal";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Whether `registry` (a host with an optional port) is one of Google's registries.
pub(crate) fn is_google_registry(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map_or(registry, |(h, _)| h)
        .to_ascii_lowercase();
    host == "gcr.io"
        || host.ends_with(".gcr.io")
        || host == "pkg.dev"
        || host.ends_with("-docker.pkg.dev")
}

/// The Docker credential helpers that serve Google's registries (`docker-credential-gcr`
/// and `docker-credential-gcloud`); kiln stands in for them when they are not installed.
pub(crate) fn is_google_helper(name: &str) -> bool {
    matches!(name, "gcr" | "gcloud")
}

/// An access token and where it came from (never the token itself).
#[derive(Clone)]
pub(crate) struct Token {
    pub token: String,
    pub source: String,
}

/// The token for this process, fetched on first use.
static TOKEN: OnceCell<Token> = OnceCell::const_new();

/// The access token from Application Default Credentials, fetched once.
pub(crate) async fn access_token() -> Result<Token, String> {
    TOKEN.get_or_try_init(fetch).await.cloned()
}

#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    client_email: Option<String>,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect_timeout())
        .read_timeout(read_timeout())
        .build()
        .map_err(|e| format!("setting up an HTTP client: {e}"))
}

/// Where Application Default Credentials are, if in a file.
fn credentials_file() -> Option<(PathBuf, &'static str)> {
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty())
    {
        return Some((PathBuf::from(path), "GOOGLE_APPLICATION_CREDENTIALS"));
    }
    let dir = std::env::var_os("CLOUDSDK_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config/gcloud"))
        })?;
    let path = dir.join("application_default_credentials.json");
    path.is_file()
        .then_some((path, "gcloud's application default credentials"))
}

async fn fetch() -> Result<Token, String> {
    let http = http()?;
    let Some((path, origin)) = credentials_file() else {
        return from_metadata_server(&http).await;
    };
    let described = format!("{} ({origin})", path.display());
    let text = tokio::fs::read(&path)
        .await
        .map_err(|e| format!("reading {described}: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("parsing {described}: {e}"))?;
    let file: CredentialsFile =
        serde_json::from_value(json.clone()).map_err(|e| format!("parsing {described}: {e}"))?;
    let token_uri = file
        .token_uri
        .clone()
        .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_string());
    let token = match file.kind.as_str() {
        "service_account" => {
            let email = file
                .client_email
                .clone()
                .ok_or_else(|| format!("{described} has no client_email"))?;
            let assertion = signed_assertion(json, &file, &email, &token_uri)
                .await
                .map_err(|e| format!("signing with the key in {described}: {e}"))?;
            let form = [
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
            ];
            exchange(&http, &token_uri, &form)
                .await
                .map_err(|e| format!("service account {email} from {described}: {e}"))?
        }
        "authorized_user" => {
            let field = |v: &Option<String>, name: &str| {
                v.clone()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| format!("{described} has no {name}"))
            };
            let (id, secret, refresh) = (
                field(&file.client_id, "client_id")?,
                field(&file.client_secret, "client_secret")?,
                field(&file.refresh_token, "refresh_token")?,
            );
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
                ("refresh_token", refresh.as_str()),
            ];
            exchange(&http, &token_uri, &form)
                .await
                .map_err(|e| format!("user credentials from {described}: {e}"))?
        }
        other => {
            return Err(format!(
                "{described} holds {other:?} credentials; kiln mints registry tokens from \
                 \"service_account\" and \"authorized_user\" files (or use a credential helper)"
            ))
        }
    };
    Ok(Token {
        token,
        source: described,
    })
}

/// A JWT asking for the cloud-platform scope, signed with the service account's key.
async fn signed_assertion(
    key: serde_json::Value,
    file: &CredentialsFile,
    email: &str,
    token_uri: &str,
) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &file.private_key_id {
        header["kid"] = kid.clone().into();
    }
    let claims = serde_json::json!({
        "iss": email,
        "scope": SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!(
        "{}.{}",
        b64.encode(header.to_string()),
        b64.encode(claims.to_string())
    );
    let signer = google_cloud_auth::credentials::service_account::Builder::new(key)
        .build_signer()
        .map_err(|e| e.to_string())?;
    let signature = signer
        .sign(signing_input.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("{signing_input}.{}", b64.encode(signature)))
}

/// Posts an OAuth2 token request and returns the access token.
async fn exchange(
    http: &reqwest::Client,
    token_uri: &str,
    form: &[(&str, &str)],
) -> Result<String, String> {
    let body = form_urlencoded(form);
    let response = http
        .post(token_uri)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .map_err(|e| format!("token request to {token_uri}: {}", crate::error::chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{token_uri} answered {status}"));
    }
    let answer: TokenAnswer = response
        .json()
        .await
        .map_err(|e| format!("{token_uri} answered without an access_token: {e}"))?;
    Ok(answer.access_token)
}

async fn from_metadata_server(http: &reqwest::Client) -> Result<Token, String> {
    let host = std::env::var("GCE_METADATA_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| METADATA_HOST.to_string());
    let url = format!(
        "http://{host}/computeMetadata/v1/instance/service-accounts/default/token?scopes={}",
        form_urlencoded(&[("", SCOPE)]).trim_start_matches('=')
    );
    let described = format!("the metadata server {host}");
    let response = http
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .map_err(|e| {
            format!(
                "no GOOGLE_APPLICATION_CREDENTIALS, no gcloud credentials file, and \
                 {described} is unreachable: {}",
                crate::error::chain(&e)
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{described} answered {status}"));
    }
    let answer: TokenAnswer = response
        .json()
        .await
        .map_err(|e| format!("{described} answered without an access_token: {e}"))?;
    Ok(Token {
        token: answer.access_token,
        source: described,
    })
}

/// `application/x-www-form-urlencoded` encoding of `pairs`.
pub(crate) fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    fn encode(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_google_registries() {
        for host in [
            "gcr.io",
            "eu.gcr.io",
            "us.gcr.io:443",
            "europe-west1-docker.pkg.dev",
        ] {
            assert!(is_google_registry(host), "{host}");
        }
        for host in [
            "docker.io",
            "ghcr.io",
            "gcr.io.example.com",
            "127.0.0.1:5000",
        ] {
            assert!(!is_google_registry(host), "{host}");
        }
    }

    #[test]
    fn encodes_forms() {
        assert_eq!(
            form_urlencoded(&[("grant_type", JWT_BEARER), ("a b", "x/y+z")]),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&a+b=x%2Fy%2Bz"
        );
    }
}
