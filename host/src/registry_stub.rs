//! temporary stand-in with the registry API, until the real module lands
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("registry not built yet")]
pub struct Error;
pub type Result<T> = std::result::Result<T, Error>;
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions { pub insecure: bool, pub insecure_pull: bool, pub skip_tls_verify: bool, pub insecure_registries: Vec<String> }
#[derive(Debug, Clone)]
pub struct Platform { pub os: String, pub architecture: String, pub variant: Option<String> }
impl Platform { pub fn host() -> Platform { Platform { os: "linux".into(), architecture: "amd64".into(), variant: None } } }
pub struct Registry;
impl Registry {
    pub fn new(_o: RegistryOptions) -> Registry { Registry }
    pub async fn pull(&self, _r: &str, _p: &Platform, _d: &Path) -> Result<PulledImage> { Err(Error) }
    pub async fn push(&self, _r: &str, _i: &PushImage) -> Result<String> { Err(Error) }
}
pub struct PulledImage { pub reference: String, pub manifest_digest: String, pub manifest_media_type: String, pub config: Vec<u8>, pub config_digest: String, pub layers: Vec<PulledLayer> }
pub struct PulledLayer { pub digest: String, pub media_type: String, pub size: u64, pub path: PathBuf }
pub struct PushImage { pub manifest: Vec<u8>, pub manifest_media_type: String, pub blobs: Vec<BlobFile> }
pub struct BlobFile { pub digest: String, pub size: u64, pub path: PathBuf }
