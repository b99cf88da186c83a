//! `--exclude` patterns of COPY and ADD, matched like `.dockerignore` rules (moby
//! `patternmatcher`, which BuildKit uses for them): Go `filepath.Match` per path component,
//! `**` for any number of directories, a pattern that matches a directory excluding
//! everything below it, and `!pattern` exceptions: the last pattern that matches a path or
//! one of its parents decides. Paths are relative to the root being copied; which root that is
//! (each source, or the `--parents` pivot) is `copy.rs`'s business.

use crate::error::{Error, Result};
use crate::path;

/// One pattern component.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// one path component, matched with Go `filepath.Match`
    Glob(String),
    /// `**`: any number of components; at the end of a pattern, at least one (moby treats
    /// a trailing `**` as a prefix match, so `dir/**` leaves `dir` itself alone)
    AnyDirs,
}

/// The `--exclude` patterns of one instruction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Excludes {
    /// (is an `!` exception, components)
    patterns: Vec<(bool, Vec<Part>)>,
}

impl Excludes {
    /// Parses the patterns as given (one per `--exclude`), `!pattern` as an exception.
    pub fn parse(_keyword: &str, values: &[String]) -> Result<Excludes> {
        let mut patterns = Vec::new();
        for value in values {
            let pattern = value.trim();
            let (exception, pattern) = match pattern.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, pattern),
            };
            let parts: Vec<Part> = path::components(pattern)
                .into_iter()
                .map(|c| match c {
                    "**" => Part::AnyDirs,
                    c => Part::Glob(c.to_string()),
                })
                .collect();
            for part in &parts {
                if let Part::Glob(g) = part {
                    path::glob_match(g, "").map_err(|_| Error::FlagValue {
                        flag: "exclude".to_string(),
                        value: value.clone(),
                        reason: "syntax error in pattern".to_string(),
                    })?;
                }
            }
            if !parts.is_empty() {
                patterns.push((exception, parts));
            }
        }
        Ok(Excludes { patterns })
    }

    /// Whether `rel` (slash-separated, relative to the copied root) is left out: the last
    /// pattern matching it or one of its parent directories is not an exception. The root
    /// itself (`""`) never is.
    pub fn excludes(&self, rel: &str) -> bool {
        let comps = path::components(rel);
        let mut excluded = false;
        for (exception, p) in &self.patterns {
            // like moby's matcher: an exclusion only matters while not excluded, an
            // exception only while excluded
            if *exception != excluded {
                continue;
            }
            if (1..=comps.len()).any(|n| matches(p, &comps[..n])) {
                excluded = !exception;
            }
        }
        excluded
    }

    /// Whether there are `!` exceptions: an excluded directory must then still be walked,
    /// since something below it may be taken back.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(exception, _)| *exception)
    }
}

fn matches(pattern: &[Part], comps: &[&str]) -> bool {
    match pattern.split_first() {
        None => comps.is_empty(),
        Some((Part::AnyDirs, [])) => !comps.is_empty(),
        Some((Part::AnyDirs, rest)) => (0..=comps.len()).any(|k| matches(rest, &comps[k..])),
        Some((Part::Glob(g), rest)) => match comps.split_first() {
            Some((c, tail)) => path::glob_match(g, c).unwrap_or(false) && matches(rest, tail),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excludes(patterns: &[&str]) -> Excludes {
        let values: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        Excludes::parse("COPY", &values).unwrap()
    }

    #[test]
    fn matching_table() {
        for (patterns, rel, want) in [
            (vec!["*.md"], "README.md", true),
            (vec!["*.md"], "docs/x.md", false),
            (vec!["*/*.md"], "docs/x.md", true),
            (vec!["**/*.md"], "x.md", true),
            (vec!["**/*.md"], "a/b/c/x.md", true),
            (vec!["**/*.md"], "a/b/x.rs", false),
            (vec!["docs"], "docs", true),
            (vec!["docs"], "docs/a/b.txt", true),
            (vec!["docs/"], "docs/a", true),
            (vec!["./docs/../src"], "src/main.rs", true),
            (vec!["/src"], "src", true),
            (vec!["docs/**"], "docs", false),
            (vec!["docs/**"], "docs/a", true),
            (vec!["**"], "anything/at/all", true),
            (vec!["a/**/z"], "a/z", true),
            (vec!["a/**/z"], "a/b/c/z", true),
            (vec!["a/**/z"], "a/b/c/y", false),
            (vec!["src/*/gen"], "src/x/gen/out.rs", true),
            (vec!["src/*/gen"], "src/gen", false),
            (vec!["?.txt"], "a.txt", true),
            (vec!["?.txt"], "ab.txt", false),
            (vec!["[a-c].txt"], "b.txt", true),
            (vec!["[^a-c].txt"], "b.txt", false),
            (vec!["\\*.txt"], "*.txt", true),
            (vec!["\\*.txt"], "a.txt", false),
            (vec!["*.tmp", "build"], "build/x", true),
            (vec!["*.tmp", "build"], "a.tmp", true),
            (vec!["*.tmp", "build"], "src/a.tmp", false),
            (vec!["*"], "", false),
            (vec!["*.md", "!README.md"], "README.md", false),
            (vec!["*.md", "!README.md"], "CHANGES.md", true),
            (vec!["!README.md", "*.md"], "README.md", true),
            (vec!["docs", "!docs/keep"], "docs/keep/a.txt", false),
            (vec!["docs", "!docs/keep"], "docs/drop.txt", true),
            (vec!["docs", "!docs/keep"], "docs", true),
            (vec!["**", "!*/*.rs", "src/gen"], "src/gen/x.rs", true),
            (vec!["", "  "], "a", false),
        ] {
            assert_eq!(
                excludes(&patterns).excludes(rel),
                want,
                "{patterns:?} {rel}"
            );
        }
    }

    #[test]
    fn bad_patterns() {
        for (pattern, want) in [
            (
                "[a-",
                "invalid --exclude value \"[a-\": syntax error in pattern",
            ),
            (
                "x/\\",
                "invalid --exclude value \"x/\\\\\": syntax error in pattern",
            ),
        ] {
            let err = Excludes::parse("COPY", &[pattern.to_string()]).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
    }
}
