//! The forked side of a RUN, between fork and exec: namespaces, mounts, the root, identity.
//!
//! With CAP_SYS_ADMIN (root, or root of a rootless user namespace) the child unshares mount,
//! UTS, IPC and PID namespaces (and the network with `--network=none`) and forks once more:
//! the grandchild is pid 1 of the new PID namespace and becomes the command, so when it exits
//! the kernel kills every process it left behind. It enters the stage root as a container
//! runtime would (`confine`: its own /dev, /proc, read-only /sys, `pivot_root`); in place it
//! gets a fresh /proc and kiln's files covered. Without CAP_SYS_ADMIN the same shape runs
//! without namespaces, in a plain chroot. Last come the process's rights (`confine`:
//! capabilities, seccomp, identity). Either way the middle process is a subreaper that waits, kills what
//! the command left and passes the exit status or signal on (`reaper`). Everything here is prepared before the fork
//! (`ChildConfig` holds only C strings and integers): no allocation after it.

use std::ffi::{CStr, CString};

use super::{confine, reaper};
use rustix::mount::{
    mount, mount_bind, mount_change, mount_remount, MountFlags, MountPropagationFlags,
};

/// Hostname RUN sees, as BuildKit's.
pub const HOSTNAME: &CStr = c"buildkitsandbox";

/// What a user mount brings in.
#[derive(Debug)]
pub enum ChildSource {
    /// bind this host path (resolved inside its root by the parent)
    Bind(CString),
    /// a fresh tmpfs with these mount options
    Tmpfs(CString),
}

#[derive(Debug)]
pub struct ChildMount {
    pub source: ChildSource,
    /// the host path of the target, resolved inside the stage root by the parent
    pub target: CString,
    pub readonly: bool,
}

/// Everything the child needs, prepared before the fork.
#[derive(Debug)]
pub struct ChildConfig {
    pub root: CString,
    pub cwd: CString,
    pub namespaces: bool,
    /// with namespaces, a root of its own (`pivot_root`, minimal /dev); false in place
    pub confined: bool,
    /// overlay mount data: the command sees an overlay laid over `root` (`overlay`)
    pub overlay: Option<CString>,
    pub new_net: bool,
    pub proc_: bool,
    pub dev: bool,
    pub sys: bool,
    pub resolv: Option<CString>,
    pub hosts: Option<CString>,
    pub mounts: Vec<ChildMount>,
    /// host paths covered with an empty read-only tmpfs (in-place mode: kiln's files)
    pub hide: Vec<CString>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// seccomp filters installed right before exec (`seccomp`)
    pub seccomp: Option<std::sync::Arc<Vec<seccompiler::BpfProgram>>>,
    /// write end of the pipe the middle process reports how many processes it killed on
    pub report: i32,
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Runs in the forked child. Returns in the process that is to exec the command.
pub fn setup(c: &ChildConfig) -> std::io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: plain syscalls on integers in the single-threaded forked child
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if c.namespaces {
        use rustix::thread::{unshare_unsafe, UnshareFlags};
        let mut flags = UnshareFlags::NEWNS
            | UnshareFlags::NEWUTS
            | UnshareFlags::NEWIPC
            | UnshareFlags::NEWPID;
        if c.new_net {
            flags |= UnshareFlags::NEWNET;
        }
        #[allow(unsafe_code)]
        // SAFETY: this runs in the single-threaded child between fork and exec; the new
        // namespaces affect only this process and its children.
        unsafe { unshare_unsafe(flags) }?;
        mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )?;
    }
    // this process stays between kiln and the command: what the command leaves running is
    // reparented to it and killed when the command ends
    let wait_set = reaper::wait_set();
    let old_mask = reaper::block(&wait_set)?;
    let subreaper = reaper::become_subreaper()?;
    let proc_ = reaper::open_proc();
    #[allow(unsafe_code)]
    // SAFETY: fork in the single-threaded child; each side only makes syscalls afterwards
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_err());
    }
    if pid > 0 {
        let proc_fd = proc_.as_ref().map_or(-1, std::os::fd::AsRawFd::as_raw_fd);
        reaper::wait_and_pass_on(pid, c.report, proc_fd, subreaper);
    }
    drop(proc_);
    if !subreaper {
        reaper::lead_group();
    }
    reaper::restore(&old_mask);
    #[allow(unsafe_code)]
    // SAFETY: a plain prctl in the forked grandchild
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
    if c.namespaces {
        enter_namespaces(c)?;
    } else if c.root.as_bytes() != b"/" {
        rustix::process::chroot(c.root.as_c_str())?;
    }
    // in place without namespaces the root is already `/`: chroot("/") changes nothing and
    // would need CAP_SYS_CHROOT, which a container that drops it (gVisor's manifest) lacks
    rustix::process::chdir(c.cwd.as_c_str())?;
    let keep = match c.confined {
        true => confine::DEFAULT_CAPS,
        false => confine::UNCONFINED_CAPS,
    };
    confine::drop_rights(keep, c.seccomp.as_ref().map(|p| p.as_slice()), || {
        set_identity(c)
    })
}

