//! Credentials kiln has to exchange for a token before using them, against real registries:
//!
//! - an `identitytoken` (an OAuth2 refresh token) in `config.json`, posted to the token
//!   server of a `docker-registry` with `auth.token`, for the push and pull scopes and, for a
//!   cross-repository mount, the source's pull scope too;
//! - Google credentials for a registry configured with the `gcr` helper that is not
//!   installed: a service-account key (kiln signs a JWT, checked here with openssl against the
//!   key's public half, and exchanges it at the key's token URI) and the metadata server.
//!   The registry is a `docker-registry` with htpasswd auth whose only user is
//!   `oauth2accesstoken` with the minted token as password, as Google's registries take it.
//!
//! - kaniko's ECR setup (`"credHelpers": {HOST: "ecr-login"}`) without the helper installed:
//!   kiln calls `GetAuthorizationToken` (an ECR endpoint on loopback that insists on a SigV4
//!   signature for the `ecr` service) with AWS keys from the environment and pushes with the
//!   `AWS:<password>` it answers, to a registry whose only user that is.
//!
//! No refresh token, key or access token appears in kiln's output at trace level.

use std::process::Command;

use kiln_tests::{
    docker_config, kiln_bin, run_checked, unique_token, EcrApi, GoogleAuth, Scratch,
    SecureRegistry, TokenRegistry,
};
use serde_json::json;

fn output_text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn identity_token_is_exchanged_for_each_scope() {
    kiln_bin();
    let reg = TokenRegistry::start("idt-user", &format!("pw-{}", unique_token()));
    let scratch = Scratch::new();
    let config = json!({"auths": {reg.host(): {"identitytoken": reg.refresh_token}}});
    let config_dir = docker_config(&scratch.join("docker"), &config);

    scratch.write("ctx/base.txt", &"base layer ".repeat(2_000));
    let base = reg.reference("idt/base:1");
    let out = scratch
        .build("FROM scratch\nCOPY base.txt /base.txt\n")
        .destination(&base)
        .arg("--verbosity=trace")
        .env("DOCKER_CONFIG", &config_dir)
        .run_ok();
    let mut logs = output_text(&out);
    let scopes = reg.scopes();
    assert!(
        scopes
            .iter()
            .any(|s| s.starts_with("idt-user (refresh token) ")
                && s.contains("repository:idt/base:pull,push")),
        "no refresh-token grant for the push:\n{scopes:#?}"
    );

    // Built on it and pushed elsewhere: pulling the base and mounting its layer both go
    // through the refresh grant.
    let derived = Scratch::new();
    derived.write("ctx/small.txt", "small");
    let out = derived
        .build(&format!("FROM {base}\nCOPY small.txt /small.txt\n"))
        .destination(&reg.reference("idt/derived:1"))
        .arg("--verbosity=trace")
        .env("DOCKER_CONFIG", &config_dir)
        .run_ok();
    logs.push_str(&output_text(&out));
    let scopes = reg.scopes();
    assert!(
        scopes
            .iter()
            .any(|s| s.starts_with("idt-user (refresh token) ")
                && s.contains("repository:idt/base:pull")
                && !s.contains("idt/base:pull,push")),
        "no refresh-token grant for the pull:\n{scopes:#?}"
    );
    assert!(
        scopes
            .iter()
            .any(|s| s.starts_with("idt-user (refresh token) ")
                && s.contains("repository:idt/derived:pull,push")
                && s.contains("repository:idt/base:pull")),
        "no refresh-token grant covering the mount source:\n{scopes:#?}"
    );
    let inspect = run_checked(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--creds"])
            .arg(format!("{}:{}", reg.user, reg.password))
            .arg(format!("docker://{}", reg.reference("idt/derived:1"))),
    );
    assert!(inspect.contains("\"Layers\""), "{inspect}");

    // A refresh token the issuer does not know: refused, and the error says which
    // credential was tried without showing it.
    let stale = format!("refresh-stale-{}", unique_token());
    let bad_dir = docker_config(
        &scratch.join("stale"),
        &json!({"auths": {reg.host(): {"identitytoken": stale}}}),
    );
    let out = derived
        .build("FROM scratch\nCOPY small.txt /small.txt\n")
        .destination(&reg.reference("idt/stale:1"))
        .env("DOCKER_CONFIG", &bad_dir)
        .run();
    assert!(!out.status.success(), "a stale identity token was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [reg.host(), "idt/stale", "identitytoken"] {
        assert!(err.contains(want), "error lacks {want:?}:\n{err}");
    }
    assert!(!err.contains(&stale), "the refresh token leaked: {err}");
    for secret in [&reg.refresh_token, &reg.password] {
        assert!(!logs.contains(secret.as_str()), "a secret is in the log");
    }
}

