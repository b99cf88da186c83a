//! RUN on an overlay: with CAP_SYS_ADMIN, where the kiln dir's filesystem can hold an
//! overlay's upper directory, the command's mount namespace lays an overlay over the stage
//! root (the root itself is the lower layer). Everything the command writes lands in a fresh
//! upper directory beside the root, so afterwards that directory *is* the list of what
//! changed: `merge` moves it into the root (renames, no copies) and reports each path, and
//! the snapshot looks at those paths only, instead of walking the whole root.
//!
//! The mount is made with `redirect_dir=off,metacopy=off,xino=off`: a renamed directory
//! from the root is copied (EXDEV to the command, which `mv` and friends handle), and every
//! changed file is copied up whole, so the upper directory holds real files only. Where the
//! kernel allows it (probed), `index=on` keeps a copied-up file's hardlinks one inode while
//! the command runs; either way `merge` gives the copy every name the root's inode had, so a
//! hardlink pair stays a pair. What the overlay itself adds (`trusted.overlay.*` xattrs,
//! whiteout devices, opaque markers) is translated and removed by `merge`; none of it
//! reaches the root or a layer.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::layer::xattr::xattr_read;
use crate::snapshot::Touch;

/// The prefix of the xattrs the overlay keeps for itself on its upper directory.
const OVERLAY_XATTR: &[u8] = b"trusted.overlay.";
/// The xattr a copy-up leaves on the upper copy, naming the root's inode it came from.
const ORIGIN_XATTR: &std::ffi::CStr = c"trusted.overlay.origin";

/// Whether mounts use `index=on` (the probe found the kernel accepts it here).
static INDEX: AtomicBool = AtomicBool::new(false);

/// One RUN's upper and work directories, removed when dropped.
#[derive(Debug)]
pub struct Overlay {
    dir: PathBuf,
    /// the mount data, ready for the child
    pub data: CString,
}

impl Overlay {
    fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether a path can go into overlay mount data as it is.
fn plain(p: &Path) -> bool {
    !p.as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b',' | b':' | b'\\'))
}

fn data(lower: &Path, upper: &Path, work: &Path, index: bool) -> Option<CString> {
    if ![lower, upper, work].iter().all(|p| plain(p)) {
        return None;
    }
    let mut s = b"lowerdir=".to_vec();
    s.extend_from_slice(lower.as_os_str().as_bytes());
    s.extend_from_slice(b",upperdir=");
    s.extend_from_slice(upper.as_os_str().as_bytes());
    s.extend_from_slice(b",workdir=");
    s.extend_from_slice(work.as_os_str().as_bytes());
    s.extend_from_slice(match index {
        true => b",redirect_dir=off,index=on,metacopy=off,xino=off".as_slice(),
        false => b",redirect_dir=off,index=off,metacopy=off,xino=off".as_slice(),
    });
    CString::new(s).ok()
}

/// Makes a fresh upper and work directory in `scratch` (which must be on the root's
/// filesystem, so `merge` can rename) for a RUN on `root`; None when the paths cannot be
/// written into mount data.
pub fn prepare(scratch: &Path, root: &Path) -> io::Result<Option<Overlay>> {
    prepare_with(scratch, root, INDEX.load(Ordering::Relaxed))
}

