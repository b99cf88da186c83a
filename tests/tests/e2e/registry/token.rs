//! Bearer token auth against a real `docker-registry` configured with `auth.token` and a
//! token issuer from the fixtures: pushes and pulls get tokens for the right scopes, a
//! refusal names what was tried, and a cross-repository mount asks for the source
//! repository's pull scope in the same token, so the shared layer is mounted (counted at a
//! proxy in front of the registry).

use kiln_tests::{docker_config, kiln_bin, unique_token, FaultProxy, Scratch, TokenRegistry};
use serde_json::json;

#[test]
fn bearer_scopes_and_mounts() {
    kiln_bin();
    let reg = TokenRegistry::start("tok-user", &format!("pw-{}", unique_token()));
    let proxy = FaultProxy::start(reg.host());
    let scratch = Scratch::new();
    let config = json!({"auths": {proxy.host(): {"username": reg.user, "password": reg.password}}});
    let config_dir = docker_config(&scratch.join("docker"), &config);

    // A base image with one sizeable layer, pushed through the proxy.
    let big: String = (0..40_000)
        .map(|i| format!("{:x}", (i * 7919) % 65_521))
        .collect();
    scratch.write("ctx/big.txt", &big);
    let base = proxy.reference("tok/base:1");
    scratch
        .build("FROM scratch\nCOPY big.txt /big.txt\n")
        .destination(&base)
        .env("DOCKER_CONFIG", &config_dir)
        .run_ok();
    let scopes = reg.scopes();
    assert!(
        scopes
            .iter()
            .any(|s| s.starts_with("tok-user ") && s.contains("repository:tok/base:pull,push")),
        "{scopes:#?}"
    );
    let base_bytes = proxy.uploaded_bytes("tok/base");
    assert!(base_bytes > 30_000, "base uploaded {base_bytes} bytes");

    // Built on it and pushed to another repository: the base layer is mounted.
    let derived = Scratch::new();
    derived.write("ctx/small.txt", "small");
    derived
        .build(&format!("FROM {base}\nCOPY small.txt /small.txt\n"))
        .destination(&proxy.reference("tok/derived:1"))
        .env("DOCKER_CONFIG", &config_dir)
        .run_ok();
    let scopes = reg.scopes();
    assert!(
        scopes.iter().any(|s| s.starts_with("tok-user ")
            && s.contains("repository:tok/derived:pull,push")
            && s.contains("repository:tok/base:pull")),
        "no token asked for the mount source:\n{scopes:#?}"
    );
    let log = proxy.log();
    assert!(
        log.iter().any(
            |l| l.starts_with("POST /v2/tok/derived/blobs/uploads/?mount=") && l.ends_with("201")
        ),
        "{log:#?}"
    );
    let derived_bytes = proxy.uploaded_bytes("tok/derived");
    assert!(
        derived_bytes < base_bytes / 2,
        "derived uploaded {derived_bytes} bytes, the base layer was {base_bytes}:\n{log:#?}"
    );

    // Anonymous: the issuer grants nothing and the error says what was tried.
    let anon = docker_config(&scratch.join("anon"), &json!({}));
    let out = derived
        .build(&format!("FROM {base}\nCOPY small.txt /small.txt\n"))
        .destination(&proxy.reference("tok/anon:1"))
        .env("DOCKER_CONFIG", &anon)
        .run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "anonymous push accepted");
    for want in [proxy.host(), "tok/anon", "no credentials"] {
        assert!(err.contains(want), "error lacks {want:?}:\n{err}");
    }
    assert!(!err.contains(&reg.password), "{err}");
}
