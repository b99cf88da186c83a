//! Removing a build's scratch directory (its stage roots, the images `COPY --from` read, RUN
//! scratch), which for a tree of 100,000 files takes seconds, without making the user wait
//! for it:
//! - once the image is assembled the directory is renamed into the kiln dir's trash
//!   (`<kiln dir>/.removing/`, [`TRASH`]): one `rename`, after which no build looks at it (a
//!   build's directory is `build-<pid>`; nothing reads `.removing`);
//! - several threads remove the renamed tree while the push runs;
//! - when the build is done (the image pushed, every file written) and the removal is not,
//!   a detached `kiln remove-scratch` process takes it over and the build's result is
//!   reported at once, as docker's and BuildKit's clients return before the daemon cleans up;
//! - a build also sweeps whatever an earlier one left in the trash (a build killed, a
//!   container stopped mid-removal), in the background.
//!
//! `--cleanup=false` (kaniko's pods, whose disk goes away with them) keeps the directory and
//! removes nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

/// The kiln dir's trash: directories renamed here are being removed, never read.
pub const TRASH: &str = ".removing";

/// The hidden subcommand that finishes a removal after the build's end.
pub const SUBCOMMAND: &str = "remove-scratch";

/// Threads removing one tree.
const REMOVERS: usize = 4;

/// Subtrees a tree is cut into before the threads take them.
const PIECES: usize = 256;

/// What becomes of the scratch directory (`--cleanup`: `None` unless the flag is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// removed, in the background from the end of the last stage on
    Remove,
    /// left where it is (`--cleanup=false`)
    Keep,
}

impl Policy {
    /// `--cleanup` as given: only an explicit `false` keeps the directory.
    pub fn of_flag(cleanup: Option<bool>) -> Policy {
        match cleanup {
            Some(false) => Policy::Keep,
            _ => Policy::Remove,
        }
    }
}

/// A build's scratch directory and its removal, under way or not yet started. Dropped, it
/// hands whatever is left to a detached process (a build that failed included).
pub struct Removal {
    dir: PathBuf,
    trash: PathBuf,
    policy: Policy,
    /// the threads at work, with the paths they are removing
    running: Vec<(PathBuf, JoinHandle<()>)>,
}

impl Removal {
    /// The removal of `dir`, a directory directly inside the kiln dir.
    pub fn new(dir: PathBuf, policy: Policy) -> Removal {
        let trash = dir.parent().unwrap_or(Path::new(".")).join(TRASH);
        Removal {
            dir,
            trash,
            policy,
            running: Vec::new(),
        }
    }

    /// Moves a directory of the same name left by an earlier build (with `--cleanup=false`
    /// a container's kiln is often process 1 every time) out of the way, so no stage starts
    /// on its files, and starts sweeping the trash an earlier build left (in the background).
    pub fn clear_stale(&mut self) {
        if self.dir.exists() {
            self.discard(&self.dir.clone());
        }
        let left = entries(&self.trash);
        if !left.is_empty() {
            tracing::debug!(path = %self.trash.display(), entries = left.len(), "sweeping what earlier builds left");
            let trash = self.trash.clone();
            let handle = std::thread::spawn(move || sweep(&trash));
            self.running.push((self.trash.clone(), handle));
        }
    }

    /// Renames the directory into the trash and starts removing it on threads of their own
    /// (nothing in it is read after this).
    pub fn start(&mut self) {
        if self.policy == Policy::Keep || !self.dir.exists() {
            return;
        }
        self.discard(&self.dir.clone());
    }

    /// `dir` renamed into the trash (removed where it is when it cannot be renamed) and its
    /// removal started.
    fn discard(&mut self, dir: &Path) {
        let target = match self.rename_to_trash(dir) {
            Ok(target) => target,
            Err(e) => {
                tracing::debug!(path = %dir.display(), error = %e, "removing in place (no rename into the trash)");
                dir.to_path_buf()
            }
        };
        let path = target.clone();
        let handle = std::thread::spawn(move || remove_trashed(&path));
        self.running.push((target, handle));
    }