fn prepare_with(scratch: &Path, root: &Path, index: bool) -> io::Result<Option<Overlay>> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::fs::create_dir_all(scratch)?;
    let device = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
    if device(scratch)? != device(root)? {
        // the merge renames: another filesystem would need copies
        return Ok(None);
    }
    let dir = scratch.join(format!("overlay-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("upper"))?;
    std::fs::create_dir_all(dir.join("work"))?;
    let Some(data) = data(root, &dir.join("upper"), &dir.join("work"), index) else {
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(None);
    };
    Ok(Some(Overlay { dir, data }))
}

/// The answer of [`probe`]: looked up in the kiln dir, else worked out on a thread of its
/// own, but only once the build knows a RUN will run ([`Probe::start`], at the first RUN that
/// misses the cache, while its root is being extracted): a build whose steps all hit the
/// cache, or that has no RUN, never probes and writes no answer.
pub struct Probe {
    state: std::sync::Mutex<ProbeState>,
    answer: std::sync::OnceLock<bool>,
}

enum ProbeState {
    /// not started: the kiln dir (where the answer is remembered) and where the probe runs
    Pending(PathBuf, PathBuf),
    Running(std::thread::JoinHandle<bool>),
    Idle,
}

impl Probe {
    /// The answer remembered in the kiln dir for this kernel and filesystem, else a probe on
    /// `scratch` whose answer is then written there (a kiln dir is probed once); nothing is
    /// read, written or started before [`Probe::start`] or [`Probe::usable`].
    pub fn remembered(kiln_dir: &Path, scratch: PathBuf) -> Probe {
        Probe {
            state: std::sync::Mutex::new(ProbeState::Pending(kiln_dir.to_path_buf(), scratch)),
            answer: std::sync::OnceLock::new(),
        }
    }

    /// Starts working the answer out (a RUN is coming); returns at once.
    pub fn start(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        // only a probe not yet started is started: a running one keeps its handle, so the
        // first RUN waits for its answer instead of taking "no overlay"
        if !matches!(*state, ProbeState::Pending(..)) {
            return;
        }
        let ProbeState::Pending(kiln_dir, scratch) =
            std::mem::replace(&mut *state, ProbeState::Idle)
        else {
            return;
        };
        let memo = memo_path(&kiln_dir);
        if let Some(text) = memo.as_ref().and_then(|m| std::fs::read_to_string(m).ok()) {
            let text = text.trim();
            if matches!(text, "index" | "plain" | "none") {
                INDEX.store(text == "index", Ordering::Relaxed);
                tracing::debug!(
                    answer = text,
                    "overlay support as probed before in this kiln dir"
                );
                let answer = text != "none";
                if self.answer.set(answer).is_ok() {
                    log(answer);
                }
                return;
            }
        }
        let handle = std::thread::spawn(move || {
            let answer = probe(&scratch);
            if let Some(memo) = memo {
                let text = match (answer, INDEX.load(Ordering::Relaxed)) {
                    (false, _) => "none",
                    (true, true) => "index",
                    (true, false) => "plain",
                };
                let tmp = memo.with_extension(format!("tmp-{}", std::process::id()));
                if std::fs::write(&tmp, text).is_ok() {
                    let _ = std::fs::rename(&tmp, &memo);
                }
            }
            answer
        });
        *state = ProbeState::Running(handle);
    }

    /// An answer known without probing (the mode or the options rule the overlay out).
    pub fn known(answer: bool) -> Probe {
        log(answer);
        Probe {
            state: std::sync::Mutex::new(ProbeState::Idle),
            answer: std::sync::OnceLock::from(answer),
        }
    }

    /// Whether RUN goes on an overlay (starts the probe if nothing did, and waits for it the
    /// first time).
    pub fn usable(&self) -> bool {
        self.start();
        *self.answer.get_or_init(|| {
            let answer = self.finish().unwrap_or(false);
            log(answer);
            answer
        })
    }

    fn finish(&self) -> Option<bool> {
        let mut state = self.state.lock().ok()?;
        match std::mem::replace(&mut *state, ProbeState::Idle) {
            ProbeState::Running(handle) => handle.join().ok(),
            ProbeState::Pending(..) | ProbeState::Idle => None,
        }
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("answer", &self.answer.get())
            .finish()
    }
}

impl Drop for Probe {
    /// A probe still running when the build ends is waited for: it cleans up its own dir.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn log(overlay: bool) {
    tracing::info!(
        "snapshots after RUN: {}",
        match overlay {
            true => "from an overlay's upper directory",
            false => "by walking the stage root",
        }
    );
}

/// Where a kiln dir remembers the probe's answer: named by the kernel release and the kiln
/// dir's filesystem type, so a kiln dir on a volume moved to another node probes again.
fn memo_path(kiln_dir: &Path) -> Option<PathBuf> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let fs = rustix::fs::statfs(kiln_dir).ok()?.f_type;
    let release: String = release
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(kiln_dir.join(format!("overlay-probe-{release}-{fs:x}")))
}

