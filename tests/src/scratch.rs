//! A test's private working area: a tempdir holding the Dockerfile, the build context
//! (`ctx/`), kiln's work dir (`k/`) and any outputs, removed when the test ends.
//!
//! Knows the layout of that area and nothing about what goes in it; the kiln command line
//! itself is assembled by `build::Build`.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::build::Build;

/// Scratch space for one test.
#[derive(Debug)]
pub struct Scratch {
    dir: TempDir,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Scratch {
    /// A fresh directory with an empty `ctx/`.
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("kiln-e2e-")
            .tempdir()
            .expect("scratch dir");
        fs::create_dir(dir.path().join("ctx")).expect("context dir");
        Scratch { dir }
    }

    /// The scratch directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the scratch directory.
    pub fn join(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The build context, `ctx/`.
    pub fn context(&self) -> PathBuf {
        self.join("ctx")
    }

    /// kiln's work dir for blobs and stage roots, `k/` (kiln creates it).
    pub fn kiln_dir(&self) -> PathBuf {
        self.join("k")
    }

    /// Writes `content` to a path inside the scratch dir, creating parent directories.
    pub fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("creating parent dirs");
        }
        fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Writes `Dockerfile` (beside the context, not in it) and returns the build of it
    /// over `ctx/` with `--kiln-dir k/`.
    pub fn build(&self, dockerfile: &str) -> Build {
        let path = self.write("Dockerfile", dockerfile);
        Build::new(&path, &self.context(), &self.kiln_dir())
    }
}
