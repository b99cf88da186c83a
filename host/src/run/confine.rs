//! What confines a RUN as a container runtime would, in the forked child before exec: the
//! stage root made its own `nodev` mount, a minimal `/dev` (the six basic nodes bound from the
//! host, a new devpts, a private shm, the fd links), `/sys` read-only, the paths runc masks
//! and makes read-only in `/proc` and `/sys`, `pivot_root` with the old root detached, and
//! last the process's rights: Docker's default capabilities and its seccomp profile
//! (`seccomp`). Allocation-free: everything is C string literals or prepared before the fork.

use std::ffi::CStr;

use rustix::mount::{
    mount, mount_bind, mount_bind_recursive, mount_remount, unmount, MountFlags, UnmountFlags,
};
use rustix::thread::CapabilitySet;

/// Docker's default capability set: what a RUN keeps in every set.
pub const DEFAULT_CAPS: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETFCAP)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::AUDIT_WRITE);

/// Without a mount namespace (plain chroot, in place) RUN cannot be given its own root or
/// `/dev`: it loses chroot(2) (the way out of a plain chroot) and mknod(2) too.
pub const UNCONFINED_CAPS: CapabilitySet = DEFAULT_CAPS
    .difference(CapabilitySet::SYS_CHROOT)
    .difference(CapabilitySet::MKNOD);

/// Host device nodes RUN gets in its `/dev`, bound one by one.
const DEVICES: [(&CStr, &CStr); 6] = [
    (c"/dev/null", c"dev/null"),
    (c"/dev/zero", c"dev/zero"),
    (c"/dev/full", c"dev/full"),
    (c"/dev/random", c"dev/random"),
    (c"/dev/urandom", c"dev/urandom"),
    (c"/dev/tty", c"dev/tty"),
];

/// Links in `/dev`, as runc makes them.
const DEV_LINKS: [(&CStr, &CStr); 5] = [
    (c"/proc/self/fd", c"dev/fd"),
    (c"/proc/self/fd/0", c"dev/stdin"),
    (c"/proc/self/fd/1", c"dev/stdout"),
    (c"/proc/self/fd/2", c"dev/stderr"),
    (c"pts/ptmx", c"dev/ptmx"),
];

/// runc's (and Docker's) masked paths: covered with an empty read-only tmpfs (directories)
/// or /dev/null (files).
const MASKED: [&CStr; 12] = [
    c"proc/acpi",
    c"proc/asound",
    c"proc/interrupts",
    c"proc/kcore",
    c"proc/keys",
    c"proc/latency_stats",
    c"proc/sched_debug",
    c"proc/scsi",
    c"proc/timer_list",
    c"proc/timer_stats",
    c"sys/devices/virtual/powercap",
    c"sys/firmware",
];

/// runc's (and Docker's) read-only paths.
const READ_ONLY: [&CStr; 5] = [
    c"proc/bus",
    c"proc/fs",
    c"proc/irq",
    c"proc/sys",
    c"proc/sysrq-trigger",
];

/// The stage root (cwd afterwards) as a mount of its own, `nodev` so that device nodes made in
/// it (`mknod` of the host's disk) cannot be opened; `overlay` is already one.
pub fn root_mount(root: &CStr, overlay: Option<&CStr>) -> std::io::Result<()> {
    match overlay {
        Some(data) => mount(c"overlay", root, c"overlay", MountFlags::NODEV, data)?,
        None => {
            mount_bind_recursive(root, root)?;
            remount(root, MountFlags::NODEV)?;
        }
    }
    rustix::process::chdir(root)?;
    Ok(())
}

/// A fresh `/proc` of the new PID namespace; where that is refused (a user namespace in a
/// container whose `/proc` is partly covered) the host's, bound.
pub fn proc_() -> std::io::Result<()> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if mount(c"proc", c"proc", c"proc", flags, None::<&CStr>).is_err() {
        mount_bind_recursive(c"/proc", c"proc")?;
    }
    Ok(())
}

/// A tmpfs `/dev` with the basic nodes bound from the host, a new devpts instance, a private
/// shm and the fd links; no other host device.
pub fn dev() -> std::io::Result<()> {
    use rustix::fs::{mkdir, open, symlink, Mode, OFlags};
    mount(
        c"tmpfs",
        c"dev",
        c"tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV,
        c"mode=755,size=65536k",
    )?;
    for (host, inside) in DEVICES {
        drop(open(
            inside,
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )?);
        // a host without the node (a minimal container) leaves an empty file there
        let _ = mount_bind(host, inside);
    }
    for (target, link) in DEV_LINKS {
        symlink(target, link)?;
    }
    mkdir(c"dev/pts", Mode::from_raw_mode(0o755))?;
    mount(
        c"devpts",
        c"dev/pts",
        c"devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        c"newinstance,ptmxmode=0666,mode=0620",
    )?;
    mkdir(c"dev/shm", Mode::from_raw_mode(0o1777))?;
    mount(
        c"shm",
        c"dev/shm",
        c"tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        c"mode=1777,size=65536k",
    )?;
    mkdir(c"dev/mqueue", Mode::from_raw_mode(0o755))?;
    // the new IPC namespace's message queues, where the kernel has them
    let _ = mount(
        c"mqueue",
        c"dev/mqueue",
        c"mqueue",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None::<&CStr>,
    );
    Ok(())
}