#[test]
fn google_credentials_mint_registry_tokens() {
    kiln_bin();
    let token = format!("ya29.kiln-{}", unique_token());
    let google = GoogleAuth::start(&token);
    let reg = SecureRegistry::start("oauth2accesstoken", &token);
    let scratch = Scratch::new();
    assert!(
        !std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|d| std::path::Path::new(d).join("docker-credential-gcr").exists()),
        "docker-credential-gcr is installed on this machine: this test needs kiln to stand in for it"
    );
    // kaniko's images name docker-credential-gcr for Google's registries
    let config_dir = docker_config(
        &scratch.join("docker"),
        &json!({"credHelpers": {reg.host(): "gcr"}}),
    );
    let home = scratch.join("home");
    std::fs::create_dir_all(&home).expect("home");

    // 1. a service-account key
    let keys = scratch.join("keys");
    std::fs::create_dir_all(&keys).expect("keys");
    let email = "builder@kiln-test.iam.gserviceaccount.com";
    let (key_file, public) = google.service_account_key(&keys, email);
    scratch.write("ctx/hello.txt", "minted");
    let destination = reg.reference("google/sa:1");
    let out = scratch
        .build("FROM scratch\nCOPY hello.txt /hello.txt\n")
        .destination(&destination)
        .arg("--registry-certificate")
        .arg(reg.certificate_flag())
        .arg("--verbosity=trace")
        .env("DOCKER_CONFIG", &config_dir)
        .env("HOME", &home)
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key_file)
        .env("GCE_METADATA_HOST", "")
        .run_ok();
    let mut logs = output_text(&out);
    let requests = google.requests();
    let posts: Vec<_> = requests
        .iter()
        .filter(|r| r.line.starts_with("POST /token"))
        .collect();
    assert_eq!(posts.len(), 1, "one token request per build: {requests:#?}");
    let assertion = posts[0]
        .body
        .split('&')
        .find_map(|p| p.strip_prefix("assertion="))
        .expect("an assertion in the token request")
        .to_string();
    let parts: Vec<&str> = assertion.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT: {assertion}");
    let decode = |s: &str| {
        run_checked(Command::new("sh").args([
            "-c",
            // base64url, unpadded, to bytes
            "s=$(printf %s \"$1\" | tr '_-' '/+'); while [ $(( ${#s} % 4 )) -ne 0 ]; do s=\"$s=\"; done; printf %s \"$s\" | base64 -d",
            "b64url",
            s,
        ]))
    };
    let claims: serde_json::Value =
        serde_json::from_str(&decode(parts[1])).expect("JWT claims are JSON");
    assert_eq!(claims["iss"], email);
    assert_eq!(claims["aud"], google.token_uri());
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    let header: serde_json::Value =
        serde_json::from_str(&decode(parts[0])).expect("JWT header is JSON");
    assert_eq!(header["alg"], "RS256");
    // the signature verifies with the key's public half
    let jwt_dir = scratch.join("jwt");
    std::fs::create_dir_all(&jwt_dir).expect("jwt dir");
    std::fs::write(jwt_dir.join("input"), format!("{}.{}", parts[0], parts[1])).expect("input");
    std::fs::write(jwt_dir.join("sig.b64"), parts[2]).expect("sig");
    run_checked(
        Command::new("sh")
            .current_dir(&jwt_dir)
            .args([
                "-c",
                "s=$(tr '_-' '/+' < sig.b64); while [ $(( ${#s} % 4 )) -ne 0 ]; do s=\"$s=\"; done; \
                 printf %s \"$s\" | base64 -d > sig && openssl dgst -sha256 -verify \"$1\" -signature sig input",
                "verify",
            ])
            .arg(&public),
    );
    let inspect = run_checked(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--creds"])
            .arg(format!("oauth2accesstoken:{token}"))
            .arg(format!("docker://{destination}")),
    );
    assert!(inspect.contains("\"Layers\""), "{inspect}");

    // 2. no key file and no gcloud credentials: the metadata server
    let out = scratch
        .build("FROM scratch\nCOPY hello.txt /hello.txt\n")
        .destination(&reg.reference("google/metadata:1"))
        .arg("--registry-certificate")
        .arg(reg.certificate_flag())
        .arg("--verbosity=trace")
        .env("DOCKER_CONFIG", &config_dir)
        .env("HOME", &home)
        .env("GOOGLE_APPLICATION_CREDENTIALS", "")
        .env("GCE_METADATA_HOST", &google.host)
        .run_ok();
    logs.push_str(&output_text(&out));
    let metadata_requests: Vec<_> = google
        .requests()
        .into_iter()
        .filter(|r| r.line.starts_with("GET /computeMetadata/"))
        .collect();
    assert_eq!(metadata_requests.len(), 1, "{metadata_requests:#?}");
    assert!(
        metadata_requests[0]
            .headers
            .iter()
            .any(|(k, v)| k == "metadata-flavor" && v == "Google"),
        "{metadata_requests:#?}"
    );

    // 3. a metadata server that refuses: the error names the registry and where kiln looked
    let refusing = GoogleAuth::start("unused");
    let out = scratch
        .build("FROM scratch\nCOPY hello.txt /hello.txt\n")
        .destination(&reg.reference("google/refused:1"))
        .arg("--registry-certificate")
        .arg(reg.certificate_flag())
        .env("DOCKER_CONFIG", &config_dir)
        .env("HOME", &home)
        .env("GOOGLE_APPLICATION_CREDENTIALS", "")
        // a path the metadata fixture does not serve
        .env("GCE_METADATA_HOST", format!("{}/nowhere", refusing.host))
        .run();
    assert!(
        !out.status.success(),
        "a refused metadata request still pushed"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [reg.host(), "metadata server", "Google credentials"] {
        assert!(err.contains(want), "error lacks {want:?}:\n{err}");
    }

    let pem = std::fs::read_to_string(keys.join("sa-private.pem")).expect("pem");
    let key_body: String = pem.lines().nth(1).unwrap_or_default().to_string();
    for secret in [token.as_str(), key_body.as_str()] {
        assert!(!logs.contains(secret), "a secret is in the log");
    }
}

