//! `--sign-key`: images pushed with a signature that a verifier kiln did not write accepts
//! (`tests/signing/cosign_verify.py`: skopeo and Python's `cryptography` doing what
//! `cosign verify --key` does; no cosign binary ships in Debian or on the package registries
//! this project reaches), and that stops verifying when the tag is moved to another image.
//! Keys are made by openssl, plain (SEC1 and PKCS#8) and encrypted (PKCS#8, password in
//! `COSIGN_PASSWORD`); a wrong password fails before anything is pushed, and no line of a
//! key file ever appears in kiln's output.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_tests::{
    assert_not_in_registry, busybox_image, require, run_checked, unique_token, workspace_root,
    Registry, Scratch,
};

/// Runs `openssl ARGS`, which must succeed.
fn openssl(args: &[&str]) {
    run_checked(Command::new(require("openssl", "openssl")).args(args));
}

/// A fresh P-256 key as `openssl ecparam -genkey` writes it (SEC1, after EC PARAMETERS),
/// and its public key: `(key, public)`.
fn new_key(scratch: &Scratch, name: &str) -> (PathBuf, PathBuf) {
    let key = scratch.join(&format!("{name}.key"));
    let public = scratch.join(&format!("{name}.pub"));
    let (k, p) = (key.to_str().unwrap(), public.to_str().unwrap());
    openssl(&["ecparam", "-genkey", "-name", "prime256v1", "-out", k]);
    openssl(&["ec", "-in", k, "-pubout", "-out", p]);
    (key, public)
}

/// The key at `key` as PKCS#8: encrypted with `password`, or plain without one.
fn pkcs8(key: &Path, password: Option<&str>) -> PathBuf {
    let out = key.with_extension("p8");
    let mut args = vec!["pkcs8", "-topk8", "-in", key.to_str().unwrap()];
    args.extend(["-out", out.to_str().unwrap()]);
    let pass = password.map(|p| format!("pass:{p}"));
    match &pass {
        Some(pass) => args.extend(["-passout", pass.as_str()]),
        None => args.push("-nocrypt"),
    }
    openssl(&args);
    out
}

/// The verifier: `cosign_verify.py IMAGE PUBLIC [--signatures-of DIGEST]`.
fn verify(image: &str, public: &Path, signatures_of: Option<&str>) -> Output {
    let script = workspace_root().join("tests/signing/cosign_verify.py");
    let mut cmd = Command::new(require("python3", "python3"));
    cmd.arg(script).arg(image).arg(public);
    if let Some(digest) = signatures_of {
        cmd.args(["--signatures-of", digest]);
    }
    let out = cmd.output().expect("running cosign_verify.py");
    eprintln!(
        "--- verify {image} ---\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(3) {
        panic!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out
}

fn assert_verifies(image: &str, public: &Path) {
    let out = verify(image, public, None);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("verified"),
        "{image} does not verify with {}",
        public.display()
    );
}

/// Every base64 line of a PEM file: none may appear in kiln's output.
fn assert_key_not_in(key: &Path, output: &Output) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let pem = std::fs::read_to_string(key).unwrap();
    for line in pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 8)
    {
        assert!(
            !text.contains(line),
            "kiln's output holds a line of {}",
            key.display()
        );
    }
}

/// The manifest digest the registry serves for `image` now.
fn current_digest(image: &str) -> String {
    kiln_tests::skopeo_inspect(image)["Digest"]
        .as_str()
        .expect("Digest")
        .to_string()
}

/// The raw manifest of `image`, parsed.
fn raw_manifest(image: &str) -> serde_json::Value {
    let out = run_checked(Command::new(require("skopeo", "skopeo")).args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{image}"),
    ]));
    serde_json::from_str(&out).expect("manifest JSON")
}

fn signature_tag(image: &str, digest: &str) -> String {
    let repo = image.rsplit_once(':').unwrap().0;
    format!("{repo}:{}.sig", digest.replace(':', "-"))
}

