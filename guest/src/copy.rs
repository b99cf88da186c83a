//! COPY and ADD: flags, where each source lands (trailing-slash and directory rules,
//! `--parents`), owner and mode of everything written, `--exclude` during the walk, symlink
//! handling, and ADD's local archive unpacking. Source selection (globs, the `--parents`
//! pivot, not-found errors, archive magic) is `sources.rs`; `--chmod` values are
//! `chmod.rs`, `--exclude` patterns `exclude.rs`; bytes are copied by the host.
//!
//! Rules follow BuildKit: a named source that is a symlink is followed, symlinks met inside
//! a copied directory are copied as symlinks; a directory source copies its contents; the
//! destination is resolved through symlinks, entries inside it are not (a symlink where a
//! copied directory goes is an error, "cannot copy to non-directory").

use crate::chmod::Chmod;
use crate::config::ImageConfig;
use crate::error::{Error, Result};
use crate::exclude::Excludes;
use crate::files::{
    create_dirs, fs_err, make_dir, resolve, set_owner_mode, Files, Kind, Meta, Owner, RootId, Stat,
    Touched,
};
use crate::instruction::{Instruction, Roots};
use crate::path;
use crate::sources::{self, Source};
use crate::user;
use crate::workdir::IMPLICIT_DIR_MODE;

/// COPY/ADD flags as typed, before `--chown` is resolved.
#[derive(Debug, Default, PartialEq, Eq)]
struct Flags {
    from: Option<String>,
    chown: Option<String>,
    chmod: Option<Chmod>,
    /// `--parents`: sources keep their path (after the `/./` pivot) under the destination
    parents: bool,
    /// `--exclude`, one pattern per occurrence
    exclude: Vec<String>,
}

fn parse_flags(ins: &Instruction) -> Result<Flags> {
    let mut flags = Flags::default();
    for (name, value) in &ins.flags {
        let required = || {
            value
                .clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::FlagValue {
                    flag: name.clone(),
                    value: String::new(),
                    reason: "a value is required".to_string(),
                })
        };
        match name.as_str() {
            "from" => flags.from = Some(required()?),
            "chown" => flags.chown = Some(required()?),
            "chmod" => flags.chmod = Some(Chmod::parse(&required()?)?),
            "exclude" => flags.exclude.push(required()?),
            "parents" => flags.parents = parse_bool(name, value.as_deref())?,
            "link" => {}
            "checksum" | "keep-git-dir" => {
                return Err(Error::NotSupportedYet {
                    what: format!("{} --{name}", ins.keyword),
                })
            }
            _ => {
                return Err(Error::UnknownFlag {
                    keyword: ins.keyword.clone(),
                    flag: name.clone(),
                })
            }
        }
    }
    Ok(flags)
}

/// A boolean flag: bare means true, else `true` or `false` in any case (BuildKit's rule).
fn parse_bool(flag: &str, value: Option<&str>) -> Result<bool> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(_) => Err(Error::FlagValue {
            flag: flag.to_string(),
            value: value.unwrap_or_default().to_string(),
            reason: "expected true or false".to_string(),
        }),
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://") || s.starts_with("git@")
}

/// Whether a destination as written names a directory (trailing `/`, `/.`, or `.`).
pub fn names_directory(dest: &str) -> bool {
    dest.ends_with('/') || dest.ends_with("/.") || dest == "."
}

/// Carries out COPY or ADD.
pub fn apply(
    files: &dyn Files,
    ins: &Instruction,
    cfg: &ImageConfig,
    roots: &Roots,
    touched: &mut Touched,
) -> Result<()> {
    let add = ins.keyword == "ADD";
    let flags = parse_flags(ins)?;
    let Some((dest_raw, patterns)) = ins.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(Error::Arguments {
            keyword: ins.keyword.clone(),
            want: "at least one source and a destination",
        });
    };
    if let Some(url) = patterns.iter().find(|s| is_url(s)) {
        return Err(if add {
            Error::UrlSource { url: url.clone() }
        } else {
            Error::CopyUrl { url: url.clone() }
        });
    }
    let (src_root, root_name) = match &flags.from {
        Some(name) => (
            roots
                .from
                .ok_or_else(|| Error::MissingFromRoot { from: name.clone() })?,
            format!("stage or image {name:?}"),
        ),
        None => (roots.context, "build context".to_string()),
    };
    let chown = match &flags.chown {
        Some(spec) => Some(user::resolve_chown(files, roots.stage, spec)?),
        None => None,
    };
    let excludes = Excludes::parse(&ins.keyword, &flags.exclude)?;
    let srcs = sources::expand(
        files,
        src_root,
        patterns,
        flags.parents,
        &ins.keyword,
        &root_name,
    )?;
    // with --parents the destination is always a directory the kept paths go under; several
    // sources to a path without `/` are copied onto it in turn, as BuildKit does (the host
    // warns): files replace each other, directories merge, a file lands in a directory
    let dest_is_dir = names_directory(dest_raw) || flags.parents;
    let dest = resolve(
        files,
        roots.stage,
        &path::join(&cfg.working_dir(), dest_raw),
    )?;
    let mut copier = Copier {
        files,
        src_root,
        root_name,
        stage: roots.stage,
        keep_owner: flags.from.is_some(),
        chown,
        chmod: flags.chmod,
        excludes,
        pending: Vec::new(),
        links: std::collections::HashMap::new(),
        touched,
    };
    let unpack = add && flags.from.is_none();
    for src in &srcs {
        copier.copy_source(src, &dest, dest_is_dir, unpack)?;
    }
    Ok(())
}