/// The host's `/sys`, read-only all the way down.
pub fn sys() -> std::io::Result<()> {
    mount_bind_recursive(c"/sys", c"sys")?;
    if readonly_tree(c"sys").is_err() {
        // before mount_setattr(2) (Linux 5.12): the top is read-only at least
        remount(
            c"sys",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        )?;
    }
    Ok(())
}

/// Masks and read-only paths under `proc` and `sys` (those present).
pub fn mask() -> std::io::Result<()> {
    for path in MASKED {
        let Ok(st) = rustix::fs::lstat(path) else {
            continue;
        };
        if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
            mount(
                c"tmpfs",
                path,
                c"tmpfs",
                MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                c"size=0",
            )?;
        } else {
            mount_bind(c"/dev/null", path)?;
        }
    }
    for path in READ_ONLY {
        if rustix::fs::lstat(path).is_err() {
            continue;
        }
        mount_bind_recursive(path, path)?;
        remount(
            path,
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        )?;
    }
    Ok(())
}

/// `pivot_root` into the cwd (the stage root) and detaches the old root: nothing above the
/// stage root is left in the mount namespace.
pub fn pivot() -> std::io::Result<()> {
    // the old root is stacked on the new one, then lazily unmounted from it
    rustix::process::pivot_root(c".", c".")?;
    unmount(c".", UnmountFlags::DETACH)?;
    rustix::process::chdir(c"/")?;
    Ok(())
}

/// Remounts the bind mount at `path` with `flags` added to the ones it has (a user namespace
/// may not clear the flags of a mount it inherited).
fn remount(path: &CStr, flags: MountFlags) -> std::io::Result<()> {
    use rustix::fs::StatVfsMountFlags as St;
    let have = rustix::fs::statvfs(path)?.f_flag;
    let mut all = flags | MountFlags::BIND;
    for (st, ms) in [
        (St::RDONLY, MountFlags::RDONLY),
        (St::NOSUID, MountFlags::NOSUID),
        (St::NODEV, MountFlags::NODEV),
        (St::NOEXEC, MountFlags::NOEXEC),
        (St::NOATIME, MountFlags::NOATIME),
        (St::NODIRATIME, MountFlags::NODIRATIME),
        (St::RELATIME, MountFlags::RELATIME),
    ] {
        if have.contains(st) {
            all |= ms;
        }
    }
    mount_remount(path, all, c"")?;
    Ok(())
}

/// mount_setattr(2) making the tree at `path` read-only, `nosuid`, `nodev` and `noexec`.
fn readonly_tree(path: &CStr) -> std::io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const RDONLY_NOSUID_NODEV_NOEXEC: u64 = 0x1 | 0x2 | 0x4 | 0x8;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let attr = MountAttr {
        attr_set: RDONLY_NOSUID_NODEV_NOEXEC,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: a C string and a live struct of the size passed
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The process's rights, last before exec: the bounding set cut to `keep`, the seccomp
/// filters (while CAP_SYS_ADMIN still allows them without `no_new_privs`), the command's
/// identity (`identity`), then effective, permitted and inheritable sets cut to `keep` (a
/// non-root user has none left, as under Docker).
pub fn drop_rights(
    keep: CapabilitySet,
    seccomp: Option<&[seccompiler::BpfProgram]>,
    identity: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let before = rustix::thread::capabilities(None)?;
    for bit in 0..64u32 {
        if keep.bits() & (1u64 << bit) == 0 {
            #[allow(unsafe_code)]
            // SAFETY: a plain prctl; EINVAL past the last capability is ignored
            unsafe {
                libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(bit), 0, 0, 0);
            }
        }
    }
    if let Some(programs) = seccomp {
        if before.effective.contains(CapabilitySet::SYS_ADMIN) {
            super::seccomp::install(programs)?;
        }
    }
    identity()?;
    let _ = rustix::thread::clear_ambient_capability_set();
    let now = rustix::thread::capabilities(None)?;
    let kept = now.permitted & keep;
    rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: kept,
            permitted: kept,
            inheritable: kept,
        },
    )?;
    Ok(())
}
