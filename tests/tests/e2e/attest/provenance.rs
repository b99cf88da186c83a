//! The provenance of a two-stage build: both base images by the digest the registry serves,
//! the build arguments, the secret's id but never its value, the Dockerfile's digest, and
//! the same bytes from two `--reproducible` builds.
//! The context as built: a git context's commit (`git rev-parse HEAD`), an https tarball's
//! and an `s3://` object's sha256 (`sha256sum`) with the object's ETag (`md5sum`, moto's),
//! a URL's password masked; a local context under `request.locals`; ADD of a git source by
//! its commit.

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

/// The provenance statement `dest` carries.
fn provenance_of(dest: &str, dir: &std::path::Path) -> serde_json::Value {
    super::fetch(dest, dir).statement("https://slsa.dev/provenance/v1")
}

/// The `resolvedDependencies` entry whose uri is `uri`.
fn dependency(statement: &serde_json::Value, uri: &str) -> serde_json::Value {
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies");
    deps.iter()
        .find(|d| d["uri"] == uri)
        .unwrap_or_else(|| panic!("{uri} not among {deps:?}"))
        .clone()
}

#[test]
fn provenance_names_git_and_tar_contexts() {
    use std::process::Command;

    use kiln_tests::{bare_git_repo, git_http_server, http_server, require, run_checked, Build};

    let registry = Registry::start();
    let scratch = Scratch::new();
    scratch.write("served/Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n");
    scratch.write("served/a.txt", "from a fetched context\n");
    // the same files as a tarball on a web server and as a git repository
    let tarball = scratch.join("web/ctx.tar.gz");
    std::fs::create_dir_all(tarball.parent().unwrap()).unwrap();
    run_checked(
        Command::new(require("tar", "tar"))
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(scratch.join("served"))
            .arg("."),
    );
    let sha256 = run_checked(Command::new(require("sha256sum", "coreutils")).arg(&tarball));
    let sha256 = sha256.split_whitespace().next().unwrap().to_string();
    let commit = bare_git_repo(&scratch.join("served"), &scratch.join("repos/ctx.git"));
    let git = git_http_server(&scratch.join("repos"), None, &scratch.join("git.log"));
    let web = http_server(&scratch.join("web"), &scratch.join("http.log"));
    let git_url = format!("{}/ctx.git", git.url());
    let tar_url = format!("{}/ctx.tar.gz", web.url());
    // user info in the URL: sent to the server, never written into the provenance
    let tar_with_password = tar_url.replace("http://", "http://ci:s3cr3t-pass@");

    for (tag, context, uri, algorithm, want) in [
        ("git", &git_url, &git_url, "sha1", &commit),
        ("tar", &tar_url, &tar_url, "sha256", &sha256),
        (
            "tar-pass",
            &tar_with_password,
            &tar_url.replace("http://", "http://***@"),
            "sha256",
            &sha256,
        ),
    ] {
        let dest = registry.reference(&format!("prov-context-{tag}:1"));
        Build::new(
            std::path::Path::new("Dockerfile"),
            std::path::Path::new(context),
            &scratch.kiln_dir(),
        )
        .arg("--provenance=true")
        .destination(&dest)
        .run_ok();
        let statement = provenance_of(&dest, &scratch.join(tag));
        let text = statement.to_string();
        assert!(!text.contains("s3cr3t-pass"), "{tag}: {text}");
        let dep = dependency(&statement, uri);
        assert_eq!(
            dep["digest"],
            serde_json::json!({ algorithm: want }),
            "{tag}"
        );
        let request = &statement["predicate"]["buildDefinition"]["externalParameters"]["request"];
        assert_eq!(request["locals"], serde_json::json!([]), "{tag}");
    }

    // an s3:// object: the bytes' sha256 and the ETag the store gave (moto's: the MD5)
    let s3 = kiln_tests::s3_server(&scratch.join("s3.log"), None);
    kiln_tests::s3_put(&s3, "ctx-bucket", "ctx.tar.gz", &tarball);
    let md5 = run_checked(Command::new(require("md5sum", "coreutils")).arg(&tarball));
    let md5 = md5.split_whitespace().next().unwrap().to_string();
    let dest = registry.reference("prov-context-s3:1");
    Build::new(
        std::path::Path::new("Dockerfile"),
        std::path::Path::new("s3://ctx-bucket/ctx.tar.gz"),
        &scratch.kiln_dir(),
    )
    .arg("--provenance=true")
    .env("S3_ENDPOINT", s3.url())
    .env("S3_FORCE_PATH_STYLE", "true")
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_REGION", "us-east-1")
    .destination(&dest)
    .run_ok();
    let dep = dependency(
        &provenance_of(&dest, &scratch.join("s3")),
        "s3://ctx-bucket/ctx.tar.gz",
    );
    assert_eq!(dep["digest"], serde_json::json!({ "sha256": sha256 }));
    assert_eq!(
        dep["annotations"]["etag"]
            .as_str()
            .unwrap()
            .trim_matches('"'),
        md5
    );

    // a local context is named, not hashed; ADD of a git source names its commit
    let dest = registry.reference("prov-context-local:1");
    scratch
        .build(&format!("FROM scratch\nADD {git_url}#main /src\n"))
        .arg("--provenance=true")
        .destination(&dest)
        .run_ok();
    let statement = provenance_of(&dest, &scratch.join("local"));
    let request = &statement["predicate"]["buildDefinition"]["externalParameters"]["request"];
    assert_eq!(
        request["locals"],
        serde_json::json!([{"name": "context"}, {"name": "dockerfile"}])
    );
    let dep = dependency(&statement, &format!("{git_url}#main"));
    assert_eq!(dep["digest"], serde_json::json!({ "sha1": commit }));
}
