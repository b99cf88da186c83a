//! The SBOM's binary and apk readers on real data: a Go program built here by Debian's Go
//! toolchain from modules vendored out of its own source tree (one plain dependency, one
//! replaced by another module, one by a local directory), read back by `go version -m`; a
//! real ELF given a `cargo auditable` `.dep-v0` section by `objcopy`, read back by pyelftools,
//! zlib and json, with the build-time packages the format marks (`"kind": "build"`) left out;
//! and an Alpine `lib/apk/db/installed` rewritten by a later layer as `apk add`/`apk del`
//! would. Every purl is parsed by PyPI's `packageurl-python`; the document validates both ways.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use kiln_tests::{require, require_py, run_checked, skopeo_config, Registry, Scratch};
use serde_json::Value;

type Listed = BTreeSet<(String, String)>;

/// The modules the Go program imports, vendored from the toolchain's own `src/cmd/vendor`:
/// (module, package directory inside it).
const GO_MODULES: [(&str, &str); 3] = [
    ("golang.org/x/crypto", "ed25519"),
    ("golang.org/x/mod", "semver"),
    ("golang.org/x/sync", "semaphore"),
];

const GO_MAIN: &str = r#"package main

import (
	"fmt"

	"golang.org/x/crypto/ed25519"
	"golang.org/x/mod/semver"
	"golang.org/x/sync/semaphore"
)

func main() {
	fmt.Println(semver.Compare("v1.0.0", "v1.1.0"), semaphore.NewWeighted(1).TryAcquire(1), ed25519.PublicKeySize)
}
"#;

/// The module versions a `modules.txt` lists (`# MODULE VERSION`).
fn vendored_versions(modules_txt: &str) -> BTreeMap<String, String> {
    modules_txt
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("# ")?.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// The regular files of directory `from` copied into `to`.
fn copy_files(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A Go program built offline in module mode with `-mod=vendor` into `out`: x/crypto a
/// plain dependency, x/sync replaced by the module `example.test/syncfork`, x/mod replaced by
/// the directory `../modlocal`.
fn build_go_program(scratch: &Scratch, out: &Path) {
    let go = require("go", "golang-go");
    let goroot = run_checked(Command::new(&go).args(["env", "GOROOT"]));
    let cmd_vendor = Path::new(goroot.trim()).join("src/cmd/vendor");
    let versions = vendored_versions(
        &std::fs::read_to_string(cmd_vendor.join("modules.txt")).expect("Go's cmd/vendor"),
    );
    let src = scratch.join("gosrc/hello");
    let mut go_mod = String::from("module example.test/hello\n\ngo 1.17\n\nrequire (\n");
    let mut modules_txt = String::new();
    for (module, package) in GO_MODULES {
        let version = &versions[module];
        go_mod += &format!("\t{module} {version}\n");
        let replacement = match module {
            "golang.org/x/sync" => " => example.test/syncfork v0.0.1",
            "golang.org/x/mod" => " => ../modlocal",
            _ => "",
        };
        modules_txt +=
            &format!("# {module} {version}{replacement}\n## explicit\n{module}/{package}\n");
        copy_files(
            &cmd_vendor.join(module).join(package),
            &src.join("vendor").join(module).join(package),
        );
    }
    go_mod += ")\n\nreplace golang.org/x/sync => example.test/syncfork v0.0.1\n\nreplace golang.org/x/mod => ../modlocal\n";
    modules_txt +=
        "# golang.org/x/sync => example.test/syncfork v0.0.1\n# golang.org/x/mod => ../modlocal\n";
    scratch.write("gosrc/hello/go.mod", &go_mod);
    scratch.write("gosrc/hello/vendor/modules.txt", &modules_txt);
    scratch.write("gosrc/hello/main.go", GO_MAIN);
    scratch.write(
        "gosrc/modlocal/go.mod",
        "module golang.org/x/mod\n\ngo 1.17\n",
    );
    run_checked(
        Command::new(&go)
            .args(["build", "-o"])
            .arg(out)
            .arg(".")
            .current_dir(&src)
            .env("GOFLAGS", "-mod=vendor")
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOWORK", "off")
            .env("GO111MODULE", "on")
            .env("CGO_ENABLED", "0")
            .env("GOCACHE", scratch.join("gocache"))
            .env("GOPATH", scratch.join("gopath")),
    );
}

/// What `go version -m` says a binary holds: the standard library at the toolchain's
/// version, the main module and the dependencies, a replacement taking its module's place
/// (a directory keeps the module path and is `(devel)`, as Go calls unversioned code).
fn go_version_m(binary: &Path) -> Listed {
    let go = require("go", "golang-go");
    let text = run_checked(Command::new(go).args(["version", "-m"]).arg(binary));
    let mut lines = text.lines();
    let toolchain = lines
        .next()
        .and_then(|l| l.rsplit(": ").next())
        .expect("go version -m's first line");
    let mut found: Vec<(String, String)> = vec![("stdlib".into(), toolchain.into())];
    for line in lines {
        let fields: Vec<&str> = line.trim_start_matches('\t').split('\t').collect();
        match fields.as_slice() {
            ["mod" | "dep", path, version, ..] => {
                found.push((path.to_string(), version.to_string()))
            }
            ["=>", path, version, ..] => {
                let (module, _) = found.pop().expect("a replacement follows its module");
                if path.starts_with("../") || path.starts_with("./") || path.starts_with('/') {
                    found.push((module, "(devel)".into()));
                } else {
                    found.push((path.to_string(), version.to_string()));
                }
            }
            _ => {}
        }
    }
    found.into_iter().collect()
}

/// The package list `cargo auditable` embeds, with a root, runtime dependencies (`kind`
/// missing and `"runtime"`) and build-time ones (a build script's `cc`, a proc macro and its
/// dependency).
const AUDITABLE_JSON: &str = r#"{"format":1,"packages":[
 {"name":"app","version":"0.3.1","source":"local","root":true,"dependencies":[1,2,3,4,6]},
 {"name":"serde","version":"1.0.203","source":"crates.io","dependencies":[5]},
 {"name":"libc","version":"0.2.155","source":"crates.io","kind":"runtime"},
 {"name":"cc","version":"1.0.98","source":"crates.io","kind":"build"},
 {"name":"serde_derive","version":"1.0.203","source":"crates.io","kind":"build","dependencies":[7]},
 {"name":"itoa","version":"1.0.11","source":"crates.io"},
 {"name":"zlib-sys","version":"0.1.0","source":"git","kind":"runtime"},
 {"name":"proc-macro2","version":"1.0.85","source":"crates.io","kind":"build"}
]}"#;

