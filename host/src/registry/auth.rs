//! Registry credentials from Docker's `config.json`.
//!
//! Reads `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`) and picks the `auths`
//! entry for a registry host: `auth` (base64 `user:password`), `username`/`password`, or
//! `registrytoken` (a bearer token). Docker Hub's spellings (`https://index.docker.io/v1/`,
//! `index.docker.io`, `registry-1.docker.io`, `docker.io`) are one registry. Anything not found
//! is anonymous.
//!
//! Not read yet: `credsStore` / `credHelpers` (credential helper programs) and `identitytoken`
//! (an OAuth refresh token, which oci-client cannot exchange). Entries that only carry those are
//! treated as absent, so such registries are accessed anonymously.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

use super::{Error, Result};

/// Docker Hub's canonical name, the one every alias maps to.
const DOCKER_HUB: &str = "docker.io";

/// The `auths` section of a Docker `config.json`; other sections are ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
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

/// Credentials for `registry` (a host with optional port) from the config file at `path`;
/// anonymous when the file does not exist or has no entry for the host.
pub(crate) fn credentials_from_file(path: &Path, registry: &str) -> Result<RegistryAuth> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
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
    config
        .credentials(registry)
        .map_err(|reason| Error::BadCredentials {
            path: path.to_path_buf(),
            registry: registry.to_string(),
            reason,
        })
}

impl DockerConfig {
    pub(crate) fn parse(json: &str) -> serde_json::Result<DockerConfig> {
        serde_json::from_str(json)
    }

    /// The credentials for `registry`. An entry keyed exactly by the host wins over one that
    /// only matches after normalisation. The error is a reason phrase for the caller to wrap.
    pub(crate) fn credentials(&self, registry: &str) -> std::result::Result<RegistryAuth, String> {
        let want = registry_key(registry);
        let exact = self.auths.get(registry).into_iter();
        let normalised = self
            .auths
            .iter()
            .filter(|(key, _)| registry_key(key) == want)
            .map(|(_, entry)| entry);
        for entry in exact.chain(normalised) {
            if let Some(auth) = entry.to_auth()? {
                return Ok(auth);
            }
        }
        Ok(RegistryAuth::Anonymous)
    }
}

impl AuthEntry {
    /// `None` when the entry carries nothing usable (for example only an `identitytoken`).
    fn to_auth(&self) -> std::result::Result<Option<RegistryAuth>, String> {
        if let Some(encoded) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|e| format!("\"auth\" is not valid base64: {e}"))?;
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
fn registry_key(key: &str) -> String {
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

    fn describe(auth: &RegistryAuth) -> String {
        match auth {
            RegistryAuth::Anonymous => "anonymous".to_string(),
            RegistryAuth::Basic(u, p) => format!("basic {u}:{p}"),
            RegistryAuth::Bearer(t) => format!("bearer {t}"),
        }
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
          "credsStore": "desktop",
          "credHelpers": {"gcr.io": "gcloud"}
        }"#;
        let config = DockerConfig::parse(config).unwrap();
        for (registry, want) in [
            ("docker.io", "basic hub:secret"),
            ("index.docker.io", "basic hub:secret"),
            ("registry-1.docker.io", "basic hub:secret"),
            ("registry.example.com:5000", "basic alice:pw"),
            ("REGISTRY.example.com:5000", "basic alice:pw"),
            ("registry.example.com", "anonymous"),
            ("legacy.example.com", "basic me:pw:with:colons"),
            ("ghcr.io", "bearer tok"),
            ("helper.example.com", "anonymous"),
            ("idtoken.example.com", "anonymous"),
            ("gcr.io", "anonymous"),
            ("127.0.0.1:5000", "anonymous"),
        ] {
            let got = config.credentials(registry).unwrap();
            assert_eq!(describe(&got), want, "{registry}");
        }
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
            let err = DockerConfig::parse(config)
                .unwrap()
                .credentials("r.io")
                .unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn empty_or_missing_config_is_anonymous() {
        let config = DockerConfig::parse("{}").unwrap();
        assert!(matches!(
            config.credentials("docker.io").unwrap(),
            RegistryAuth::Anonymous
        ));
        let dir = tempfile::tempdir().unwrap();
        let auth = credentials_from_file(&dir.path().join("config.json"), "docker.io").unwrap();
        assert!(matches!(auth, RegistryAuth::Anonymous));
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
