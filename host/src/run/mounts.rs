//! Each `RUN --mount` made ready for one command: its source (a cache dir under the kiln
//! dir, a secret written to the build's scratch dir, a stage or context path, a tmpfs) and
//! its target. With namespaces the child mounts them; without, their contents are copied in
//! before and (caches) out after the command. What a `--mount` value means is
//! `mount_spec`'s; the target's mountpoint is `scaffold`'s.

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::child::{ChildMount, ChildSource};
use super::isolation::fd_path;
use super::mount_spec::{MountKind, MountSpec, Sharing};
use super::scaffold::Scaffold;
use super::{cstring, Error, MountRequest, Result, RunEnv};
use crate::rootfs::{Kind, Meta, Root};

/// What one RUN's mounts hold on to until it ends.
#[derive(Default)]
pub struct Prepared {
    pub child_mounts: Vec<ChildMount>,
    /// `type=secret,env=…`: variables for the command only
    pub env: Vec<(String, String)>,
    fds: Vec<OwnedFd>,
    locks: Vec<File>,
    scratch: Vec<PathBuf>,
    /// without namespaces: (target in the root, cache dir) copied back after the command
    copy_back: Vec<(String, PathBuf)>,
    /// without namespaces: existing empty dirs filled for the command, emptied after
    clear: Vec<(String, Option<(i64, u32)>)>,
}

impl Prepared {
    /// After the command: caches copied back (without namespaces), scratch removed.
    pub fn finish(self, root: &Root) -> Result<()> {
        let mut result = Ok(());
        for (target, cache) in &self.copy_back {
            let r = (|| -> Result<()> {
                let fd = root.open_path(target)?;
                let _ = std::fs::remove_dir_all(cache);
                copy_tree(
                    Path::new(fd_path(fd.as_raw_fd()).to_str().unwrap_or("")),
                    cache,
                )
            })();
            if result.is_ok() {
                result = r;
            }
        }
        for (target, mtime) in &self.clear {
            root.remove_children(target)?;
            if let Some(mtime) = mtime {
                root.set_meta(
                    target,
                    &Meta {
                        mtime: Some(*mtime),
                        ..Meta::default()
                    },
                )?;
            }
        }
        for p in &self.scratch {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
        result
    }
}

/// A name in the build's scratch dir no other RUN uses: stages run side by side, each RUN
/// numbering its mounts from 0.
fn scratch_name(what: &str, index: usize) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{what}-{index}-{run}")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The error of a `--mount type=<kind>` naming what was asked (`what`) and why it failed.
fn mount_error(kind: &'static str) -> impl Fn(String, String) -> Error {
    move |what, why| Error::Mount { kind, what, why }
}

fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::Bind => "bind",
        MountKind::Cache => "cache",
        MountKind::Tmpfs => "tmpfs",
        MountKind::Secret => "secret",
    }
}

/// A cache id as a file name: what is not alphanumeric becomes `_`, plus a short hash so
/// that `/a_b` and `/a/b` stay apart.
fn cache_dir_name(id: &str) -> String {
    use sha2::Digest as _;
    let safe: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let hash = hex::encode(&sha2::Sha256::digest(id.as_bytes())[..6]);
    format!("{}-{hash}", safe.trim_matches('_'))
}

/// Where a mount's contents come from.
enum Source {
    /// a host path (a directory or not), resolved now
    Path(PathBuf, bool),
    /// a fresh tmpfs
    Tmpfs,
}

/// Prepares the `index`-th mount of a RUN.
pub fn mount(
    root: &Root,
    req: &MountRequest,
    index: usize,
    cwd: &str,
    env: &RunEnv,
    scaffold: &mut Scaffold<'_>,
    out: &mut Prepared,
) -> Result<()> {
    let spec = &req.spec;
    let source = match spec.kind {
        MountKind::Secret => match secret_source(req, index, env, out)? {
            Some(source) => source,
            None => return Ok(()),
        },
        MountKind::Cache => cache_source(req, index, env, out)?,
        MountKind::Bind => bind_source(req, index, env, out)?,
        MountKind::Tmpfs => Source::Tmpfs,
    };
    let source = match source {
        Source::Path(path, is_dir) => Some((path, is_dir)),
        Source::Tmpfs => None,
    };
    attach(root, spec, cwd, env, scaffold, out, source)
}

