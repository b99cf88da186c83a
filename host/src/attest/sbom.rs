//! The SBOM: what the final image contains, read from its layers in the blob store (the
//! base's and kiln's), never by running anything in it, written as an SPDX 2.3 JSON
//! document. The layers are scanned bottom to top with whiteouts honoured, keeping for every
//! package database path the packages it lists and the layer each came from: a package is
//! credited to the lowest layer since which its database entry (name and version) has stood
//! unchanged, so a later `apt-get install` that rewrites `status` does not claim the base's
//! packages. Which files are databases and how they read is `databases`' and `binaries`'.

use std::collections::BTreeMap;

use serde_json::{json, Value};

pub use super::package::{Ecosystem, Found};
use super::{binaries, databases, Error, Result};
use crate::layer::scan::{self, Entry};
use crate::layer::LayerBlob;

/// A binary larger than this is not searched for build data.
const BINARY_LIMIT: u64 = 512 * 1024 * 1024;

/// A package of the image: what its database says, the file that says it and the layer
/// (diff id) that added it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub found: Found,
    pub path: String,
    pub layer: String,
}

impl Package {
    /// The package URL (purl) of the package.
    pub fn purl(&self) -> String {
        let f = &self.found;
        let v = encode(&f.version);
        let arch = |a: &Option<String>| {
            a.as_deref()
                .map(|a| format!("?arch={}", encode(a)))
                .unwrap_or_default()
        };
        match f.ecosystem {
            Ecosystem::Deb => format!("pkg:deb/debian/{}@{v}{}", encode(&f.name), arch(&f.arch)),
            Ecosystem::Apk => format!("pkg:apk/alpine/{}@{v}{}", encode(&f.name), arch(&f.arch)),
            Ecosystem::Python => format!("pkg:pypi/{}@{v}", encode(&pypi_name(&f.name))),
            Ecosystem::Npm => match f.name.strip_prefix('@').and_then(|s| s.split_once('/')) {
                Some((scope, name)) => format!("pkg:npm/%40{}/{}@{v}", encode(scope), encode(name)),
                None => format!("pkg:npm/{}@{v}", encode(&f.name)),
            },
            // the standard library's purl carries the version without Go's `go` prefix
            Ecosystem::Golang if f.name == binaries::GO_STDLIB => format!(
                "pkg:golang/{}@{}",
                binaries::GO_STDLIB,
                encode(f.version.strip_prefix("go").unwrap_or(&f.version))
            ),
            Ecosystem::Golang => {
                let path: Vec<String> = f.name.split('/').map(encode).collect();
                format!("pkg:golang/{}@{v}", path.join("/"))
            }
            Ecosystem::Cargo => format!("pkg:cargo/{}@{v}", encode(&f.name)),
        }
    }
}

