//! Which paths a COPY/ADD source names: cleaning inside the source root, glob expansion
//! per path component with Go `filepath.Match` semantics, the `--parents` pivot (`/./`),
//! the not-found errors, and the archive test ADD applies to local files. Where the sources
//! land is `copy.rs`'s business.

use crate::error::{Error, Result};
use crate::files::{fs_err, Files, RootId};
use crate::path;

/// One selected source: its cleaned absolute path in the source root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: String,
    /// the name as written (or matched), for error messages
    pub shown: String,
    /// `--parents`: the relative path kept under the destination (the part after the
    /// first `/./` pivot, or the whole path); empty when the source is the pivot itself
    pub keep: Option<String>,
}

impl Source {
    /// Name the source lands under when copied into a directory.
    pub fn base_name(&self) -> &str {
        path::base_name(&self.path)
    }
}

/// Selects the sources for `patterns` in `root`; with `parents` (COPY --parents) each also
/// records what it keeps of its path. `keyword` and `root_name` only feed error messages
/// ("build context", "stage or image \"builder\"").
pub fn expand(
    files: &dyn Files,
    root: RootId,
    patterns: &[String],
    parents: bool,
    keyword: &str,
    root_name: &str,
) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for pattern in patterns {
        let (cleaned, pivot_depth) = if parents {
            split_pivot(pattern)
        } else {
            (path::clean(pattern), 0)
        };
        let keep = |p: &str| {
            parents.then(|| {
                path::components(p)
                    .get(pivot_depth..)
                    .unwrap_or_default()
                    .join("/")
            })
        };
        let comps = path::components(&cleaned);
        if comps.iter().any(|c| path::has_meta(c)) {
            let matches = glob(files, root, &comps, pattern)?;
            if matches.is_empty() {
                return Err(Error::NoSourceFiles {
                    keyword: keyword.to_string(),
                    pattern: pattern.clone(),
                    root: root_name.to_string(),
                });
            }
            out.extend(matches.into_iter().map(|p| Source {
                shown: p.trim_start_matches('/').to_string(),
                keep: keep(&p),
                path: p,
            }));
        } else {
            match files.lstat(root, &cleaned) {
                Ok(_) => out.push(Source {
                    keep: keep(&cleaned),
                    path: cleaned,
                    shown: pattern.clone(),
                }),
                Err(e) if e.is_missing() => {
                    return Err(Error::SourceNotFound {
                        path: pattern.clone(),
                        root: root_name.to_string(),
                    })
                }
                Err(e) => return Err(fs_err("checking", &cleaned)(e)),
            }
        }
    }
    Ok(out)
}

/// `--parents`: the cleaned source path and how many of its leading components are the
/// pivot (the part before the first `/./`, as BuildKit cuts it), which the copy drops.
/// Both parts are cleaned on their own, so `..` after the pivot cannot climb above it.
fn split_pivot(pattern: &str) -> (String, usize) {
    match pattern.split_once("/./") {
        Some((pivot, rest)) => {
            let pivot = path::components(pivot);
            let joined = format!("{}/{}", pivot.join("/"), path::components(rest).join("/"));
            (path::clean(&joined), pivot.len())
        }
        None => (path::clean(pattern), 0),
    }
}

/// Paths in `root` matching the pattern components, in read-dir (bytewise) order.
fn glob(files: &dyn Files, root: RootId, comps: &[&str], pattern: &str) -> Result<Vec<String>> {
    let bad = || Error::BadPattern {
        pattern: pattern.to_string(),
    };
    for c in comps.iter().filter(|c| path::has_meta(c)) {
        path::glob_match(c, "").map_err(|_| bad())?;
    }
    let mut candidates = vec!["/".to_string()];
    for comp in comps {
        let mut next = Vec::new();
        for dir in &candidates {
            if !path::has_meta(comp) {
                next.push(path::child(dir, comp));
                continue;
            }
            let names = match files.read_dir(root, dir) {
                Ok(names) => names,
                Err(e) if e.is_missing() => continue,
                Err(e) => return Err(fs_err("listing", dir)(e)),
            };
            for name in names {
                if path::glob_match(comp, &name).map_err(|_| bad())? {
                    next.push(path::child(dir, &name));
                }
            }
        }
        candidates = next;
    }
    let mut out = Vec::new();
    for c in candidates {
        match files.lstat(root, &c) {
            Ok(_) => out.push(c),
            Err(e) if e.is_missing() => {}
            Err(e) => return Err(fs_err("checking", &c)(e)),
        }
    }
    Ok(out)
}

/// Bytes read to recognise an archive: the tar header's `ustar` sits at offset 257.
const MAGIC_BYTES: u64 = 512;

/// Whether the file at `p` is an archive ADD unpacks: it starts like one (gzip, bzip2, xz,
/// zstd, or a plain tar with `ustar` at offset 257) and, decompressed, its first entry reads
/// as a tar header (the host checks). A `.gz` of a text file is copied as it is, as Docker does.
pub fn is_archive(files: &dyn Files, root: RootId, p: &str) -> Result<bool> {
    let head = files
        .read_file(root, p, MAGIC_BYTES)
        .map_err(fs_err("reading", p))?;
    if !looks_like_archive(&head) {
        return Ok(false);
    }
    files.is_archive(root, p).map_err(fs_err("reading", p))
}