/// Embeds the JSON (zlib-compressed, as `cargo auditable` does) into a copy of a real ELF.
fn auditable_binary(scratch: &Scratch, out: &Path) {
    let python = require("python3", "python3");
    let objcopy = require("objcopy", "binutils");
    let json = scratch.write("auditable.json", AUDITABLE_JSON);
    let compressed = scratch.join("auditable.z");
    run_checked(
        Command::new(python)
            .args([
                "-c",
                "import sys, zlib; open(sys.argv[2], 'wb').write(zlib.compress(open(sys.argv[1], 'rb').read(), 9))",
            ])
            .arg(&json)
            .arg(&compressed),
    );
    let elf = require("true", "coreutils");
    run_checked(
        Command::new(objcopy)
            .arg(format!("--add-section=.dep-v0={}", compressed.display()))
            .arg("--set-section-flags=.dep-v0=readonly")
            .arg(&elf)
            .arg(out),
    );
}

/// pyelftools finds `.dep-v0`; zlib and json read it; packages whose `kind` is `build` are
/// left out, as the format defines (missing means `runtime`). Also the number left out.
const AUDITABLE_READER: &str = r#"
import json, sys, zlib
from elftools.elf.elffile import ELFFile
with open(sys.argv[1], "rb") as f:
    data = json.loads(zlib.decompress(ELFFile(f).get_section_by_name(".dep-v0").data()))
build = 0
for p in data["packages"]:
    if p.get("kind", "runtime") == "build":
        build += 1
    else:
        print(p["name"] + "\t" + p["version"])
print("build\t" + str(build), file=sys.stderr)
"#;

/// Each purl of the document parsed by packageurl-python: purl, type, namespace, name,
/// version and the `arch` qualifier as one JSON object per line.
const PURL_READER: &str = r#"
import json, sys
from packageurl import PackageURL
for purl in json.load(open(sys.argv[1])):
    p = PackageURL.from_string(purl)
    print(json.dumps([purl, p.type, p.namespace, p.name, p.version, (p.qualifiers or {}).get("arch")]))
