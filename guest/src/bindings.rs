//! The only module that sees wit-bindgen's generated types: it exports
//! `kiln:builder/interpreter` by converting to and from the plain types in `instruction`
//! and calling the entry points in `execute`, and implements [`Files`] on the imported `fs`
//! interface.
//!
//! Native builds compile the import stubs but must never call them: tests use `fake.rs`.
//!
//! `unsafe_code` is allowed here only: the generated canonical-ABI glue is `unsafe` by
//! nature; this module's own code contains none.
#![allow(unsafe_code)]

use crate::error::FsError;
use crate::execute;
use crate::files::{Files, Kind, Meta, RootId, Stat};
use crate::instruction::{Instruction, Roots, StageState};

wit_bindgen::generate!({ path: "../wit", world: "builder" });

use exports::kiln::builder::interpreter as wit_interp;
use kiln::builder::fs as wit_fs;
use kiln::builder::types as wit_types;

// Native builds (unit tests, clippy) type-check everything here but export nothing: the
// export names are not valid native symbol names, and nothing native may call the imports.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Interpreter;

#[cfg(target_arch = "wasm32")]
export!(Interpreter);

impl wit_interp::Guest for Interpreter {
    fn execute(
        ins: wit_interp::Instruction,
        config: String,
        roots: wit_interp::Roots,
        state: wit_interp::StageState,
    ) -> Result<wit_interp::Outcome, String> {
        let ins = Instruction {
            keyword: ins.keyword,
            line: ins.line,
            args: ins.args,
            flags: ins.flags,
            exec_form: ins.exec_form,
        };
        let roots = Roots {
            stage: RootId(roots.stage),
            context: RootId(roots.context),
            from: roots.from.map(RootId),
        };
        let state = StageState {
            cmd_set: state.cmd_set,
        };
        execute::execute(&HostFiles, &ins, &config, &roots, state)
            .map(|o| wit_interp::Outcome {
                config: o.config,
                touched: o.touched,
                state: wit_interp::StageState {
                    cmd_set: o.state.cmd_set,
                },
            })
            .map_err(|e| e.to_string())
    }

    fn start_stage(config: String) -> Result<wit_interp::StageStart, String> {
        execute::start_stage(&config)
            .map(|s| wit_interp::StageStart {
                config: s.config,
                triggers: s.triggers,
            })
            .map_err(|e| e.to_string())
    }

    fn resolve_user(user: String, stage: wit_types::Root) -> Result<wit_interp::Identity, String> {
        execute::resolve_user(&HostFiles, &user, RootId(stage))
            .map(|id| wit_interp::Identity {
                uid: id.uid,
                gid: id.gid,
                groups: id.groups,
                home: id.home,
            })
            .map_err(|e| e.to_string())
    }
}

/// [`Files`] on the host's `fs` import.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct HostFiles;

fn fs_error(e: wit_types::FsError) -> FsError {
    use wit_types::FsError as W;
    match e {
        W::NotFound(m) => FsError::NotFound(m),
        W::Exists(m) => FsError::Exists(m),
        W::NotDirectory(m) => FsError::NotDirectory(m),
        W::IsDirectory(m) => FsError::IsDirectory(m),
        W::ReadOnly(m) => FsError::ReadOnly(m),
        W::Invalid(m) => FsError::Invalid(m),
        W::Io(m) => FsError::Io(m),
    }
}

fn stat(s: wit_types::FileStat) -> Stat {
    use wit_types::Kind as W;
    Stat {
        kind: match s.kind {
            W::File => Kind::File,
            W::Dir => Kind::Dir,
            W::Symlink => Kind::Symlink,
            W::Fifo => Kind::Fifo,
            W::CharDevice => Kind::CharDevice,
            W::BlockDevice => Kind::BlockDevice,
            W::Socket => Kind::Socket,
        },
        mode: s.mode,
        uid: s.uid,
        gid: s.gid,
        size: s.size,
        mtime_sec: s.mtime_sec,
        mtime_nsec: s.mtime_nsec,
        ino: s.ino,
        nlink: s.nlink,
    }
}

impl Files for HostFiles {
    fn lstat(&self, root: RootId, path: &str) -> Result<Stat, FsError> {
        wit_fs::lstat(root.0, path).map(stat).map_err(fs_error)
    }

    fn stat(&self, root: RootId, path: &str) -> Result<Stat, FsError> {
        wit_fs::stat(root.0, path).map(stat).map_err(fs_error)
    }

    fn readlink(&self, root: RootId, path: &str) -> Result<String, FsError> {
        wit_fs::readlink(root.0, path).map_err(fs_error)
    }

    fn read_dir(&self, root: RootId, path: &str) -> Result<Vec<String>, FsError> {
        wit_fs::read_dir(root.0, path).map_err(fs_error)
    }

    fn read_file(&self, root: RootId, path: &str, max: u64) -> Result<Vec<u8>, FsError> {
        wit_fs::read_file(root.0, path, max).map_err(fs_error)
    }

    fn mkdir(&self, root: RootId, path: &str, mode: u32) -> Result<(), FsError> {
        wit_fs::mkdir(root.0, path, mode).map_err(fs_error)
    }

    fn symlink(&self, root: RootId, target: &str, path: &str) -> Result<(), FsError> {
        wit_fs::symlink(root.0, target, path).map_err(fs_error)
    }

    fn link(&self, root: RootId, existing: &str, path: &str) -> Result<(), FsError> {
        wit_fs::link(root.0, existing, path).map_err(fs_error)
    }

    fn set_meta(&self, root: RootId, path: &str, m: Meta) -> Result<(), FsError> {
        let m = wit_types::Meta {
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime: m.mtime,
        };
        wit_fs::set_meta(root.0, path, m).map_err(fs_error)
    }

    fn remove(&self, root: RootId, path: &str, recursive: bool) -> Result<(), FsError> {
        wit_fs::remove(root.0, path, recursive).map_err(fs_error)
    }

    fn copy_file(
        &self,
        from: RootId,
        from_path: &str,
        to: RootId,
        to_path: &str,
    ) -> Result<u64, FsError> {
        wit_fs::copy_file(from.0, from_path, to.0, to_path).map_err(fs_error)
    }

    fn copy_node(
        &self,
        from: RootId,
        from_path: &str,
        to: RootId,
        to_path: &str,
    ) -> Result<(), FsError> {
        wit_fs::copy_node(from.0, from_path, to.0, to_path).map_err(fs_error)
    }

    fn is_archive(&self, from: RootId, from_path: &str) -> Result<bool, FsError> {
        wit_fs::is_archive(from.0, from_path).map_err(fs_error)
    }

    fn extract_archive(
        &self,
        from: RootId,
        from_path: &str,
        to: RootId,
        to_dir: &str,
    ) -> Result<Vec<String>, FsError> {
        wit_fs::extract_archive(from.0, from_path, to.0, to_dir).map_err(fs_error)
    }
}
