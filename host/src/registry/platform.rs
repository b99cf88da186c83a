//! Target platforms and the manifest shapes the registry module reads.
//!
//! Owns [`Platform`], the small view of manifest JSON needed to tell an image manifest from an
//! index (OCI index or Docker manifest list), and the choice of one index entry for a platform,
//! `variant` included (oci-client's default resolver ignores it). Fetching the manifests is
//! `pull.rs`'s job; kiln's own image config and manifest types live outside this module.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::error::{Error, Result};
use crate::oci::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// Media types sent in `Accept` when fetching a manifest, most preferred first.
pub(crate) const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
];

/// An operating system, CPU architecture and optional CPU variant, spelled as in OCI image
/// configs and indexes (`linux`, `arm64`, `v8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine kiln runs on: Linux and the Go-style name of this CPU.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "arm" => ("arm", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = Error;

    /// Parses `os/arch` or `os/arch/variant`, as given to `--custom-platform`.
    fn from_str(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let invalid = || Error::InvalidPlatform {
            platform: s.to_string(),
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform {
                os: os.to_string(),
                architecture: normalize_arch(arch).to_string(),
                variant: None,
            }),
            [os, arch, variant] => Ok(Platform {
                os: os.to_string(),
                architecture: normalize_arch(arch).to_string(),
                variant: Some(variant.to_string()),
            }),
            _ => Err(invalid()),
        }
    }
}

/// Maps kernel-style architecture names onto the Go names used in images.
fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        other => other,
    }
}

/// The variant a platform means when it names none: arm64 is v8 and 32-bit arm is v7 unless
/// said otherwise; amd64 `v1` is the same as no variant.
fn effective_variant<'a>(arch: &str, variant: Option<&'a str>) -> Option<&'a str> {
    match (arch, variant) {
        ("arm64", None) => Some("v8"),
        ("arm", None) => Some("v7"),
        ("amd64", Some("v1")) => None,
        (_, v) => v,
    }
}

/// A descriptor of a blob in an image manifest.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub urls: Option<Vec<String>>,
    /// the blob itself, base64 (an OCI descriptor's `data`): a small config read without a
    /// request
    #[serde(default)]
    pub data: Option<String>,
}

/// One entry of an image index.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct IndexEntry {
    pub digest: String,
    /// the manifest's size (0 when the index leaves it out)
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<EntryPlatform>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EntryPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl fmt::Display for EntryPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Just enough of any manifest or index to classify it.
#[derive(Debug, Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<IndexEntry>>,
}

/// A fetched manifest, classified.
#[derive(Debug)]
pub(crate) enum Manifest {
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        entries: Vec<IndexEntry>,
    },
}

impl Manifest {
    /// Classifies manifest bytes fetched for `reference`. The `mediaType` field decides; OCI
    /// documents may omit it, in which case the shape does.
    pub(crate) fn parse(reference: &str, body: &[u8]) -> Result<Manifest> {
        let raw: RawManifest =
            serde_json::from_slice(body).map_err(|source| Error::ManifestJson {
                reference: reference.to_string(),
                source,
            })?;
        let unsupported = |media_type: &str| Error::UnsupportedManifest {
            reference: reference.to_string(),
            media_type: media_type.to_string(),
        };
        if raw.schema_version == Some(1) {
            return Err(unsupported("docker schema 1"));
        }
        let media_type = match raw.media_type.as_deref() {
            Some(t) => t.to_string(),
            None if raw.manifests.is_some() => OCI_INDEX.to_string(),
            None if raw.config.is_some() => OCI_MANIFEST.to_string(),
            None => return Err(unsupported("none")),
        };
        match media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(Manifest::Index {
                entries: raw.manifests.unwrap_or_default(),
            }),
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = raw.config.ok_or_else(|| Error::ManifestWithoutConfig {
                    reference: reference.to_string(),
                })?;
                Ok(Manifest::Image {
                    media_type,
                    config,
                    layers: raw.layers.unwrap_or_default(),
                })
            }
            other => Err(unsupported(other)),
        }
    }
}

/// Picks the index entry for `want`: same OS and architecture, and the same variant once
/// defaults are filled in. When `want` names no variant, an entry with the architecture's
/// default variant is preferred over other variants. Ties go to the first entry, as in Docker.
pub(crate) fn select_entry<'a>(
    entries: &'a [IndexEntry],
    want: &Platform,
) -> Option<&'a IndexEntry> {
    let want_arch = normalize_arch(&want.architecture);
    let want_variant = effective_variant(want_arch, want.variant.as_deref());
    let default_variant = effective_variant(want_arch, None);
    let mut best: Option<(u8, &IndexEntry)> = None;
    for entry in entries {
        let Some(p) = &entry.platform else { continue };
        let arch = normalize_arch(&p.architecture);
        if p.os != want.os || arch != want_arch {
            continue;
        }
        let variant = effective_variant(arch, p.variant.as_deref());
        let score = if want.variant.is_some() {
            if variant != want_variant {
                continue;
            }
            2
        } else if variant == default_variant {
            2
        } else {
            1
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, entry));
        }
    }
    best.map(|(_, entry)| entry)
}

/// The platform an image config declares, if it declares one.
pub(crate) fn config_platform(config: &[u8]) -> Option<Platform> {
    #[derive(Deserialize)]
    struct ConfigPlatform {
        os: String,
        architecture: String,
        #[serde(default)]
        variant: Option<String>,
    }
    let c: ConfigPlatform = serde_json::from_slice(config).ok()?;
    Some(Platform {
        os: c.os,
        architecture: c.architecture,
        variant: c.variant,
    })
}

