//! The summary a build ends with: the image digest, every destination, the compressed size,
//! where the layers came from (new, cached, the base), the cache's hits and misses with the
//! reason of the first miss, and the time each phase took. The pipeline, the cache and the
//! image pulls count into one process-wide tally while the build runs (`note_*`, `time`);
//! the orchestrator makes the [`Summary`] from it at the end. The renderers draw it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

/// A phase whose time is summed over the build (stages run side by side, so these overlap
/// the steps' own time).
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// pulling images (FROM, COPY --from=<image>)
    Pull,
    /// snapshotting roots into layers (diff, tar, compression)
    Layer,
}

#[derive(Default)]
struct Tally {
    hits: usize,
    misses: usize,
    first_miss: Option<String>,
    cached_layers: HashSet<String>,
    base_layers: HashSet<String>,
    pull: Duration,
    layer: Duration,
}

static TALLY: Mutex<Option<Tally>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Tally) -> R) -> R {
    let mut guard = TALLY.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(Tally::default))
}

/// A cache lookup found its entry.
pub fn note_cache_hit() {
    with(|t| t.hits += 1);
}

/// A cache lookup missed; `why` names the step and the reason.
pub fn note_cache_miss(why: &str) {
    with(|t| {
        t.misses += 1;
        t.first_miss.get_or_insert_with(|| why.to_string());
    });
}

/// A layer (by its compressed digest) was taken from the cache.
pub fn note_cached_layer(digest: &str) {
    with(|t| t.cached_layers.insert(digest.to_string()));
}

/// Layers (by compressed digest) that came with a pulled image.
pub fn note_base_layers<'a>(digests: impl IntoIterator<Item = &'a str>) {
    with(|t| t.base_layers.extend(digests.into_iter().map(String::from)));
}

/// `took` more was spent in `phase`.
pub fn time(phase: Phase, took: Duration) {
    with(|t| match phase {
        Phase::Pull => t.pull += took,
        Phase::Layer => t.layer += took,
    });
}

/// What the build made and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// the manifest digest
    pub digest: String,
    /// pushed references and written files
    pub destinations: Vec<String>,
    /// layers, config and manifest as stored (compressed)
    pub size: u64,
    pub layers_new: usize,
    pub layers_cached: usize,
    pub layers_base: usize,
    pub cache_hits: usize,
    pub cache_misses: usize,
    pub first_miss: Option<String>,
    /// (phase, time), in the order they happened; `total` last
    pub phases: Vec<(&'static str, Duration)>,
}

/// The wall-clock phases the orchestrator timed itself.
pub struct Walls {
    pub context: Duration,
    pub steps: Duration,
    pub push: Duration,
    pub total: Duration,
}

impl Summary {
    /// The summary of an image of `layers` (compressed digests) and `size` bytes, from the
    /// tally and the orchestrator's own timings.
    pub fn of(
        digest: String,
        destinations: Vec<String>,
        size: u64,
        layers: &[&str],
        walls: &Walls,
    ) -> Summary {
        with(|t| {
            let base = layers
                .iter()
                .filter(|d| t.base_layers.contains(**d))
                .count();
            let cached = layers
                .iter()
                .filter(|d| !t.base_layers.contains(**d) && t.cached_layers.contains(**d))
                .count();
            Summary {
                digest,
                destinations,
                size,
                layers_new: layers.len() - base - cached,
                layers_cached: cached,
                layers_base: base,
                cache_hits: t.hits,
                cache_misses: t.misses,
                first_miss: t.first_miss.clone(),
                phases: vec![
                    ("context", walls.context),
                    ("pull", t.pull),
                    ("steps", walls.steps),
                    ("layer", t.layer),
                    ("push", walls.push),
                    ("total", walls.total),
                ],
            }
        })
    }

    /// The summary as lines of text.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("image {}", self.digest)];
        for dest in &self.destinations {
            lines.push(format!("  -> {dest}"));
        }
        lines.push(format!(
            "size {} compressed; layers: {} new, {} cached, {} from the base",
            super::bytes(self.size),
            self.layers_new,
            self.layers_cached,
            self.layers_base
        ));
        let mut cache = format!(
            "cache: {} hit(s), {} miss(es)",
            self.cache_hits, self.cache_misses
        );
        if let Some(first) = &self.first_miss {
            cache.push_str(&format!("; first miss: {first}"));
        }
        lines.push(cache);
        let times: Vec<String> = self
            .phases
            .iter()
            .map(|(name, d)| format!("{name} {}", super::human(*d)))
            .collect();
        lines.push(format!("time: {}", times.join(", ")));
        lines
    }

    /// The summary's fields for the JSON event.
    pub fn fields(&self) -> Value {
        let seconds: serde_json::Map<String, Value> = self
            .phases
            .iter()
            .map(|(name, d)| (name.to_string(), json!(super::seconds(*d))))
            .collect();
        json!({
            "digest": self.digest,
            "destinations": self.destinations,
            "size": self.size,
            "layers": {
                "new": self.layers_new,
                "cached": self.layers_cached,
                "base": self.layers_base,
            },
            "cache": {
                "hits": self.cache_hits,
                "misses": self.cache_misses,
                "first_miss": self.first_miss,
            },
            "seconds": seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_counted_by_where_they_came_from() {
        note_base_layers(["sha256:b1", "sha256:b2"]);
        note_cached_layer("sha256:c1");
        note_cache_hit();
        note_cache_miss("Dockerfile:3: RUN make: no entry");
        note_cache_miss("Dockerfile:4: RUN test: no entry");
        let walls = Walls {
            context: Duration::from_millis(120),
            steps: Duration::from_secs(3),
            push: Duration::from_millis(400),
            total: Duration::from_millis(3600),
        };
        let s = Summary::of(
            "sha256:m".into(),
            vec!["reg/app:1".into()],
            2_500_000,
            &["sha256:b1", "sha256:b2", "sha256:c1", "sha256:n1"],
            &walls,
        );
        assert_eq!((s.layers_base, s.layers_cached, s.layers_new), (2, 1, 1));
        assert_eq!((s.cache_hits, s.cache_misses), (1, 2));
        let lines = s.lines();
        assert_eq!(lines[0], "image sha256:m");
        assert_eq!(lines[1], "  -> reg/app:1");
        assert_eq!(
            lines[2],
            "size 2.5 MB compressed; layers: 1 new, 1 cached, 2 from the base"
        );
        assert_eq!(
            lines[3],
            "cache: 1 hit(s), 2 miss(es); first miss: Dockerfile:3: RUN make: no entry"
        );
        assert!(lines[4].starts_with("time: context 0.1s, pull 0.0s, steps 3.0s"));
        assert!(lines[4].ends_with("push 0.4s, total 3.6s"), "{}", lines[4]);
        assert_eq!(s.fields()["seconds"]["total"], 3.6);
        assert_eq!(s.fields()["layers"]["base"], 2);
    }
}
