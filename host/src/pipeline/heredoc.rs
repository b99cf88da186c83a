//! Heredocs at build time, as BuildKit runs them.
//!
//! RUN: a lone `RUN <<EOF` runs the body as the shell's script, or, when the body starts
//! with `#!`, writes it to an executable file the shell then runs (BuildKit mounts it at
//! `/dev/pipes/EOF`; kiln puts it in a scratch directory at the top of the root and removes
//! it before the snapshot, so it never reaches a layer). Any other form (`RUN cat <<EOF >
//! f`, several heredocs, `3<<EOF`) goes to the shell whole, the bodies after the command
//! line, each followed by its delimiter. RUN bodies are never expanded by kiln: the shell
//! does that.
//!
//! COPY/ADD: each heredoc becomes a 0644 file named after its delimiter in a scratch root,
//! copied from there like a `--from` source (never unpacked); the body is expanded unless
//! the delimiter was quoted.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};

use crate::dockerfile::{expand_heredoc, Heredoc, Instruction};
use crate::rootfs::Root;

/// Mode of a COPY/ADD heredoc file before `--chmod`.
const HEREDOC_FILE_MODE: u32 = 0o644;
/// Mode of a `RUN <<EOF` script that starts with `#!`.
const SCRIPT_MODE: u32 = 0o755;
/// The scratch directory a shebang script is written to, at the top of the stage root.
const SCRIPT_DIR: &str = ".kiln-heredoc";

/// A shebang script written into the stage root for one RUN; `remove` takes it away again.
pub(crate) struct Script {
    root: Arc<Root>,
    removed: bool,
}

impl Script {
    /// Removes the script and its directory.
    pub(crate) fn remove(mut self) -> Result<()> {
        self.removed = true;
        self.root
            .remove(SCRIPT_DIR, true)
            .with_context(|| format!("removing /{SCRIPT_DIR}"))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if !self.removed {
            let _ = self.root.remove(SCRIPT_DIR, true);
        }
    }
}

/// The text the shell gets for a shell-form RUN with heredocs (`text` is the command line),
/// and the script file written for a lone shebang heredoc.
pub(crate) fn run_script(
    ins: &Instruction,
    text: &str,
    root: &Arc<Root>,
) -> Result<(String, Option<Script>)> {
    match ins.heredocs.as_slice() {
        [] => Ok((text.to_string(), None)),
        [doc] if crate::dockerfile::is_heredoc_marker(text.trim()) => {
            if !doc.content.starts_with("#!") {
                return Ok((doc.content.clone(), None));
            }
            let name = file_name(doc)?;
            if root.lstat(SCRIPT_DIR).is_ok() {
                bail!("/{SCRIPT_DIR} already exists in the stage root; kiln needs it for RUN <<{name}");
            }
            root.mkdir(SCRIPT_DIR, 0o755)
                .with_context(|| format!("creating /{SCRIPT_DIR}"))?;
            let script = Script {
                root: root.clone(),
                removed: false,
            };
            let rel = format!("{SCRIPT_DIR}/{name}");
            let mut file = root
                .create_file(&rel, SCRIPT_MODE)
                .with_context(|| format!("writing /{rel}"))?;
            file.write_all(doc.content.as_bytes())
                .with_context(|| format!("writing /{rel}"))?;
            Ok((format!("/{rel}"), Some(script)))
        }
        docs => {
            let mut full = text.to_string();
            for doc in docs {
                full.push('\n');
                full.push_str(&doc.content);
                full.push_str(&doc.name);
            }
            Ok((full, None))
        }
    }
}

/// A heredoc's delimiter as a file name; BuildKit creates the file under `/`, so a name
/// with a slash or a dot-only name cannot be one.
fn file_name(doc: &Heredoc) -> Result<String> {
    if doc.name.contains('/') || doc.name == "." || doc.name == ".." || doc.name.is_empty() {
        bail!(
            "heredoc <<{} cannot name a file (no `/`, `.` or `..`)",
            doc.name
        );
    }
    Ok(doc.name.clone())
}

/// Writes COPY/ADD heredocs into a new root at `dir`, one file each named after its
/// delimiter (a later one of the same name replaces an earlier one, as in BuildKit), and
/// returns the root and the names in order.
pub(crate) fn materialize(
    ins: &Instruction,
    docs: &[&Heredoc],
    lookup: &HashMap<String, String>,
    dir: &Path,
) -> Result<(Root, Vec<String>)> {
    let root = Root::create(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = Vec::new();
    for doc in docs {
        let name = file_name(doc)?;
        let body = if doc.expand {
            expand_heredoc(&doc.content, lookup).map_err(|e| e.at_line(ins.line))?
        } else {
            doc.content.clone()
        };
        let mut file = root
            .create_file(&name, HEREDOC_FILE_MODE)
            .with_context(|| format!("writing heredoc <<{name}"))?;
        file.write_all(body.as_bytes())
            .with_context(|| format!("writing heredoc <<{name}"))?;
        names.push(name);
    }
    Ok((root, names))
}
