//! The package databases an SBOM reads, each from one file's bytes: dpkg's `status` (and
//! distroless `status.d/*`), apk's `installed`, Python's `METADATA`/`PKG-INFO`, npm's
//! `package.json` under `node_modules`. Which paths are databases is decided here too
//! (`kind_of`); binaries' embedded data is `binaries`'.

use super::package::{Ecosystem, Found};

/// Which reader a path's bytes go to, if any.
pub(crate) fn kind_of(path: &str) -> Option<Ecosystem> {
    if path == "var/lib/dpkg/status" {
        return Some(Ecosystem::Deb);
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
        let skip = name.contains('/') || name.ends_with(".md5sums") || name.starts_with('.');
        return (!skip).then_some(Ecosystem::Deb);
    }
    if path == "lib/apk/db/installed" {
        return Some(Ecosystem::Apk);
    }
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    if n >= 2 && parts[n - 1] == "METADATA" && parts[n - 2].ends_with(".dist-info") {
        return Some(Ecosystem::Python);
    }
    if n >= 2 && parts[n - 1] == "PKG-INFO" && parts[n - 2].ends_with(".egg-info") {
        return Some(Ecosystem::Python);
    }
    if n >= 2 && parts[n - 1].ends_with(".egg-info") && parts[n - 2].ends_with("-packages") {
        return Some(Ecosystem::Python);
    }
    if parts[n - 1] == "package.json" {
        let direct = n >= 3 && parts[n - 3] == "node_modules" && !parts[n - 2].starts_with('@');
        let scoped = n >= 4 && parts[n - 4] == "node_modules" && parts[n - 3].starts_with('@');
        if direct || scoped {
            return Some(Ecosystem::Npm);
        }
    }
    None
}

/// The packages a database file lists.
pub(crate) fn read(kind: Ecosystem, bytes: &[u8]) -> Vec<Found> {
    let text = String::from_utf8_lossy(bytes);
    match kind {
        Ecosystem::Deb => dpkg(&text),
        Ecosystem::Apk => apk(&text),
        Ecosystem::Python => python(&text).into_iter().collect(),
        Ecosystem::Npm => npm(bytes).into_iter().collect(),
        Ecosystem::Golang | Ecosystem::Cargo => Vec::new(),
    }
}

/// RFC 822-style stanzas (`Key: value`, continuation lines indented), blank-line separated.
fn stanzas(text: &str) -> Vec<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            current.push((k.trim(), v.trim()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn field<'a>(stanza: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    stanza.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// dpkg's database: every stanza but purged ones (`Status: … not-installed`), as
/// `dpkg-query -W` lists them.
fn dpkg(text: &str) -> Vec<Found> {
    stanzas(text)
        .into_iter()
        .filter_map(|s| {
            let name = field(&s, "Package")?;
            let version = field(&s, "Version")?;
            let purged = field(&s, "Status").is_some_and(|st| st.ends_with("not-installed"));
            if purged {
                return None;
            }
            Some(Found {
                ecosystem: Ecosystem::Deb,
                name: name.to_string(),
                version: version.to_string(),
                arch: field(&s, "Architecture").map(String::from),
            })
        })
        .collect()
}

/// apk's `installed`: `P:` name, `V:` version, `A:` architecture.
fn apk(text: &str) -> Vec<Found> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let get = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::to_string)
        };
        if let (Some(name), Some(version)) = (get("P:"), get("V:")) {
            out.push(Found {
                ecosystem: Ecosystem::Apk,
                name,
                version,
                arch: get("A:"),
            });
        }
    }
    out
}

/// A Python distribution's core metadata: the `Name` and `Version` headers.
fn python(text: &str) -> Option<Found> {
    let head = text.split("\n\n").next().unwrap_or("");
    let s = stanzas(head).into_iter().next()?;
    Some(Found {
        ecosystem: Ecosystem::Python,
        name: field(&s, "Name")?.to_string(),
        version: field(&s, "Version")?.to_string(),
        arch: None,
    })
}

/// An installed npm package's `name` and `version`.
fn npm(bytes: &[u8]) -> Option<Found> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(Found {
        ecosystem: Ecosystem::Npm,
        name: v.get("name")?.as_str()?.to_string(),
        version: v.get("version")?.as_str()?.to_string(),
        arch: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_to_readers() {
        for (path, want) in [
            ("var/lib/dpkg/status", Some(Ecosystem::Deb)),
            ("var/lib/dpkg/status.d/base", Some(Ecosystem::Deb)),
            ("var/lib/dpkg/status.d/base.md5sums", None),
            ("lib/apk/db/installed", Some(Ecosystem::Apk)),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                Some(Ecosystem::Python),
            ),
            ("app/x.egg-info/PKG-INFO", Some(Ecosystem::Python)),
            (
                "app/node_modules/left-pad/package.json",
                Some(Ecosystem::Npm),
            ),
            (
                "app/node_modules/@types/node/package.json",
                Some(Ecosystem::Npm),
            ),
            ("app/node_modules/left-pad/lib/package.json", None),
            ("app/package.json", None),
        ] {
            assert_eq!(kind_of(path), want, "{path}");
        }
    }

    #[test]
    fn dpkg_skips_purged() {
        let text = "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:2.0-1\nDescription: x\n more\n\nPackage: b\nStatus: purge ok not-installed\nVersion: 1\n\nPackage: c\nStatus: deinstall ok config-files\nVersion: 3\nArchitecture: all\n";
        let got: Vec<(String, String)> = dpkg(text)
            .into_iter()
            .map(|f| (f.name, f.version))
            .collect();
        assert_eq!(
            got,
            [("a".into(), "1:2.0-1".into()), ("c".into(), "3".into())]
        );
    }

    #[test]
    fn apk_python_npm() {
        let a = apk("P:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\n");
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].arch.as_deref(), Some("x86_64"));
        let p =
            python("Metadata-Version: 2.1\nName: Six\nVersion: 1.16.0\n\nName: body\n").unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("Six", "1.16.0"));
        let n = npm(br#"{"name":"@s/x","version":"1.0.0"}"#).unwrap();
        assert_eq!(n.name, "@s/x");
    }
}
