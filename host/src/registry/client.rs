//! How a [`Registry`] reaches a registry: one oci-client client per registry host and
//! direction, TLS or (for loopback and `--insecure*` registries, when HTTPS gets no answer)
//! plain HTTP, TLS trust (`--skip-tls-verify*`, `--registry-certificate`),
//! the route through a client-certificate forwarder (`client_cert.rs`), credentials looked up
//! once per host (`auth.rs`) and exchanged for tokens where they need it (Google, ECR, identity
//! tokens), and the login that reports a refusal as such. Moving manifests and blobs is
//! `pull.rs`'s and `push.rs`'s.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tracing::debug;

use super::address::{is_local_registry, same_registry};
use super::auth::{self, Credentials};
use super::error::{is_tls_failure, Error, Result};
use super::options::{connect_timeout, read_timeout, USER_AGENT};
use super::retry::with_retries;
use super::{client_cert, ecr, google, Direction, Registry};

/// Longest wait for the HTTPS answer that decides a loopback or insecure registry's scheme.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Registry {
    /// `reference` routed through its registry's client-certificate forwarder when
    /// `--registry-client-cert` names the registry; otherwise unchanged.
    pub(super) async fn route(
        &self,
        reference: &Reference,
        direction: Direction,
    ) -> Result<Reference> {
        let registry = reference.registry().to_string();
        let Some((_, cert, key)) = self
            .opts
            .registry_client_certs
            .iter()
            .find(|(name, ..)| same_registry(name, &registry))
        else {
            return Ok(reference.clone());
        };
        let upstream = reference.resolve_registry().to_string();
        let mut forwarders = self.forwarders.lock().await;
        let local = match forwarders.get(&(registry.clone(), direction)) {
            Some(local) => local.clone(),
            None => {
                let failed = |reason: String| Error::ClientCert {
                    registry: registry.clone(),
                    reason,
                };
                let identity = client_cert::identity(&registry, cert, key).map_err(failed)?;
                let mut builder = super::roots::trust(reqwest::Client::builder())
                    .identity(identity)
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(connect_timeout())
                    .read_timeout(read_timeout())
                    .danger_accept_invalid_certs(self.skip_tls_verify(&registry, direction));
                for (name, path) in &self.opts.registry_certificates {
                    if same_registry(name, &registry) {
                        let pem = std::fs::read(path).map_err(|source| Error::ReadCertificate {
                            registry: registry.clone(),
                            path: path.clone(),
                            source,
                        })?;
                        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                            failed(format!("{} is not a PEM certificate: {e}", path.display()))
                        })?;
                        builder = builder.tls_certs_merge([ca]);
                    }
                }
                let http = builder
                    .build()
                    .map_err(|e| failed(format!("setting up TLS: {e}")))?;
                let local = client_cert::start(&upstream, http)
                    .await
                    .map_err(|e| failed(format!("starting the loopback forwarder: {e}")))?;
                self.note_plain_http(&local, direction);
                forwarders.insert((registry.clone(), direction), local.clone());
                local
            }
        };
        let mut routed = reference.clone();
        routed.set_mirror_registry(local);
        Ok(routed)
    }

    /// Whether `registry` may be spoken to over plain HTTP in `direction` at all: a loopback
    /// registry or one the `--insecure*` flags name, unless the user gave TLS settings for it
    /// (`--registry-certificate`, `--skip-tls-verify-registry`, `--registry-client-cert`),
    /// which make it TLS only, as Docker and go-containerregistry do.
    pub(super) fn may_use_plain_http(&self, registry: &str, direction: Direction) -> bool {
        let opts = &self.opts;
        let tls_named = (opts.registry_certificates.iter().map(|(n, _)| n))
            .chain(&opts.skip_tls_verify_registries)
            .chain(opts.registry_client_certs.iter().map(|(n, ..)| n))
            .any(|name| same_registry(name, registry));
        if tls_named {
            return false;
        }
        let all = match direction {
            Direction::Pull => self.opts.insecure_pull,
            Direction::Push => self.opts.insecure,
        };
        all || is_local_registry(registry)
            || self
                .opts
                .insecure_registries
                .iter()
                .any(|r| same_registry(r, registry))
    }

    /// Whether requests to `registry` in `direction` go over plain HTTP: for a registry that
    /// may use it, HTTPS is tried first (one request to `/v2/`) and plain HTTP taken when that
    /// fails; the answer is remembered for the rest of the build.
    pub(super) async fn plain_http(&self, registry: &str, direction: Direction) -> bool {
        if !self.may_use_plain_http(registry, direction) {
            return false;
        }
        let key = (registry.to_string(), direction);
        // the other direction's answer holds too: whether HTTPS answers does not depend on it
        let other = match direction {
            Direction::Pull => Direction::Push,
            Direction::Push => Direction::Pull,
        };
        let known = {
            let schemes = self.lock_schemes();
            (schemes
                .get(&key)
                .or_else(|| schemes.get(&(registry.to_string(), other))))
            .copied()
        };
        if let Some(plain) = known {
            self.lock_schemes().insert(key, plain);
            return plain;
        }
        let plain = !self.answers_tls(registry).await;
        debug!(registry, plain_http = plain, "registry scheme");
        self.lock_schemes().insert(key, plain);
        plain
    }

    /// Remembers that `registry` (a client-certificate forwarder) speaks plain HTTP.
    pub(super) fn note_plain_http(&self, registry: &str, direction: Direction) {
        self.lock_schemes()
            .insert((registry.to_string(), direction), true);
    }

    fn lock_schemes(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Direction), bool>> {
        self.schemes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `registry` answers HTTPS on `/v2/` (any status). A certificate it presents
    /// that is not trusted counts as an answer: the registry speaks TLS, and the error that
    /// follows names the flags that trust it.
    async fn answers_tls(&self, registry: &str) -> bool {
        // only whether TLS answers matters, not whom it names: no roots to load, any
        // certificate taken (the client that follows checks it; an untrusted one answered too)
        let builder = reqwest::Client::builder()
            .tls_certs_only(std::iter::empty::<reqwest::Certificate>())
            .danger_accept_invalid_certs(true)
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(PROBE_TIMEOUT)
            .timeout(PROBE_TIMEOUT);
        let Ok(http) = builder.build() else {
            return false;
        };
        match http.get(format!("https://{registry}/v2/")).send().await {
            Ok(_) => true,
            Err(e) => {
                debug!(registry, error = %crate::error::chain(&e), "no HTTPS answer");
                untrusted_certificate(&e)
            }
        }
    }

    /// Whether TLS certificates of `registry` are accepted unchecked in `direction`.
    pub(super) fn skip_tls_verify(&self, registry: &str, direction: Direction) -> bool {
        let all = match direction {
            Direction::Pull => self.opts.skip_tls_verify_pull,
            Direction::Push => self.opts.skip_tls_verify,
        };
        all || self
            .opts
            .skip_tls_verify_registries
            .iter()
            .any(|r| same_registry(r, registry))
    }

    /// The flags that would change how `registry` is reached, for a TLS error message.
    fn tls_hint(&self, registry: &str, direction: Direction) -> String {
        let all = match direction {
            Direction::Pull => "--skip-tls-verify-pull",
            Direction::Push => "--skip-tls-verify",
        };
        let insecure = match direction {
            Direction::Pull => "--insecure-pull",
            Direction::Push => "--insecure",
        };
        format!(
            "to trust its certificate pass --registry-certificate {registry}=CA.crt, or skip \
             verification with --skip-tls-verify-registry {registry} or {all}; if it asks for a \
             client certificate pass --registry-client-cert {registry}=client.crt,client.key; for \
             a plain-HTTP registry pass --insecure-registry {registry} or {insecure}"
        )
    }

    /// The client for `reference`'s registry, created on first use.
    async fn client(&self, reference: &Reference, direction: Direction) -> Result<Client> {
        let registry = reference.resolve_registry().to_string();
        let plain = self.plain_http(&registry, direction).await;
        let skip_tls_verify = self.skip_tls_verify(&registry, direction);
        // pull and push share a client where they reach the registry alike
        let key = (registry.clone(), plain, skip_tls_verify);
        if let Some(client) = self
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(client.clone());
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let protocol = if plain {
            ClientProtocol::HttpsExcept(vec![registry.clone()])
        } else {
            ClientProtocol::Https
        };
        let mut extra_root_certificates = Vec::new();
        for (name, path) in &self.opts.registry_certificates {
            if same_registry(name, &registry) || same_registry(name, reference.registry()) {
                extra_root_certificates.push(read_certificate(&registry, path)?);
            }
        }
        let config = ClientConfig {
            protocol,
            accept_invalid_certificates: skip_tls_verify,
            tls_certs_only: super::roots::for_oci_client(),
            extra_root_certificates,
            // One PUT per blob with a streamed body, rather than sequential 4 MiB PATCHes.
            use_monolithic_push: true,
            // Indexes are resolved here, with the variant taken into account.
            platform_resolver: None,
            connect_timeout: Some(connect_timeout()),
            read_timeout: Some(read_timeout()),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|source| Error::Client {
            registry: registry.clone(),
            source,
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Credentials for `reference`'s registry from Docker's configuration, looked up once.
    fn credentials(&self, reference: &Reference) -> Result<Credentials> {
        let registry = reference.registry().to_string();
        if let Some(found) = self
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&registry)
        {
            return Ok(found.clone());
        }
        let found = auth::credentials(&registry)?;
        debug!(registry = %registry, credentials = %found.source, "registry credentials");
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(registry, found.clone());
        Ok(found)
    }

    /// Creates the client for `reference` and logs in with the stored credentials, so an
    /// authentication failure is reported as such rather than as a later 401.
    pub(super) async fn connect(
        &self,
        reference: &Reference,
        direction: Direction,
    ) -> Result<(Client, Credentials)> {
        let client = self.client(reference, direction).await?;
        let mut creds = self
            .mint(reference, direction, self.credentials(reference)?)
            .await?;
        let op = match direction {
            Direction::Pull => oci_client::RegistryOperation::Pull,
            Direction::Push => oci_client::RegistryOperation::Push,
        };
        let registry = reference.registry().to_string();
        if !matches!(creds.auth, RegistryAuth::Bearer(_))
            && self.unchallenged(reference, direction).await
        {
            // nothing to log in to: oci-client is never told of credentials, so it asks
            // `/v2/` again before no request
            return Ok((client, creds));
        }
        creds.bearer = with_retries("authenticate", || async {
            client
                .auth(reference, &creds.auth, op)
                .await
                .map_err(|source| {
                    if is_tls_failure(&source) {
                        Error::Tls {
                            hint: self.tls_hint(&registry, direction),
                            registry: registry.clone(),
                            source: Box::new(source),
                        }
                    } else {
                        Error::Auth {
                            registry: registry.clone(),
                            reference: reference.whole(),
                            credentials: creds.source.clone(),
                            source: Box::new(source),
                        }
                    }
                })
        })
        .await?;
        Ok((client, creds))
    }

    /// Whether `reference`'s registry answers `/v2/` without a challenge (no
    /// `WWW-Authenticate`, not 401): asked once per host and build; a failed request is no
    /// answer (the login that follows reports it).
    async fn unchallenged(&self, reference: &Reference, direction: Direction) -> bool {
        let host = reference.resolve_registry().to_string();
        if self.asks_no_bearer(&host) {
            return true;
        }
        let Ok(http) = self.http(reference, direction).await else {
            return false;
        };
        let url = format!("{}/v2/", self.base_url(reference, direction).await);
        let Ok(answer) = http.get(&url).send().await else {
            return false;
        };
        let open = answer.status() != reqwest::StatusCode::UNAUTHORIZED
            && !answer
                .headers()
                .contains_key(reqwest::header::WWW_AUTHENTICATE);
        debug!(registry = %host, challenge = !open, "registry /v2/");
        if open {
            self.no_bearer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(host);
        }
        open
    }

    /// Exchanges credentials that need it (an identity token, Google's credentials) for a
    /// token usable for `reference` in `direction`; other credentials pass unchanged.
    async fn mint(
        &self,
        reference: &Reference,
        direction: Direction,
        creds: Credentials,
    ) -> Result<Credentials> {
        let failed = |reason: String| Error::Mint {
            registry: reference.registry().to_string(),
            reference: reference.whole(),
            credentials: creds.source.clone(),
            reason,
        };
        match &creds.mint {
            None => Ok(creds),
            Some(auth::Mint::Google) => {
                let token = google::access_token().await.map_err(failed)?;
                debug!(registry = %reference.registry(), from = %token.source, "Google access token");
                Ok(Credentials {
                    auth: oci_client::secrets::RegistryAuth::Basic(
                        google::TOKEN_USER.to_string(),
                        token.token,
                    ),
                    source: format!("{} from {}", creds.source, token.source),
                    mint: creds.mint.clone(),
                    bearer: None,
                })
            }
            Some(auth::Mint::Ecr) => {
                let (user, password, from) =
                    ecr::login(reference.registry()).await.map_err(failed)?;
                debug!(registry = %reference.registry(), from = %from, "ECR login");
                Ok(Credentials {
                    auth: oci_client::secrets::RegistryAuth::Basic(user, password),
                    source: format!("{} from {from}", creds.source),
                    mint: creds.mint.clone(),
                    bearer: None,
                })
            }
            Some(auth::Mint::IdentityToken(_)) => {
                let actions = match direction {
                    Direction::Pull => "pull",
                    Direction::Push => "pull,push",
                };
                let scopes = vec![format!("repository:{}:{actions}", reference.repository())];
                let token = self
                    .request_token(&creds, reference, direction, &scopes)
                    .await
                    .map_err(|e| failed(e.to_string()))?
                    .ok_or_else(|| {
                        failed("the registry asks for no bearer token, so an identity token cannot be used".into())
                    })?;
                Ok(Credentials {
                    auth: oci_client::secrets::RegistryAuth::Bearer(token),
                    source: creds.source.clone(),
                    mint: creds.mint.clone(),
                    bearer: None,
                })
            }
        }
    }

    /// Turns an error that says access was refused into one naming the registry, repository
    /// and the credentials tried; other errors pass unchanged.
    pub(super) fn explain_denied(
        &self,
        err: Error,
        reference: &Reference,
        direction: Direction,
        creds: &Credentials,
    ) -> Error {
        if !err.is_denied() {
            return err;
        }
        Error::Unauthorized {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            action: direction.verb(),
            credentials: creds.source.clone(),
            source: Box::new(err),
        }
    }
}

/// Whether a failed HTTPS request met a TLS server whose certificate is not trusted.
fn untrusted_certificate(err: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(c) = cause {
        if c.to_string().to_ascii_lowercase().contains("certificate") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Reads a PEM CA certificate file for `registry`.
fn read_certificate(registry: &str, path: &Path) -> Result<Certificate> {
    let data = std::fs::read(path).map_err(|source| Error::ReadCertificate {
        registry: registry.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Certificate {
        encoding: CertificateEncoding::Pem,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryOptions;

    #[test]
    fn chooses_where_plain_http_may_be_tried() {
        let opts = RegistryOptions {
            insecure_registries: vec!["http://reg.lan:5000/".to_string(), "docker.io".to_string()],
            registry_certificates: vec![("127.0.0.1:5443".to_string(), "ca.crt".into())],
            skip_tls_verify_registries: vec!["localhost:5444".to_string()],
            registry_client_certs: vec![("[::1]:5445".to_string(), "c.crt".into(), "c.key".into())],
            ..RegistryOptions::default()
        };
        let registry = Registry::new(opts);
        for (host, direction, want) in [
            ("127.0.0.1:5000", Direction::Push, true),
            ("reg.lan:5000", Direction::Pull, true),
            ("reg.lan", Direction::Pull, false),
            ("index.docker.io", Direction::Pull, true),
            ("quay.io", Direction::Push, false),
            ("127.0.0.1:5443", Direction::Push, false),
            ("127.0.0.1:5443", Direction::Pull, false),
            ("localhost:5444", Direction::Push, false),
            ("[::1]:5445", Direction::Pull, false),
        ] {
            assert_eq!(registry.may_use_plain_http(host, direction), want, "{host}");
        }
        let registry = Registry::new(RegistryOptions {
            insecure_pull: true,
            ..RegistryOptions::default()
        });
        assert!(registry.may_use_plain_http("quay.io", Direction::Pull));
        assert!(!registry.may_use_plain_http("quay.io", Direction::Push));
    }
}