"#;

/// An apk database: `(name, version, origin)` of each package, the fields `apk` writes.
fn apk_installed(packages: &[(&str, &str, &str)]) -> String {
    packages
        .iter()
        .map(|(name, version, origin)| {
            format!(
                "C:Q1{:0<26}=\nP:{name}\nV:{version}\nA:x86_64\nS:{}\nI:{}\n\
                 T:{name} package\nU:https://alpinelinux.org\nL:MIT\no:{origin}\n\
                 m:Natanael Copa <ncopa@alpinelinux.org>\nt:1700000000\nc:0123456789abcdef\n\
                 D:so:libc.musl-x86_64.so.1\np:cmd:{name}={version}\nF:usr\nF:usr/bin\n\
                 R:{name}\na:0:0:755\nZ:Q1{:0<26}=\n\n",
                name.len(),
                name.len() * 1000,
                name.len() * 4096,
                version.len()
            )
        })
        .collect()
}

/// The base's apk packages, and those after a later `apk add curl` upgraded busybox and
/// `apk del ssl_client` (name, version, origin).
const APK_BEFORE: [(&str, &str, &str); 6] = [
    ("alpine-baselayout", "3.4.3-r2", "alpine-baselayout"),
    ("busybox", "1.36.1-r15", "busybox"),
    ("ca-certificates-bundle", "20240226-r0", "ca-certificates"),
    ("musl", "1.2.4_git20230717-r4", "musl"),
    ("ssl_client", "1.36.1-r15", "busybox"),
    ("zlib", "1.3.1-r0", "zlib"),
];
const APK_AFTER: [(&str, &str, &str); 7] = [
    ("alpine-baselayout", "3.4.3-r2", "alpine-baselayout"),
    ("busybox", "1.36.1-r19", "busybox"),
    ("ca-certificates-bundle", "20240226-r0", "ca-certificates"),
    ("curl", "8.9.0-r0", "curl"),
    ("libcurl", "8.9.0-r0", "curl"),
    ("musl", "1.2.4_git20230717-r4", "musl"),
    ("zlib", "1.3.1-r0", "zlib"),
];

/// `(name, version)` of the SBOM's packages whose purl has `prefix`.
fn listed(doc: &Value, prefix: &str) -> Listed {
    packages(doc)
        .filter(|(_, _, purl, _)| purl.starts_with(prefix))
        .map(|(n, v, _, _)| (n.to_string(), v.to_string()))
        .collect()
}

/// The document's packages but the image: name, version, purl and source info.
fn packages(doc: &Value) -> impl Iterator<Item = (&str, &str, &str, &str)> {
    doc["packages"].as_array().expect("packages")[1..]
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["versionInfo"].as_str().unwrap(),
                p["externalRefs"][0]["referenceLocator"].as_str().unwrap(),
                p["sourceInfo"].as_str().unwrap(),
            )
        })
}

