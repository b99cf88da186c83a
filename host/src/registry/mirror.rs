//! Registry mirrors for pulls: `--registry-mirror` (Docker Hub's) and `--registry-map`.
//!
//! Owns parsing `from=to;from=to` and turning one image reference into the list of references
//! to try, mirrors first in the order given, then the original registry unless
//! `--skip-default-registry-fallback`. A mirror may carry a path prefix
//! (`mirror.example.com/hub`), which is put in front of the repository. Trying the
//! candidates is `pull.rs`'s job; pushes never go to mirrors.

use oci_client::Reference;

use super::auth::registry_key;
use super::error::{Error, Result};
use super::options::RegistryOptions;

/// Parses one `--registry-map` value: `from=to`, several joined by `;`.
pub fn parse_registry_map(value: &str) -> Result<Vec<(String, String)>> {
    let invalid = || Error::InvalidRegistryMap {
        value: value.to_string(),
    };
    let mut maps = Vec::new();
    for pair in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (from, to) = pair.split_once('=').ok_or_else(invalid)?;
        let (from, to) = (from.trim(), to.trim().trim_end_matches('/'));
        if from.is_empty() || to.is_empty() {
            return Err(invalid());
        }
        for to in to.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            maps.push((from.to_string(), to.to_string()));
        }
    }
    if maps.is_empty() {
        return Err(invalid());
    }
    Ok(maps)
}

/// The references to try when pulling `reference`, in order.
pub(crate) fn candidates(opts: &RegistryOptions, reference: &Reference) -> Vec<Reference> {
    let key = registry_key(reference.registry());
    let mut out: Vec<Reference> = opts
        .registry_maps
        .iter()
        .filter(|(from, _)| registry_key(from) == key)
        .map(|(_, to)| on_mirror(reference, to))
        .collect();
    if out.is_empty() || !opts.skip_default_registry_fallback {
        out.push(reference.clone());
    }
    out
}

/// `reference` with its registry replaced by `mirror` (`host[/prefix]`).
fn on_mirror(reference: &Reference, mirror: &str) -> Reference {
    let mirror = mirror
        .strip_prefix("https://")
        .or_else(|| mirror.strip_prefix("http://"))
        .unwrap_or(mirror);
    let (host, prefix) = match mirror.split_once('/') {
        Some((host, prefix)) => (host, Some(prefix.trim_matches('/'))),
        None => (mirror, None),
    };
    let repository = match prefix.filter(|p| !p.is_empty()) {
        Some(prefix) => format!("{prefix}/{}", reference.repository()),
        None => reference.repository().to_string(),
    };
    match (reference.tag(), reference.digest()) {
        (Some(tag), Some(digest)) => Reference::with_tag_and_digest(
            host.to_string(),
            repository,
            tag.to_string(),
            digest.to_string(),
        ),
        (None, Some(digest)) => {
            Reference::with_digest(host.to_string(), repository, digest.to_string())
        }
        (Some(tag), None) => Reference::with_tag(host.to_string(), repository, tag.to_string()),
        (None, None) => Reference::with_tag(host.to_string(), repository, "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps() {
        assert_eq!(
            parse_registry_map("index.docker.io=mirror.gcr.io;quay.io=q.lan:5000/quay").unwrap(),
            vec![
                ("index.docker.io".to_string(), "mirror.gcr.io".to_string()),
                ("quay.io".to_string(), "q.lan:5000/quay".to_string()),
            ]
        );
        for bad in ["", "nothing", "=to", "from=", ";;"] {
            let err = parse_registry_map(bad).unwrap_err().to_string();
            assert!(err.contains("--registry-map"), "{bad}: {err}");
        }
    }

    #[test]
    fn lists_candidates() {
        let opts = RegistryOptions {
            registry_maps: vec![
                ("index.docker.io".into(), "m1.lan".into()),
                ("docker.io".into(), "m2.lan:5000/hub".into()),
                ("quay.io".into(), "q.lan".into()),
            ],
            ..RegistryOptions::default()
        };
        let names = |opts: &RegistryOptions, r: &str| -> Vec<String> {
            candidates(opts, &r.parse().unwrap())
                .iter()
                .map(Reference::whole)
                .collect()
        };
        assert_eq!(
            names(&opts, "busybox:1.36"),
            [
                "m1.lan/library/busybox:1.36",
                "m2.lan:5000/hub/library/busybox:1.36",
                "docker.io/library/busybox:1.36"
            ]
        );
        assert_eq!(
            names(&opts, "quay.io/a/b"),
            ["q.lan/a/b:latest", "quay.io/a/b:latest"]
        );
        assert_eq!(names(&opts, "ghcr.io/x/y:1"), ["ghcr.io/x/y:1"]);
        let skip = RegistryOptions {
            skip_default_registry_fallback: true,
            ..opts
        };
        assert_eq!(names(&skip, "quay.io/a/b:2"), ["q.lan/a/b:2"]);
        assert_eq!(names(&skip, "ghcr.io/x/y:1"), ["ghcr.io/x/y:1"]);
    }
}
