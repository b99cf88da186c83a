//! The middle process of a RUN, between kiln and the command: a child subreaper
//! (`PR_SET_CHILD_SUBREAPER`), so whatever the command leaves running is reparented to it
//! however it detaches (`setsid`, a double fork, `start-stop-daemon -b`). It waits for the
//! command, then kills and reaps every descendant still there before it passes the command's
//! exit status on; a SIGTERM from kiln (an interrupted build) kills the command first. This
//! is what stops daemons when no PID namespace is possible (no CAP_SYS_ADMIN); with one, the
//! kernel has already killed them when the command, its pid 1, exits. Where the kernel has
//! no subreapers (gVisor releases before 2023 answer EINVAL), the command leads a process
//! group of its own and what is left of that group is killed instead: daemons that leave the
//! group (`setsid`) escape then.
//!
//! Everything here runs after a fork of a multi-threaded process: raw syscalls on stack
//! buffers, no allocation. How the command is set up is `child`'s business; kiln learns how
//! many processes were killed through `report`, a pipe it reads after the wait.

use std::ffi::CStr;
use std::mem::MaybeUninit;

use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::{openat, Mode, OFlags, RawDir, CWD};
use rustix::process::{Pid, Signal};

/// How long the middle process keeps killing what the command left before giving up
/// (a process stuck in uninterruptible sleep), in 10 ms rounds.
const CLEANUP_ROUNDS: u32 = 1000;

