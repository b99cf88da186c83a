//! Loopback registries that speak TLS: HTTPS is tried first for them, plain HTTP only when
//! HTTPS gets no answer, and a registry named in `--registry-certificate` is TLS only. A
//! plain-HTTP loopback registry still needs no flag.

use std::fs;
use std::process::Command;

use kiln_tests::{
    docker_config, kiln_bin, run_checked, skopeo_inspect, unique_token, Registry, Scratch,
    SecureRegistry,
};
use serde_json::json;

#[test]
fn a_tls_registry_on_loopback_is_reached_over_https() {
    kiln_bin();
    let reg = SecureRegistry::start_loopback("loop-user", &format!("pw-{}", unique_token()));
    assert!(reg.host().starts_with("127.0.0.1:"), "{}", reg.host());
    let plain = Registry::shared();
    let scratch = Scratch::new();
    let config_dir = docker_config(
        &scratch.join("docker"),
        &json!({"auths": {reg.host(): {"username": reg.user, "password": reg.password}}}),
    );
    scratch.write("ctx/hello.txt", "over tls");
    let tls_ref = reg.reference("app:1");
    let plain_ref = plain.reference(&format!("loopback-tls/{}:1", unique_token()));
    scratch
        .build("FROM scratch\nCOPY hello.txt /hello.txt\n")
        .destination(&tls_ref)
        .destination(&plain_ref)
        .arg("--registry-certificate")
        .arg(reg.certificate_flag())
        .env("DOCKER_CONFIG", &config_dir)
        .run_ok();

    // skopeo, trusting the same CA, reads what was pushed over TLS.
    let certs = scratch.join("certs");
    fs::create_dir_all(&certs).unwrap();
    fs::copy(&reg.ca, certs.join("ca.crt")).unwrap();
    let out = run_checked(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--cert-dir"])
            .arg(&certs)
            .arg("--creds")
            .arg(format!("{}:{}", reg.user, reg.password))
            .arg(format!("docker://{tls_ref}")),
    );
    let tls_manifest: serde_json::Value = serde_json::from_str(&out).unwrap();
    // the plain loopback registry, with no flag, got the same image
    let plain_digest = skopeo_inspect(&plain_ref)["Digest"].clone();
    assert!(plain_digest.is_string(), "{plain_digest}");
    assert_eq!(tls_manifest["layers"].as_array().map(Vec::len), Some(1));

    // Pulled back as a base over TLS too.
    let again = Scratch::new();
    again.write("ctx/more.txt", "more");
    again
        .build(&format!("FROM {tls_ref}\nCOPY more.txt /\n"))
        .arg("--no-push")
        .arg("--tar-path")
        .arg(again.join("out.tar"))
        .arg("--registry-certificate")
        .arg(reg.certificate_flag())
        .env("DOCKER_CONFIG", &config_dir)
        .run_ok();
}
