//! Registry credentials from Docker's `config.json` and Docker credential helpers.
//!
//! Reads `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`) and finds the
//! credentials for a registry host the way `docker push` does: a `credHelpers` entry for the
//! host runs `docker-credential-<name> get`; otherwise an `auths` entry (`auth`, base64
//! `user:password`; `username`/`password`; `registrytoken`, a bearer token); otherwise the
//! `credsStore` helper; otherwise anonymous. Docker Hub's spellings
//! (`https://index.docker.io/v1/`, `index.docker.io`, `registry-1.docker.io`, `docker.io`) are
//! one registry. Every result carries a description of where it came from, for error
//! messages; the secret itself is never formatted (see [`Credentials`]'s `Debug`).
//!
//! An `identitytoken` (an OAuth2 refresh token, also what a helper returns with the user name
//! `<token>`) is exchanged for a bearer token at the registry's token server, as Docker does;
//! see [`Mint`]. Google's registries (`gcr.io`, `*.gcr.io`, `*-docker.pkg.dev`) with nothing in
//! the config, or configured with the `gcr`/`gcloud` helper that is not installed, get a token
//! minted from Google's Application Default Credentials (see `google.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::error::{Error, Result};

/// Docker Hub's canonical name, the one every alias maps to.
const DOCKER_HUB: &str = "docker.io";
/// The server URL Docker hands credential helpers for Docker Hub.
const DOCKER_HUB_SERVER_URL: &str = "https://index.docker.io/v1/";
/// The user name a credential helper returns when its secret is an identity token.
const IDENTITY_TOKEN_USER: &str = "<token>";

/// Credentials for one registry and where they were found.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub auth: RegistryAuth,
    /// Where the credentials came from, e.g. `the "auths" entry "reg:5000" in /x/config.json`.
    pub source: String,
    /// A token still to be obtained before `auth` can be used.
    pub mint: Option<Mint>,
    /// The bearer token the registry's token server gave for this session (`connect`), which
    /// kiln's own requests (`fetch.rs`) send.
    pub bearer: Option<String>,
}

/// Credentials that are exchanged for a token at first use.
#[derive(Clone)]
pub(crate) enum Mint {
    /// An OAuth2 refresh token, posted to the registry's token server for each scope.
    IdentityToken(String),
    /// Google's Application Default Credentials, turned into an access token used as the
    /// password of `oauth2accesstoken`.
    Google,
    /// AWS credentials, turned into an ECR login with `GetAuthorizationToken`.
    Ecr,
}

impl Credentials {
    fn anonymous(source: String) -> Credentials {
        Credentials {
            auth: RegistryAuth::Anonymous,
            source,
            mint: None,
            bearer: None,
        }
    }

    fn basic_or_bearer(auth: RegistryAuth, source: String) -> Credentials {
        Credentials {
            auth,
            source,
            mint: None,
            bearer: None,
        }
    }

    fn minted(mint: Mint, source: String) -> Credentials {
        Credentials {
            auth: RegistryAuth::Anonymous,
            source,
            mint: Some(mint),
            bearer: None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match (&self.mint, &self.auth) {
            (Some(Mint::IdentityToken(_)), _) => "identity token",
            (Some(Mint::Google), _) => "google",
            (Some(Mint::Ecr), _) => "ecr",
            (None, RegistryAuth::Anonymous) => "anonymous",
            (None, RegistryAuth::Basic(..)) => "basic",
            (None, RegistryAuth::Bearer(_)) => "bearer",
        };
        f.debug_struct("Credentials")
            .field("kind", &kind)
            .field("source", &self.source)
            .finish()
    }
}

/// The parts of a Docker `config.json` kiln reads; other sections are ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthEntry { .. }")
    }
}

/// Where Docker keeps `config.json`: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub(crate) fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// Credentials for `registry` (a host with optional port) from the Docker configuration;
/// anonymous when there is no config file or nothing in it for the host.
pub(crate) fn credentials(registry: &str) -> Result<Credentials> {
    match config_path() {
        Some(path) => credentials_from_file(&path, registry),
        None => Ok(Credentials::anonymous(
            "no credentials (neither DOCKER_CONFIG nor HOME is set)".to_string(),
        )),
    }
}

