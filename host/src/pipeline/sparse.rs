//! A COPY, ADD or WORKDIR that runs while its stage's root still lacks layers (a rebuild in a
//! fresh kiln dir where the steps before it hit the cache), with no RUN after it in the stage:
//! instead of filling the whole root, the step writes into a scratch root holding only what
//! it can reach of the stage's filesystem. That is each destination and everything under it,
//! the directories on the way there, `/etc/passwd` and `/etc/group` (a `--chown` name, the
//! USER of a WORKDIR), and where any symlink on the way or inside leads, followed until
//! nothing new is reached. The layers are read in order with `extract::Within`, so those
//! paths look exactly as in the full root, and the step's layer is the one the full root
//! would give. It joins the stage's pending layers: a later reader of the stage's files fills
//! the root with it on top.
//!
//! Anything this cannot follow (a `..` in a destination or a link, a hardlink to a path not
//! kept, too many rounds) answers "fill the root" instead, as does a destination of `/`
//! (everything is reachable from there).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::layering::{Snapshots, Touched};
use super::state::{config_str_of, StageState};
use super::Build;
use crate::image;
use crate::layer::extract::{extract_layer_within, Within};
use crate::layer::LayerBlob;
use crate::rootfs::{clean_rel, join_bytes, Kind, Root};
use crate::task::blocking;

/// Rounds of "extract, then follow the links reached": each round adds what links led to.
const ROUNDS: usize = 6;
/// Symlinks followed on the way to one path (Linux's own limit).
const MAX_HOPS: usize = 40;
/// Read whenever a step may resolve a user name.
const USERS: [&str; 2] = ["etc/passwd", "etc/group"];

/// A scratch root holding part of a stage's filesystem; removed when dropped.
pub(super) struct Sparse {
    pub root: Arc<Root>,
    dir: PathBuf,
}

