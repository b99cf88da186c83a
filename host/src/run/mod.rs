//! RUN: executes a command natively, chrooted into the stage root.
//!
//! As root the command gets a private mount namespace with /proc, /dev, /sys and kiln-owned
//! copies of /etc/resolv.conf and /etc/hosts mounted for it; the mounts vanish with the
//! namespace, and mountpoints kiln had to create are removed afterwards, so none of it reaches
//! the layer. Where the kernel refuses a mount namespace (an unprivileged pod), it falls back
//! to a plain chroot. The user, groups and working directory are switched inside the chroot.
//! Which instructions run and how their env is built is the orchestrator's business.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::rootfs::{Kind, Meta, Root};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("command exited with code {code}")]
    NonZeroExit { code: i32 },
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("preparing the stage root for RUN: {0}")]
    Prepare(#[from] crate::rootfs::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RUN needs a command")]
    Empty,
}

pub type Result<T> = std::result::Result<T, Error>;

/// One command to run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    /// working directory inside the root
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// What is mounted where inside the root for the command.
struct Mounts {
    proc_: bool,
    dev: bool,
    sys: bool,
    resolv: Option<CString>,
    hosts: Option<CString>,
}

/// Paths kiln created in the root so it could mount on them, removed afterwards.
struct Scaffold<'a> {
    root: &'a Root,
    created: Vec<(String, Option<(i64, u32)>)>,
}

impl Scaffold<'_> {
    /// Makes `rel` exist as `kind` (a dir or an empty file) if its parent is a real directory
    /// and nothing else is there; returns whether the path is now a usable mountpoint.
    fn ensure(&mut self, rel: &str, kind: Kind) -> Result<bool> {
        let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
        let parent_stat = match self.root.lstat(parent) {
            Ok(st) if st.kind == Kind::Dir => st,
            _ => return Ok(false),
        };
        match self.root.lstat(rel) {
            Ok(st) => Ok(st.kind == kind),
            Err(crate::rootfs::Error::NotFound { .. }) => {
                match kind {
                    Kind::Dir => self.root.mkdir(rel, 0o755)?,
                    _ => drop(self.root.create_file(rel, 0o644)?),
                }
                self.created
                    .push((rel.to_string(), Some(parent_stat.mtime)));
                Ok(true)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn undo(self) -> Result<()> {
        for (rel, parent_mtime) in self.created.into_iter().rev() {
            self.root.remove(&rel, true)?;
            let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
            if let Some(mtime) = parent_mtime {
                self.root.set_meta(
                    parent,
                    &Meta {
                        mtime: Some(mtime),
                        ..Meta::default()
                    },
                )?;
            }
        }
        Ok(())
    }
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| Error::Io {
        path: p.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })
}

/// Writes kiln's own resolv.conf and hosts for RUN into `dir`.
pub fn network_files(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let resolv = dir.join("resolv.conf");
    let hosts = dir.join("hosts");
    let resolv_text = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    std::fs::write(&resolv, resolv_text).map_err(|source| Error::Io {
        path: resolv.clone(),
        source,
    })?;
    let hosts_text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    std::fs::write(&hosts, hosts_text).map_err(|source| Error::Io {
        path: hosts.clone(),
        source,
    })?;
    Ok((resolv, hosts))
}

/// Runs the command in the root; Ok only for exit code 0.
pub fn run(root: &Root, spec: &RunSpec, resolv_conf: &Path, hosts: &Path) -> Result<()> {
    let program = spec.argv.first().ok_or(Error::Empty)?;
    if root.stat(&spec.cwd).is_err() {
        root.mkdir_all(&spec.cwd, 0o755)?;
    }
    let privileged = rustix::process::geteuid().is_root();
    let mut scaffold = Scaffold {
        root,
        created: Vec::new(),
    };
    let mounts = if privileged {
        Mounts {
            proc_: scaffold.ensure("proc", Kind::Dir)?,
            dev: scaffold.ensure("dev", Kind::Dir)?,
            sys: scaffold.ensure("sys", Kind::Dir)?,
            resolv: if scaffold.ensure("etc/resolv.conf", Kind::File)? {
                Some(cstring(resolv_conf)?)
            } else {
                None
            },
            hosts: if scaffold.ensure("etc/hosts", Kind::File)? {
                Some(cstring(hosts)?)
            } else {
                None
            },
        }
    } else {
        Mounts {
            proc_: false,
            dev: false,
            sys: false,
            resolv: None,
            hosts: None,
        }
    };
    let result = spawn_and_wait(root.path(), spec, program, mounts);
    let undone = scaffold.undo();
    result?;
    undone
}

fn spawn_and_wait(root: &Path, spec: &RunSpec, program: &str, mounts: Mounts) -> Result<()> {
    let root_c = cstring(root)?;
    let cwd_c = cstring(&Path::new("/").join(crate::rootfs::clean(&spec.cwd)))?;
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))))
        .stdin(Stdio::null());
    let (uid, gid, groups) = (spec.uid, spec.gid, spec.groups.clone());
    let child_setup =
        move || -> std::io::Result<()> { enter(&root_c, &cwd_c, &mounts, uid, gid, &groups) };
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec. It only makes raw syscalls
    // through rustix on data prepared before the fork (CStrings, integers) and allocates
    // nothing, so it is async-signal-safe.
    unsafe {
        cmd.pre_exec(child_setup);
    }
    let status = cmd.status().map_err(|source| Error::Spawn {
        program: program.to_string(),
        source,
    })?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(Error::NonZeroExit { code }),
        None => Err(Error::NonZeroExit {
            code: 128 + status.signal().unwrap_or(0),
        }),
    }
}

/// In the child: private mounts, chroot, cwd, identity.
fn enter(
    root: &CString,
    cwd: &CString,
    m: &Mounts,
    uid: u32,
    gid: u32,
    groups: &[u32],
) -> std::io::Result<()> {
    use rustix::mount::{
        mount, mount_bind, mount_bind_recursive, mount_change, MountFlags, MountPropagationFlags,
    };
    use rustix::thread::{unshare_unsafe, UnshareFlags};
    #[allow(unsafe_code)]
    // SAFETY: this runs in the single-threaded child between fork and exec; a new mount
    // namespace affects only this process, which nothing else shares state with.
    let in_ns = unsafe { unshare_unsafe(UnshareFlags::NEWNS) }.is_ok();
    if in_ns {
        mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )?;
        rustix::process::chdir(root.as_c_str())?;
        if m.proc_ {
            mount(
                c"proc",
                c"proc",
                c"proc",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                None::<&std::ffi::CStr>,
            )?;
        }
        if m.dev {
            mount_bind_recursive(c"/dev", c"dev")?;
        }
        if m.sys {
            mount_bind_recursive(c"/sys", c"sys")?;
        }
        if let Some(src) = &m.resolv {
            mount_bind(src.as_c_str(), c"etc/resolv.conf")?;
        }
        if let Some(src) = &m.hosts {
            mount_bind(src.as_c_str(), c"etc/hosts")?;
        }
    }
    rustix::process::chroot(root.as_c_str())?;
    rustix::process::chdir(cwd.as_c_str())?;
    if rustix::process::geteuid().is_root() {
        set_groups(groups)?;
    }
    if rustix::process::getegid().as_raw() != gid {
        rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(gid))?;
    }
    if rustix::process::geteuid().as_raw() != uid {
        rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid))?;
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
        // without CAP_SETGID (rootless) the groups stay as they are
        Err(rustix::io::Errno::PERM) if n == 0 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
