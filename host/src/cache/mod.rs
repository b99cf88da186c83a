//! The layer cache (`--cache`): each cacheable step gets a key computed from exactly what the
//! step can observe; a hit takes the step's layer from the store instead of running it.
//!
//! Keys (see `key.rs`) chain through a *state* digest per stage: the base image's manifest
//! digest, then, after each step that changes the filesystem, a digest of what it produced —
//! the layer's diff_id for RUN (its output is not a function of its inputs), the key itself for
//! COPY/ADD/WORKDIR (theirs is). A RUN that missed but produced the same layer leaves the state
//! as it was, so later steps still hit; metadata steps leave it alone, so an ENV or ARG change
//! reaches only the steps that can observe it.
//!
//! Lookups happen for every cacheable step, also after a miss. Stores are written in the
//! background while the build goes on; `finish` waits for them.

mod key;
mod store;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

pub use key::{digest_of, sources_digest, Key, KeyBuilder};
pub use store::{Entry, Store};

use crate::layer::BlobStore;
use crate::progress::summary::note_cache_miss;
use crate::registry::{Platform, Registry};

/// kaniko's cache flags, validated.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// `--cache`
    pub enabled: bool,
    /// not `--no-cache`: entries are looked up (else only stored)
    pub read: bool,
    /// `--cache-repo`: a repository, or `oci:/path` for a local OCI layout
    pub repo: Option<String>,
    /// `--cache-ttl`
    pub ttl: Duration,
    /// `--cache-copy-layers`
    pub copy_layers: bool,
    /// `--cache-run-layers`
    pub run_layers: bool,
    /// not `--no-push-cache`
    pub push: bool,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions {
            enabled: false,
            read: true,
            repo: None,
            ttl: Duration::from_secs(336 * 3600),
            copy_layers: false,
            run_layers: true,
            push: true,
        }
    }
}