impl Drop for Sparse {
    fn drop(&mut self) {
        // a directory kiln made under its own work dir, holding a few paths of the stage
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a step may write into a partial root: the stage's root lacks layers and nothing
/// after the step in this stage needs all of them (a RUN would fill the root anyway, so
/// reading the layers twice would only cost).
pub(super) fn applies(build: &Build, st: &StageState, later_run: bool) -> bool {
    !st.pending.is_empty() && !later_run && !build.opts.layers.single_snapshot
}

/// The destinations (as the step names them: absolute, or relative to the working
/// directory) made absolute as the guest makes them.
pub(super) fn absolute(config: &serde_json::Value, dests: &[String]) -> Vec<String> {
    let wd = config_str_of(config, "WorkingDir").unwrap_or_default();
    dests
        .iter()
        .map(|d| match d.starts_with('/') {
            true => d.clone(),
            false => format!("{wd}/{d}"),
        })
        .collect()
}

/// A scratch root with what a step writing to `dests` (absolute) can reach, or `None` when
/// the step must run in the full root (why is logged).
pub(super) async fn prepare(
    build: &Build,
    st: &StageState,
    dests: &[String],
) -> Result<Option<Sparse>> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if let Some(d) = dests.iter().find(|d| d.split('/').any(|c| c == "..")) {
        tracing::debug!(dest = %d, "the destination climbs with `..`: filling the root");
        return Ok(None);
    }
    let mut paths: Vec<Vec<u8>> = USERS.iter().map(|p| p.as_bytes().to_vec()).collect();
    paths.extend(dests.iter().map(|d| clean_rel(d.as_bytes())));
    if paths.iter().any(Vec::is_empty) {
        // `/` reaches everything: the scratch root would be the whole root, made twice
        tracing::debug!("the step writes to /: filling the root");
        return Ok(None);
    }
    super::layer_stream::fetch_layers(build, &st.pending).await?;
    let started = std::time::Instant::now();
    for round in 0..ROUNDS {
        let within = Within::new(&paths);
        let dir = build
            .work
            .join(format!("sparse-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let root = Root::create(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let sparse = Sparse {
            root: Arc::new(root),
            dir,
        };
        let (root, layers) = (sparse.root.clone(), st.pending.clone());
        let reached = blocking(move || -> Result<Result<Vec<Vec<u8>>, String>> {
            if let Err(why) = extract_within(&root, &layers, &within) {
                return Ok(Err(why));
            }
            Ok(reached(&root, &within))
        })
        .await??;
        match reached {
            Ok(more) if more.is_empty() => {
                tracing::info!(
                    paths = paths.len(),
                    rounds = round + 1,
                    layers = st.pending.len(),
                    took = %crate::progress::human(started.elapsed()),
                    "{}: the step writes into the paths it reaches, not a whole root",
                    st.stage_name
                );
                return Ok(Some(sparse));
            }
            Ok(more) => paths.extend(more),
            Err(why) => {
                tracing::debug!(%why, "the step's paths cannot be followed apart: filling the root");
                return Ok(None);
            }
        }
    }
    tracing::debug!("the step's links lead on and on: filling the root");
    Ok(None)
}

/// The layers, bottom first, applied to `root` as far as `within` keeps them.
fn extract_within(root: &Root, layers: &[LayerBlob], within: &Within) -> Result<(), String> {
    for layer in layers {
        let file = std::fs::File::open(&layer.path)
            .map_err(|e| format!("opening layer {}: {e}", layer.digest))?;
        extract_layer_within(root, file, &layer.digest.0, &layer.diff_id.0, Some(within))
            .map_err(|e| format!("layer {}: {e}", layer.digest))?;
        tracing::debug!(layer = %layer.digest, "layer read for the step's paths");
    }
    Ok(())
}

/// Paths a step may reach in `root` that `within` does not cover: where the symlinks on the
/// way to each kept path lead, and those of the symlinks under it. Empty when closed.
fn reached(root: &Root, within: &Within) -> Result<Vec<Vec<u8>>, String> {
    let mut more = Vec::new();
    for path in within.paths() {
        let end = follow(root, path, within, &mut more)?;
        if let Some(end) = end {
            links_under(root, &end, within, &mut more)?;
        }
    }
    more.sort();
    more.dedup();
    Ok(more)
}

/// Walks `path` from the root as the root resolves it; every symlink's destination not
/// covered goes to `more`. Returns the path reached when it exists in `root`.
fn follow(
    root: &Root,
    path: &[u8],
    within: &Within,
    more: &mut Vec<Vec<u8>>,
) -> Result<Option<Vec<u8>>, String> {
    let mut rest: Vec<Vec<u8>> = split(path);
    rest.reverse();
    let mut at: Vec<u8> = Vec::new();
    let mut hops = 0;
    while let Some(name) = rest.pop() {
        let next = join_bytes(&at, &name);
        let Ok(st) = root.lstat(&next) else {
            // not there: the step creates it (and what is below it)
            return Ok(None);
        };
        match st.kind {
            Kind::Dir => at = next,
            Kind::Symlink => {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(format!("/{}: too many links", next.escape_ascii()));
                }
                let target = root
                    .readlink(&next)
                    .map_err(|e| format!("reading link /{}: {e}", next.escape_ascii()))?;
                let target = target.as_encoded_bytes();
                let mut remaining: Vec<Vec<u8>> = rest.iter().rev().cloned().collect();
                let lead = lead_to(&at, target)
                    .ok_or_else(|| format!("/{}: a link through `..`", next.escape_ascii()))?;
                let mut full = lead.clone();
                for r in &remaining {
                    full = join_bytes(&full, r);
                }
                if !within.covers(&full) {
                    more.push(full);
                }
                // resolve on from the root along the link's target
                remaining.splice(0..0, split(&lead));
                rest = remaining.into_iter().rev().collect();
                at = Vec::new();
            }
            _ => return Ok(Some(next)),
        }
    }
    Ok(Some(at))
}

/// Where a link in the resolved directory `dir` with `target` leads, lexically: `..` is
/// followed only at the target's start (where `dir` has no links left); `None` for a `..`
/// after a name, which could be a link.
fn lead_to(dir: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = match target.starts_with(b"/") {
        true => Vec::new(),
        false => split(dir),
    };
    let mut named = false;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." if named => return None,
            b".." => {
                out.pop();
            }
            c => {
                named = true;
                out.push(c.to_vec());
            }
        }
    }
    Some(out.join(&b'/'))
}