/// Whether RUN can go on an overlay here: tried once per build in a throwaway mount
/// namespace on `scratch`'s filesystem, including the two things `merge` relies on (a
/// deleted file leaves a whiteout device, a directory made again is marked opaque); with
/// `index=on` first, then without.
pub fn probe(scratch: &Path) -> bool {
    let dir = scratch.join("overlay-probe");
    let try_with = |index: bool| {
        let ok = probe_in(&dir, index).unwrap_or_else(|e| {
            tracing::debug!(error = %e, index, "overlay probe");
            false
        });
        let _ = std::fs::remove_dir_all(&dir);
        ok
    };
    let index = try_with(true);
    INDEX.store(index, Ordering::Relaxed);
    tracing::debug!(index, "overlay inode index");
    index || try_with(false)
}

fn probe_in(dir: &Path, index: bool) -> io::Result<bool> {
    use std::os::unix::process::CommandExt;
    let _ = std::fs::remove_dir_all(dir);
    let (lower, merged) = (dir.join("lower"), dir.join("merged"));
    std::fs::create_dir_all(lower.join("d"))?;
    std::fs::write(lower.join("d/f"), b"")?;
    std::fs::write(lower.join("x"), b"")?;
    std::fs::create_dir_all(&merged)?;
    let Some(ov) = prepare_with(dir, &lower, index)? else {
        return Ok(false);
    };
    let c = |p: PathBuf| CString::new(p.into_os_string().into_vec()).map_err(io::Error::other);
    use std::os::unix::ffi::OsStringExt;
    let (target, x, df, d) = (
        c(merged.clone())?,
        c(merged.join("x"))?,
        c(merged.join("d/f"))?,
        c(merged.join("d"))?,
    );
    let data = ov.data.clone();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    #[allow(unsafe_code)]
    // SAFETY: only syscalls on C strings made before the fork, then _exit
    unsafe {
        cmd.pre_exec(move || {
            use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
            rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)?;
            mount_change(
                c"/",
                MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
            )?;
            mount(
                c"overlay",
                &target,
                c"overlay",
                MountFlags::empty(),
                data.as_c_str(),
            )?;
            rustix::fs::unlink(&x)?;
            rustix::fs::unlink(&df)?;
            rustix::fs::rmdir(&d)?;
            rustix::fs::mkdir(&d, rustix::fs::Mode::from_raw_mode(0o755))?;
            libc::_exit(0)
        });
    }
    let status = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Ok(false);
    }
    let upper = ov.upper();
    Ok(is_whiteout(&std::fs::symlink_metadata(upper.join("x"))?) && is_opaque(&upper.join("d")))
}

fn is_whiteout(md: &std::fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(path, c"trusted.overlay.opaque", &mut buf),
        Ok(n) if buf[..n] == *b"y"
    )
}

/// Moves what the command wrote into `root` and says what happened to each path: a
/// whiteout deletes, a new or copied-up entry replaces (renamed over whatever was there),
/// a directory in both is merged entry by entry and then given the upper's owner, mode,
/// xattrs and times; an opaque directory replaces the old one whole.
pub fn merge(ov: &Overlay, root: &Path) -> io::Result<Vec<Touch>> {
    let mut out = Vec::new();
    let mut links = Links::default();
    merge_dir(
        &ov.upper(),
        root,
        &mut Vec::new(),
        &mut (&mut out, &mut links),
    )?;
    Ok(out)
}

/// What a merge reports, and the root's hardlinked names it may need.
type Merged<'a> = (&'a mut Vec<Touch>, &'a mut Links);

/// The root's names of every non-directory inode with more than one link, found by one walk
/// of the root the first time a copied-up file turns out to have other names.
#[derive(Default)]
struct Links {
    by_inode: Option<HashMap<u64, Vec<Vec<u8>>>>,
}

impl Links {
    fn names_of(&mut self, root: &Path, ino: u64) -> io::Result<Vec<Vec<u8>>> {
        if self.by_inode.is_none() {
            let mut found = HashMap::new();
            collect_links(root, &mut Vec::new(), &mut found)?;
            self.by_inode = Some(found);
        }
        Ok(self
            .by_inode
            .as_ref()
            .and_then(|m| m.get(&ino))
            .cloned()
            .unwrap_or_default())
    }
}

