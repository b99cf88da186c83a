//! Bearer tokens for cross-repository mounts.
//!
//! oci-client asks a token server only for the target repository's scope, so a registry
//! with token auth answers a mount with 202 (upload instead) whenever the source repository
//! needs its own `pull` grant. Before mounting, kiln asks the token server itself for
//! `repository:<target>:pull,push` plus `repository:<source>:pull` for every source, and
//! puts that token in the client's cache for the target. Failure here is never fatal: the
//! blobs are then uploaded. Registries with Basic auth or none need nothing of this.
//!
//! The same request serves identity tokens (OAuth2 refresh tokens from `config.json` or a
//! credential helper): as Docker does, kiln posts `grant_type=refresh_token` to the token
//! server's realm with the scopes it needs, and uses the access token it answers.

use oci_client::secrets::RegistryAuth;
use oci_client::token_cache::{RegistryToken, RegistryTokenType};
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;
use tracing::debug;

use super::address::same_registry;
use super::auth::{Credentials, Mint};
use super::options::{connect_timeout, read_timeout, USER_AGENT};
use super::{Direction, Registry};

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

impl Registry {
    /// Gets a token for pushing to `target` and pulling from each of `sources`, and stores
    /// it as the target's push token. Does nothing for registries without token auth.
    pub(crate) async fn authorize_mounts(
        &self,
        client: &Client,
        creds: &Credentials,
        target: &Reference,
        sources: &[Reference],
    ) {
        let identity = matches!(creds.mint, Some(Mint::IdentityToken(_)));
        if sources.is_empty() || (matches!(creds.auth, RegistryAuth::Bearer(_)) && !identity) {
            return;
        }
        let mut scopes = vec![format!("repository:{}:pull,push", target.repository())];
        for source in sources {
            scopes.push(format!("repository:{}:pull", source.repository()));
        }
        match self
            .request_token(creds, target, Direction::Push, &scopes)
            .await
        {
            Ok(Some(token)) => {
                client
                    .tokens
                    .insert(
                        target,
                        RegistryOperation::Push,
                        RegistryTokenType::Bearer(RegistryToken::Token { token }),
                    )
                    .await;
                debug!(reference = %target.whole(), sources = sources.len(), "token for cross-repository mounts");
            }
            Ok(None) => {
                debug!(reference = %target.whole(), "registry asks for no bearer token");
            }
            Err(e) => {
                debug!(reference = %target.whole(), error = %e, "no token for cross-repository mounts, blobs will be uploaded");
            }
        }
    }

    /// Asks `target`'s token server for a token with `scopes`, as `creds`; `None` when the
    /// registry does not use bearer tokens.
    pub(super) async fn request_token(
        &self,
        creds: &Credentials,
        target: &Reference,
        direction: Direction,
        scopes: &[String],
    ) -> Result<Option<String>, reqwest::Error> {
        let registry = target.resolve_registry();
        if self.asks_no_bearer(registry) {
            return Ok(None);
        }
        let mut builder = super::roots::trust(reqwest::Client::builder())
            .user_agent(USER_AGENT)
            .connect_timeout(connect_timeout())
            .read_timeout(read_timeout())
            .danger_accept_invalid_certs(self.skip_tls_verify(registry, direction));
        for (name, path) in &self.opts.registry_certificates {
            if same_registry(name, registry) || same_registry(name, target.registry()) {
                if let Ok(pem) = std::fs::read(path) {
                    if let Ok(cert) = reqwest::Certificate::from_pem(&pem) {
                        builder = builder.tls_certs_merge([cert]);
                    }
                }
            }
        }
        let http = builder.build()?;
        let scheme = if self.plain_http(registry, direction).await {
            "http"
        } else {
            "https"
        };
        let ping = http
            .get(format!("{scheme}://{registry}/v2/"))
            .send()
            .await?;
        let Some(challenge) = ping
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_bearer_challenge)
        else {
            return Ok(None);
        };
        let request = if let Some(Mint::IdentityToken(refresh)) = &creds.mint {
            // OAuth2 refresh grant: scopes space-separated in one field
            let scope = scopes.join(" ");
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT_ID),
                ("refresh_token", refresh.as_str()),
                ("scope", scope.as_str()),
            ];
            if let Some(service) = &challenge.service {
                form.push(("service", service.as_str()));
            }
            let body = super::google::form_urlencoded(&form);
            http.post(&challenge.realm)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
        } else {
            let mut query = Vec::new();
            if let Some(service) = &challenge.service {
                query.push(("service", service.clone()));
            }
            for scope in scopes {
                query.push(("scope", scope.clone()));
            }
            let mut request = http.get(&challenge.realm).query(&query);
            if let RegistryAuth::Basic(user, password) = &creds.auth {
                request = request.basic_auth(user, Some(password));
            }
            request
        };
        let answer: TokenAnswer = request.send().await?.error_for_status()?.json().await?;
        Ok(answer.token.or(answer.access_token))
    }
}

/// The OAuth2 client id kiln gives token servers with a refresh token.
const CLIENT_ID: &str = "kiln";

#[derive(Debug, PartialEq)]
struct BearerChallenge {
    realm: String,
    service: Option<String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"`; `None` for any other scheme.
fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let (scheme, params) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (mut realm, mut service) = (None, None);
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(BearerChallenge {
        realm: realm?,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_bearer_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(BearerChallenge {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_bearer_challenge("bearer realm=http://h/t"),
            Some(BearerChallenge {
                realm: "http://h/t".into(),
                service: None
            })
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="kiln""#), None);
        assert_eq!(parse_bearer_challenge(r#"Bearer service="x""#), None);
    }
}