/// Credentials for `registry` from the config file at `path`.
pub(crate) fn credentials_from_file(path: &Path, registry: &str) -> Result<Credentials> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Credentials::anonymous(format!(
                "no credentials ({} does not exist)",
                path.display()
            )))
        }
        Err(source) => {
            return Err(Error::ReadDockerConfig {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let config = DockerConfig::parse(&text).map_err(|source| Error::ParseDockerConfig {
        path: path.to_path_buf(),
        source,
    })?;
    config.credentials(registry, path, &run_helper)
}

/// What a credential helper answered for a server: `None` when it has no credentials for it.
type HelperAnswer = std::result::Result<Option<(String, String)>, String>;

impl DockerConfig {
    pub(crate) fn parse(json: &str) -> serde_json::Result<DockerConfig> {
        serde_json::from_str(json)
    }

    /// The credentials for `registry`, as Docker looks them up: `credHelpers`, then `auths`,
    /// then `credsStore`. `path` names the file in descriptions; `helper(name, server)` runs
    /// `docker-credential-<name> get`.
    pub(crate) fn credentials(
        &self,
        registry: &str,
        path: &Path,
        helper: &dyn Fn(&str, &str) -> HelperAnswer,
    ) -> Result<Credentials> {
        let want = registry_key(registry);
        let bad = |reason: String| Error::BadCredentials {
            path: path.to_path_buf(),
            registry: registry.to_string(),
            reason,
        };
        let helper_name = self
            .cred_helpers
            .get(registry)
            .or_else(|| {
                self.cred_helpers
                    .iter()
                    .find(|(key, _)| registry_key(key) == want)
                    .map(|(_, name)| name)
            })
            .filter(|name| !name.is_empty());
        if let Some(name) = helper_name {
            if super::google::is_google_helper(name)
                && !on_path(&format!("docker-credential-{name}"))
            {
                return Ok(Credentials::minted(
                    Mint::Google,
                    format!(
                        "Google credentials ({} names docker-credential-{name}, which is not \
                         installed: kiln mints the token itself)",
                        path.display()
                    ),
                ));
            }
            if let Some(creds) = built_in_helper(name, "credHelpers", path) {
                return Ok(creds);
            }
            return self.helper_credentials(name, "credHelpers", registry, path, helper);
        }

        let exact = self.auths.get_key_value(registry).into_iter();
        let normalised = self
            .auths
            .iter()
            .filter(|(key, _)| registry_key(key) == want);
        for (key, entry) in exact.chain(normalised) {
            let source = format!("the \"auths\" entry {key:?} in {}", path.display());
            if let Some(auth) = entry.to_auth().map_err(bad)? {
                return Ok(Credentials::basic_or_bearer(auth, source));
            }
            if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
                return Ok(Credentials::minted(
                    Mint::IdentityToken(token.to_string()),
                    format!("the identitytoken of {source}"),
                ));
            }
        }
        if let Some(name) = self.creds_store.as_deref().filter(|n| !n.is_empty()) {
            if ecr_store_applies(name, registry) {
                if let Some(creds) = built_in_helper(name, "credsStore", path) {
                    return Ok(creds);
                }
            }
            return self.helper_credentials(name, "credsStore", registry, path, helper);
        }
        if super::google::is_google_registry(registry) {
            return Ok(Credentials::minted(
                Mint::Google,
                format!(
                    "Google credentials (nothing for {registry} in {})",
                    path.display()
                ),
            ));
        }
        Ok(Credentials::anonymous(format!(
            "no credentials (nothing for {registry} in {})",
            path.display()
        )))
    }

    fn helper_credentials(
        &self,
        name: &str,
        section: &str,
        registry: &str,
        path: &Path,
        helper: &dyn Fn(&str, &str) -> HelperAnswer,
    ) -> Result<Credentials> {
        let server = if registry_key(registry) == DOCKER_HUB {
            DOCKER_HUB_SERVER_URL
        } else {
            registry
        };
        let source = format!(
            "credential helper docker-credential-{name} ({section} in {})",
            path.display()
        );
        match helper(name, server) {
            Ok(Some((user, secret))) if user == IDENTITY_TOKEN_USER => Ok(Credentials::minted(
                Mint::IdentityToken(secret),
                format!("the identity token from {source}"),
            )),
            Ok(Some((user, secret))) => Ok(Credentials::basic_or_bearer(
                RegistryAuth::Basic(user, secret),
                source,
            )),
            Ok(None) => Ok(Credentials::anonymous(format!(
                "no credentials ({source} has none for {server})"
            ))),
            Err(reason) => Err(Error::CredentialHelper {
                registry: registry.to_string(),
                helper: format!("docker-credential-{name}"),
                reason,
            }),
        }
    }
}

/// kiln's stand-in for the `ecr-login` helper when `docker-credential-ecr-login` is not
/// installed: an ECR login from the environment's AWS credentials.
fn built_in_helper(name: &str, section: &str, path: &Path) -> Option<Credentials> {
    (super::ecr::is_ecr_helper(name) && !on_path(&format!("docker-credential-{name}"))).then(|| {
        Credentials::minted(
            Mint::Ecr,
            format!(
                "AWS credentials ({section} in {} names docker-credential-{name}, which is not \
                 installed: kiln logs in to ECR itself)",
                path.display()
            ),
        )
    })
}

/// `"credsStore": "ecr-login"` serves every registry; kiln stands in for it only for ECR
/// hosts, where the helper would have had an answer.
fn ecr_store_applies(name: &str, registry: &str) -> bool {
    super::ecr::is_ecr_helper(name) && super::ecr::region_of(registry).is_some()
}

/// Whether `program` is an executable file in a directory of `$PATH`.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|dirs| {
        std::env::split_paths(&dirs).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Runs `docker-credential-<name> get` with `server` on stdin, as Docker does, and reads the
/// `{"Username": …, "Secret": …}` it prints. A helper that says it has no credentials
/// ("credentials not found") gives `None`.
fn run_helper(name: &str, server: &str) -> HelperAnswer {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| format!("writing to {program}: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for {program}: {e}"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout);
        let said = said.trim();
        if said.contains("credentials not found") {
            return Ok(None);
        }
        // The helper's stderr is not echoed: it is not ours to vouch that it holds no secret.
        return Err(format!(
            "{program} get exited with {}: {said}",
            output.status
        ));
    }
    let answer: Answer = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{program} get printed no credentials JSON: {e}"))?;
    if answer.username.is_empty() && answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((answer.username, answer.secret)))
}