    fn rename_to_trash(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.trash)?;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let target = self
            .trash
            .join(format!("{name}.{}.{stamp}", std::process::id()));
        std::fs::rename(dir, &target)?;
        Ok(target)
    }

    /// The end of the build: a removal that is done is joined; one that is not is handed to
    /// a detached `kiln remove-scratch` process, so the build's result is not held up by it.
    /// (Should that process not start, the removal is waited for here.)
    pub fn finish(&mut self) {
        if self.policy == Policy::Keep && self.dir.exists() {
            tracing::debug!(path = %self.dir.display(), "--cleanup=false: the build's scratch directory is left");
        }
        let (done, busy): (Vec<_>, Vec<_>) = self
            .running
            .drain(..)
            .partition(|(_, handle)| handle.is_finished());
        for (_, handle) in done {
            let _ = handle.join();
        }
        if busy.is_empty() {
            return;
        }
        let paths: Vec<&Path> = busy.iter().map(|(path, _)| path.as_path()).collect();
        match hand_off(&paths) {
            Ok(pid) => {
                tracing::debug!(pid, paths = ?paths, "the scratch directory's removal continues in a process of its own")
            }
            Err(e) => {
                tracing::debug!(error = %e, "could not hand the removal off: waiting for it");
                for (_, handle) in busy {
                    let _ = handle.join();
                }
            }
        }
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        self.start();
        self.finish();
    }
}

/// Starts `kiln remove-scratch PATHS…`: a process of its own (its own process group, no
/// terminal, stdio closed, so neither a shell's pipe nor a Ctrl-C waits on it or reaches it)
/// that removes what this build could not before its end; its id.
fn hand_off(paths: &[&Path]) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg(SUBCOMMAND)
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    // not waited for: it outlives this process and is reaped by init
    Ok(child.id())
}

/// `kiln remove-scratch PATHS…`: removes each path (a build's scratch directory or the trash
/// itself), what another process removes at the same time included. A path that is not one
/// of those ([`removable`]) is left alone; the refusals are returned, one line each.
pub fn remove_scratch(paths: &[PathBuf]) -> Vec<String> {
    let mut refused = Vec::new();
    for path in paths {
        if let Err(why) = removable(path) {
            refused.push(format!("{}: {why}", path.display()));
            continue;
        }
        if path.file_name().is_some_and(|n| n == TRASH) {
            sweep(path);
        } else {
            remove_trashed(path);
        }
    }
    refused
}

/// Whether `path` is what a build hands to `kiln remove-scratch`: a kiln dir's trash
/// ([`TRASH`]), an entry directly in one, or a build's scratch directory (`build-<pid>`,
/// removed where it is when it could not be renamed), each a directory and not a symlink (nor
/// is the trash an entry is in): the subcommand never follows a link out of the kiln dir, nor
/// takes any other tree it is pointed at.
pub fn removable(path: &Path) -> Result<(), String> {
    let real_dir = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| m.file_type().is_dir())
            .unwrap_or(false)
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let in_trash = parent.is_some_and(|p| p.file_name().is_some_and(|n| n == TRASH));
    let scratch = name
        .strip_prefix("build-")
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
    if !(name == TRASH || in_trash || scratch) {
        return Err(format!(
            "not a kiln dir's {TRASH} directory, an entry in one, or a build-<pid> directory"
        ));
    }
    if std::fs::symlink_metadata(path).is_err() {
        // gone already (another process removed it): nothing to do, nothing refused
        return Ok(());
    }
    if !real_dir(path) {
        return Err("not a directory (a symlink or a file)".to_string());
    }
    if in_trash && !parent.is_some_and(real_dir) {
        return Err(format!("its {TRASH} is not a directory (a symlink?)"));
    }
    Ok(())
}

/// Removes `path`, then the trash it was in when nothing else is left there.
fn remove_trashed(path: &Path) {
    remove_tree(path);
    if let Some(trash) = path
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == TRASH))
    {
        // another build's entry keeps it
        let _ = std::fs::remove_dir(trash);
    }
}

/// Removes everything in the trash `dir`, then the trash itself when nothing new came.
fn sweep(dir: &Path) {
    for entry in entries(dir) {
        remove_tree(&entry);
    }
    // another build may have put something there meanwhile: then the trash stays
    let _ = std::fs::remove_dir(dir);
}

