//! `COPY/ADD --chown=<name>` keyed without the stage's root: the name is resolved in the
//! stage's `/etc/passwd` and `/etc/group`, read out of its layers from the top layer down
//! (`layer::scan::Lookup`, whiteouts and opaque directories honoured) into a scratch root that
//! holds just those two files. The guest resolves the name there exactly as it does when the
//! COPY runs (`resolve-user`, the same errors), and the key carries the uid:gid it gave.
//! A symlinked or otherwise odd `/etc/passwd` is answered "needs a root": the stage's root is
//! filled and the name resolved in it, as before.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::Build;
use crate::layer::scan::{Looked, Lookup};
use crate::layer::LayerBlob;
use crate::rootfs::Root;
use crate::sandbox::LazySandbox;
use crate::task::blocking;

/// The files a `--chown` name is resolved in, relative to the root.
const FILES: [&str; 2] = ["etc/passwd", "etc/group"];
/// How much of each the guest reads (`guest/src/user.rs`).
const MAX_DB_BYTES: u64 = 8 << 20;

/// Whether a `--chown` value names a user or group (not only numbers): it needs the stage's
/// `/etc/passwd` or `/etc/group`.
pub(super) fn by_name(spec: &str) -> bool {
    !spec
        .split(':')
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

/// A scratch root with only the stage's user databases; removed when dropped.
pub(super) struct UsersRoot {
    pub root: Arc<Root>,
    dir: PathBuf,
}

impl Drop for UsersRoot {
    fn drop(&mut self) {
        // a directory kiln made under its own work dir, holding two files
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads `/etc/passwd` and `/etc/group` out of `layers` (bottom first), top layer down,
/// each layer's bytes brought into the blob store by `fetch` only when it is reached. `Err`
/// with the reason when only a root can answer.
pub(super) async fn read_databases<F, Fut>(
    layers: &[LayerBlob],
    fetch: F,
) -> Result<std::result::Result<Vec<Looked>, String>>
where
    F: Fn(LayerBlob) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut lookup = Lookup::new(&FILES, MAX_DB_BYTES);
    for layer in layers.iter().rev() {
        if lookup.done() {
            break;
        }
        fetch(layer.clone()).await?;
        let path = layer.path.clone();
        let digest = layer.digest.clone();
        lookup = blocking(move || -> Result<Lookup> {
            let file =
                std::fs::File::open(&path).with_context(|| format!("opening layer {digest}"))?;
            lookup
                .layer(file)
                .with_context(|| format!("reading layer {digest}"))?;
            Ok(lookup)
        })
        .await??;
    }
    let found = lookup.finish();
    if let Some(why) = found.iter().find_map(|f| match f {
        Looked::NeedsRoot(why) => Some(why.clone()),
        _ => None,
    }) {
        return Ok(Err(why));
    }
    Ok(Ok(found))
}

/// A scratch root under `work` holding the databases `read_databases` found.
pub(super) fn users_root(work: &std::path::Path, found: &[Looked]) -> Result<UsersRoot> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = work.join(format!("users-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let root = Root::create(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let users = UsersRoot {
        root: Arc::new(root),
        dir,
    };
    users.root.mkdir("etc", 0o755).context("creating etc")?;
    for (name, looked) in FILES.iter().zip(found) {
        if let Looked::File(bytes) = looked {
            use std::io::Write as _;
            let mut file = users
                .root
                .create_file(name, 0o644)
                .with_context(|| format!("writing {name}"))?;
            file.write_all(bytes)
                .with_context(|| format!("writing {name}"))?;
        }
    }
    Ok(users)
}

/// The owner `--chown=<spec>` gives in `root`, as `uid:gid`, resolved by the guest: a user
/// alone gives gid = uid (Docker's rule, as the guest's COPY applies it).
pub(super) async fn owner(
    sandbox: &Arc<LazySandbox>,
    spec: &str,
    root: &Arc<Root>,
) -> Result<String> {
    let (sandbox, user, root) = (sandbox.clone(), spec.to_string(), root.clone());
    let id =
        blocking(move || -> Result<_> { Ok(sandbox.get()?.resolve_user(&user, &root)?) }).await??;
    let gid = if spec.contains(':') { id.gid } else { id.uid };
    Ok(format!("{}:{gid}", id.uid))
}

/// Where a `--chown=<name>` of the stage is resolved for the key, and the owner it gives:
/// the stage's own root when it is filled (or only a root can answer), else a scratch root
/// with the databases read from its layers.
pub(super) async fn for_key(
    build: &Build,
    st: &mut super::state::StageState,
    spec: &str,
) -> Result<(Option<UsersRoot>, String)> {
    let mut users = None;
    if !st.pending.is_empty() {
        let fetch = |layer: LayerBlob| async move {
            super::layer_stream::fetch_layers(build, std::slice::from_ref(&layer)).await
        };
        match read_databases(&st.layers, fetch).await? {
            Ok(found) => users = Some(users_root(&build.work, &found)?),
            Err(why) => {
                tracing::debug!("--chown={spec}: {why}: the stage's root is needed");
                super::state::materialize(build, st).await?;
            }
        }
    }
    let root = users
        .as_ref()
        .map_or_else(|| st.root.clone(), |u| u.root.clone());
    let owner = owner(&build.sandbox, spec, &root).await?;
    Ok((users, owner))
}
