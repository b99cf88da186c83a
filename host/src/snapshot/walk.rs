//! The parallel walk of a stage root: every directory is a task on rayon's pool, so a root
//! with many directories is read and stat-ed on every core. Symlinks are never followed;
//! sockets and ignored paths are left out. The index sorts what the tasks find.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::Mutex;

use super::{display, entry_of, Entry, Error, Ignore, Index, Result};
use crate::rootfs::Kind;

struct Walk<'a> {
    root: &'a Path,
    ignore: &'a Ignore,
    previous: Option<&'a Index>,
    found: Mutex<Vec<(Vec<u8>, Entry)>>,
    error: Mutex<Option<Error>>,
}

/// Every path below `top` (root-relative, empty for the whole root), in no given order.
pub(super) fn walk(
    root: &Path,
    top: Vec<u8>,
    ignore: &Ignore,
    previous: Option<&Index>,
) -> Result<Vec<(Vec<u8>, Entry)>> {
    let w = Walk {
        root,
        ignore,
        previous,
        found: Mutex::new(Vec::new()),
        error: Mutex::new(None),
    };
    rayon::scope(|s| read_dir(s, &w, top));
    if let Some(e) = w.error.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(w.found.into_inner().unwrap_or_default())
}

fn fail(w: &Walk<'_>, e: Error) {
    if let Ok(mut slot) = w.error.lock() {
        slot.get_or_insert(e);
    }
}

fn read_dir<'s>(s: &rayon::Scope<'s>, w: &'s Walk<'s>, dir: Vec<u8>) {
    let host = w.root.join(OsStr::from_bytes(&dir));
    let walk_err = |path: &[u8]| {
        let path = display(path);
        move |source| Error::Walk { path, source }
    };
    let rd = match std::fs::read_dir(&host) {
        Ok(rd) => rd,
        // removed while we walked (a RUN's leftover process): not part of the state
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return fail(w, walk_err(&dir)(e)),
    };
    let mut local = Vec::new();
    for item in rd {
        let item = match item {
            Ok(item) => item,
            Err(e) => return fail(w, walk_err(&dir)(e)),
        };
        let name = item.file_name().into_vec();
        let rel = if dir.is_empty() {
            name
        } else {
            [dir.as_slice(), b"/", name.as_slice()].concat()
        };
        if w.ignore.contains(&rel) {
            continue;
        }
        // fstatat on the open directory, no symlink followed
        let md = match item.metadata() {
            Ok(md) => md,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return fail(w, walk_err(&rel)(e)),
        };
        // the previous state matters only to save reading an unchanged symlink again
        let known = match md.file_type().is_symlink() {
            true => w.previous.and_then(|p| p.entries.get(&rel)),
            false => None,
        };
        let entry = match entry_of(&md, || item.path(), known) {
            Ok(entry) => entry,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return fail(w, walk_err(&rel)(e)),
        };
        match entry.kind {
            Kind::Socket => continue,
            Kind::Dir => {
                let sub = rel.clone();
                s.spawn(move |s| read_dir(s, w, sub));
            }
            _ => {}
        }
        local.push((rel, entry));
    }
    if let Ok(mut found) = w.found.lock() {
        found.append(&mut local);
    }
}
