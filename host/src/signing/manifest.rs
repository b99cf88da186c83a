//! The bytes of a cosign signature as `cosign verify --key` reads them: the simple-signing
//! payload, and the image under the `sha256-<hex>.sig` tag that carries it (an OCI manifest,
//! one `application/vnd.dev.cosign.simplesigning.v1+json` layer per signature with the
//! base64 signature in its `dev.cosignproject.cosign/signature` annotation, and the config
//! go-containerregistry writes for an empty image with those layers appended).
//!
//! JSON is written in the field order and escaping of Go's `encoding/json`, as cosign writes
//! it. Pure functions: reading keys is `key.rs`'s, talking to the registry `mod.rs`'s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::oci::{digest, media_type};

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature of the layer's payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The time go-containerregistry writes for a config and history entry with none.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The simple-signing payload claiming that `docker_reference` (registry/repository, as
/// go-containerregistry names it) is the image with manifest `manifest_digest`.
pub fn payload(docker_reference: &str, manifest_digest: &str) -> Vec<u8> {
    let value = Payload {
        critical: Critical {
            identity: Identity { docker_reference },
            image: Image {
                docker_manifest_digest: manifest_digest,
            },
            kind: "cosign container image signature",
        },
        optional: None,
    };
    go_json(&value)
}

#[derive(Serialize)]
struct Payload<'a> {
    critical: Critical<'a>,
    optional: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct Critical<'a> {
    identity: Identity<'a>,
    image: Image<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Identity<'a> {
    #[serde(rename = "docker-reference")]
    docker_reference: &'a str,
}

#[derive(Serialize)]
struct Image<'a> {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: &'a str,
}

/// The tag cosign keeps an image's signatures under: `sha256-<hex>.sig`.
pub fn signature_tag(manifest_digest: &str) -> Option<String> {
    digest::sha256_hex(manifest_digest).map(|hex| format!("sha256-{hex}.sig"))
}

/// A layer descriptor, fields in go-containerregistry's order; an existing signature's
/// descriptor is carried over with every field it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "artifactType"
    )]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// The layer of one signature: `payload` signed, `signature` its DER bytes.
    pub fn signature_layer(payload: &[u8], signature: &[u8]) -> Descriptor {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(signature);
        Descriptor {
            media_type: SIMPLE_SIGNING.to_string(),
            size: payload.len() as u64,
            digest: digest::of_bytes(payload),
            data: None,
            urls: None,
            annotations: Some(BTreeMap::from([(
                SIGNATURE_ANNOTATION.to_string(),
                encoded,
            )])),
            platform: None,
            artifact_type: None,
        }
    }
}

#[derive(Deserialize)]
struct Existing {
    layers: Vec<Descriptor>,
}

/// The layers of a signature manifest already under the tag, or `None` when the bytes are
/// not an image manifest.
pub fn existing_layers(manifest: &[u8]) -> Option<Vec<Descriptor>> {
    serde_json::from_slice::<Existing>(manifest)
        .ok()
        .map(|m| m.layers)
}

/// The config of a signature image with `layers`: go-containerregistry's empty image with
/// each layer appended (its diff ID is its digest: payloads are not compressed, and one
/// history entry with the zero time per layer).
pub fn config(layers: &[Descriptor]) -> Vec<u8> {
    #[derive(Serialize)]
    struct History {
        created: &'static str,
    }
    #[derive(Serialize)]
    struct RootFs<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        diff_ids: Vec<&'a str>,
    }
    #[derive(Serialize)]
    struct Config<'a> {
        architecture: &'static str,
        created: &'static str,
        history: Vec<History>,
        os: &'static str,
        rootfs: RootFs<'a>,
        config: BTreeMap<String, String>,
    }
    go_json(&Config {
        architecture: "",
        created: ZERO_TIME,
        history: layers
            .iter()
            .map(|_| History { created: ZERO_TIME })
            .collect(),
        os: "",
        rootfs: RootFs {
            kind: "layers",
            diff_ids: layers.iter().map(|l| l.digest.as_str()).collect(),
        },
        config: BTreeMap::new(),
    })
}

/// The OCI manifest of a signature image: `config`'s bytes and `layers`.
pub fn manifest(config: &[u8], layers: &[Descriptor]) -> Vec<u8> {
    #[derive(Serialize)]
    struct ConfigRef {
        #[serde(rename = "mediaType")]
        media_type: &'static str,
        size: u64,
        digest: String,
    }
    #[derive(Serialize)]
    struct Manifest<'a> {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        #[serde(rename = "mediaType")]
        media_type: &'static str,
        config: ConfigRef,
        layers: &'a [Descriptor],
    }
    go_json(&Manifest {
        schema_version: 2,
        media_type: media_type::OCI_MANIFEST,
        config: ConfigRef {
            media_type: media_type::OCI_CONFIG,
            size: config.len() as u64,
            digest: digest::of_bytes(config),
        },
        layers,
    })
}

/// Compact JSON escaped as Go's `encoding/json` escapes it (`<`, `>`, `&`, U+2028 and U+2029
/// as `\uXXXX`; these appear only inside strings, so replacing them everywhere is exact).
fn go_json<T: Serialize>(value: &T) -> Vec<u8> {
    let text = serde_json::to_string(value).unwrap_or_default();
    text.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn payload_is_cosigns() {
        let got = String::from_utf8(payload("127.0.0.1:5000/app", DIGEST)).unwrap();
        assert_eq!(
            got,
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/app"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        assert_eq!(
            signature_tag(DIGEST).unwrap(),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
        assert_eq!(signature_tag("md5:abc"), None);
    }

    #[test]
    fn image_is_go_containerregistrys() {
        let layer = Descriptor::signature_layer(b"{}", &[1, 2, 3]);
        let config = config(std::slice::from_ref(&layer));
        let layer_digest = digest::of_bytes(b"{}");
        assert_eq!(
            String::from_utf8(config.clone()).unwrap(),
            format!(
                r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}},"config":{{}}}}"#
            )
        );
        let manifest = String::from_utf8(manifest(&config, &[layer])).unwrap();
        assert_eq!(
            manifest,
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{}"}},"layers":[{{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","size":2,"digest":"{layer_digest}","annotations":{{"dev.cosignproject.cosign/signature":"AQID"}}}}]}}"#,
                config.len(),
                digest::of_bytes(&config)
            )
        );
        // read back with every field, as an append keeps it
        assert_eq!(
            existing_layers(manifest.as_bytes()).unwrap(),
            vec![Descriptor::signature_layer(b"{}", &[1, 2, 3])]
        );
        assert_eq!(existing_layers(b"{\"manifests\":[]}"), None);
        assert_eq!(go_json(&"a<b>&"), b"\"a\\u003cb\\u003e\\u0026\"".to_vec());
    }
}
