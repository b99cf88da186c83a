//! Images: the config JSON (kept as canonical JSON with sorted keys, since oci-spec's types
//! drop Healthcheck/OnBuild/Shell), the manifest in the base image's media-type family, and
//! `BuiltImage`, the value every output takes. Writing outputs lives in `output`.

pub mod attestation;
pub mod index;
pub mod output;

use serde_json::{json, Map, Value};

use crate::layer::{
    BlobStore, Digest, LayerBlob, DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
};
use crate::oci::media_type::{DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image config of {what} is not valid JSON: {source}")]
    BadConfig {
        what: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Layer(#[from] crate::layer::Error),
    #[error("--image-format=docker: the image has zstd layers, which Docker's manifest cannot name; use --image-format=oci or --compression=gzip")]
    ZstdInDocker,
    #[error("{path}: {op}: {source}")]
    Io {
        path: std::path::PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which set of media types a manifest uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Oci,
    Docker,
}

impl Family {
    /// The family of a base manifest's media type (OCI unless it is Docker's).
    pub fn of_manifest(media_type: &str) -> Family {
        if media_type == DOCKER_MANIFEST {
            Family::Docker
        } else {
            Family::Oci
        }
    }
    pub fn manifest(self) -> &'static str {
        match self {
            Family::Oci => OCI_MANIFEST,
            Family::Docker => DOCKER_MANIFEST,
        }
    }
    pub fn config(self) -> &'static str {
        match self {
            Family::Oci => OCI_CONFIG,
            Family::Docker => DOCKER_CONFIG,
        }
    }
    pub fn layer_gzip(self) -> &'static str {
        match self {
            Family::Oci => OCI_LAYER_GZIP,
            Family::Docker => DOCKER_LAYER_GZIP,
        }
    }
    /// A layer media type carried over from a base image, in this family's spelling.
    pub fn convert_layer(self, media_type: &str) -> String {
        let gzip = media_type.ends_with("gzip");
        let foreign = media_type.contains("foreign") || media_type.contains("nondistributable");
        if gzip && !foreign {
            self.layer_gzip().to_string()
        } else {
            media_type.to_string()
        }
    }
}

/// A finished image: config and manifest bytes (in the blob store too) and its layers.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub family: Family,
    pub layers: Vec<LayerBlob>,
}

/// What the user asked of the manifest: `--annotation`s and `--image-format`.
#[derive(Debug, Clone, Default)]
pub struct ManifestOptions {
    pub annotations: Vec<(String, String)>,
    /// the media-type family to write (default: the base image's)
    pub family: Option<Family>,
}

/// The PATH a `FROM scratch` image starts with, as BuildKit's empty image.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The starting config of `FROM scratch`.
pub fn scratch_config(os: &str, architecture: &str) -> Value {
    json!({
        "architecture": architecture,
        "os": os,
        "config": {"Env": [format!("PATH={DEFAULT_PATH}")]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}

/// Parses a base image config, keeping every field.
pub fn parse_config(bytes: &[u8], what: &str) -> Result<Value> {
    let mut v: Value = serde_json::from_slice(bytes).map_err(|source| Error::BadConfig {
        what: what.to_string(),
        source,
    })?;
    if !v.is_object() {
        v = json!({});
    }
    let obj = object(&mut v);
    obj.entry("config").or_insert_with(|| json!({}));
    if obj.get("config").is_some_and(Value::is_null) {
        obj.insert("config".into(), json!({}));
    }
    obj.entry("history").or_insert_with(|| json!([]));
    obj.entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    // a builder's container-side fields describe the base's build, not ours
    obj.remove("container");
    obj.remove("container_config");
    Ok(v)
}

/// The object inside a JSON value, turning a non-object into an empty one.
pub fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        // made an object just above
        _ => unreachable!("json value is an object"),
    }
}

/// Appends a history entry.
pub fn add_history(config: &mut Value, created: &str, created_by: &str, empty_layer: bool) {
    let obj = object(config);
    let hist = obj.entry("history").or_insert_with(|| json!([]));
    if !hist.is_array() {
        *hist = json!([]);
    }
    let mut h = json!({
        "created": created,
        "created_by": created_by,
        "comment": "kiln",
    });
    if empty_layer {
        object(&mut h).insert("empty_layer".into(), Value::Bool(true));
    }
    if let Value::Array(a) = hist {
        a.push(h);
    }
}

/// Finishes an image: sets `created` and `rootfs.diff_ids`, writes config and manifest into
/// the blob store.
pub fn assemble(
    mut config: Value,
    mut layers: Vec<LayerBlob>,
    mut family: Family,
    created: &str,
    store: &BlobStore,
    asked: &ManifestOptions,
) -> Result<BuiltImage> {
    let zstd = layers.iter().any(|l| l.media_type == OCI_LAYER_ZSTD);
    match asked.family {
        Some(Family::Docker) if zstd => return Err(Error::ZstdInDocker),
        Some(f) => family = f,
        // Docker's manifest has no zstd layer type: an image with one is written as OCI
        None if zstd => family = Family::Oci,
        None => {}
    }
    for l in &mut layers {
        l.media_type = family.convert_layer(&l.media_type);
    }
    let obj = object(&mut config);
    obj.insert("created".into(), Value::String(created.to_string()));
    let diff_ids: Vec<Value> = layers
        .iter()
        .map(|l| Value::String(l.diff_id.0.clone()))
        .collect();
    obj.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    let config_bytes = serde_json::to_vec(&config).map_err(|source| Error::BadConfig {
        what: "the built image".into(),
        source,
    })?;
    let config_digest = store.put_bytes(&config_bytes)?;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": family.manifest(),
        "config": {
            "mediaType": family.config(),
            "digest": config_digest.0,
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.digest.0,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    if !asked.annotations.is_empty() {
        let annotations: Map<String, Value> = asked
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        object(&mut manifest).insert("annotations".into(), Value::Object(annotations));
    }
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|source| Error::BadConfig {
        what: "the built manifest".into(),
        source,
    })?;
    let manifest_digest = store.put_bytes(&manifest_bytes)?;
    Ok(BuiltImage {
        config: config_bytes,
        config_digest,
        manifest: manifest_bytes,
        manifest_digest,
        family,
        layers,
    })
}

/// RFC 3339 UTC time of a Unix timestamp (no leap seconds, as Go's formatter).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        for (secs, want) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_700_000_000, "2023-11-14T22:13:20Z"),
        ] {
            assert_eq!(rfc3339(secs), want);
        }
    }

    #[test]
    fn family_converts_gzip_layers() {
        assert_eq!(Family::Oci.convert_layer(DOCKER_LAYER_GZIP), OCI_LAYER_GZIP);
        assert_eq!(
            Family::Docker.convert_layer(OCI_LAYER_GZIP),
            DOCKER_LAYER_GZIP
        );
        assert_eq!(Family::of_manifest(DOCKER_MANIFEST), Family::Docker);
    }
}
