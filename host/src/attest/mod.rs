//! Attestations of a built image, as BuildKit attaches them: in-toto statements (v1) about
//! the image manifest, the SBOM (`sbom`: SPDX 2.3 read from the image's layers) and the
//! provenance (`provenance`: SLSA v1), carried as the layers of an attestation manifest.
//! `attach` turns one image and its statements into the index the tag points at, `attach_all`
//! several platforms' images, each followed by its own attestation manifest, into one; the
//! index entries come from `image::attestation`.
//! Pushing and writing layouts stay with the pipeline.

mod binaries;
mod databases;
mod package;
pub mod provenance;
pub mod sbom;

use serde_json::{json, Value};

use crate::image::attestation::{self, Descriptor, PlatformImage};
use crate::image::BuiltImage;
use crate::oci::digest;
use crate::oci::media_type::{OCI_CONFIG, OCI_MANIFEST};

/// The media type of an in-toto statement layer.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
/// The layer annotation naming a statement's predicate type.
pub const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// The in-toto statement version written.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of an SPDX document.
pub const SPDX_DOCUMENT: &str = "https://spdx.dev/Document";
/// The predicate type of a SLSA v1 provenance.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading layer {layer} for the SBOM: {source}")]
    Layer {
        layer: String,
        source: std::io::Error,
    },
    #[error("writing the {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error("--provenance {value}: expected true, false, mode=min or mode=max")]
    BadProvenance { value: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What `--sbom` and `--provenance` asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestOptions {
    pub sbom: bool,
    pub provenance: Option<provenance::Mode>,
}

impl AttestOptions {
    /// Whether any attestation is written (and so the tag points at an index).
    pub fn any(&self) -> bool {
        self.sbom || self.provenance.is_some()
    }
}

/// `--provenance` as BuildKit reads it: `true`/`1` (min), `false`/`0` (off), `mode=min`,
/// `mode=max`, or those joined with other `key=value`s it ignores.
pub fn parse_provenance(value: &str) -> Result<Option<provenance::Mode>> {
    let bad = || Error::BadProvenance {
        value: value.to_string(),
    };
    match value.trim() {
        "" | "true" | "1" => return Ok(Some(provenance::Mode::Min)),
        "false" | "0" => return Ok(None),
        _ => {}
    }
    let mut mode = provenance::Mode::Min;
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("mode", "min")) => mode = provenance::Mode::Min,
            Some(("mode", "max")) => mode = provenance::Mode::Max,
            Some(("mode", _)) | None => return Err(bad()),
            Some(("disabled", "true")) => return Ok(None),
            Some(_) => {}
        }
    }
    Ok(Some(mode))
}

/// A statement about the manifest `subject` (`sha256:…`), with its predicate.
#[derive(Debug, Clone)]
pub struct Statement {
    pub predicate_type: String,
    pub bytes: Vec<u8>,
}

/// An in-toto v1 statement (BuildKit names its subject `_` where it stands for the image).
pub fn statement(predicate_type: &str, subject: &str, predicate: Value) -> Result<Statement> {
    let doc = json!({
        "_type": STATEMENT_V1,
        "predicateType": predicate_type,
        "subject": [{"name": "_", "digest": provenance::digest_set(subject)}],
        "predicate": predicate,
    });
    let bytes = serde_json::to_vec(&doc).map_err(|source| Error::Json {
        what: "in-toto statement",
        source,
    })?;
    Ok(Statement {
        predicate_type: predicate_type.to_string(),
        bytes,
    })
}

/// A blob or manifest by digest: `(sha256:…, bytes)`.
pub type Blob = (String, Vec<u8>);

/// One image's attestation manifest: its config and statement layers, and the manifest.
#[derive(Debug, Clone)]
pub struct AttestationManifest {
    /// the image manifest the statements are about (`sha256:…`)
    pub subject: String,
    /// the attestation manifest's config and statement layers
    pub blobs: Vec<Blob>,
    /// the attestation manifest
    pub manifest: Blob,
}

/// Images with their attestations: the index the tag points at and every blob and manifest
/// it adds to the images' (`(digest, bytes)`, the index last).
#[derive(Debug, Clone)]
pub struct Attached {
    /// each image's attestation manifest, in the index's order
    pub attestations: Vec<AttestationManifest>,
    /// the index
    pub index: Blob,
}

impl Attached {
    /// Every attestation manifest's blobs and the manifest, then the index.
    pub fn all(&self) -> Vec<Blob> {
        let mut all = Vec::new();
        for a in &self.attestations {
            all.extend(a.blobs.iter().cloned());
            all.push(a.manifest.clone());
        }
        all.push(self.index.clone());
        all
    }
}

/// One image to attach statements to: its platform object as the index lists it
/// (`{"architecture": …, "os": …}`), the image, the statements about its manifest.
pub struct Subject<'a> {
    pub platform: Value,
    pub image: &'a BuiltImage,
    pub statements: Vec<Statement>,
}