/// Whether an image built for `have` runs as `want`: same OS and architecture, and the same
/// variant once defaults are filled in, unless `want` leaves the variant open.
pub(crate) fn satisfies(have: &Platform, want: &Platform) -> bool {
    let arch = normalize_arch(&have.architecture);
    let want_arch = normalize_arch(&want.architecture);
    have.os == want.os
        && arch == want_arch
        && (want.variant.is_none()
            || effective_variant(arch, have.variant.as_deref())
                == effective_variant(want_arch, want.variant.as_deref()))
}

/// Lists the platforms an index offers, for an error message.
pub(crate) fn describe_platforms(entries: &[IndexEntry]) -> String {
    let names: Vec<String> = entries
        .iter()
        .filter_map(|e| e.platform.as_ref().map(ToString::to_string))
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Writes `platform` into an image config's `os`, `architecture` and `variant` (removed when
/// the platform has none), as `--custom-platform` asks. A config that is not a JSON object is
/// left alone.
pub fn set_config_platform(config: &mut serde_json::Value, platform: &Platform) {
    let Some(object) = config.as_object_mut() else {
        return;
    };
    object.insert("os".into(), platform.os.clone().into());
    object.insert("architecture".into(), platform.architecture.clone().into());
    match &platform.variant {
        Some(variant) => {
            object.insert("variant".into(), variant.clone().into());
        }
        None => {
            object.remove("variant");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.index.v1+json",
      "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:a1", "size": 1,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:a3", "size": 1,
         "platform": {"os": "linux", "architecture": "amd64", "variant": "v3"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:v6", "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:v7", "size": 1,
         "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:a64", "size": 1,
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:att", "size": 1,
         "platform": {"os": "unknown", "architecture": "unknown"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:win", "size": 1,
         "platform": {"os": "windows", "architecture": "amd64"}}
      ]
    }"#;

    fn platform(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn selects_platform_from_index() {
        let Manifest::Index { entries } = Manifest::parse("x", INDEX.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        for (want, digest) in [
            ("linux/amd64", Some("sha256:a1")),
            ("linux/x86_64", Some("sha256:a1")),
            ("linux/amd64/v1", Some("sha256:a1")),
            ("linux/amd64/v3", Some("sha256:a3")),
            ("linux/arm64", Some("sha256:a64")),
            ("linux/arm64/v8", Some("sha256:a64")),
            ("linux/aarch64", Some("sha256:a64")),
            ("linux/arm", Some("sha256:v7")),
            ("linux/arm/v6", Some("sha256:v6")),
            ("linux/arm/v5", None),
            ("linux/s390x", None),
            ("windows/amd64", Some("sha256:win")),
        ] {
            let got = select_entry(&entries, &platform(want)).map(|e| e.digest.as_str());
            assert_eq!(got, digest, "platform {want}");
        }
    }

    #[test]
    fn host_platform_matches_index() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        if std::env::consts::ARCH == "aarch64" {
            assert_eq!(host.to_string(), "linux/arm64/v8");
        }
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn compares_config_platforms() {
        for (config, want, ok) in [
            (
                r#"{"os":"linux","architecture":"amd64"}"#,
                "linux/amd64",
                true,
            ),
            (
                r#"{"os":"linux","architecture":"arm64"}"#,
                "linux/arm64/v8",
                true,
            ),
            (
                r#"{"os":"linux","architecture":"arm","variant":"v6"}"#,
                "linux/arm",
                true,
            ),
            (
                r#"{"os":"linux","architecture":"arm","variant":"v6"}"#,
                "linux/arm/v7",
                false,
            ),
            (
                r#"{"os":"linux","architecture":"amd64"}"#,
                "linux/arm64",
                false,
            ),
        ] {
            let have = config_platform(config.as_bytes()).unwrap();
            assert_eq!(satisfies(&have, &platform(want)), ok, "{config} as {want}");
        }
        assert!(config_platform(b"{}").is_none());
    }

    #[test]
    fn parses_platform_strings() {
        for (input, want) in [
            ("linux/amd64", Some(("linux", "amd64", None))),
            ("linux/arm64/v8", Some(("linux", "arm64", Some("v8")))),
            ("linux", None),
            ("linux//v8", None),
            ("a/b/c/d", None),
        ] {
            let got = input.parse::<Platform>().ok();
            let got = got
                .as_ref()
                .map(|p| (p.os.as_str(), p.architecture.as_str(), p.variant.as_deref()));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn classifies_manifests() {
        let docker = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:c","size":3},
            "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:l","size":5}]}"#;
        let oci_no_type = r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json",
            "digest":"sha256:c","size":3},"layers":[]}"#;
        let list = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests":[]}"#;
        let schema1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let artifact = r#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#;
        for (body, want) in [
            (docker, Ok(DOCKER_MANIFEST)),
            (oci_no_type, Ok(OCI_MANIFEST)),
            (list, Ok("index")),
            (schema1, Err("docker schema 1")),
            (artifact, Err("application/vnd.example+json")),
            ("not json", Err("not valid JSON")),
        ] {
            let got = match Manifest::parse("r", body.as_bytes()) {
                Ok(Manifest::Image { media_type, .. }) => Ok(media_type),
                Ok(Manifest::Index { .. }) => Ok("index".to_string()),
                Err(e) => Err(e.to_string()),
            };
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want),
                (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }
}