/// One COPY/ADD in progress: where from, owner and mode policy, what was written.
struct Copier<'a> {
    files: &'a dyn Files,
    src_root: RootId,
    root_name: String,
    stage: RootId,
    /// `--from`: copied entries keep their source owner
    keep_owner: bool,
    chown: Option<Owner>,
    chmod: Option<Chmod>,
    excludes: Excludes,
    /// excluded directories walked for `!` exceptions, outermost first, not yet needed
    pending: Vec<Pending>,
    /// source inode → where this copy wrote it, for hardlinked files
    links: std::collections::HashMap<u64, String>,
    touched: &'a mut Touched,
}

/// An excluded directory that is created only if something below it is copied.
struct Pending {
    dest: String,
    stat: Stat,
    /// there now (created or found)
    made: bool,
    /// created by this copy: its time is set once its contents are in
    set_time: bool,
}

impl Copier<'_> {
    /// Owner of a copied entry.
    fn owner_of(&self, st: &Stat) -> Owner {
        match self.chown {
            Some(o) => o,
            None if self.keep_owner => Owner {
                uid: st.uid,
                gid: st.gid,
            },
            None => Owner::default(),
        }
    }

    /// Owner of directories created on the way to the destination.
    fn implicit_owner(&self) -> Owner {
        self.chown.unwrap_or_default()
    }

    fn mode_of(&self, st: &Stat) -> u32 {
        match &self.chmod {
            Some(chmod) => chmod.apply(st.mode, st.is_dir()),
            None => st.mode & 0o7777,
        }
    }

    /// Creates the missing directories on the way to the destination: 0755, or an octal
    /// `--chmod`'s mode (BuildKit ≥ 0.21; a symbolic one leaves them 0755).
    fn ensure_dirs(&mut self, dir: &str) -> Result<()> {
        let owner = self.implicit_owner();
        let mode = match self.chmod {
            Some(Chmod::Octal(mode)) => mode,
            _ => IMPLICIT_DIR_MODE,
        };
        create_dirs(self.files, self.stage, dir, mode, owner, self.touched)
    }

    /// Copies one selected source to `dest` (already resolved in the stage).
    fn copy_source(
        &mut self,
        src: &Source,
        dest: &str,
        dest_is_dir: bool,
        unpack: bool,
    ) -> Result<()> {
        if let Some(keep) = src.keep.as_deref().filter(|k| !k.is_empty()) {
            return self.copy_with_parents(src, keep, dest);
        }
        let mut st = self.source_stat(src, true)?;
        if src.path == "/" && !self.keep_owner {
            // the context's top directory is wherever the user ran the build (a 0700 temp
            // dir, say); like BuildKit's context snapshot, it stands for a plain 0755 dir
            st.mode = IMPLICIT_DIR_MODE;
        }
        match st.kind {
            Kind::Dir => self.copy_dir_to(&src.path, &st, dest),
            Kind::File if unpack && sources::is_archive(self.files, self.src_root, &src.path)? => {
                // BuildKit unpacks into plain 0755 directories, --chmod or not
                let owner = self.implicit_owner();
                create_dirs(
                    self.files,
                    self.stage,
                    dest,
                    IMPLICIT_DIR_MODE,
                    owner,
                    self.touched,
                )?;
                let written = self
                    .files
                    .extract_archive(self.src_root, &src.path, self.stage, dest)
                    .map_err(fs_err("extracting", &src.path))?;
                // like BuildKit's untar with ChownOpts: --chown re-owns every entry
                if let Some(owner) = self.chown {
                    for rel in &written {
                        let p = format!("/{rel}");
                        let st = self
                            .files
                            .lstat(self.stage, &p)
                            .map_err(fs_err("checking", &p))?;
                        let mode = (st.kind != Kind::Symlink).then_some(st.mode & 0o7777);
                        set_owner_mode(self.files, self.stage, &p, owner, mode, None)?;
                    }
                }
                self.touched.extend(written);
                Ok(())
            }
            Kind::File => {
                let into_dir = dest_is_dir || self.stage_kind(dest)? == Some(Kind::Dir);
                let target = if into_dir {
                    path::child(dest, src.base_name())
                } else {
                    dest.to_string()
                };
                self.ensure_dirs(path::parent(&target))?;
                self.copy_file(&src.path, &st, &target)
            }
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => {
                let into_dir = dest_is_dir || self.stage_kind(dest)? == Some(Kind::Dir);
                let target = if into_dir {
                    path::child(dest, src.base_name())
                } else {
                    dest.to_string()
                };
                self.ensure_dirs(path::parent(&target))?;
                self.copy_node(&src.path, &st, &target)
            }
            // a followed source is never a symlink; sockets are not copied
            Kind::Symlink | Kind::Socket => Err(Error::NotSupportedYet {
                what: format!("copying the special file {}", src.shown),
            }),
        }
    }

    /// `--parents`: the source lands at `dest/keep`. The directories of `keep` on the way
    /// are created like their source directories under the pivot (mode, owner policy,
    /// `--chmod`), as BuildKit's walk with include patterns creates them; an existing one
    /// keeps its metadata. The source is an entry under the pivot, as in BuildKit's walk of
    /// it: excluded by its kept path, a symlink copied as a symlink, a directory created
    /// with its own mode.
    fn copy_with_parents(&mut self, src: &Source, keep: &str, dest: &str) -> Result<()> {
        // like BuildKit, the destination exists even if everything is excluded
        self.ensure_dirs(dest)?;
        if self.excludes.excludes(keep) {
            return Ok(());
        }
        let st = self.source_stat(src, false)?;
        if !matches!(st.kind, Kind::Dir | Kind::File | Kind::Symlink) {
            return Err(Error::NotSupportedYet {
                what: format!("copying the special file {}", src.shown),
            });
        }
        let target = path::join(dest, keep);
        self.parent_dirs_like_source(src, keep, dest)?;
        self.copy_entry(&src.path, &st, &target, keep)
    }

    /// Creates the missing directories of `keep`'s parent under `dest`, each like the
    /// source directory it stands for (`src.path` ends with `keep`).
    fn parent_dirs_like_source(&mut self, src: &Source, keep: &str, dest: &str) -> Result<()> {
        let comps = path::components(keep);
        let src_comps = path::components(&src.path);
        let pivot_len = src_comps.len().saturating_sub(comps.len());
        for n in 1..comps.len() {
            let rel = comps[..n].join("/");
            let d = path::join(dest, &rel);
            match self.files.lstat(self.stage, &d) {
                Ok(existing) if existing.is_dir() => continue,
                Ok(_) => return Err(Error::NotDirectory { path: d }),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(fs_err("checking", &d)(e)),
            }
            let s = format!("/{}", src_comps[..pivot_len + n].join("/"));
            let st = self
                .files
                .lstat(self.src_root, &s)
                .map_err(fs_err("checking", &s))?;
            let (mode, owner) = (self.mode_of(&st), self.owner_of(&st));
            make_dir(self.files, self.stage, &d, mode, owner, self.touched)?;
            let meta = Meta {
                mtime: Some((st.mtime_sec, st.mtime_nsec)),
                ..Meta::default()
            };
            self.files
                .set_meta(self.stage, &d, meta)
                .map_err(fs_err("setting the time of", &d))?;
        }
        Ok(())
    }

    /// A named source's metadata (`follow`: through a final symlink); missing is the
    /// user's "not found in <root>" error.
    fn source_stat(&self, src: &Source, follow: bool) -> Result<Stat> {
        let st = if follow {
            self.files.stat(self.src_root, &src.path)
        } else {
            self.files.lstat(self.src_root, &src.path)
        };
        st.map_err(|e| {
            if e.is_missing() {
                Error::SourceNotFound {
                    path: src.shown.clone(),
                    root: self.root_name.clone(),
                }
            } else {
                fs_err("checking", &src.path)(e)
            }
        })
    }

    /// What is at `p` in the stage, following a final symlink; `None` if nothing.
    fn stage_kind(&self, p: &str) -> Result<Option<Kind>> {
        match self.files.stat(self.stage, p) {
            Ok(st) => Ok(Some(st.kind)),
            Err(e) if e.is_missing() => Ok(None),
            Err(e) => Err(fs_err("checking", p)(e)),
        }
    }

    /// A directory source: its contents go into `dest`. A missing `dest` is created as a
    /// plain 0755 directory (the source directory itself is not copied, only what is in it;
    /// buildah and Docker agree), owned like the copied files; an existing directory keeps
    /// its metadata.
    fn copy_dir_to(&mut self, src: &str, st: &Stat, dest: &str) -> Result<()> {
        let st = &Stat {
            mode: IMPLICIT_DIR_MODE,
            ..*st
        };
        match self.stage_kind(dest)? {
            Some(Kind::Dir) => self.copy_children(src, dest, ""),
            Some(_) => Err(Error::NotDirectory {
                path: dest.to_string(),
            }),
            None => {
                self.ensure_dirs(path::parent(dest))?;
                self.new_dir_with_contents(src, st, dest, "")
            }
        }
    }

    /// Creates `dest` like the source directory, fills it, then sets its mtime. `rel` is
    /// the directory's path under the copied root, for `--exclude`.
    fn new_dir_with_contents(&mut self, src: &str, st: &Stat, dest: &str, rel: &str) -> Result<()> {
        let (mode, owner) = (self.mode_of(st), self.owner_of(st));
        make_dir(self.files, self.stage, dest, mode, owner, self.touched)?;
        self.copy_children(src, dest, rel)?;
        let meta = Meta {
            mtime: Some((st.mtime_sec, st.mtime_nsec)),
            ..Meta::default()
        };
        self.files
            .set_meta(self.stage, dest, meta)
            .map_err(fs_err("setting the time of", dest))
    }

    /// Copies every entry of the source directory `src` into the stage directory `dest`,
    /// leaving out what `--exclude` names. `rel` is `src`'s path under the copied root.
    fn copy_children(&mut self, src: &str, dest: &str, rel: &str) -> Result<()> {
        let names = self
            .files
            .read_dir(self.src_root, src)
            .map_err(fs_err("listing", src))?;
        for name in names {
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let s = path::child(src, &name);
            if self.excludes.excludes(&r) {
                if self.excludes.has_exceptions() {
                    self.walk_excluded(&s, &path::child(dest, &name), &r)?;
                }
                continue;
            }
            let st = self
                .files
                .lstat(self.src_root, &s)
                .map_err(fs_err("checking", &s))?;
            self.flush_pending()?;
            self.copy_entry(&s, &st, &path::child(dest, &name), &r)?;
        }
        Ok(())
    }

    /// An excluded entry while `!` exceptions exist: a directory is walked for entries taken
    /// back, and created (like its source) only once one of them is copied.
    fn walk_excluded(&mut self, s: &str, d: &str, rel: &str) -> Result<()> {
        let st = self
            .files
            .lstat(self.src_root, s)
            .map_err(fs_err("checking", s))?;
        if st.kind != Kind::Dir {
            return Ok(());
        }
        self.pending.push(Pending {
            dest: d.to_string(),
            stat: st,
            made: false,
            set_time: false,
        });
        self.copy_children(s, d, rel)?;
        if let Some(p) = self.pending.pop().filter(|p| p.set_time) {
            let meta = Meta {
                mtime: Some((p.stat.mtime_sec, p.stat.mtime_nsec)),
                ..Meta::default()
            };
            self.files
                .set_meta(self.stage, &p.dest, meta)
                .map_err(fs_err("setting the time of", &p.dest))?;
        }
        Ok(())
    }

    /// Creates the excluded directories on the way to an entry about to be copied.
    fn flush_pending(&mut self) -> Result<()> {
        for i in 0..self.pending.len() {
            if self.pending[i].made {
                continue;
            }
            let (dest, st) = (self.pending[i].dest.clone(), self.pending[i].stat);
            match self.files.lstat(self.stage, &dest) {
                // an existing directory keeps its metadata and time
                Ok(existing) if existing.is_dir() => {}
                Ok(_) => return Err(Error::NotDirectory { path: dest }),
                Err(e) if e.is_not_found() => {
                    let (mode, owner) = (self.mode_of(&st), self.owner_of(&st));
                    make_dir(self.files, self.stage, &dest, mode, owner, self.touched)?;
                    self.pending[i].set_time = true;
                }
                Err(e) => return Err(fs_err("checking", &dest)(e)),
            }
            self.pending[i].made = true;
        }
        Ok(())
    }

    /// Copies one entry met inside a copied tree (`st` from `lstat`) to `d`: a directory is
    /// merged into an existing one or created like the source, a symlink stays a symlink.
    fn copy_entry(&mut self, s: &str, st: &Stat, d: &str, rel: &str) -> Result<()> {
        match st.kind {
            Kind::Dir => match self.files.lstat(self.stage, d) {
                Ok(existing) if existing.is_dir() => {
                    self.chmod_existing_dir(st, d)?;
                    self.copy_children(s, d, rel)
                }
                Ok(_) => Err(Error::NotDirectory {
                    path: d.to_string(),
                }),
                Err(e) if e.is_not_found() => self.new_dir_with_contents(s, st, d, rel),
                Err(e) => Err(fs_err("checking", d)(e)),
            },
            Kind::File => self.copy_file(s, st, d),
            Kind::Symlink => self.copy_symlink(s, st, d),
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => self.copy_node(s, st, d),
            // sockets are never copied (BuildKit's walk skips them)
            Kind::Socket => Ok(()),
        }
    }

    /// With `--chmod`, a directory the copy merges into (below the destination itself) gets
    /// the mode as a new one would, as BuildKit's copy rewrites existing directories' metadata.
    fn chmod_existing_dir(&mut self, st: &Stat, d: &str) -> Result<()> {
        if self.chmod.is_none() {
            return Ok(());
        }
        let meta = Meta {
            mode: Some(self.mode_of(st)),
            ..Meta::default()
        };
        self.files
            .set_meta(self.stage, d, meta)
            .map_err(fs_err("setting the mode of", d))?;
        self.touched.add(d);
        Ok(())
    }

    /// Errors if a directory sits where a file or symlink is to be written.
    fn refuse_directory(&self, target: &str) -> Result<bool> {
        match self.files.lstat(self.stage, target) {
            Ok(st) if st.is_dir() => Err(Error::ReplaceDirectory {
                path: target.to_string(),
            }),
            Ok(_) => Ok(true),
            Err(e) if e.is_missing() => Ok(false),
            Err(e) => Err(fs_err("checking", target)(e)),
        }
    }

    /// A FIFO or device node, recreated with the owner and mode rules of a file.
    fn copy_node(&mut self, src: &str, st: &Stat, target: &str) -> Result<()> {
        self.refuse_directory(target)?;
        self.files
            .copy_node(self.src_root, src, self.stage, target)
            .map_err(fs_err("creating", target))?;
        let (owner, mode) = (self.owner_of(st), self.mode_of(st));
        let mtime = Some((st.mtime_sec, st.mtime_nsec));
        set_owner_mode(self.files, self.stage, target, owner, Some(mode), mtime)?;
        self.touched.add(target);
        Ok(())
    }

    fn copy_file(&mut self, src: &str, st: &Stat, target: &str) -> Result<()> {
        self.refuse_directory(target)?;
        // files hardlinked to each other in the source stay hardlinked in one copy
        if st.nlink > 1 && st.ino != 0 {
            if let Some(first) = self.links.get(&st.ino).cloned() {
                if self.files.lstat(self.stage, target).is_ok() {
                    self.files
                        .remove(self.stage, target, false)
                        .map_err(fs_err("replacing", target))?;
                }
                self.files
                    .link(self.stage, &first, target)
                    .map_err(fs_err("linking", target))?;
                self.touched.add(target);
                return Ok(());
            }
            self.links.insert(st.ino, target.to_string());
        }
        self.files
            .copy_file(self.src_root, src, self.stage, target)
            .map_err(fs_err("copying to", target))?;
        // the mode is set again because changing the owner clears setuid/setgid bits
        let (owner, mode) = (self.owner_of(st), self.mode_of(st));
        set_owner_mode(self.files, self.stage, target, owner, Some(mode), None)?;
        self.touched.add(target);
        Ok(())
    }

    fn copy_symlink(&mut self, src: &str, st: &Stat, target: &str) -> Result<()> {
        let link = self
            .files
            .readlink(self.src_root, src)
            .map_err(fs_err("reading link", src))?;
        if self.refuse_directory(target)? {
            self.files
                .remove(self.stage, target, false)
                .map_err(fs_err("replacing", target))?;
        }
        self.files
            .symlink(self.stage, &link, target)
            .map_err(fs_err("creating symlink", target))?;
        let owner = self.owner_of(st);
        let mtime = Some((st.mtime_sec, st.mtime_nsec));
        set_owner_mode(self.files, self.stage, target, owner, None, mtime)?;
        self.touched.add(target);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
