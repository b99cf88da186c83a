//! `kiln warm`: fills a `--cache-dir` with base images, as kaniko's warmer does, so later
//! builds with the same `--cache-dir` take them from disk, even with the registry out of
//! reach.
//!
//! Which images: every `--image`, plus the images a `--dockerfile` names in `FROM` (with
//! `--build-arg` values expanded). Fetching and storing are the registry module's
//! ([`crate::registry::Registry::warm`], [`crate::registry::blobs::BlobCache`]).

use std::path::PathBuf;

use anyhow::{Context as _, Result};

use crate::registry::blobs::BlobCache;
use crate::registry::{Platform, Registry, RegistryOptions};

/// What `kiln warm` does, validated.
#[derive(Debug, Clone)]
pub struct WarmOptions {
    pub images: Vec<String>,
    pub dockerfile: Option<PathBuf>,
    pub build_args: Vec<(String, String)>,
    pub registry: RegistryOptions,
    pub cache_dir: PathBuf,
    pub platform: Platform,
}

/// Caches every image `opts` names; returns `reference@digest` for each.
pub async fn run(opts: WarmOptions) -> Result<Vec<String>> {
    let mut images = opts.images.clone();
    if let Some(dockerfile) = &opts.dockerfile {
        for image in crate::pipeline::base_images(dockerfile, &opts.build_args, &opts.platform)? {
            if !images.contains(&image) {
                images.push(image);
            }
        }
    }
    let registry = Registry::new(opts.registry.clone());
    let cache = BlobCache::new(&opts.cache_dir);
    let mut warmed = Vec::new();
    for image in &images {
        let pulled = registry
            .warm(image, &opts.platform, &cache)
            .await
            .with_context(|| format!("caching {image} in {}", opts.cache_dir.display()))?;
        tracing::info!(image = %pulled.reference, digest = %pulled.manifest_digest, "cached");
        warmed.push(format!("{}@{}", pulled.reference, pulled.manifest_digest));
    }
    Ok(warmed)
}
