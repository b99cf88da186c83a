//! The SBOM of an image built on the Debian fixture with a Python and an npm fixture copied
//! in: every package an independent reader finds, with its version, and nothing else; the
//! document validates with `pyspdxtools` and against the SPDX 2.3 JSON schema, and a copy with
//! bad fields is refused by the schema check.

use std::collections::BTreeSet;
use std::process::Command;

use kiln_tests::{debian_image, require, run_checked, umoci_unpack, Registry, Scratch};
use serde_json::Value;

/// `(name, version)` of the SBOM's packages whose purl has `prefix`.
fn listed(doc: &Value, prefix: &str) -> BTreeSet<(String, String)> {
    doc["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with(prefix))
        })
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["versionInfo"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once('\t').expect("name<TAB>version");
            (n.to_string(), v.to_string())
        })
        .collect()
}

/// Python's own reader of installed distributions, over every directory of the root that
/// holds a `.dist-info` or `.egg-info`.
const PYTHON_READER: &str = r#"
import importlib.metadata, os, sys
root = sys.argv[1]
dirs = set()
for d, subdirs, files in os.walk(root):
    if any(s.endswith((".dist-info", ".egg-info")) for s in subdirs):
        dirs.add(d)
for dist in importlib.metadata.distributions(path=sorted(dirs)):
    print(dist.metadata["Name"] + "\t" + dist.version)
"#;

/// npm's layout read with python's json: a package is `node_modules/NAME/package.json` or
/// `node_modules/@SCOPE/NAME/package.json`.
const NPM_READER: &str = r#"
import json, os, sys
for d, subdirs, files in os.walk(sys.argv[1]):
    if os.path.basename(d) != "node_modules":
        continue
    for child in subdirs:
        parents = [os.path.join(d, child, g) for g in os.listdir(os.path.join(d, child))] if child.startswith("@") else [os.path.join(d, child)]
        for p in parents:
            f = os.path.join(p, "package.json")
            if os.path.isfile(f):
                meta = json.load(open(f))
                print(meta["name"] + "\t" + meta["version"])
"#;

fn write_fixtures(scratch: &Scratch) {
    for (dir, name, version) in [
        ("requests-2.31.0.dist-info", "requests", "2.31.0"),
        ("Flask_Login-0.6.3.dist-info", "Flask-Login", "0.6.3"),
        ("gone-1.0.dist-info", "gone", "1.0"),
    ] {
        scratch.write(
            &format!("ctx/py/{dir}/METADATA"),
            &format!(
                "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: x\n\nbody\n"
            ),
        );
    }
    scratch.write(
        "ctx/py/legacy.egg-info/PKG-INFO",
        "Metadata-Version: 1.1\nName: legacy\nVersion: 0.9\n",
    );
    for (path, name, version) in [
        ("left-pad", "left-pad", "1.3.0"),
        ("@scope/util", "@scope/util", "2.0.1"),
        ("left-pad/node_modules/inner", "inner", "0.0.1"),
    ] {
        scratch.write(
            &format!("ctx/app/node_modules/{path}/package.json"),
            &format!(r#"{{"name": "{name}", "version": "{version}"}}"#),
        );
    }
    // a package.json inside a package is not a package
    scratch.write(
        "ctx/app/node_modules/left-pad/lib/package.json",
        r#"{"name": "not-a-package", "version": "9.9.9"}"#,
    );
    scratch.write(
        "ctx/app/package.json",
        r#"{"name": "the-app", "version": "1.0.0"}"#,
    );
}

#[test]
fn sbom_lists_what_independent_readers_find() {
    let registry = Registry::start();
    let base = debian_image(&registry);
    let scratch = Scratch::new();
    write_fixtures(&scratch);
    let dest = registry.reference("sbom:1");
    scratch
        .build(&format!(
            "FROM {base}\nCOPY py/ /usr/lib/python3/dist-packages/\nCOPY app/ /app/\n\
             RUN rm -r /usr/lib/python3/dist-packages/gone-1.0.dist-info\n"
        ))
        .arg("--sbom")
        .destination(&dest)
        .run_ok();
    let got = super::fetch(&dest, scratch.path());
    let statement = got.statement("https://spdx.dev/Document");
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    let doc = &statement["predicate"];
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");

    // skopeo picks the platform image out of the index; umoci unpacks it
    let unpacked = umoci_unpack(&dest);
    let root = unpacked.path("/");
    let chroot = require("chroot", "coreutils");
    let dpkg = run_checked(Command::new(chroot).arg(&root).args([
        "dpkg-query",
        "-W",
        "-f",
        "${Package}\t${Version}\n",
    ]));
    let want = pairs(&dpkg);
    assert!(want.len() > 50, "dpkg-query listed {} packages", want.len());
    assert_eq!(listed(doc, "pkg:deb/debian/"), want);

    let python = require("python3", "python3");
    let py = run_checked(Command::new(&python).args(["-c", PYTHON_READER]).arg(&root));
    let want = pairs(&py);
    assert_eq!(want.len(), 3, "python found {want:?}");
    assert_eq!(listed(doc, "pkg:pypi/"), want);

    let npm = run_checked(Command::new(&python).args(["-c", NPM_READER]).arg(&root));
    let want = pairs(&npm);
    assert_eq!(want.len(), 3, "the node_modules walk found {want:?}");
    assert_eq!(listed(doc, "pkg:npm/"), want);

    // each package names the layer that added it: the base's for dpkg, kiln's for the rest
    let config = kiln_tests::skopeo_config(&dest);
    let diff_ids = super::diff_ids(&config);
    for p in doc["packages"].as_array().unwrap().iter().skip(1) {
        let info = p["sourceInfo"].as_str().unwrap();
        let purl = p["externalRefs"][0]["referenceLocator"].as_str().unwrap();
        let base_layer = info.ends_with(diff_ids[0]);
        assert_eq!(base_layer, purl.starts_with("pkg:deb/"), "{purl}: {info}");
        assert!(diff_ids.iter().any(|d| info.ends_with(d)), "{info}");
    }

    super::validate_spdx(doc, scratch.path(), "sbom.spdx.json");

    // the schema check refuses what the schema forbids, naming the field
    let mut bad = doc.clone();
    bad["packages"][1]["filesAnalyzed"] = Value::from("no");
    bad["packages"][1]["externalRefs"][0]["referenceCategory"] = Value::from("PACKAGE MANAGER");
    let file = scratch.join("bad.spdx.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&bad).unwrap()).unwrap();
    let out = super::spdx_schema(&file);
    let said = super::said(&out);
    assert_eq!(out.status.code(), Some(1), "spdx_schema.py: {said}");
    for field in [
        "packages/1/filesAnalyzed:",
        "packages/1/externalRefs/0/referenceCategory:",
    ] {
        assert!(
            said.contains(field),
            "spdx_schema.py did not name {field}: {said}"
        );
    }
}