/// A purl component percent-encoded (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A PyPI name normalized (PEP 503): lowercase, runs of `-_.` one `-`.
fn pypi_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if "-_.".contains(c) {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// What a path of the merged tree lists: the layer (index) that wrote the file, and each
/// entry with the layer credited for it.
type Listing = (usize, Vec<(Found, usize)>);

/// The packages of the image whose layers (bottom first) are `layers`.
pub fn packages(layers: &[LayerBlob]) -> Result<Vec<Package>> {
    let mut tree: BTreeMap<String, Listing> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let file = std::fs::File::open(&layer.path).map_err(|source| Error::Layer {
            layer: layer.digest.0.clone(),
            source,
        })?;
        scan::scan(file, |entry| apply(&mut tree, i, entry)).map_err(|source| Error::Layer {
            layer: layer.digest.0.clone(),
            source,
        })?;
    }
    let mut out: Vec<Package> = tree
        .into_iter()
        .flat_map(|(path, (_, listing))| {
            listing.into_iter().map(move |(found, i)| Package {
                found,
                path: path.clone(),
                layer: layers[i].diff_id.0.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        (a.found.ecosystem, &a.found.name, &a.found.version, &a.path).cmp(&(
            b.found.ecosystem,
            &b.found.name,
            &b.found.version,
            &b.path,
        ))
    });
    Ok(out)
}

/// One layer entry applied to the merged tree of package databases.
fn apply(
    tree: &mut BTreeMap<String, Listing>,
    layer: usize,
    entry: Entry<'_>,
) -> std::io::Result<()> {
    match entry {
        Entry::Whiteout(path) => {
            tree.remove(&path);
            let below = format!("{path}/");
            tree.retain(|p, _| !p.starts_with(&below));
        }
        Entry::Opaque(dir) => {
            let below = if dir.is_empty() {
                dir
            } else {
                format!("{dir}/")
            };
            tree.retain(|p, (written, _)| !p.starts_with(&below) || *written == layer);
        }
        Entry::Directory(_) => {}
        Entry::Other(path) => {
            tree.remove(&path);
        }
        Entry::File {
            path,
            mode,
            size,
            bytes,
        } => {
            let found = if let Some(kind) = databases::kind_of(&path) {
                let mut buf = Vec::new();
                bytes.read_to_end(&mut buf)?;
                databases::read(kind, &buf)
            } else if mode & 0o111 != 0 && size > 64 && size < BINARY_LIMIT {
                let mut magic = [0u8; 4];
                bytes.read_exact(&mut magic)?;
                if &magic == binaries::ELF_MAGIC {
                    let mut buf = magic.to_vec();
                    bytes.read_to_end(&mut buf)?;
                    binaries::read(&buf)
                } else {
                    Vec::new()
                }
            } else {
                Vec::new()
            };
            let (_, before) = tree.remove(&path).unwrap_or_default();
            if found.is_empty() {
                return Ok(());
            }
            let listing = found
                .into_iter()
                .map(|f| {
                    let since = before
                        .iter()
                        .find(|(b, _)| b.name == f.name && b.version == f.version)
                        .map_or(layer, |(_, i)| *i);
                    (f, since)
                })
                .collect();
            tree.insert(path, (layer, listing));
        }
    }
    Ok(())
}

/// The SPDX 2.3 document of `packages`: the image one package (`CONTAINER`) that the
/// document describes and that contains every other; each with its purl and, in
/// `sourceInfo`, the file that lists it and the layer that added it.
pub fn document(packages: &[Package], image_name: &str, created: &str, seed: &str) -> Value {
    let mut spdx_packages = vec![json!({
        "name": image_name,
        "SPDXID": "SPDXRef-Image",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (n, p) in packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{n}");
        spdx_packages.push(json!({
            "name": p.found.name,
            "SPDXID": id,
            "versionInfo": p.found.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": format!("listed in /{}, added in layer {}", p.path, p.layer),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl(),
            }],
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("sbom-{image_name}"),
        "documentNamespace": format!("https://kiln.invalid/spdx/{}", crate::oci::digest::of_bytes(seed.as_bytes()).trim_start_matches("sha256:")),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(e: Ecosystem, name: &str, version: &str, arch: Option<&str>) -> Package {
        Package {
            found: Found {
                ecosystem: e,
                name: name.into(),
                version: version.into(),
                arch: arch.map(String::from),
            },
            path: String::new(),
            layer: String::new(),
        }
    }

    #[test]
    fn purls() {
        for (p, want) in [
            (
                found(Ecosystem::Deb, "libc6", "2.36-9+deb12u4", Some("amd64")),
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64",
            ),
            (
                found(Ecosystem::Python, "Foo_Bar", "1.0", None),
                "pkg:pypi/foo-bar@1.0",
            ),
            (
                found(Ecosystem::Npm, "@types/node", "20.1.0", None),
                "pkg:npm/%40types/node@20.1.0",
            ),
            (
                found(Ecosystem::Golang, "golang.org/x/sys", "v0.1.0", None),
                "pkg:golang/golang.org/x/sys@v0.1.0",
            ),
            (
                found(Ecosystem::Golang, "stdlib", "go1.22.1", None),
                "pkg:golang/stdlib@1.22.1",
            ),
            (
                found(Ecosystem::Apk, "musl", "1.2.4-r2", Some("x86_64")),
                "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64",
            ),
            (
                found(Ecosystem::Cargo, "serde_json", "1.0.117", None),
                "pkg:cargo/serde_json@1.0.117",
            ),
        ] {
            assert_eq!(p.purl(), want);
        }
    }

    #[test]
    fn whiteouts_and_credit() {
        let mut tree = BTreeMap::new();
        let status = |text: &str| text.as_bytes().to_vec();
        let one = status("Package: a\nVersion: 1\n\n");
        let two = status("Package: a\nVersion: 1\n\nPackage: b\nVersion: 2\n");
        for (layer, bytes) in [(0, &one), (1, &two)] {
            let mut r = &bytes[..];
            apply(
                &mut tree,
                layer,
                Entry::File {
                    path: "var/lib/dpkg/status".into(),
                    mode: 0o644,
                    size: bytes.len() as u64,
                    bytes: &mut r,
                },
            )
            .unwrap();
        }
        let credit: Vec<(String, usize)> = tree["var/lib/dpkg/status"]
            .1
            .iter()
            .map(|(f, i)| (f.name.clone(), *i))
            .collect();
        assert_eq!(credit, [("a".into(), 0), ("b".into(), 1)]);
        apply(&mut tree, 2, Entry::Whiteout("var/lib/dpkg".into())).unwrap();
        assert!(tree.is_empty());
    }
}