fn looks_like_archive(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.get(257..262) == Some(b"ustar")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeFs;

    fn tree() -> (FakeFs, RootId) {
        let fs = FakeFs::new();
        let ctx = fs.context();
        for p in [
            "/a.txt",
            "/b.txt",
            "/.hidden.txt",
            "/c.md",
            "/src/x.rs",
            "/src/y.rs",
            "/lib/z.rs",
            "/[x]",
        ] {
            fs.add_file(ctx, p, b"x", 0o644);
        }
        fs.add_symlink(ctx, "/link.txt", "a.txt");
        (fs, ctx)
    }

    #[test]
    fn expansion_table() {
        for (patterns, want) in [
            (vec!["a.txt"], Ok(vec!["/a.txt"])),
            (vec!["./src/../a.txt"], Ok(vec!["/a.txt"])),
            (vec!["../../a.txt"], Ok(vec!["/a.txt"])),
            (vec!["/src"], Ok(vec!["/src"])),
            (vec!["."], Ok(vec!["/"])),
            (vec![""], Ok(vec!["/"])),
            (vec!["*.txt"], Ok(vec!["/.hidden.txt", "/a.txt", "/b.txt", "/link.txt"])),
            (vec!["?.txt", "c.*"], Ok(vec!["/a.txt", "/b.txt", "/c.md"])),
            (vec!["*/*.rs"], Ok(vec!["/lib/z.rs", "/src/x.rs", "/src/y.rs"])),
            (vec!["src/[x]*"], Ok(vec!["/src/x.rs"])),
            (vec!["\\[x]"], Ok(vec!["/[x]"])),
            (vec!["*.go"], Err("COPY failed: no source files were specified: *.go matches nothing in build context")),
            (vec!["a.txt", "nope/*"], Err("no source files were specified: nope/*")),
            (vec!["missing.txt"], Err("missing.txt: not found in build context")),
            (vec!["a.txt/x"], Err("a.txt/x: not found in build context")),
            (vec!["[a-"], Err("syntax error in pattern \"[a-\"")),
        ] {
            let (fs, ctx) = tree();
            let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
            let got = expand(&fs, ctx, &patterns, false, "COPY", "build context")
                .map(|v| v.into_iter().map(|s| s.path).collect::<Vec<_>>())
                .map_err(|e| e.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{patterns:?}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{patterns:?}: {g}"),
                (g, w) => panic!("{patterns:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn parents_keep_the_path_after_the_pivot() {
        for (pattern, want) in [
            ("a.txt", Ok(vec![("/a.txt", "a.txt")])),
            ("src/x.rs", Ok(vec![("/src/x.rs", "src/x.rs")])),
            ("./src/x.rs", Ok(vec![("/src/x.rs", "src/x.rs")])),
            ("src/./x.rs", Ok(vec![("/src/x.rs", "x.rs")])),
            ("./src/./x.rs", Ok(vec![("/src/x.rs", "x.rs")])),
            // BuildKit cuts at the first pivot; later ones are plain `.` components
            ("/./src/./x.rs", Ok(vec![("/src/x.rs", "src/x.rs")])),
            // `..` after the pivot cannot climb above it
            ("src/./../x.rs", Ok(vec![("/src/x.rs", "x.rs")])),
            ("src/./", Ok(vec![("/src", "")])),
            (".", Ok(vec![("/", "")])),
            (
                "*/./*.rs",
                Ok(vec![
                    ("/lib/z.rs", "z.rs"),
                    ("/src/x.rs", "x.rs"),
                    ("/src/y.rs", "y.rs"),
                ]),
            ),
            ("s*/y.rs", Ok(vec![("/src/y.rs", "src/y.rs")])),
            (
                "src/./nope.rs",
                Err("src/./nope.rs: not found in build context"),
            ),
            (
                "nope/./*.rs",
                Err("no source files were specified: nope/./*.rs"),
            ),
        ] {
            let (fs, ctx) = tree();
            let got = expand(
                &fs,
                ctx,
                &[pattern.to_string()],
                true,
                "COPY",
                "build context",
            )
            .map(|v| {
                v.into_iter()
                    .map(|s| (s.path, s.keep.unwrap_or_else(|| "NONE".into())))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => {
                    let w: Vec<(String, String)> = w
                        .iter()
                        .map(|(p, k)| (p.to_string(), k.to_string()))
                        .collect();
                    assert_eq!(g, w, "{pattern}");
                }
                (Err(g), Err(w)) => assert!(g.contains(w), "{pattern}: {g}"),
                (g, w) => panic!("{pattern}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn archive_magic() {
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        for (head, want) in [
            (vec![0x1f, 0x8b, 8, 0], true),
            (b"BZh91AY".to_vec(), true),
            (vec![0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0], true),
            (tar, true),
            (b"hello world".to_vec(), false),
            (vec![0x1f], false),
            (vec![0x28, 0xb5, 0x2f, 0xfd], true),
        ] {
            assert_eq!(looks_like_archive(&head), want, "{head:?}");
        }
    }
}