/// Parses a Go duration (`336h`, `1h30m`, `90s`, `1.5h`, `250ms`), as kaniko's `--cache-ttl`.
pub fn parse_go_duration(text: &str) -> Result<Duration> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        bail!("empty duration");
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            bail!("duration {text:?}: expected a number at {rest:?}");
        }
        let value: f64 = rest[..num_len]
            .parse()
            .with_context(|| format!("duration {text:?}: bad number {:?}", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => bail!("duration {text:?}: missing unit (ns, us, ms, s, m, h)"),
            other => bail!("duration {text:?}: unknown unit {other:?}"),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// What the cache holds for a key.
pub enum Found {
    Hit(Entry),
    /// why not
    Miss(String),
}

/// The cache of one build.
pub struct Cache {
    store: Store,
    blobs: BlobStore,
    ttl: Duration,
    pub copy_layers: bool,
    pub run_layers: bool,
    push: bool,
    /// not `--no-cache`
    read: bool,
    pending: Mutex<JoinSet<Result<()>>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Cache {
    /// The cache for these options, or None when `--cache` is off. Without `--cache-repo`
    /// the store is `<first destination's repository>/cache`, as kaniko's default.
    pub fn new(
        opts: &CacheOptions,
        destinations: &[String],
        registry: Arc<Registry>,
        platform: &Platform,
        blobs: &BlobStore,
    ) -> Result<Option<Cache>> {
        if !opts.enabled {
            return Ok(None);
        }
        let repo = match (&opts.repo, destinations.first()) {
            (Some(r), _) => r.clone(),
            (None, Some(d)) => format!("{}/cache", repository_of(d)),
            (None, None) => {
                bail!("--cache needs --cache-repo (a repository or oci:/path) or a --destination")
            }
        };
        let store = match repo.strip_prefix("oci:") {
            Some(path) => Store::Layout(path.into()),
            None => {
                if repo.contains('@') || repo.rsplit('/').next().is_some_and(|l| l.contains(':')) {
                    bail!("--cache-repo {repo}: a repository without tag or digest is expected (kiln tags entries by key)");
                }
                Store::Registry {
                    registry,
                    repo,
                    platform: platform.clone(),
                }
            }
        };
        tracing::info!(store = %store, "layer cache on");
        Ok(Some(Cache {
            store,
            blobs: blobs.clone(),
            ttl: opts.ttl,
            copy_layers: opts.copy_layers,
            run_layers: opts.run_layers,
            push: opts.push,
            read: opts.read,
            pending: Mutex::new(JoinSet::new()),
        }))
    }

    /// Looks `key` up; logs the hit, or the miss and why (one line at the default
    /// verbosity): the first input that differs from the last entry stored for the same step
    /// (`identity`); when that is the state it starts from, `before` names the earlier step
    /// of the stage that ran (else the base changed).
    /// A hit's layer is not downloaded: its path is where its bytes go once a step needs
    /// them (`Registry::fetch_blob`), and a push takes it by digest.
    pub async fn lookup(
        &self,
        key: &Key,
        identity: &str,
        what: &str,
        before: Option<&str>,
    ) -> Result<Option<Entry>> {
        match self.find(key, identity, before).await? {
            Found::Hit(entry) => {
                tracing::info!(key = %short(&key.hex), "cache hit: {what}");
                crate::progress::summary::note_cache_hit();
                Ok(Some(entry))
            }
            Found::Miss(reason) => {
                match self.read {
                    true => tracing::info!(key = %short(&key.hex), "cache miss: {what}: {reason}"),
                    false => {
                        tracing::info!(key = %short(&key.hex), "cache not read (--no-cache): {what}")
                    }
                }
                note_cache_miss(&format!("{what}: {reason}"));
                Ok(None)
            }
        }
    }

    /// What `lookup` would answer, without taking the layer or logging: for `--dry-run`.
    pub async fn probe(&self, key: &Key, identity: &str) -> Result<Found> {
        self.find(key, identity, None).await
    }

    /// The one decision of a lookup (the entry's layer is left where it is).
    async fn find(&self, key: &Key, identity: &str, before: Option<&str>) -> Result<Found> {
        if !self.read {
            return Ok(Found::Miss("--no-cache".to_string()));
        }
        let entry = self.store.peek(&key.hex, &self.blobs).await?;
        if let Some(entry) = entry {
            let age = now().saturating_sub(entry.stored);
            if entry.stored > 0 && age as u64 > self.ttl.as_secs() {
                return Ok(Found::Miss(
                    "the entry is older than --cache-ttl".to_string(),
                ));
            }
            return Ok(Found::Hit(entry));
        }
        let reason = match self.store.peek(&identity_tag(identity), &self.blobs).await {
            Ok(Some(earlier)) => match key.first_difference(&earlier.components) {
                Some("parent") => match before {
                    Some(step) => format!("the {step} before it changed"),
                    None => "the stage's base (or a WORKDIR before it) changed".to_string(),
                },
                Some("sources") => "its sources changed".to_string(),
                Some(component) => format!("its {component} changed"),
                None => "the entry is gone from the store".to_string(),
            },
            Ok(None) => format!("no entry for key {}", short(&key.hex)),
            Err(e) => format!("no earlier entry readable ({e:#})"),
        };
        Ok(Found::Miss(reason))
    }

    /// Stores a step's result in the background (unless `--no-push-cache`).
    pub async fn store(&self, key: &Key, identity: &str, entry: Entry) {
        if !self.push {
            return;
        }
        let store = self.store.clone();
        let blobs = self.blobs.clone();
        let tags = vec![key.hex.clone()];
        let marker = Entry {
            layer: None,
            ..entry.clone()
        };
        let identity = identity_tag(identity);
        self.pending.lock().await.spawn(async move {
            store.put(&tags, &entry, &blobs).await?;
            // the step's latest components, for the next build's miss reason
            store.put(&[identity], &marker, &blobs).await
        });
    }

    /// Waits for the background stores; a failed one is a warning, not a failed build.
    pub async fn finish(&self) {
        let mut pending = self.pending.lock().await;
        while let Some(done) = pending.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("storing a cache entry failed: {e:#}"),
                Err(e) => tracing::warn!("storing a cache entry failed: {e}"),
            }
        }
    }

    /// A new entry stamped now.
    pub fn entry(key: &Key, layer: Option<crate::layer::LayerBlob>, created_by: &str) -> Entry {
        Entry {
            key: key.hex.clone(),
            components: key.components.clone(),
            layer,
            created_by: created_by.to_string(),
            stored: now(),
        }
    }
}

fn identity_tag(identity: &str) -> String {
    format!("step-{identity}")
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// A reference's repository: without tag or digest.
fn repository_of(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rsplit_once('/') {
        Some((host, last)) => match last.split_once(':') {
            Some((repo, _)) => format!("{host}/{repo}"),
            None => name.to_string(),
        },
        None => name.split(':').next().unwrap_or(name).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (text, secs) in [
            ("336h", 336.0 * 3600.0),
            ("1h30m", 5400.0),
            ("90s", 90.0),
            ("1.5h", 5400.0),
            ("250ms", 0.25),
            ("0", 0.0),
        ] {
            let d = parse_go_duration(text).expect(text);
            assert!((d.as_secs_f64() - secs).abs() < 1e-6, "{text}: {d:?}");
        }
        for bad in ["", "10", "5x", "h", "1h-2m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn default_repository_drops_tag_and_digest() {
        assert_eq!(repository_of("reg:5000/team/app:1"), "reg:5000/team/app");
        assert_eq!(repository_of("reg:5000/app@sha256:ab"), "reg:5000/app");
        assert_eq!(repository_of("app:2"), "app");
    }
}
