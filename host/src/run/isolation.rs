//! Which isolation RUN gets (`--isolation`), what the process may do (capabilities, container
//! detection), and the user namespace of rootless mode, entered once for the whole build
//! before any thread exists. What a RUN does inside the chosen mode is `child`'s business.

use std::ffi::CString;
use std::io::Write as _;

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// the stage root is a directory; RUN is chrooted into it (as root)
    Chroot,
    /// a user namespace maps the caller to root, then as chroot
    Rootless,
    /// the stage root is `/` of the container kiln runs in (kaniko's model)
    InPlace,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Chroot => "chroot",
            Isolation::Rootless => "rootless",
            Isolation::InPlace => "in-place",
        }
    }

    /// What the mode needs of the process before it starts a thread: rootless, when kiln is
    /// not root, enters its user namespace (the kernel allows that only single-threaded).
    pub fn enter_process(self) -> Result<(), IsolationError> {
        match self {
            Isolation::Rootless if !rustix::process::geteuid().is_root() => enter_user_namespace(),
            Isolation::Rootless | Isolation::Chroot | Isolation::InPlace => Ok(()),
        }
    }

    pub fn parse(value: &str) -> Option<Isolation> {
        match value {
            "chroot" => Some(Isolation::Chroot),
            "rootless" => Some(Isolation::Rootless),
            "in-place" | "inplace" => Some(Isolation::InPlace),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    #[error("--isolation=chroot needs root; run as root or use --isolation=rootless")]
    ChrootNeedsRoot,
    #[error(
        "--isolation=in-place replaces / of the machine kiln runs on, and no container was \
         detected; run kiln in a container, or pass --force if it is one (gVisor)"
    )]
    NotInContainer,
    #[error("--isolation=rootless: {what}: {source}")]
    UserNamespace {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("--isolation=rootless must be entered before kiln starts threads")]
    Threads,
}

/// Whether kiln runs in a container: Docker's and Podman's marker files, the `container`
/// variable systemd-nspawn and Podman set, or a container runtime named in pid 1's cgroup.
/// gVisor shows none of these: that is what `--force` is for.
pub fn in_container() -> bool {
    if std::path::Path::new("/.dockerenv").exists()
        || std::path::Path::new("/run/.containerenv").exists()
    {
        return true;
    }
    if std::env::var_os("container").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return true;
    }
    let cgroup = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    ["docker", "kubepods", "containerd", "libpod", "lxc", "crio"]
        .iter()
        .any(|w| cgroup.contains(w))
}

/// Whether the process holds `cap` in its effective set (bit numbers as in capability.h).
fn has_cap(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|bits| bits & (1 << cap) != 0)
}

/// CAP_SYS_ADMIN: mount namespaces, mounts, PID and UTS namespaces.
pub fn can_mount() -> bool {
    has_cap(21)
}

/// The one warning of a mode that cannot give RUN a root of its own (in place, or no
/// CAP_SYS_ADMIN): RUN then loses only chroot(2), mknod(2) and what Docker withholds.
pub const NOT_ISOLATED: &str = "RUN is not isolated from kiln: it can read what kiln can read";

/// The mode for `requested` (None: chosen from who kiln runs as), checked against the
/// process; the choice is logged.
pub fn choose(requested: Option<Isolation>, force: bool) -> Result<Isolation, IsolationError> {
    let root = rustix::process::geteuid().is_root();
    let mode = match requested {
        Some(m) => m,
        None if root => Isolation::Chroot,
        None => Isolation::Rootless,
    };
    match mode {
        Isolation::Chroot if !root => return Err(IsolationError::ChrootNeedsRoot),
        Isolation::InPlace if !force && !in_container() => {
            return Err(IsolationError::NotInContainer)
        }
        _ => {}
    }
    let how = if requested.is_some() {
        "as requested"
    } else if root {
        "default as root"
    } else {
        "default when not root"
    };
    tracing::info!(
        isolation = mode.name(),
        "RUN isolation: {} ({how})",
        mode.name()
    );
    if mode == Isolation::InPlace || (mode == Isolation::Chroot && !can_mount()) {
        tracing::warn!("{NOT_ISOLATED}");
    }
    if mode != Isolation::Rootless && root && !can_mount() {
        let place = match mode {
            Isolation::InPlace => "on / itself",
            _ => "in a plain chroot",
        };
        tracing::warn!(
            "no CAP_SYS_ADMIN: RUN runs {place} without /proc, /sys, /dev/shm, its \
             own PID namespace or hostname; /dev gets null, zero, full, random, urandom and \
             tty (where mknod is allowed), resolv.conf and hosts are copied in where the image \
             has none, RUN --mount contents are copied in and out instead of mounted, and \
             daemons a RUN starts are found through /proc and killed when it ends"
        );
    }
    Ok(mode)
}

/// One line of /etc/subuid or /etc/subgid for `name` or `id`: (start, count).
fn sub_range(file: &str, name: &str, id: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.trim().split(':');
        let (who, start, count) = (parts.next()?, parts.next()?, parts.next()?);
        if who != name && who != id.to_string() {
            return None;
        }
        Some((start.parse().ok()?, count.parse().ok()?))
    })
}

fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
        })
        .unwrap_or_default()
}

fn find_tool(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn ns_err(what: &'static str) -> impl FnOnce(std::io::Error) -> IsolationError {
    move |source| IsolationError::UserNamespace { what, source }
}

/// Enters a new user namespace in which the caller is root: with the caller's /etc/subuid and
/// /etc/subgid ranges mapped above it when `newuidmap`/`newgidmap` are there, else the caller
/// alone. Must run before any thread is started (the kernel refuses otherwise).
pub fn enter_user_namespace() -> Result<(), IsolationError> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.trim() == "Threads:\t1" || l == "Threads:\t1")
    {
        return Err(IsolationError::Threads);
    }
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let name = user_name(uid);
    let ranges = (
        sub_range("/etc/subuid", &name, uid),
        sub_range("/etc/subgid", &name, uid),
        find_tool("newuidmap"),
        find_tool("newgidmap"),
    );
    if let (Some(su), Some(sg), Some(newuidmap), Some(newgidmap)) = ranges {
        match mapped_by_helpers(uid, gid, su, sg, &newuidmap, &newgidmap) {
            Ok(()) => {
                tracing::info!(
                    "rootless: uid {uid} is root in a user namespace, with {} subordinate ids",
                    su.1
                );
                return Ok(());
            }
            Err(e) => tracing::warn!(
                "rootless: newuidmap/newgidmap failed ({e}); mapping uid {uid} alone"
            ),
        }
        // the helpers failed before the namespace got maps; it can still map the caller
        return write_own_maps(uid, gid);
    }
    unshare_user().map_err(ns_err("unshare(CLONE_NEWUSER)"))?;
    write_own_maps(uid, gid)?;
    tracing::info!("rootless: uid {uid} is root in a user namespace (single mapping: files owned by other ids cannot be created)");
    Ok(())
}

fn unshare_user() -> std::io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: the process is single-threaded (checked by the caller); a new user namespace
    // changes only this process's view of ids
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }
        .map_err(Into::into)
}

fn write_own_maps(uid: u32, gid: u32) -> Result<(), IsolationError> {
    std::fs::write("/proc/self/setgroups", "deny").map_err(ns_err("writing setgroups"))?;
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1\n"))
        .map_err(ns_err("writing uid_map"))?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1\n"))
        .map_err(ns_err("writing gid_map"))?;
    Ok(())
}

/// A helper child (still outside the namespace) waits until this process has unshared, then
/// runs newuidmap/newgidmap on it. Setuid helpers only work from the parent namespace.
fn mapped_by_helpers(
    uid: u32,
    gid: u32,
    su: (u32, u32),
    sg: (u32, u32),
    newuidmap: &std::path::Path,
    newgidmap: &std::path::Path,
) -> Result<(), IsolationError> {
    let (mut rd, wr) = std::io::pipe().map_err(ns_err("pipe"))?;
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let uid_args = [
        me.to_string(),
        "0".into(),
        uid.to_string(),
        "1".into(),
        "1".into(),
        su.0.to_string(),
        su.1.to_string(),
    ];
    let gid_args = [
        me.to_string(),
        "0".into(),
        gid.to_string(),
        "1".into(),
        "1".into(),
        sg.0.to_string(),
        sg.1.to_string(),
    ];
    #[allow(unsafe_code)]
    // SAFETY: the process has a single thread (checked by the caller), so the child may
    // allocate and spawn freely; it only waits on the pipe, runs the helpers and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ns_err("fork")(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(wr);
        let mut byte = [0u8; 1];
        let _ = std::io::Read::read(&mut rd, &mut byte);
        let ok = std::process::Command::new(newuidmap)
            .args(uid_args)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(newgidmap)
                .args(gid_args)
                .status()
                .is_ok_and(|s| s.success());
        #[allow(unsafe_code)]
        // SAFETY: leaving the forked helper without running the parent's destructors
        unsafe {
            libc::_exit(if ok { 0 } else { 1 })
        };
    }
    drop(rd);
    let unshared = unshare_user();
    let mut wr = wr;
    let _ = wr.write_all(b"x");
    drop(wr);
    let mut status = 0;
    #[allow(unsafe_code)]
    // SAFETY: waiting for the helper forked above
    unsafe {
        libc::waitpid(pid, &mut status, 0)
    };
    unshared.map_err(ns_err("unshare(CLONE_NEWUSER)"))?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(ns_err("newuidmap/newgidmap")(std::io::Error::other(
            "the helper failed",
        )))
    }
}

/// `/proc/self/fd/N` of an fd, for mounting onto or from a path resolved beforehand.
pub(crate) fn fd_path(fd: i32) -> CString {
    CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes() {
        for (s, want) in [
            ("chroot", Some(Isolation::Chroot)),
            ("rootless", Some(Isolation::Rootless)),
            ("in-place", Some(Isolation::InPlace)),
            ("docker", None),
        ] {
            assert_eq!(Isolation::parse(s), want, "{s}");
        }
    }
}
