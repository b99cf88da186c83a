//! Removing a build's scratch directory (its stage roots, the images `COPY --from` read, RUN
//! scratch) at the end, which for a tree of 100,000 files takes seconds: started on a thread
//! of its own once the image is assembled, so it runs while the push does, and waited for
//! only at exit. `--cleanup=false` (kaniko's pods, whose disk goes away with them) keeps the
//! directory and removes nothing.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

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
/// finishes the removal (a build that failed included).
pub struct Removal {
    dir: PathBuf,
    policy: Policy,
    running: Option<JoinHandle<()>>,
}

impl Removal {
    pub fn new(dir: PathBuf, policy: Policy) -> Removal {
        Removal {
            dir,
            policy,
            running: None,
        }
    }

    /// Removes a directory of the same name left by an earlier build (with `--cleanup=false`
    /// a container's kiln is often process 1 every time), so no stage starts on its files.
    pub fn clear_stale(&self) {
        if self.dir.exists() {
            remove(&self.dir);
        }
    }

    /// Starts removing the directory on a thread of its own (nothing in it is read after
    /// this).
    pub fn start(&mut self) {
        if self.policy == Policy::Keep || self.running.is_some() {
            return;
        }
        let dir = self.dir.clone();
        self.running = Some(std::thread::spawn(move || remove(&dir)));
    }

    /// Waits for the removal (started now if it was not).
    pub fn finish(&mut self) {
        self.start();
        if let Some(running) = self.running.take() {
            let _ = running.join();
        }
        if self.policy == Policy::Keep && self.dir.exists() {
            tracing::debug!(path = %self.dir.display(), "--cleanup=false: the build's scratch directory is left");
        }
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        self.finish();
    }
}

fn remove(dir: &Path) {
    let started = std::time::Instant::now();
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {
            tracing::debug!(path = %dir.display(), took = ?started.elapsed(), "scratch directory removed")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %dir.display(), error = %e, "could not clean up"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_in_the_background_or_kept_with_cleanup_false() {
        let tmp = tempfile::tempdir().unwrap();
        let (gone, kept) = (tmp.path().join("gone"), tmp.path().join("kept"));
        for d in [&gone, &kept] {
            std::fs::create_dir_all(d.join("a/b")).unwrap();
            std::fs::write(d.join("a/b/f"), b"x").unwrap();
        }
        let mut r = Removal::new(gone.clone(), Policy::of_flag(None));
        r.start();
        drop(r);
        assert!(!gone.exists());
        drop(Removal::new(kept.clone(), Policy::of_flag(Some(false))));
        assert!(kept.join("a/b/f").exists());
        assert_eq!(Policy::of_flag(Some(true)), Policy::Remove);
    }
}