/// The paths in `dir` (none when it cannot be read).
fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// Removes the tree at `dir` with [`REMOVERS`] threads: it is cut into subtrees (breadth
/// first, until there are [`PIECES`] of them) that the threads take one at a time, then what
/// is left of its top goes. Paths another process removed first are no error.
fn remove_tree(dir: &Path) {
    let started = std::time::Instant::now();
    let pieces = Arc::new(Mutex::new(cut(dir)));
    let failed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..REMOVERS)
        .map(|_| {
            let (pieces, failed) = (pieces.clone(), failed.clone());
            std::thread::spawn(move || loop {
                let next = pieces.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(path) = next else { break };
                if let Err(e) = remove_any(&path) {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(path = %path.display(), error = %e, "could not remove");
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    match remove_any(dir) {
        Ok(()) => {
            tracing::debug!(path = %dir.display(), took = ?started.elapsed(), "scratch directory removed")
        }
        Err(e) => tracing::warn!(path = %dir.display(), error = %e, "could not clean up"),
    }
}

/// The subtrees and files of `dir` the threads remove: directories are opened breadth first
/// until there are [`PIECES`] pieces; the directories opened are left for the end.
fn cut(dir: &Path) -> Vec<PathBuf> {
    let mut pieces = vec![dir.to_path_buf()];
    loop {
        let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) =
            pieces.into_iter().partition(|p| is_real_dir(p));
        if dirs.is_empty() || files.len() + dirs.len() >= PIECES {
            pieces = files;
            pieces.extend(dirs);
            return pieces;
        }
        let mut next = files;
        let mut opened_any = false;
        for d in dirs {
            let inside = entries(&d);
            if inside.is_empty() {
                next.push(d);
            } else {
                opened_any = true;
                next.extend(inside);
            }
        }
        pieces = next;
        if !opened_any {
            return pieces;
        }
    }
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Removes a file, link or whole directory; gone already is fine.
fn remove_any(path: &Path) -> std::io::Result<()> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(top: &Path) {
        for d in 0..20 {
            std::fs::create_dir_all(top.join(format!("stage-0/{d}/sub"))).unwrap();
            for f in 0..20 {
                std::fs::write(top.join(format!("stage-0/{d}/{f}")), b"x").unwrap();
            }
            std::os::unix::fs::symlink("/etc", top.join(format!("stage-0/{d}/sub/link"))).unwrap();
        }
    }

    #[test]
    fn remove_scratch_takes_only_a_trash_its_entries_and_build_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let kiln = tmp.path().join("kiln");
        let (trash, outside) = (kiln.join(TRASH), tmp.path().join("precious"));
        tree(&trash.join("build-3.3.1"));
        tree(&kiln.join("build-4"));
        tree(&outside);
        // a link named like the trash, or an entry reached through one, is not followed
        let fake = tmp.path().join("fake");
        std::fs::create_dir_all(&fake).unwrap();
        std::os::unix::fs::symlink(&outside, fake.join(TRASH)).unwrap();
        std::os::unix::fs::symlink(&outside, kiln.join("build-5")).unwrap();
        let refused = remove_scratch(&[
            outside.clone(),
            PathBuf::from("/"),
            fake.join(TRASH),
            fake.join(TRASH).join("stage-0"),
            kiln.join("build-5"),
            kiln.join("build-x"),
        ]);
        assert_eq!(refused.len(), 6, "{refused:#?}");
        assert!(
            outside.join("stage-0/3/4").exists(),
            "nothing outside was touched"
        );
        let refused = remove_scratch(&[trash.join("build-3.3.1"), kiln.join("build-4")]);
        assert!(refused.is_empty(), "{refused:?}");
        assert!(!trash.exists() && !kiln.join("build-4").exists());
        assert!(
            remove_scratch(&[trash.join("gone.1.1")]).is_empty(),
            "a path already removed is no refusal"
        );
    }

    #[test]
    fn renamed_into_the_trash_and_removed_or_kept_with_cleanup_false() {
        let tmp = tempfile::tempdir().unwrap();
        let (gone, kept) = (tmp.path().join("build-1"), tmp.path().join("build-2"));
        tree(&gone);
        tree(&kept);
        let mut r = Removal::new(gone.clone(), Policy::of_flag(None));
        r.start();
        assert!(!gone.exists(), "renamed away at once");
        for (_, handle) in r.running.drain(..) {
            handle.join().unwrap();
        }
        assert!(
            !tmp.path().join(TRASH).exists(),
            "the emptied trash goes too"
        );
        drop(Removal::new(kept.clone(), Policy::of_flag(Some(false))));
        assert!(kept.join("stage-0/3/4").exists());
        assert_eq!(Policy::of_flag(Some(true)), Policy::Remove);
        // /etc behind the links is untouched
        assert!(Path::new("/etc").is_dir());
    }

    #[test]
    fn a_stale_dir_and_a_half_removed_trash_are_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("build-7");
        tree(&dir);
        let trash = tmp.path().join(TRASH);
        tree(&trash.join("build-7.7.1"));
        let mut r = Removal::new(dir.clone(), Policy::Remove);
        r.clear_stale();
        assert!(!dir.exists(), "the stale dir is out of the way");
        for (_, handle) in r.running.drain(..) {
            handle.join().unwrap();
        }
        assert!(!trash.exists(), "the trash was swept");
    }

    #[test]
    fn two_removers_of_one_tree_do_not_trip_over_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("t");
        tree(&dir);
        let other = {
            let dir = dir.clone();
            std::thread::spawn(move || remove_tree(&dir))
        };
        remove_tree(&dir);
        other.join().unwrap();
        assert!(!dir.exists());
    }
}