/// A secret written to the build's scratch dir (and its `env=` variable); None when the
/// mount is skipped (an optional secret not given) or has no target.
fn secret_source(
    req: &MountRequest,
    index: usize,
    env: &RunEnv,
    out: &mut Prepared,
) -> Result<Option<Source>> {
    let spec = &req.spec;
    let id = spec.id.clone().unwrap_or_default();
    let Some(value) = env.secrets.get(&id) else {
        if spec.required {
            return Err(Error::SecretMissing { id });
        }
        tracing::debug!(id = %id, "secret not given, mount skipped");
        return Ok(None);
    };
    if let Some(var) = &spec.env {
        out.env
            .push((var.clone(), String::from_utf8_lossy(value).into_owned()));
    }
    if spec.target.is_none() {
        return Ok(None);
    }
    std::fs::create_dir_all(&env.scratch).map_err(io(&env.scratch))?;
    let path = env.scratch.join(scratch_name("secret", index));
    let _ = std::fs::remove_file(&path);
    let mode = spec.mode.unwrap_or(0o400);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    out.scratch.push(path.clone());
    f.write_all(value).map_err(io(&path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io(&path))?;
    let _ = std::os::unix::fs::chown(&path, spec.uid.or(Some(0)), spec.gid.or(Some(0)));
    Ok(Some(Source::Path(path, false)))
}

/// A cache directory under the kiln dir (or a fresh one when `sharing=private` finds it in
/// use), seeded from `from=` the first time.
fn cache_source(
    req: &MountRequest,
    index: usize,
    env: &RunEnv,
    out: &mut Prepared,
) -> Result<Source> {
    let spec = &req.spec;
    let bad = mount_error("cache");
    let id = spec.id.clone().unwrap_or_default();
    // cache contents outlive the build: only kiln's user may reach them (a setuid file in
    // one is no one else's way up)
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&env.cache_mounts)
        .map_err(io(&env.cache_mounts))?;
    let mut dir = env.cache_mounts.join(cache_dir_name(&id));
    let lock_path = dir.with_extension("lock");
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    match spec.sharing {
        Sharing::Shared => {}
        Sharing::Locked => rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(&lock_path)(e.into()))?,
        Sharing::Private => {
            if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
            {
                // in use by another build: this RUN gets a fresh one of its own
                dir = env.scratch.join(scratch_name("cache", index));
                out.scratch.push(dir.clone());
            }
        }
    }
    // two RUNs sharing the cache may both find it missing: it is made under the lock (a
    // `locked` or `private` one holds it already)
    let making = !dir.exists() && matches!(spec.sharing, Sharing::Shared);
    if making {
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(&lock_path)(e.into()))?;
    }
    out.locks.push(lock);
    if !dir.exists() {
        let tmp = dir.with_extension("new");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        if let (Some(from), true) = (&req.from, spec.from.is_some()) {
            let src = spec.source.as_deref().unwrap_or("/");
            let fd = from.open_path(src).map_err(|e| {
                bad(
                    format!(
                        "from={},source={src}",
                        spec.from.clone().unwrap_or_default()
                    ),
                    e.to_string(),
                )
            })?;
            copy_tree(
                &PathBuf::from(fd_path(fd.as_raw_fd()).to_string_lossy().into_owned()),
                &tmp,
            )?;
        }
        std::fs::set_permissions(
            &tmp,
            std::fs::Permissions::from_mode(spec.mode.unwrap_or(0o755)),
        )
        .map_err(io(&tmp))?;
        let _ = std::os::unix::fs::chown(&tmp, spec.uid.or(Some(0)), spec.gid.or(Some(0)));
        std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    }
    if let (true, Some(lock)) = (making, out.locks.last()) {
        rustix::fs::flock(lock, rustix::fs::FlockOperation::Unlock)
            .map_err(|e| io(&lock_path)(e.into()))?;
    }
    Ok(Source::Path(dir, true))
}

/// A path of a stage, image or the context; a throwaway copy when the mount is writable.
fn bind_source(
    req: &MountRequest,
    index: usize,
    env: &RunEnv,
    out: &mut Prepared,
) -> Result<Source> {
    let spec = &req.spec;
    let bad = mount_error("bind");
    let from = req
        .from
        .as_ref()
        .ok_or_else(|| bad("from".into(), "no source root".into()))?;
    let src = spec.source.as_deref().unwrap_or("/");
    let what = || match &spec.from {
        Some(f) => format!("from={f},source={src}"),
        None => format!("source={src}"),
    };
    let st = from.stat(src).map_err(|e| bad(what(), e.to_string()))?;
    let fd = from
        .open_path(src)
        .map_err(|e| bad(what(), e.to_string()))?;
    let path = real_path(&fd)?;
    let is_dir = st.kind == Kind::Dir;
    if spec.readonly || !env.namespaces {
        // without namespaces the contents are copied in anyway: writes are discarded
        Ok(Source::Path(path, is_dir))
    } else {
        // writable: a throwaway copy, so writes never reach the stage or context
        let copy = env.scratch.join(scratch_name("bind", index));
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(&env.scratch).map_err(io(&env.scratch))?;
        out.scratch.push(copy.clone());
        if is_dir {
            copy_tree(&path, &copy)?;
        } else {
            std::fs::copy(&path, &copy).map_err(io(&copy))?;
        }
        Ok(Source::Path(copy, is_dir))
    }
}