/// The signal mask the middle process waits with: the command's end (SIGCHLD) and kiln's
/// request to stop (SIGTERM) are taken with `sigtimedwait` rather than handled.
pub fn wait_set() -> libc::sigset_t {
    #[allow(unsafe_code)]
    // SAFETY: sigset_t is plain data, filled in by sigemptyset/sigaddset
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks `set`, returning the mask before; the command gets that one back (`restore`).
pub fn block(set: &libc::sigset_t) -> std::io::Result<libc::sigset_t> {
    #[allow(unsafe_code)]
    // SAFETY: sigprocmask on valid sigset_t values in the single-threaded forked child
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(libc::SIG_BLOCK, set, &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(old)
    }
}

pub fn restore(old: &libc::sigset_t) {
    #[allow(unsafe_code)]
    // SAFETY: sigprocmask with a mask saved by `block`
    unsafe {
        libc::sigprocmask(libc::SIG_SETMASK, old, std::ptr::null_mut());
    }
}

/// Orphaned descendants are reparented to this process instead of init. Not inherited by
/// children, so the command itself is no subreaper. False where the kernel has no
/// subreapers (EINVAL: gVisor before 2023); then the command gets a process group of its own
/// (`lead_group`) and `wait_and_pass_on` kills that group.
pub fn become_subreaper() -> std::io::Result<bool> {
    #[allow(unsafe_code)]
    // SAFETY: a plain prctl on integers
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if r != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EINVAL) {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(true)
}

/// The command's side of the fallback without a subreaper: it leads a process group, so what
/// it starts can be found and killed as that group.
pub fn lead_group() {
    #[allow(unsafe_code)]
    // SAFETY: setpgid on integers in the forked command process
    unsafe {
        libc::setpgid(0, 0);
    }
}

/// kiln's /proc, opened before the fork: the command may mount another one over `/proc` of
/// this mount namespace (in place), which would show another PID namespace. None where
/// there is no /proc; then only direct children can be reaped.
pub fn open_proc() -> Option<OwnedFd> {
    openat(
        CWD,
        c"/proc",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

/// The middle process after the fork: waits for the command `pid`, kills and reaps what it
/// left (found through `proc_`, an fd from `open_proc` or -1), writes the number killed to
/// `report` (when >= 0) and exits the way the command did. Never returns. Without a
/// subreaper (`subreaper` false) the command's process group is what it left.
pub fn wait_and_pass_on(pid: i32, report: i32, proc_: i32, subreaper: bool) -> ! {
    close_all_but([report, proc_]);
    let set = wait_set();
    let status = loop {
        let reaped = reap_all(pid);
        if let Some(status) = reaped.command {
            break status;
        }
        if reaped.none_left {
            // cannot happen while the command runs; 127 as a shell reports a lost command
            break 127 << 8;
        }
        if wait_signal(&set, None) == Some(libc::SIGTERM) {
            // kiln is stopping: the command goes now, its descendants below
            let _ = rustix::process::kill_process(pid_of(pid), Signal::KILL);
        }
    };
    let killed = match subreaper {
        true => kill_descendants(&set, proc_),
        false => kill_group(pid, proc_),
    };
    if report >= 0 {
        let _ = rustix::io::write(
            #[allow(unsafe_code)]
            // SAFETY: `report` is the write end kiln passed down and kept open above
            unsafe {
                BorrowedFd::borrow_raw(report)
            },
            &killed.to_le_bytes(),
        );
    }
    exit_like(status)
}

/// Closes every fd but stdio and `keep` (-1: none): the spawn pipe kiln waits on must see
/// only the command's exec, and nothing of kiln's stays open in this process.
fn close_all_but(mut keep: [i32; 2]) {
    keep.sort_unstable();
    let mut from = 3i32;
    for fd in keep {
        if fd < from {
            continue;
        }
        if fd > from {
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, i32::MAX);
}

fn close_range(first: i32, last: i32) {
    #[allow(unsafe_code)]
    // SAFETY: close_range on fd numbers; this process uses none of the fds it closes
    unsafe {
        libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32);
    }
}

fn pid_of(raw: i32) -> Pid {
    Pid::from_raw(raw).unwrap_or(Pid::INIT)
}

/// What one round of `waitpid(-1, WNOHANG)` found.
struct Reaped {
    /// the command's wait status, when it was among the reaped
    command: Option<i32>,
    /// no child is left at all
    none_left: bool,
}

/// Reaps every child that has ended: the command `command` (0: none) and orphans
/// reparented here alike.
fn reap_all(command: i32) -> Reaped {
    let mut out = Reaped {
        command: None,
        none_left: false,
    };
    loop {
        let mut status = 0;
        #[allow(unsafe_code)]
        // SAFETY: waitpid with a valid status pointer
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r > 0 {
            if r == command {
                out.command = Some(status);
            }
            continue;
        }
        if r < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error();
            if errno == Some(libc::EINTR) {
                continue;
            }
            out.none_left = errno == Some(libc::ECHILD);
        }
        return out;
    }
}

/// Waits for a signal of `set` (blocked), at most `timeout`; returns it.
fn wait_signal(set: &libc::sigset_t, timeout: Option<libc::timespec>) -> Option<i32> {
    #[allow(unsafe_code)]
    // SAFETY: sigtimedwait/sigwaitinfo with a valid set and optional timespec
    let r = unsafe {
        match &timeout {
            Some(t) => libc::sigtimedwait(set, std::ptr::null_mut(), t),
            None => libc::sigwaitinfo(set, std::ptr::null_mut()),
        }
    };
    (r > 0).then_some(r)
}

/// Kills every child until none is left: each killed process's own children are
/// reparented here and go in the next round. Returns how many were killed.
fn kill_descendants(set: &libc::sigset_t, proc_: i32) -> u32 {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let mut killed = 0u32;
    for _ in 0..CLEANUP_ROUNDS {
        for_each_child(proc_, me, |child| {
            if rustix::process::kill_process(pid_of(child), Signal::KILL).is_ok() {
                killed += 1;
            }
        });
        if reap_all(0).none_left {
            break;
        }
        let tick = libc::timespec {
            tv_sec: 0,
            tv_nsec: 10_000_000,
        };
        let _ = wait_signal(set, Some(tick));
    }
    killed
}

/// Kills what is left of the command's process group `leader` (the fallback without a
/// subreaper); returns how many processes were in it. The killed are reaped by whoever
/// inherited them.
fn kill_group(leader: i32, proc_: i32) -> u32 {
    let mut left = 0u32;
    for_each_process(proc_, |_, _, group| {
        if group == leader {
            left += 1;
        }
    });
    if left > 0 {
        let _ = rustix::process::kill_process_group(pid_of(leader), Signal::KILL);
    }
    left
}

/// Calls `f` with the pid of every live process (zombies left out: they are only waiting to
/// be reaped) whose parent is `parent`, from /proc.
fn for_each_child(proc_: i32, parent: i32, mut f: impl FnMut(i32)) {
    for_each_process(proc_, |pid, ppid, _| {
        if ppid == parent {
            f(pid);
        }
    });
}

/// Calls `f` with the pid, parent and process group of every live process, from /proc.
fn for_each_process(proc_: i32, mut f: impl FnMut(i32, i32, i32)) {
    if proc_ < 0 {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: `proc_` is the /proc fd `open_proc` returned, kept open by this process
    let proc_ = unsafe { BorrowedFd::borrow_raw(proc_) };
    if rustix::fs::seek(proc_, rustix::fs::SeekFrom::Start(0)).is_err() {
        return;
    }
    let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
    let mut dir = RawDir::new(proc_, &mut buf);
    while let Some(entry) = dir.next() {
        let Ok(entry) = entry else { break };
        let name = entry.file_name();
        let Some(pid) = parse_pid(name.to_bytes()) else {
            continue;
        };
        if let Some((ppid, group)) = live_parent_of(proc_, name) {
            f(pid, ppid, group);
        }
    }
}

fn parse_pid(digits: &[u8]) -> Option<i32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    let mut n = 0i32;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i32::from(d - b'0');
    }
    Some(n)
}

/// The parent pid and process group of `/proc/<name>` unless it is a zombie, from its
/// `stat`: the state, the parent and the group follow the last `)`, since the command name
/// before it may hold anything.
fn live_parent_of(proc_: BorrowedFd<'_>, name: &CStr) -> Option<(i32, i32)> {
    let name = name.to_bytes();
    let mut path = [0u8; 32];
    let suffix = b"/stat\0";
    if name.len() + suffix.len() > path.len() {
        return None;
    }
    path[..name.len()].copy_from_slice(name);
    path[name.len()..name.len() + suffix.len()].copy_from_slice(suffix);
    let path = CStr::from_bytes_with_nul(&path[..name.len() + suffix.len()]).ok()?;
    let fd = openat(proc_, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut stat = [0u8; 512];
    let n = rustix::io::read(&fd, &mut stat[..]).ok()?;
    let stat = &stat[..n];
    let close = stat.iter().rposition(|b| *b == b')')?;
    let mut fields = stat[close + 1..]
        .split(|b| *b == b' ')
        .filter(|f| !f.is_empty());
    if fields.next()? == b"Z" {
        return None;
    }
    let parent = parse_pid(fields.next()?)?;
    Some((parent, parse_pid(fields.next()?)?))
}

/// Exits with the command's wait status: the same signal, or the same code.
fn exit_like(status: i32) -> ! {
    #[allow(unsafe_code)]
    // SAFETY: signal, sigprocmask, kill and _exit on integers and a stack sigset_t
    unsafe {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(libc::WEXITSTATUS(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pids() {
        for (input, want) in [
            (&b"1234"[..], Some(1234)),
            (b"self", None),
            (b"", None),
            (b"12a", None),
        ] {
            assert_eq!(parse_pid(input), want, "{input:?}");
        }
    }
}