impl AuthEntry {
    /// `None` when the entry carries nothing usable (for example only an `identitytoken`).
    fn to_auth(&self) -> std::result::Result<Option<RegistryAuth>, String> {
        if let Some(encoded) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| "\"auth\" is not valid base64".to_string())?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| "\"auth\" does not decode to UTF-8 text".to_string())?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| "\"auth\" does not decode to user:password".to_string())?;
            return Ok(Some(RegistryAuth::Basic(
                user.to_string(),
                password.to_string(),
            )));
        }
        if let Some(user) = self.username.as_deref().filter(|u| !u.is_empty()) {
            let password = self.password.clone().unwrap_or_default();
            return Ok(Some(RegistryAuth::Basic(user.to_string(), password)));
        }
        if let Some(token) = self.registrytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(RegistryAuth::Bearer(token.to_string())));
        }
        Ok(None)
    }
}

/// Reduces a config key or registry host to a comparable form: no scheme, no path, lowercase,
/// Docker Hub aliases folded into one.
pub(crate) fn registry_key(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe(creds: &Credentials) -> String {
        match (&creds.mint, &creds.auth) {
            (Some(Mint::IdentityToken(t)), _) => format!("identity token {t}"),
            (Some(Mint::Google), _) => "google".to_string(),
            (Some(Mint::Ecr), _) => "ecr".to_string(),
            (None, RegistryAuth::Anonymous) => "anonymous".to_string(),
            (None, RegistryAuth::Basic(u, p)) => format!("basic {u}:{p}"),
            (None, RegistryAuth::Bearer(t)) => format!("bearer {t}"),
        }
    }

    /// A stand-in for `docker-credential-*`: "gcrhelper" knows gcr.io, "desktop" knows
    /// store.example.com and Docker Hub, "broken" fails.
    fn fake_helper(name: &str, server: &str) -> HelperAnswer {
        match (name, server) {
            ("gcrhelper", "gcr.io") => Ok(Some(("oauth2accesstoken".into(), "gtok".into()))),
            ("desktop", "store.example.com") => Ok(Some(("bob".into(), "s3".into()))),
            ("desktop", DOCKER_HUB_SERVER_URL) => Ok(Some(("hubuser".into(), "hubpw".into()))),
            ("desktop", "idtok.example.com") => Ok(Some((IDENTITY_TOKEN_USER.into(), "r".into()))),
            ("broken", _) => Err("exited with 1".into()),
            _ => Ok(None),
        }
    }

    fn lookup(config: &str, registry: &str) -> Result<Credentials> {
        DockerConfig::parse(config).unwrap().credentials(
            registry,
            Path::new("/cfg/config.json"),
            &fake_helper,
        )
    }

    #[test]
    fn picks_credentials_for_host() {
        // "hub:secret" and "me:pw:with:colons"
        let config = r#"{
          "auths": {
            "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
            "registry.example.com:5000": {"username": "alice", "password": "pw"},
            "http://legacy.example.com/v2/": {"auth": "bWU6cHc6d2l0aDpjb2xvbnM="},
            "ghcr.io": {"registrytoken": "tok"},
            "helper.example.com": {},
            "idtoken.example.com": {"identitytoken": "refresh"}
          },
          "credHelpers": {"gcr.io": "gcrhelper", "bad.example.com": "broken"}
        }"#;
        for (registry, want, source) in [
            (
                "docker.io",
                "basic hub:secret",
                "\"https://index.docker.io/v1/\"",
            ),
            ("index.docker.io", "basic hub:secret", "auths"),
            ("registry-1.docker.io", "basic hub:secret", "auths"),
            ("registry.example.com:5000", "basic alice:pw", "auths"),
            ("REGISTRY.example.com:5000", "basic alice:pw", "auths"),
            ("registry.example.com", "anonymous", "nothing for"),
            ("legacy.example.com", "basic me:pw:with:colons", "auths"),
            ("ghcr.io", "bearer tok", "auths"),
            ("helper.example.com", "anonymous", "nothing for"),
            (
                "idtoken.example.com",
                "identity token refresh",
                "identitytoken",
            ),
            (
                "gcr.io",
                "basic oauth2accesstoken:gtok",
                "docker-credential-gcrhelper",
            ),
            ("us-docker.pkg.dev", "google", "Google credentials"),
            ("eu.gcr.io", "google", "Google credentials"),
            ("127.0.0.1:5000", "anonymous", "/cfg/config.json"),
        ] {
            let got = lookup(config, registry).unwrap();
            assert_eq!(describe(&got), want, "{registry}");
            assert!(got.source.contains(source), "{registry}: {}", got.source);
        }
        let err = lookup(config, "bad.example.com").unwrap_err().to_string();
        assert!(err.contains("docker-credential-broken"), "{err}");
        assert!(err.contains("bad.example.com"), "{err}");
    }

    #[test]
    fn creds_store_after_auths() {
        let config = r#"{
          "auths": {"direct.example.com": {"username": "u", "password": "p"}},
          "credsStore": "desktop"
        }"#;
        for (registry, want, source) in [
            ("direct.example.com", "basic u:p", "auths"),
            ("store.example.com", "basic bob:s3", "credsStore"),
            (
                "docker.io",
                "basic hubuser:hubpw",
                "docker-credential-desktop",
            ),
            (
                "other.example.com",
                "anonymous",
                "has none for other.example.com",
            ),
            ("idtok.example.com", "identity token r", "identity token"),
        ] {
            let got = lookup(config, registry).unwrap();
            assert_eq!(describe(&got), want, "{registry}");
            assert!(got.source.contains(source), "{registry}: {}", got.source);
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let creds = Credentials::basic_or_bearer(
            RegistryAuth::Basic("user".into(), "hunter2".into()),
            "s".into(),
        );
        assert!(!format!("{creds:?}").contains("hunter2"));
        let config = DockerConfig::parse(r#"{"auths":{"r":{"auth":"dTpodW50ZXIy"}}}"#).unwrap();
        assert!(!format!("{config:?}").contains("dTpodW50ZXIy"));
    }

    #[test]
    fn rejects_malformed_auth() {
        for (config, want) in [
            (r#"{"auths":{"r.io":{"auth":"!!!"}}}"#, "base64"),
            // "nocolon"
            (
                r#"{"auths":{"r.io":{"auth":"bm9jb2xvbg=="}}}"#,
                "user:password",
            ),
        ] {
            let err = lookup(config, "r.io").unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("bm9jb2xvbg"), "{err}");
        }
    }

    #[test]
    fn empty_or_missing_config_is_anonymous() {
        let got = lookup("{}", "docker.io").unwrap();
        assert!(matches!(got.auth, RegistryAuth::Anonymous));
        let dir = tempfile::tempdir().unwrap();
        let got = credentials_from_file(&dir.path().join("config.json"), "docker.io").unwrap();
        assert!(matches!(got.auth, RegistryAuth::Anonymous));
        assert!(got.source.contains("does not exist"), "{}", got.source);
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let err = credentials_from_file(&dir.path().join("config.json"), "docker.io").unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }

    #[test]
    fn normalises_keys() {
        for (key, want) in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("docker.io", "docker.io"),
            ("http://Reg.Example.com:5000/v2/", "reg.example.com:5000"),
            ("quay.io", "quay.io"),
        ] {
            assert_eq!(registry_key(key), want, "{key}");
        }
    }
}