/// The symlinks inside the directory `dir` (resolved, in `root`), each one's destination not
/// covered pushed to `more`.
fn links_under(
    root: &Root,
    dir: &[u8],
    within: &Within,
    more: &mut Vec<Vec<u8>>,
) -> Result<(), String> {
    let mut stack = vec![dir.to_vec()];
    while let Some(d) = stack.pop() {
        let Ok(names) = root.read_dir(&d) else {
            continue;
        };
        for name in names {
            let p = join_bytes(&d, name.as_encoded_bytes());
            let Ok(st) = root.lstat(&p) else { continue };
            match st.kind {
                Kind::Dir => stack.push(p),
                Kind::Symlink => {
                    let target = root
                        .readlink(&p)
                        .map_err(|e| format!("reading link /{}: {e}", p.escape_ascii()))?;
                    let lead = lead_to(&d, target.as_encoded_bytes())
                        .ok_or_else(|| format!("/{}: a link through `..`", p.escape_ascii()))?;
                    if !within.covers(&lead) {
                        more.push(lead);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn split(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

/// Snapshots a step that ran in `sparse` into a layer (against what the scratch root held
/// before it, `before`), which joins the image and the layers the stage's root still lacks.
pub(super) async fn snapshot(
    build: &Build,
    st: &mut StageState,
    sparse: &Sparse,
    before: Snapshots,
    created_by: &str,
    touched: Touched,
) -> Result<Option<LayerBlob>> {
    let root = sparse.root.clone();
    let store = build.store.clone();
    let mut format = super::layering::layer_format(
        &build.opts.layers,
        st.family.layer_gzip(),
        build.mtime_clamp,
    );
    format.shown_as = st.output.as_ref().map(|o| format!("layer {}", o.label()));
    let mut snapshots = before;
    let blob = blocking(move || snapshots.after_step(&root, &touched, &store, &format)).await??;
    match &blob {
        Some(blob) => {
            st.layers.push(blob.clone());
            st.pending.push(blob.clone());
            image::add_history(&mut st.config, &build.created, created_by, false);
        }
        None => image::add_history(&mut st.config, &build.created, created_by, true),
    }
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_lead_lexically_from_their_directory() {
        assert_eq!(lead_to(b"usr/lib", b"../share/x").unwrap(), b"usr/share/x");
        assert_eq!(lead_to(b"usr/lib", b"/opt/./y/").unwrap(), b"opt/y");
        assert_eq!(lead_to(b"", b"../../etc").unwrap(), b"etc");
        assert_eq!(lead_to(b"a", b"b/../c"), None);
    }

    fn root() -> (tempfile::TempDir, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::create(&tmp.path().join("r")).unwrap();
        (tmp, root)
    }

    #[test]
    fn a_symlink_on_the_way_leads_to_its_target() {
        let (_tmp, root) = root();
        root.mkdir_all("srv/real", 0o755).unwrap();
        root.symlink(std::ffi::OsStr::new("/srv/real"), "app")
            .unwrap();
        let within = Within::new(&["app/sub/file", "etc/passwd"]);
        assert_eq!(
            reached(&root, &within).unwrap(),
            vec![b"srv/real/sub/file".to_vec()]
        );
        let closed = Within::new(&["app/sub/file", "srv/real/sub/file"]);
        assert!(reached(&root, &closed).unwrap().is_empty());
    }

    #[test]
    fn links_inside_a_destination_are_followed() {
        let (_tmp, root) = root();
        root.mkdir_all("app/lib", 0o755).unwrap();
        root.symlink(std::ffi::OsStr::new("../../usr/lib/x"), "app/lib/x")
            .unwrap();
        let within = Within::new(&["app"]);
        assert_eq!(
            reached(&root, &within).unwrap(),
            vec![b"usr/lib/x".to_vec()]
        );
    }

    #[test]
    fn a_link_loop_is_given_up() {
        let (_tmp, root) = root();
        root.symlink(std::ffi::OsStr::new("b"), "a").unwrap();
        root.symlink(std::ffi::OsStr::new("/a"), "b").unwrap();
        let err = reached(&root, &Within::new(&["a/f"])).unwrap_err();
        assert!(err.contains("too many links"), "{err}");
    }

    #[test]
    fn a_link_climbing_after_a_name_is_not_followed() {
        let (_tmp, root) = root();
        root.mkdir_all("a", 0o755).unwrap();
        root.symlink(std::ffi::OsStr::new("b/../c"), "a/l").unwrap();
        assert!(reached(&root, &Within::new(&["a/l/f"])).is_err());
    }
}