/// The attestation manifest of `statements`, as BuildKit writes it: an OCI manifest whose
/// config is the `unknown/unknown` image config listing the statements as diff ids and whose
/// layers are the statements, each annotated with its predicate type.
pub fn attestation_manifest(statements: &[Statement]) -> Result<(Vec<Blob>, Blob)> {
    let digests: Vec<String> = statements
        .iter()
        .map(|s| digest::of_bytes(&s.bytes))
        .collect();
    let config = json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": digests},
    });
    let config = serde_json::to_vec(&config).map_err(|source| Error::Json {
        what: "attestation config",
        source,
    })?;
    let config_digest = digest::of_bytes(&config);
    let layers: Vec<Value> = statements
        .iter()
        .zip(&digests)
        .map(|(s, d)| {
            json!({
                "mediaType": IN_TOTO,
                "digest": d,
                "size": s.bytes.len(),
                "annotations": {PREDICATE_TYPE: s.predicate_type},
            })
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
        "layers": layers,
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|source| Error::Json {
        what: "attestation manifest",
        source,
    })?;
    let mut blobs = vec![(config_digest, config)];
    blobs.extend(
        statements
            .iter()
            .zip(digests)
            .map(|(s, d)| (d, s.bytes.clone())),
    );
    Ok((blobs, (digest::of_bytes(&manifest), manifest)))
}

/// `image` and its statements as the index a tag points at.
pub fn attach(image: &BuiltImage, statements: &[Statement]) -> Result<Attached> {
    attach_all(&[Subject {
        platform: attestation::platform_of(&image.config),
        image,
        statements: statements.to_vec(),
    }])
}

/// Several platforms' images, each with its statements, as ONE index: each image manifest
/// followed by its own attestation manifest, as BuildKit's attestation storage lays out a
/// multi-platform build.
pub fn attach_all(subjects: &[Subject<'_>]) -> Result<Attached> {
    let mut attestations = Vec::new();
    let mut images = Vec::new();
    for s in subjects {
        let (blobs, manifest) = attestation_manifest(&s.statements)?;
        images.push(PlatformImage {
            manifest: Descriptor {
                media_type: s.image.family.manifest().to_string(),
                digest: s.image.manifest_digest.0.clone(),
                size: s.image.manifest.len() as u64,
            },
            platform: s.platform.clone(),
            attestation: Some(Descriptor {
                media_type: OCI_MANIFEST.to_string(),
                digest: manifest.0.clone(),
                size: manifest.1.len() as u64,
            }),
        });
        attestations.push(AttestationManifest {
            subject: s.image.manifest_digest.0.clone(),
            blobs,
            manifest,
        });
    }
    let index = attestation::index(attestation::index_entries(&images))?;
    Ok(Attached {
        attestations,
        index: (digest::of_bytes(&index), index),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_flag_values() {
        use provenance::Mode::{Max, Min};
        for (v, want) in [
            ("true", Some(Min)),
            ("false", None),
            ("mode=min", Some(Min)),
            ("mode=max", Some(Max)),
            ("mode=max,builder-id=x", Some(Max)),
        ] {
            assert_eq!(parse_provenance(v).unwrap(), want, "{v}");
        }
        assert!(parse_provenance("mode=full").is_err());
    }

    #[test]
    fn attestation_manifest_layout() {
        let s = statement(SPDX_DOCUMENT, "sha256:aa", json!({})).unwrap();
        let (blobs, (_, manifest)) = attestation_manifest(&[s]).unwrap();
        let m: Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(m["layers"][0]["mediaType"], IN_TOTO);
        assert_eq!(m["layers"][0]["annotations"][PREDICATE_TYPE], SPDX_DOCUMENT);
        let config: Value = serde_json::from_slice(&blobs[0].1).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], m["layers"][0]["digest"]);
        assert_eq!(config["os"], "unknown");
    }

    fn image(manifest: &[u8], arch: &str) -> BuiltImage {
        let config = format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).into_bytes();
        BuiltImage {
            config_digest: crate::layer::Digest(digest::of_bytes(&config)),
            config,
            manifest: manifest.to_vec(),
            manifest_digest: crate::layer::Digest(digest::of_bytes(manifest)),
            family: crate::image::Family::Oci,
            layers: Vec::new(),
        }
    }

    #[test]
    fn each_platform_followed_by_its_own_attestation() {
        let (amd, arm) = (image(b"a", "amd64"), image(b"b", "arm64"));
        let subjects: Vec<Subject<'_>> = [&amd, &arm]
            .into_iter()
            .map(|img| Subject {
                platform: attestation::platform_of(&img.config),
                image: img,
                statements: vec![
                    statement(SPDX_DOCUMENT, &img.manifest_digest.0, json!({})).unwrap()
                ],
            })
            .collect();
        let attached = attach_all(&subjects).unwrap();
        assert_eq!(attached.attestations.len(), 2);
        let index: Value = serde_json::from_slice(&attached.index.1).unwrap();
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries.len(), 4);
        for (i, img) in [&amd, &arm].into_iter().enumerate() {
            let (entry, att) = (&entries[2 * i], &entries[2 * i + 1]);
            assert_eq!(entry["digest"], img.manifest_digest.0);
            assert_eq!(att["digest"], attached.attestations[i].manifest.0);
            assert_eq!(
                att["annotations"][attestation::REFERENCE_DIGEST],
                img.manifest_digest.0
            );
            assert_eq!(attached.attestations[i].subject, img.manifest_digest.0);
        }
        assert_eq!(entries[2]["platform"]["architecture"], "arm64");
        assert_eq!(attached.all().last(), Some(&attached.index));
    }
}