fn collect_links(
    root: &Path,
    rel: &mut Vec<u8>,
    found: &mut HashMap<u64, Vec<Vec<u8>>>,
) -> io::Result<()> {
    let dir = root.join(OsStr::from_bytes(rel));
    for item in std::fs::read_dir(&dir).map_err(|e| at(e, &dir))? {
        let item = item.map_err(|e| at(e, &dir))?;
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(item.file_name().as_bytes());
        let r = if item.file_type()?.is_dir() {
            collect_links(root, rel, found)
        } else {
            let md = item.metadata()?;
            if md.nlink() > 1 {
                found.entry(md.ino()).or_default().push(rel.clone());
            }
            Ok(())
        };
        rel.truncate(len);
        r?;
    }
    Ok(())
}

/// After a copy-up of the root's inode `old` (whose names were `names`) was moved to `rel`,
/// gives the inode's other names in the root (those the upper directory does not hold itself) the copy too, as a
/// hardlink: the change the command made through one name shows through all of them, as it
/// would have without the overlay. Each parent keeps its times.
fn relink(
    upper: &Path,
    root: &Path,
    rel: &[u8],
    (old, names): (u64, Vec<Vec<u8>>),
    out: &mut Vec<Touch>,
) -> io::Result<()> {
    let new = root.join(OsStr::from_bytes(rel));
    for name in names {
        let other = root.join(OsStr::from_bytes(&name));
        let upper_has = std::fs::symlink_metadata(upper.join(OsStr::from_bytes(&name))).is_ok();
        let still_old = std::fs::symlink_metadata(&other).is_ok_and(|m| m.ino() == old);
        if name == rel || upper_has || !still_old {
            continue;
        }
        let parent = other.parent().unwrap_or(root);
        let times = std::fs::symlink_metadata(parent).map_err(|e| at(e, parent))?;
        let temp = parent.join(format!(".kiln-relink.{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        std::fs::hard_link(&new, &temp).map_err(|e| at(e, &temp))?;
        std::fs::rename(&temp, &other).map_err(|e| at(e, &other))?;
        set_times(parent, &times)?;
        out.push(Touch::Replaced(name));
    }
    Ok(())
}

fn at(io_err: io::Error, path: &Path) -> io::Error {
    io::Error::new(io_err.kind(), format!("{}: {io_err}", path.display()))
}

fn merge_dir(upper: &Path, root: &Path, rel: &mut Vec<u8>, out: &mut Merged) -> io::Result<()> {
    let dir = upper.join(OsStr::from_bytes(rel));
    for item in std::fs::read_dir(&dir).map_err(|e| at(e, &dir))? {
        let item = item.map_err(|e| at(e, &dir))?;
        let len = rel.len();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(item.file_name().as_bytes());
        let r = merge_one(upper, root, rel, out);
        rel.truncate(len);
        r?;
    }
    Ok(())
}

fn merge_one(upper: &Path, root: &Path, rel: &mut Vec<u8>, out: &mut Merged) -> io::Result<()> {
    let u = upper.join(OsStr::from_bytes(rel));
    let r = root.join(OsStr::from_bytes(rel));
    let umd = std::fs::symlink_metadata(&u).map_err(|e| at(e, &u))?;
    let rmd = match std::fs::symlink_metadata(&r) {
        Ok(md) => Some(md),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(at(e, &r)),
    };
    if is_whiteout(&umd) {
        if let Some(rmd) = rmd {
            remove(&r, &rmd)?;
            out.0.push(Touch::Removed(rel.clone()));
        }
        return Ok(());
    }
    if umd.is_dir() && rmd.as_ref().is_some_and(|m| m.is_dir()) && !is_opaque(&u) {
        merge_dir(upper, root, rel, out)?;
        sync_dir(&u, &umd, &r)?;
        out.0.push(Touch::Updated(rel.clone()));
        return Ok(());
    }
    // a copy-up of a root inode with other names: they must follow it
    let linked = rmd
        .as_ref()
        .filter(|m| !m.is_dir() && !umd.is_dir() && m.nlink() > 1)
        .filter(|_| matches!(xattr_value(&u, &ORIGIN_XATTR.into()), Ok(Some(_))))
        .map(|m| m.ino());
    // its names, looked up before the rename takes one of them away
    let linked = match linked {
        Some(ino) => Some((ino, out.1.names_of(root, ino)?)),
        None => None,
    };
    if let Some(rmd) = rmd {
        remove(&r, &rmd)?;
    }
    strip(&u, umd.is_dir())?;
    std::fs::rename(&u, &r).map_err(|e| at(e, &r))?;
    out.0.push(Touch::Replaced(rel.clone()));
    if let Some(old) = linked {
        relink(upper, root, rel, old, out.0)?;
    }
    Ok(())
}

fn remove(path: &Path, md: &std::fs::Metadata) -> io::Result<()> {
    match md.is_dir() {
        true => std::fs::remove_dir_all(path),
        false => std::fs::remove_file(path),
    }
    .map_err(|e| at(e, path))
}

fn xattr_names(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let list = xattr_read(|buf| rustix::fs::llistxattr(path, buf)).map_err(|e| at(e, path))?;
    Ok(list
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

fn xattr_value(path: &Path, name: &CString) -> io::Result<Option<Vec<u8>>> {
    xattr_read(|buf| rustix::fs::lgetxattr(path, name.as_c_str(), buf)).map_err(|e| at(e, path))
}

fn cname(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(io::Error::other)
}

/// Removes the overlay's own xattrs from `path` (and everything below it, for a directory).
fn strip(path: &Path, dir: bool) -> io::Result<()> {
    for name in xattr_names(path)? {
        if name.starts_with(OVERLAY_XATTR) {
            rustix::fs::lremovexattr(path, cname(&name)?.as_c_str())
                .map_err(|e| at(e.into(), path))?;
        }
    }
    if dir {
        for item in std::fs::read_dir(path).map_err(|e| at(e, path))? {
            let item = item.map_err(|e| at(e, path))?;
            strip(&item.path(), item.file_type()?.is_dir())?;
        }
    }
    Ok(())
}

/// Gives the root's directory `r` the owner, mode, xattrs and times of the upper's `u`.
fn sync_dir(u: &Path, umd: &std::fs::Metadata, r: &Path) -> io::Result<()> {
    let rmd = std::fs::symlink_metadata(r).map_err(|e| at(e, r))?;
    if (rmd.uid(), rmd.gid()) != (umd.uid(), umd.gid()) {
        std::os::unix::fs::lchown(r, Some(umd.uid()), Some(umd.gid())).map_err(|e| at(e, r))?;
    }
    if rmd.mode() & 0o7777 != umd.mode() & 0o7777 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(r, std::fs::Permissions::from_mode(umd.mode() & 0o7777))
            .map_err(|e| at(e, r))?;
    }
    let wanted: Vec<Vec<u8>> = xattr_names(u)?
        .into_iter()
        .filter(|n| !n.starts_with(OVERLAY_XATTR))
        .collect();
    for name in xattr_names(r)? {
        if !wanted.contains(&name) {
            rustix::fs::lremovexattr(r, cname(&name)?.as_c_str()).map_err(|e| at(e.into(), r))?;
        }
    }
    for name in wanted {
        let name = cname(&name)?;
        let value = xattr_value(u, &name)?;
        if let Some(value) = value {
            if xattr_value(r, &name)?.as_ref() != Some(&value) {
                rustix::fs::lsetxattr(r, name.as_c_str(), &value, rustix::fs::XattrFlags::empty())
                    .map_err(|e| at(e.into(), r))?;
            }
        }
    }
    set_times(r, umd)
}

/// Gives `path` the access and modification times of `md`.
fn set_times(path: &Path, md: &std::fs::Metadata) -> io::Result<()> {
    let ts = |s: i64, ns: i64| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: ts(md.atime(), md.atime_nsec()),
            last_modification: ts(md.mtime(), md.mtime_nsec()),
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| at(e.into(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_data_refuses_separators() {
        let p = Path::new;
        assert!(data(p("/k/root"), p("/k/u"), p("/k/w"), false).is_some());
        assert!(data(p("/k/ro,ot"), p("/k/u"), p("/k/w"), true).is_none());
        assert!(data(p("/k/root"), p("/k/u:x"), p("/k/w"), false).is_none());
    }

    /// `expect_run` is called before every RUN and the parallel stages call it at once: a
    /// second start must leave the running probe to be waited for (dropping its handle made
    /// the first RUN of a fresh kiln dir walk instead of using the overlay).
    #[test]
    fn a_second_start_keeps_the_running_probe() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe::remembered(dir.path(), dir.path().join("scratch"));
        probe.start();
        probe.start();
        assert!(matches!(
            *probe.state.lock().unwrap(),
            ProbeState::Running(_)
        ));
    }
}