fn pairs(text: &str) -> Listed {
    text.lines()
        .map(|l| {
            let (n, v) = l.split_once('\t').expect("name<TAB>version");
            (n.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn sbom_reads_apk_go_and_cargo_auditable() {
    let registry = Registry::start();
    let scratch = Scratch::new();
    let go_binary = scratch.join("ctx/bin/hello");
    std::fs::create_dir_all(go_binary.parent().unwrap()).unwrap();
    build_go_program(&scratch, &go_binary);
    let rust_binary = scratch.join("ctx/bin/audited");
    auditable_binary(&scratch, &rust_binary);
    scratch.write("ctx/apk1/installed", &apk_installed(&APK_BEFORE));
    scratch.write("ctx/apk2/installed", &apk_installed(&APK_AFTER));
    let dest = registry.reference("readers:1");
    scratch
        .build(
            "FROM scratch\nCOPY apk1/installed /lib/apk/db/installed\nCOPY bin/ /usr/local/bin/\n\
             COPY apk2/installed /lib/apk/db/installed\n",
        )
        .arg("--sbom")
        .destination(&dest)
        .run_ok();
    let got = super::fetch(&dest, scratch.path());
    let doc = &got.statement("https://spdx.dev/Document")["predicate"];

    // Go: what the toolchain itself reads back, the standard library included
    let want = go_version_m(&go_binary);
    assert!(
        want.iter()
            .any(|(n, v)| n == "golang.org/x/crypto" && v.starts_with('v')),
        "go version -m: {want:?}"
    );
    assert!(
        want.contains(&("example.test/syncfork".into(), "v0.0.1".into())),
        "{want:?}"
    );
    assert!(
        want.contains(&("golang.org/x/mod".into(), "(devel)".into())),
        "{want:?}"
    );
    assert!(
        want.iter()
            .any(|(n, v)| n == "stdlib" && v.starts_with("go1.")),
        "{want:?}"
    );
    assert_eq!(want.len(), 5, "go version -m: {want:?}");
    assert_eq!(listed(doc, "pkg:golang/"), want);

    // Rust: runtime packages only
    let python = require_py("python3", "pyelftools");
    let out = Command::new(&python)
        .args(["-c", AUDITABLE_READER])
        .arg(&rust_binary)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "pyelftools reader: {}",
        super::said(&out)
    );
    let want = pairs(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "build\t3");
    assert_eq!(want.len(), 5, "the .dep-v0 reader found {want:?}");
    assert_eq!(listed(doc, "pkg:cargo/"), want);

    // apk: the database as the last layer left it, each package credited to the layer since
    // which its entry stood unchanged
    let want: Listed = APK_AFTER
        .iter()
        .map(|(n, v, _)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(listed(doc, "pkg:apk/alpine/"), want);
    let config = skopeo_config(&dest);
    let diff_ids = super::diff_ids(&config);
    assert_eq!(diff_ids.len(), 3);
    let unchanged: BTreeSet<&str> = APK_BEFORE
        .iter()
        .map(|(n, v, _)| (*n, *v))
        .filter(|p| APK_AFTER.iter().any(|(n, v, _)| (*n, *v) == *p))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(unchanged.len(), 4);
    for (name, version, purl, info) in packages(doc) {
        let layer = match purl.split('/').next() {
            Some("pkg:apk") if unchanged.contains(name) => diff_ids[0],
            Some("pkg:apk") => diff_ids[2],
            _ => diff_ids[1],
        };
        assert!(info.ends_with(layer), "{name} {version}: {info}");
        let path = if purl.starts_with("pkg:apk/") {
            "/lib/apk/db/installed"
        } else if purl.starts_with("pkg:golang/") {
            "/usr/local/bin/hello"
        } else {
            "/usr/local/bin/audited"
        };
        assert!(info.starts_with(&format!("listed in {path},")), "{info}");
    }

    // every purl as packageurl-python reads it: type, namespace and name, version, arch
    let purls: Vec<&str> = packages(doc).map(|(_, _, purl, _)| purl).collect();
    let file = scratch.join("purls.json");
    std::fs::write(&file, serde_json::to_vec(&purls).unwrap()).unwrap();
    let python = require_py("python3", "packageurl-python");
    let parsed = run_checked(Command::new(&python).args(["-c", PURL_READER]).arg(&file));
    let mut seen = 0;
    for line in parsed.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let purl = row[0].as_str().unwrap();
        let (name, version, _, _) = packages(doc).find(|p| p.2 == purl).unwrap();
        let (ty, namespace, short, v, arch) = (&row[1], &row[2], &row[3], &row[4], &row[5]);
        match ty.as_str().unwrap() {
            "apk" => {
                assert_eq!(
                    (namespace.as_str(), short.as_str()),
                    (Some("alpine"), Some(name))
                );
                assert_eq!(v.as_str(), Some(version));
                assert_eq!(arch.as_str(), Some("x86_64"));
            }
            "cargo" => {
                assert_eq!((namespace, short.as_str()), (&Value::Null, Some(name)));
                assert_eq!(v.as_str(), Some(version));
            }
            "golang" if name == "stdlib" => {
                assert_eq!(short.as_str(), Some("stdlib"));
                assert_eq!(v.as_str(), version.strip_prefix("go"));
            }
            "golang" => {
                let full = format!(
                    "{}/{}",
                    namespace.as_str().unwrap(),
                    short.as_str().unwrap()
                );
                assert_eq!(full, name);
                assert_eq!(v.as_str(), Some(version));
            }
            other => panic!("unexpected purl type {other}: {purl}"),
        }
        seen += 1;
    }
    assert_eq!(seen, purls.len());
    assert_eq!(seen, 5 + 5 + APK_AFTER.len());

    super::validate_spdx(doc, scratch.path(), "readers.spdx.json");
}