/// pid 1 of the new PID namespace: hostname, the root's mounts, user mounts, the root.
fn enter_namespaces(c: &ChildConfig) -> std::io::Result<()> {
    #[allow(unsafe_code)]
    // SAFETY: sethostname with a static C string
    unsafe {
        libc::sethostname(HOSTNAME.as_ptr(), HOSTNAME.to_bytes().len());
    }
    if c.confined {
        // over the root's own path, so the mount targets the parent resolved stay valid
        confine::root_mount(c.root.as_c_str(), c.overlay.as_deref())?;
        if c.proc_ {
            confine::proc_()?;
        }
        if c.dev {
            confine::dev()?;
        }
        if c.sys {
            confine::sys()?;
        }
        confine::mask()?;
        network_and_user_mounts(c)?;
        return confine::pivot();
    }
    rustix::process::chdir(c.root.as_c_str())?;
    if c.proc_ {
        confine::proc_()?;
    }
    network_and_user_mounts(c)?;
    for path in &c.hide {
        // kiln's files (in-place mode): covered once the mounts from them are made
        mount(
            c"tmpfs",
            path.as_c_str(),
            c"tmpfs",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            c"size=4k,mode=700",
        )?;
    }
    rustix::process::chroot(c".")?;
    Ok(())
}

/// resolv.conf, hosts and every `RUN --mount`, on targets the parent resolved.
fn network_and_user_mounts(c: &ChildConfig) -> std::io::Result<()> {
    if let Some(src) = &c.resolv {
        mount_bind(src.as_c_str(), c"etc/resolv.conf")?;
    }
    if let Some(src) = &c.hosts {
        mount_bind(src.as_c_str(), c"etc/hosts")?;
    }
    for m in &c.mounts {
        match &m.source {
            ChildSource::Bind(src) => {
                mount_bind(src.as_c_str(), m.target.as_c_str())?;
                if m.readonly {
                    mount_remount(
                        m.target.as_c_str(),
                        MountFlags::BIND | MountFlags::RDONLY,
                        c"",
                    )?;
                }
            }
            ChildSource::Tmpfs(opts) => mount(
                c"tmpfs",
                m.target.as_c_str(),
                c"tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                opts.as_c_str(),
            )?,
        }
    }
    Ok(())
}

fn set_identity(c: &ChildConfig) -> std::io::Result<()> {
    if rustix::process::geteuid().is_root() {
        set_groups(&c.groups)?;
    }
    if rustix::process::getegid().as_raw() != c.gid {
        rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(c.gid))?;
    }
    if rustix::process::geteuid().as_raw() != c.uid {
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(c.uid))?;
    }
    Ok(())
}

fn set_groups(groups: &[u32]) -> std::io::Result<()> {
    // Gid is a transparent u32 newtype; a fixed buffer keeps the child allocation-free
    let mut buf = [rustix::process::Gid::ROOT; 64];
    let n = groups.len().min(buf.len());
    for (slot, g) in buf.iter_mut().zip(groups) {
        *slot = rustix::process::Gid::from_raw(*g);
    }
    match rustix::thread::set_thread_groups(&buf[..n]) {
        Ok(()) => Ok(()),
        // a user namespace with setgroups denied (rootless): the groups stay as they are
        Err(rustix::io::Errno::PERM) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