#[test]
fn ecr_login_without_the_helper_binary() {
    kiln_bin();
    let password = format!("ecr-{}", unique_token());
    let ecr = EcrApi::start("AWS", &password);
    let reg = SecureRegistry::start("AWS", &password);
    assert!(
        !std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|d| std::path::Path::new(d)
                .join("docker-credential-ecr-login")
                .exists()),
        "docker-credential-ecr-login is installed on this machine: this test needs kiln to stand in for it"
    );
    let scratch = Scratch::new();
    // kaniko's README, with the test registry's host for the account's
    let config_dir = docker_config(
        &scratch.join("docker"),
        &json!({"credHelpers": {reg.host(): "ecr-login"}}),
    );
    let home = scratch.join("home");
    std::fs::create_dir_all(&home).expect("home");
    let secret_key = format!("secret-{}", unique_token());
    scratch.write("ctx/hello.txt", "ecr");
    let destination = reg.reference("ecr/app:1");
    let build = |endpoint: &str, dest: &str| {
        scratch
            .build("FROM scratch\nCOPY hello.txt /hello.txt\n")
            .destination(dest)
            .arg("--registry-certificate")
            .arg(reg.certificate_flag())
            .arg("--verbosity=trace")
            .env("DOCKER_CONFIG", &config_dir)
            .env("HOME", &home)
            .env("AWS_ACCESS_KEY_ID", "AKIDKILNTEST")
            .env("AWS_SECRET_ACCESS_KEY", &secret_key)
            .env("AWS_REGION", "us-west-2")
            .env("AWS_ENDPOINT_URL_ECR", endpoint)
            .run()
    };
    let out = build(&ecr.endpoint, &destination);
    let logs = output_text(&out);
    assert!(out.status.success(), "{logs}");
    let requests = ecr.requests();
    assert!(!requests.is_empty(), "ECR was not asked");
    let auth = requests[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDKILNTEST/")
            && auth.contains("/us-west-2/ecr/aws4_request"),
        "{auth}"
    );
    let inspect = run_checked(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--creds"])
            .arg(format!("AWS:{password}"))
            .arg(format!("docker://{destination}")),
    );
    assert!(inspect.contains("\"Layers\""), "{inspect}");
    for secret in [password.as_str(), secret_key.as_str()] {
        assert!(!logs.contains(secret), "a secret is in the log");
    }

    // an ECR endpoint that refuses: the error names the registry, the endpoint and the
    // helper kiln stood in for
    let refusing = format!("{}/refusing", ecr.endpoint);
    let out = build(&refusing, &reg.reference("ecr/refused:1"));
    assert!(!out.status.success(), "pushed after ECR refused");
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        reg.host(),
        "GetAuthorizationToken",
        refusing.as_str(),
        "ecr-login",
    ] {
        assert!(err.contains(want), "error lacks {want:?}:\n{err}");
    }
}