#[test]
fn signature_verifies_until_the_tag_is_moved() {
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let (key, public) = new_key(&scratch, "sec1");
    let image = registry.reference(&format!("e2e/signed-{}:v1", unique_token()));
    let out = scratch
        .build(&format!("FROM {base}\nENV SIGNED=yes\n"))
        .destination(&image)
        .arg("--sign-key")
        .arg(&key)
        .arg("--verbosity=debug")
        .run_ok();
    assert_key_not_in(&key, &out);
    assert_verifies(&image, &public);

    // the signature image, field by field as cosign writes it
    let digest = current_digest(&image);
    let sig = raw_manifest(&signature_tag(&image, &digest));
    assert_eq!(
        sig["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        sig["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = sig["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{sig}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    assert!(layers[0]["annotations"]["dev.cosignproject.cosign/signature"].is_string());

    // the tag moved to another image: nothing signs the new digest, and the old signature's
    // payload names the old one
    let copied = Command::new(require("skopeo", "skopeo"))
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{base}"))
        .arg(format!("docker://{image}"))
        .status()
        .expect("skopeo copy");
    assert!(copied.success(), "skopeo copy {base} {image}");
    assert_ne!(current_digest(&image), digest);
    let out = verify(&image, &public, None);
    assert!(!out.status.success(), "a moved tag must not verify");
    let out = verify(&image, &public, Some(&digest));
    assert!(!out.status.success(), "an old signature must not verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("payload names {digest}")),
        "{stderr}"
    );
}

#[test]
fn encrypted_key_signs_and_a_second_key_appends() {
    let registry = Registry::shared();
    let base = busybox_image(&registry);
    let scratch = Scratch::new();
    let (first, first_public) = new_key(&scratch, "first");
    let encrypted = pkcs8(&first, Some("correct horse"));
    let (second, second_public) = new_key(&scratch, "second");
    let plain = pkcs8(&second, None);
    let image = registry.reference(&format!("e2e/signed-{}:v1", unique_token()));
    let build = |key: &Path| {
        scratch
            .build(&format!("FROM {base}\nENV SIGNED=twice\n"))
            .destination(&image)
            .arg("--reproducible")
            .arg("--sign-key")
            .arg(key)
            .env("COSIGN_PASSWORD", "correct horse")
            .run_ok()
    };
    let out = build(&encrypted);
    assert_key_not_in(&encrypted, &out);
    assert_verifies(&image, &first_public);
    // the same key again: the same (deterministic) signature is not added twice
    build(&encrypted);
    let digest = current_digest(&image);
    let layers = |n: usize| {
        let sig = raw_manifest(&signature_tag(&image, &digest));
        assert_eq!(sig["layers"].as_array().expect("layers").len(), n, "{sig}");
    };
    layers(1);
    // another key: its signature is appended, the first one kept
    let out = build(&plain);
    assert_key_not_in(&plain, &out);
    assert_eq!(current_digest(&image), digest, "--reproducible");
    layers(2);
    assert_verifies(&image, &first_public);
    assert_verifies(&image, &second_public);
}

#[test]
fn wrong_password_fails_before_any_push() {
    let scratch = Scratch::new();
    let (key, _) = new_key(&scratch, "locked");
    let encrypted = pkcs8(&key, Some("right"));
    let registry = Registry::shared();
    let image = registry.reference(&format!("e2e/unsigned-{}:v1", unique_token()));
    let out = scratch
        .build("FROM scratch\nENV NEVER=built\n")
        .destination(&image)
        .arg("--sign-key")
        .arg(&encrypted)
        .env("COSIGN_PASSWORD", "wrong")
        .run();
    assert!(
        !out.status.success(),
        "a wrong password must fail the build"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&encrypted.display().to_string()) && stderr.contains("wrong password"),
        "the error names the key file: {stderr}"
    );
    assert_key_not_in(&encrypted, &out);
    assert_key_not_in(&key, &out);
    assert_not_in_registry(&image);
}
