//! Talking to OCI registries: pull a base image's blobs to disk, push a built image.
//!
//! This file is the front door: [`Registry`], the values it takes and returns, and a map of the
//! rooms behind it. Registry addressing (Docker Hub normalisation, loopback hosts, digests as
//! file names) is `address.rs`; reaching a registry (HTTPS first, plain HTTP as the fallback
//! for loopback registries and the `--insecure*` flags, TLS trust from `--skip-tls-verify*`
//! and `--registry-certificate`, logging in) is `client.rs`, with the flags themselves in `options.rs`; credentials are
//! `auth.rs` (with `google.rs` and `ecr.rs` for the clouds that mint them), bearer tokens for
//! mounts `token.rs`, the system's CA roots, read once per process, `roots.rs`, TLS client certificates `client_cert.rs` (serving kiln alone: `peer.rs`), mirrors `mirror.rs`, platform
//! choice in an index `platform.rs`, blob download with digest checks `pull.rs` (its temporary
//! file and hashing writer `blobfile.rs`; a blob read as it downloads `stream.rs`), streaming
//! upload with cross-repository mounts `push.rs`, one manifest read by tag (an existing
//! signature image) `lookup.rs`, the base-image cache of `--cache-dir`
//! `blobs.rs`, errors and their classification `error.rs`, the cause of a failure in words (DNS, refused, TLS, 401/403, 404) `cause.rs`, and retries of transient failures
//! `retry.rs`. It never looks inside configs or layers: building manifests and configs, and
//! unpacking layers, belong to the image and layer modules; media types and digest hashing are
//! `crate::oci`'s.
//!
//! The protocol is oci-client's low-level API (raw manifests, one blob at a time); its
//! high-level `pull()`/`push()` keep whole layers in memory and are not used.

mod address;
mod auth;
mod blobfile;
pub mod blobs;
mod cause;
mod client;
mod client_cert;
mod ecr;
mod error;
mod fetch;
pub(crate) mod google;
mod lookup;
mod mirror;
mod options;
mod peer;
mod platform;
mod pull;
mod push;
mod retry;
mod roots;
pub mod stream;
mod token;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use oci_client::{Client, Reference};

pub use address::is_local_registry;
use auth::Credentials;
pub use cause::{cause, Cause};
pub use error::{Error, Result};
pub use mirror::parse_registry_map;
pub use options::RegistryOptions;
pub use platform::{set_config_platform, Platform};
// the JSON readers, for the fuzz targets (`crate::fuzzing`)
pub(crate) use platform::{config_platform, describe_platforms, satisfies, select_entry, Manifest};

/// An image whose blobs are now in the blob directory.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference after normalisation, e.g. `docker.io/library/busybox:latest`.
    pub reference: String,
    /// Digest of the image manifest (the platform's manifest when the reference is an index).
    pub manifest_digest: String,
    pub manifest_media_type: String,
    /// The raw config JSON, digest verified.
    pub config: Vec<u8>,
    pub config_digest: String,
    /// Layers in manifest order.
    pub layers: Vec<PulledLayer>,
    /// The image manifest's bytes, as stored in the registry.
    pub manifest: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct PulledLayer {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// `<blob_dir>/sha256/<hex>`, content verified.
    pub path: PathBuf,
}

/// An image to push: the manifest bytes as they are to be stored, and the files of the blobs
/// it refers to (config and layers).
#[derive(Debug, Clone)]
pub struct PushImage {
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    pub blobs: Vec<BlobFile>,
}

#[derive(Debug, Clone)]
pub struct BlobFile {
    /// `sha256:<hex>` of the file's content.
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Direction {
    Pull,
    Push,
}

impl Direction {
    fn verb(self) -> &'static str {
        match self {
            Direction::Pull => "pull from",
            Direction::Push => "push to",
        }
    }
}

/// A registry client for pulls and pushes, shared across a build. Connections and tokens are
/// kept per registry host.
pub struct Registry {
    opts: RegistryOptions,
    /// oci-client clients by registry host, plain HTTP, and unchecked TLS certificates
    clients: Mutex<HashMap<(String, bool, bool), Client>>,
    /// Whether each registry that may use plain HTTP does (`client.rs`), found once.
    schemes: Mutex<HashMap<(String, Direction), bool>>,
    /// Credentials looked up so far, by registry host (helpers run once per host).
    credentials: Mutex<HashMap<String, Credentials>>,
    /// A repository known to hold each blob (`sha256:…` → reference), from pulls and pushes,
    /// for cross-repository mounts.
    known_blobs: Mutex<HashMap<String, Reference>>,
    /// Client-certificate forwarders started so far (`client_cert.rs`), by registry and
    /// direction: their `127.0.0.1:PORT`.
    forwarders: tokio::sync::Mutex<HashMap<(String, Direction), String>>,
    /// kiln's own HTTP clients for manifest and blob GETs (`fetch.rs`), by registry host and
    /// whether TLS certificates go unchecked.
    http: Mutex<HashMap<(String, bool), reqwest::Client>>,
    /// Registry hosts whose `/v2/` answered without a challenge: no connection logs in
    /// (`client.rs`) and no mount asks for a token (`token.rs`).
    no_bearer: Mutex<std::collections::HashSet<String>>,
}

impl Registry {
    pub fn new(opts: RegistryOptions) -> Registry {
        Registry {
            opts,
            clients: Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            known_blobs: Mutex::new(HashMap::new()),
            forwarders: tokio::sync::Mutex::new(HashMap::new()),
            http: Mutex::new(HashMap::new()),
            no_bearer: Mutex::new(std::collections::HashSet::new()),
        }
    }

    /// Whether `registry`'s `/v2/` was seen answering without a challenge (it challenges, or
    /// not, whatever the direction).
    fn asks_no_bearer(&self, registry: &str) -> bool {
        self.no_bearer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(registry)
    }

    /// Remembers that `reference`'s repository holds `digest`.
    fn note_blob(&self, digest: &str, reference: &Reference) {
        self.known_blobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.to_string(), reference.clone());
    }

    /// Another repository of `target`'s registry known to hold `digest`.
    fn mount_source(&self, digest: &str, target: &Reference) -> Option<Reference> {
        let known = self.known_blobs.lock().unwrap_or_else(|e| e.into_inner());
        known.get(digest).and_then(|from| {
            (from.resolve_registry() == target.resolve_registry()
                && from.repository() != target.repository())
            .then(|| from.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let registry = Registry::new(RegistryOptions::default());
        let platform = Platform::host();
        let pull = registry.pull("busybox", &platform, std::path::Path::new("/nonexistent"));
        assert_send(&pull);
        let image = PushImage {
            manifest: Vec::new(),
            manifest_media_type: String::new(),
            blobs: Vec::new(),
        };
        let push = registry.push("busybox", &image);
        assert_send(&push);
    }
}
