//! The provenance of a two-stage build: both base images by the digest the registry serves,
//! the build arguments, the secret's id but never its value, the Dockerfile's digest, and
//! the same bytes from two `--reproducible` builds.

use kiln_tests::{busybox_image, debian_image, skopeo_inspect, Registry, Scratch};

const SECRET: &str = "pr0venance-must-not-carry-this";

#[test]
fn provenance_names_bases_and_args_not_secrets() {
    let registry = Registry::start();
    let busybox = busybox_image(&registry);
    let debian = debian_image(&registry);
    let scratch = Scratch::new();
    scratch.write("ctx/keep.txt", "kept");
    let secret = scratch.write("token", SECRET);
    let dockerfile = format!(
        "ARG GREETING\nFROM {busybox} AS tools\nARG GREETING\n\
         RUN --mount=type=secret,id=tok test -s /run/secrets/tok && echo \"$GREETING\" > /greeting\n\
         FROM {debian}\nCOPY --from=tools /greeting /greeting\nCOPY keep.txt /keep.txt\n"
    );
    let mut statements = Vec::new();
    for tag in ["prov:1", "prov:2"] {
        let dest = registry.reference(tag);
        scratch
            .build(&dockerfile)
            .arg("--provenance")
            .arg("mode=max")
            .arg("--reproducible")
            .arg("--build-arg")
            .arg("GREETING=hello-provenance")
            .arg("--secret")
            .arg(format!("id=tok,src={}", secret.display()))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .destination(&dest)
            .run_ok();
        let got = super::fetch(&dest, &scratch.join(&tag.replace(':', "-")));
        let (_, bytes) = got
            .statements
            .iter()
            .find(|(t, _)| t == "https://slsa.dev/provenance/v1")
            .expect("a provenance statement")
            .clone();
        statements.push((dest, bytes));
    }
    assert_eq!(
        statements[0].1, statements[1].1,
        "two reproducible builds gave different provenance"
    );
    let (dest, bytes) = &statements[0];
    let text = String::from_utf8_lossy(bytes);
    assert!(
        !text.contains(SECRET),
        "the secret's value is in the provenance"
    );
    let statement: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let index = super::fetch(dest, &scratch.join("again")).index;
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    );
    let def = &statement["predicate"]["buildDefinition"];
    assert_eq!(
        def["externalParameters"]["request"]["args"]["build-arg:GREETING"],
        "hello-provenance"
    );
    assert_eq!(
        def["externalParameters"]["request"]["secrets"][0]["id"],
        "tok"
    );
    let dockerfile_digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
        dockerfile.as_bytes(),
    ));
    assert_eq!(
        def["externalParameters"]["configSource"]["digest"]["sha256"],
        dockerfile_digest
    );
    let deps = def["resolvedDependencies"].as_array().unwrap();
    for base in [&busybox, &debian] {
        let served = skopeo_inspect(base)["Digest"].as_str().unwrap().to_string();
        assert!(
            deps.iter().any(|d| {
                d["uri"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("pkg:docker/{base}?"))
                    && d["digest"]["sha256"] == served.trim_start_matches("sha256:")
            }),
            "{base} ({served}) not among {deps:?}"
        );
    }
    let steps = def["internalParameters"]["buildConfig"]["steps"]
        .as_array()
        .expect("max mode lists the steps");
    assert!(steps.iter().any(|s| s["instruction"]
        .as_str()
        .unwrap()
        .contains("COPY --from=tools")));
    let meta = &statement["predicate"]["runDetails"]["metadata"];
    assert_eq!(meta["startedOn"], "2023-11-14T22:13:20Z");
    assert_eq!(meta["finishedOn"], "2023-11-14T22:13:20Z");
}

#[test]
fn provenance_names_add_downloads_by_digest() {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let content = "downloaded by ADD for the provenance\n";
    scratch.write("serve/data.txt", content);
    let server = kiln_tests::http_server(&scratch.join("serve"), &scratch.join("http.log"));
    let url = format!("{}/data.txt", server.url());
    let dest = registry.reference("prov-add:1");
    scratch
        .build(&format!("FROM scratch\nADD {url} /data.txt\n"))
        .arg("--provenance")
        .arg("mode=min")
        .destination(&dest)
        .run_ok();
    let got = super::fetch(&dest, &scratch.join("got"));
    let (_, bytes) = got
        .statements
        .iter()
        .find(|(t, _)| t == "https://slsa.dev/provenance/v1")
        .expect("a provenance statement");
    let statement: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .clone();
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes()));
    assert!(
        deps.iter()
            .any(|d| d["uri"] == url.as_str() && d["digest"]["sha256"] == want.as_str()),
        "{url} with sha256 {want} not among {deps:?}"
    );
}