/// Makes the target and either hands the mount to the child (namespaces) or copies the
/// contents in (and, for a cache, out again afterwards).
fn attach(
    root: &Root,
    spec: &MountSpec,
    cwd: &str,
    env: &RunEnv,
    scaffold: &mut Scaffold<'_>,
    out: &mut Prepared,
    source: Option<(PathBuf, bool)>,
) -> Result<()> {
    let bad = mount_error(kind_name(spec.kind));
    let Some(target) = spec.target_in(cwd) else {
        return Ok(());
    };
    if target.is_empty() {
        return Err(bad(
            format!("target={}", spec.target.clone().unwrap_or_default()),
            "cannot mount over /".into(),
        ));
    }
    let is_dir = source.as_ref().is_none_or(|(_, d)| *d);
    let created = scaffold.ensure_target(&target, is_dir)?;
    if env.namespaces {
        // host paths, both resolved now (inside their roots): the child mounts them in its
        // own namespace, where fds opened here would name mounts of another namespace
        let child_source = match &source {
            Some((path, _)) => ChildSource::Bind(cstring(path)?),
            None => {
                let mut opts = "mode=1777".to_string();
                if let Some(size) = spec.size {
                    opts.push_str(&format!(",size={size}"));
                }
                ChildSource::Tmpfs(cstring(Path::new(&opts))?)
            }
        };
        let target_fd = root.open_path(&target)?;
        out.child_mounts.push(ChildMount {
            source: child_source,
            target: cstring(&real_path(&target_fd)?)?,
            readonly: spec.readonly,
        });
        return Ok(());
    }
    // no mount namespace: the contents are copied in, and out again for a cache
    if !created {
        let empty = !is_dir
            || root
                .read_dir(&target)
                .map(|e| e.is_empty())
                .unwrap_or(false);
        if !empty || !is_dir {
            return Err(bad(
                format!("target=/{target}"),
                "without CAP_SYS_ADMIN kiln copies mount contents in, and the target already \
                 exists in the image with contents of its own"
                    .into(),
            ));
        }
        out.clear
            .push((target.clone(), root.lstat(&target).ok().map(|s| s.mtime)));
    }
    let target_fd = root.open_path(&target)?;
    let target_path = PathBuf::from(
        fd_path(target_fd.as_raw_fd())
            .to_string_lossy()
            .into_owned(),
    );
    match &source {
        Some((path, true)) => copy_tree(path, &target_path)?,
        Some((path, false)) => {
            let data = std::fs::read(path).map_err(io(path))?;
            let meta = std::fs::metadata(path).map_err(io(path))?;
            let mut f = root.create_file(&target, meta.mode() & 0o7777)?;
            f.write_all(&data).map_err(io(path))?;
        }
        None => {}
    }
    if let (MountKind::Cache, Some((dir, _))) = (spec.kind, &source) {
        out.copy_back.push((target, dir.clone()));
    }
    out.fds.push(target_fd);
    Ok(())
}

/// Where an fd resolved inside a root really is on the host.
fn real_path(fd: &OwnedFd) -> Result<PathBuf> {
    let link = PathBuf::from(fd_path(fd.as_raw_fd()).to_string_lossy().into_owned());
    std::fs::read_link(&link).map_err(io(&link))
}

/// Copies a directory tree (never following symlinks; mode and owner kept where allowed)
/// into `dst`, which may exist.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    for entry in std::fs::read_dir(src).map_err(io(src))? {
        let entry = entry.map_err(io(src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = std::fs::symlink_metadata(&from).map_err(io(&from))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            copy_tree(&from, &to)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&from).map_err(io(&from))?;
            let _ = std::fs::remove_file(&to);
            std::os::unix::fs::symlink(&target, &to).map_err(io(&to))?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to).map_err(io(&to))?;
        } else {
            continue;
        }
        if !ft.is_symlink() {
            let _ = std::fs::set_permissions(
                &to,
                std::fs::Permissions::from_mode(meta.mode() & 0o7777),
            );
        }
        let _ = std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cache_ids_become_distinct_file_names() {
        let a = cache_dir_name("/root/.cache");
        assert!(a.starts_with("root__cache-"), "{a}");
        assert_ne!(cache_dir_name("/a_b"), cache_dir_name("/a/b"));
    }
}
