//! Credentials and TLS against a real `docker-registry` with htpasswd Basic auth behind TLS
//! (a CA made by the test): every `config.json` credential source, credential helpers,
//! refusals that name the registry, repository and source tried, each TLS flag, and no
//! secret in any log line at trace level.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use kiln_tests::{
    credential_helper, docker_config, kiln_bin, run_checked, unique_token, Build, Scratch,
    SecureRegistry,
};
use serde_json::json;

fn secure() -> &'static SecureRegistry {
    static SECURE: OnceLock<SecureRegistry> = OnceLock::new();
    SECURE.get_or_init(|| SecureRegistry::start("kiln-user", &format!("pw-{}", unique_token())))
}

/// `FROM scratch` plus one file: needs no base image and no root.
fn scratch_build(scratch: &Scratch, content: &str) -> Build {
    scratch.write("ctx/hello.txt", content);
    scratch.build("FROM scratch\nCOPY hello.txt /hello.txt\n")
}

fn base64(text: &str) -> String {
    run_checked(Command::new("sh").args(["-c", "printf %s \"$1\" | base64 -w0", "b64", text]))
        .trim()
        .to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `PATH` with `dir` in front, so kiln finds the test's credential helpers.
fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Whether the registry holds `reference`, asked with the right credentials.
fn in_registry(reg: &SecureRegistry, reference: &str) -> bool {
    Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--creds"])
        .arg(format!("{}:{}", reg.user, reg.password))
        .arg(format!("docker://{reference}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn every_credential_source_pushes_and_pulls() {
    kiln_bin();
    let reg = secure();
    let host = reg.host().to_string();
    let basic = base64(&format!("{}:{}", reg.user, reg.password));
    let cases = [
        ("auth", json!({"auths": {&host: {"auth": basic}}})),
        (
            "userpass",
            json!({"auths": {format!("https://{host}/v2/"): {"username": reg.user, "password": reg.password}}}),
        ),
        (
            "helper",
            json!({"auths": {&host: {}}, "credHelpers": {&host: "kilntest"}}),
        ),
        ("store", json!({"credsStore": "kilnstore"})),
    ];
    for (label, config) in cases {
        let scratch = Scratch::new();
        let bin = scratch.join("bin");
        credential_helper(&bin, "kilntest", &host, &reg.user, &reg.password);
        credential_helper(&bin, "kilnstore", &host, &reg.user, &reg.password);
        let config_dir = docker_config(&scratch.join("docker"), &config);
        let destination = reg.reference(&format!("creds/{label}:1"));
        scratch_build(&scratch, label)
            .destination(&destination)
            .arg("--registry-certificate")
            .arg(reg.certificate_flag())
            .env("DOCKER_CONFIG", &config_dir)
            .env("PATH", path_with(&bin))
            .run_ok();
        assert!(in_registry(reg, &destination), "{label}: not pushed");

        // Pulling it back as a base image needs the same credentials.
        let again = Scratch::new();
        again.write("ctx/more.txt", "more");
        again
            .build(&format!("FROM {destination}\nCOPY more.txt /\n"))
            .arg("--no-push")
            .arg("--tar-path")
            .arg(again.join("out.tar"))
            .arg("--registry-certificate")
            .arg(reg.certificate_flag())
            .env("DOCKER_CONFIG", &config_dir)
            .env("PATH", path_with(&bin))
            .run_ok();

        let calls =
            |name: &str| fs::read_to_string(bin.join(format!("{name}.calls"))).unwrap_or_default();
        match label {
            "helper" => assert!(
                calls("kilntest").contains(&host),
                "{label}: helper not asked"
            ),
            "store" => assert!(
                calls("kilnstore").contains(&host),
                "{label}: store not asked"
            ),
            _ => assert!(
                calls("kilntest").is_empty() && calls("kilnstore").is_empty(),
                "{label}: a helper was run"
            ),
        }
    }
}

#[test]
fn refusals_name_registry_repository_and_source() {
    kiln_bin();
    let reg = secure();
    let host = reg.host().to_string();
    let wrong = format!("wrong-{}", unique_token());
    let scratch = Scratch::new();
    let cases = [
        ("anonymous", json!({}), "no credentials"),
        (
            "wrongpw",
            json!({"auths": {&host: {"username": reg.user, "password": wrong}}}),
            "the \"auths\" entry",
        ),
    ];
    for (label, config, source) in cases {
        let config_dir = docker_config(&scratch.join(label), &config);
        let destination = reg.reference(&format!("denied/{label}:1"));
        // A RUN that would fail shows the check happens before anything is built.
        scratch.write("ctx/hello.txt", "x");
        let out = scratch
            .build("FROM scratch\nCOPY hello.txt /\nRUN exit 3\n")
            .destination(&destination)
            .arg("--registry-certificate")
            .arg(reg.certificate_flag())
            .env("DOCKER_CONFIG", &config_dir)
            .run();
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "{label}: push without valid credentials succeeded"
        );
        for want in [
            "checking push permission",
            host.as_str(),
            &format!("denied/{label}"),
            source,
            "config.json",
        ] {
            assert!(err.contains(want), "{label}: error lacks {want:?}:\n{err}");
        }
        assert!(
            !err.contains("exited with code 3"),
            "{label}: built before the check:\n{err}"
        );
        assert!(
            !err.contains(&wrong),
            "{label}: the password leaked:\n{err}"
        );
        assert!(
            !in_registry(reg, &destination),
            "{label}: something was pushed"
        );
    }
}

#[test]
fn tls_flags() {
    kiln_bin();
    let reg = secure();
    let host = reg.host().to_string();
    let scratch = Scratch::new();
    let config = json!({"auths": {&host: {"username": reg.user, "password": reg.password}}});
    let config_dir = docker_config(&scratch.join("docker"), &config);
    let push = |tag: &str, flags: &[&str]| {
        let mut build = scratch_build(&scratch, tag)
            .destination(&reg.reference(&format!("tls/push:{tag}")))
            .env("DOCKER_CONFIG", &config_dir);
        for f in flags {
            build = build.arg(f);
        }
        build.run()
    };

    // An unknown CA is refused by default, naming the flags that would change that.
    let out = push("default", &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "untrusted certificate accepted");
    for want in [
        "--registry-certificate",
        "--skip-tls-verify",
        "--skip-tls-verify-registry",
        host.as_str(),
    ] {
        assert!(err.contains(want), "TLS error lacks {want:?}:\n{err}");
    }
    let cert = reg.certificate_flag();
    for (tag, flags) in [
        ("ca", vec!["--registry-certificate", cert.as_str()]),
        ("skip", vec!["--skip-tls-verify"]),
        ("skipreg", vec!["--skip-tls-verify-registry", host.as_str()]),
    ] {
        let out = push(tag, &flags);
        assert!(out.status.success(), "{tag}: {}", stderr(&out));
        assert!(
            in_registry(reg, &reg.reference(&format!("tls/push:{tag}"))),
            "{tag}"
        );
    }
    // --skip-tls-verify covers pushes only; pulls have their own flag.
    let pull = |flags: &[&str]| {
        let again = Scratch::new();
        again.write("ctx/f", "f");
        let mut build = again
            .build(&format!(
                "FROM {}\nCOPY f /\n",
                reg.reference("tls/push:ca")
            ))
            .arg("--no-push")
            .arg("--tar-path")
            .arg(again.join("out.tar"))
            .env("DOCKER_CONFIG", &config_dir);
        for f in flags {
            build = build.arg(f);
        }
        build.run()
    };
    let out = pull(&["--skip-tls-verify"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "--skip-tls-verify changed pulls");
    assert!(err.contains("--skip-tls-verify-pull"), "{err}");
    for flags in [
        vec!["--skip-tls-verify-pull"],
        vec!["--skip-tls-verify-registry", host.as_str()],
        vec!["--registry-certificate", cert.as_str()],
    ] {
        let out = pull(&flags);
        assert!(out.status.success(), "{flags:?}: {}", stderr(&out));
    }
}

/// A registry that demands a client certificate (`clientcas`): refused without
/// `--registry-client-cert`, naming the flag; with it, pushes and pulls (a bearer-free
/// registry behind kiln's forwarder) work and skopeo, presenting the same certificate, reads
/// the result.
#[test]
fn client_certificates() {
    kiln_bin();
    let reg = SecureRegistry::start_mutual_tls("mtls-user", &format!("pw-{}", unique_token()));
    let host = reg.host().to_string();
    let (cert, key) = reg.client_cert();
    let client_flag = format!("{host}={},{}", cert.display(), key.display());
    let scratch = Scratch::new();
    let config = json!({"auths": {&host: {"username": reg.user, "password": reg.password}}});
    let config_dir = docker_config(&scratch.join("docker"), &config);
    let destination = reg.reference("mtls/img:1");

    let out = scratch_build(&scratch, "no client certificate")
        .destination(&destination)
        .arg("--registry-certificate")
        .arg(reg.certificate_flag())
        .env("DOCKER_CONFIG", &config_dir)
        .run();
    let err = stderr(&out);
    assert!(!out.status.success(), "pushed without a client certificate");
    for want in [host.as_str(), "--registry-client-cert"] {
        assert!(err.contains(want), "error lacks {want:?}:\n{err}");
    }

    let big: String = (0..300_000)
        .map(|i| format!("{:x}", (i * 7919) % 65_521))
        .collect();
    scratch.write("ctx/big.txt", &big);
    scratch
        .build("FROM scratch\nCOPY big.txt /big.txt\n")
        .destination(&destination)
        .arg("--registry-certificate")
        .arg(reg.certificate_flag())
        .arg("--registry-client-cert")
        .arg(&client_flag)
        .env("DOCKER_CONFIG", &config_dir)
        .run_ok();

    // skopeo reads it back with the same certificate (its --cert-dir layout)
    let certs = scratch.join("skopeo-certs");
    fs::create_dir_all(&certs).expect("cert dir");
    fs::copy(&cert, certs.join("client.cert")).expect("client.cert");
    fs::copy(&key, certs.join("client.key")).expect("client.key");
    fs::copy(&reg.ca, certs.join("ca.crt")).expect("ca.crt");
    let inspect = run_checked(
        Command::new("skopeo")
            .args(["inspect", "--cert-dir"])
            .arg(&certs)
            .arg("--creds")
            .arg(format!("{}:{}", reg.user, reg.password))
            .arg(format!("docker://{destination}")),
    );
    assert!(inspect.contains("\"Layers\""), "{inspect}");

    // and kiln pulls it as a base image through the same flag
    let again = Scratch::new();
    again.write("ctx/more.txt", "more");
    again
        .build(&format!("FROM {destination}\nCOPY more.txt /\n"))
        .arg("--no-push")
        .arg("--tar-path")
        .arg(again.join("out.tar"))
        .arg("--registry-certificate")
        .arg(reg.certificate_flag())
        .arg("--registry-client-cert")
        .arg(&client_flag)
        .env("DOCKER_CONFIG", &config_dir)
        .run_ok();
    let listing = run_checked(Command::new("tar").arg("-tf").arg(again.join("out.tar")));
    assert!(listing.contains("manifest.json"), "{listing}");

    // a malformed value names the flag
    let out = scratch_build(&scratch, "bad flag")
        .destination(&destination)
        .arg("--registry-client-cert")
        .arg(format!("{host}={}", cert.display()))
        .env("DOCKER_CONFIG", &config_dir)
        .run();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("expected REGISTRY=client.crt,client.key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn no_secret_in_trace_logs() {
    kiln_bin();
    let reg = secure();
    let host = reg.host().to_string();
    let scratch = Scratch::new();
    let bin = scratch.join("bin");
    let helper_secret = format!("helper-secret-{}", unique_token());
    credential_helper(&bin, "kilntest", &host, &reg.user, &reg.password);
    credential_helper(&bin, "kilnother", "other.example.com", "u", &helper_secret);
    let basic = base64(&format!("{}:{}", reg.user, reg.password));
    let identity = format!("identity-{}", unique_token());
    let registry_token = format!("regtoken-{}", unique_token());
    let config = json!({
        "auths": {
            &host: {"auth": basic},
            "id.example.com": {"identitytoken": identity},
            "tok.example.com": {"registrytoken": registry_token}
        },
        "credHelpers": {"other.example.com": "kilnother"}
    });
    let config_dir = docker_config(&scratch.join("docker"), &config);
    let mut logs = String::new();
    for (tag, config_dir) in [("good", config_dir.clone()), ("bad", config_dir.clone())] {
        let mut build = scratch_build(&scratch, tag)
            .destination(&reg.reference(&format!("secret/img:{tag}")))
            .arg("--registry-certificate")
            .arg(reg.certificate_flag())
            .args_verbose()
            .env("DOCKER_CONFIG", &config_dir)
            .env("PATH", path_with(&bin));
        if tag == "bad" {
            // a refused push: the error path must not print credentials either
            build = build.env("DOCKER_CONFIG", scratch.join("nowhere"));
        }
        let out = build.run();
        if tag == "good" {
            assert!(out.status.success(), "{}", stderr(&out));
        }
        logs.push_str(&String::from_utf8_lossy(&out.stdout));
        logs.push_str(&stderr(&out));
    }
    assert!(
        logs.lines().count() > 20,
        "trace logging produced too little:\n{logs}"
    );
    for secret in [
        reg.password.as_str(),
        basic.as_str(),
        helper_secret.as_str(),
        identity.as_str(),
        registry_token.as_str(),
    ] {
        let hits: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            hits.is_empty(),
            "secret found in log lines:\n{}",
            hits.join("\n")
        );
    }
}

trait Verbose {
    fn args_verbose(self) -> Self;
}

impl Verbose for Build {
    /// `-v trace` with plain text logs.
    fn args_verbose(self) -> Build {
        self.arg("-v").arg("trace").arg("--log-format").arg("text")
    }
}
