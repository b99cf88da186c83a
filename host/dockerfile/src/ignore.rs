//! `.dockerignore` rules with Docker's semantics (moby `patternmatcher`):
//! `#` comments, `!` exceptions, `**` across directories, `*`, `?` and `[...]`
//! within one path element, and the last matching rule winning. A rule that
//! matches a directory also matches everything below it.
//!
//! Walking the context and deciding what to send is the caller's job; this
//! file only answers "is this relative path ignored".

/// Parsed `.dockerignore` rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// The cleaned pattern, without the `!`.
    pattern: String,
    exception: bool,
    tokens: Vec<Token>,
    /// Docker's fast path for `**/literal`: a plain suffix test.
    suffix: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`: one character other than `/`.
    AnyChar,
    /// `*`: any run of characters other than `/`.
    AnyRun,
    /// `**` (with its trailing `/`) in the middle: nothing, or anything ending in `/`.
    AnyDirs,
    /// `**` at the end: anything at all.
    AnyRest,
    /// `[...]`: ranges, optionally negated with `^`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl IgnoreRules {
    /// Parses the text of a `.dockerignore`. Never fails: a malformed pattern
    /// simply matches what it literally says.
    pub fn parse(text: &str) -> IgnoreRules {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for line in text.lines() {
            // Only a `#` in the very first column starts a comment.
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if pattern.is_empty() {
                continue;
            }
            let mut pattern = clean(pattern);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
            rules.push(Rule {
                tokens: compile(&pattern),
                suffix: literal_suffix(&pattern),
                pattern,
                exception,
            });
        }
        IgnoreRules { rules }
    }

    /// The cleaned patterns in order, exceptions prefixed with `!`.
    pub fn patterns(&self) -> Vec<String> {
        self.rules
            .iter()
            .map(|r| {
                let bang = if r.exception { "!" } else { "" };
                format!("{bang}{}", r.pattern)
            })
            .collect()
    }

    /// Whether any rule is a `!` exception (which may re-include a path inside an
    /// excluded directory).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.exception)
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is
    /// excluded: the last rule matching the path or one of its parent
    /// directories decides.
    pub fn is_ignored(&self, rel_path: &str) -> bool {
        let path = clean(rel_path.trim_start_matches('/'));
        let parents: Vec<&str> = match path.rfind('/') {
            Some(at) => {
                let dir = &path[..at];
                dir.match_indices('/')
                    .map(|(i, _)| &dir[..i])
                    .chain([dir])
                    .collect()
            }
            None => Vec::new(),
        };
        let mut ignored = false;
        for rule in &self.rules {
            // An exception can only undo a match and a plain rule only add one.
            if rule.exception != ignored {
                continue;
            }
            if rule.matches(&path) || parents.iter().any(|p| rule.matches(p)) {
                ignored = !rule.exception;
            }
        }
        ignored
    }
}

impl Rule {
    fn matches(&self, path: &str) -> bool {
        if let Some(suffix) = &self.suffix {
            return path.ends_with(suffix.as_str())
                || suffix.strip_prefix('/').is_some_and(|s| s == path);
        }
        let chars: Vec<char> = path.chars().collect();
        match_tokens(&self.tokens, &chars)
    }
}

/// Whether the whole of `text` matches `tokens`.
///
/// The pattern runs as a set of states over the text once, with no
/// backtracking, so a rule like `*a*a*a…*b` costs the path's length times the
/// pattern's. State `2 * i` stands before token `i`; state `2 * i + 1` is
/// inside a `**/` at token `i`, having read some characters but not yet the
/// `/` that ends it.
fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    let accept = 2 * tokens.len();
    let mut states = vec![false; accept + 1];
    let mut next = states.clone();
    states[0] = true;
    close(tokens, &mut states);
    for &ch in text {
        next.fill(false);
        for (i, token) in tokens.iter().enumerate() {
            let (at, inside) = (states[2 * i], states[2 * i + 1]);
            let advance = match token {
                Token::Char(c) => at && *c == ch,
                Token::AnyChar => at && ch != '/',
                Token::Class { negated, ranges } => {
                    at && ranges.iter().any(|&(lo, hi)| lo <= ch && ch <= hi) != *negated
                }
                Token::AnyRun => {
                    next[2 * i] |= at && ch != '/';
                    false
                }
                Token::AnyRest => {
                    next[2 * i] |= at;
                    false
                }
                Token::AnyDirs => {
                    next[2 * i + 1] |= at || inside;
                    (at || inside) && ch == '/'
                }
            };
            next[2 * i + 2] |= advance;
        }
        close(tokens, &mut next);
        std::mem::swap(&mut states, &mut next);
        if !states.contains(&true) {
            return false;
        }
    }
    states[accept]
}

/// Adds the states reachable without reading: `*`, `**` and `**/` may all
/// match nothing.
fn close(tokens: &[Token], states: &mut [bool]) {
    for (i, token) in tokens.iter().enumerate() {
        let empty = matches!(token, Token::AnyRun | Token::AnyRest | Token::AnyDirs);
        if empty && states[2 * i] {
            states[2 * i + 2] = true;
        }
    }
}

/// Docker treats a pattern starting with `**` and otherwise free of wildcards
/// as a plain suffix test.
fn literal_suffix(pattern: &str) -> Option<String> {
    let rest = pattern.strip_prefix("**")?;
    let plain = !rest.is_empty() && !rest.contains(['*', '?', '[', ']', '\\']);
    plain.then(|| rest.to_string())
}

fn compile(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i == chars.len() {
                    Token::AnyRest
                } else {
                    Token::AnyDirs
                });
            }
            '*' => tokens.push(Token::AnyRun),
            '?' => tokens.push(Token::AnyChar),
            '\\' => match chars.get(i) {
                Some(&next) => {
                    tokens.push(Token::Char(next));
                    i += 1;
                }
                None => tokens.push(Token::Char('\\')),
            },
            '[' => match class(&chars[i..]) {
                Some((token, used)) => {
                    tokens.push(token);
                    i += used;
                }
                None => tokens.push(Token::Char('[')),
            },
            other => tokens.push(Token::Char(other)),
        }
    }
    tokens
}

/// Parses a bracket expression after its `[`, returning it and the number
/// of characters used including the `]`.
fn class(chars: &[char]) -> Option<(Token, usize)> {
    let mut i = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let read = |i: &mut usize| -> Option<char> {
        let c = *chars.get(*i)?;
        *i += 1;
        if c == '\\' {
            let escaped = *chars.get(*i)?;
            *i += 1;
            return Some(escaped);
        }
        Some(c)
    };
    loop {
        match chars.get(i) {
            None => return None,
            Some(']') if !ranges.is_empty() => {
                return Some((Token::Class { negated, ranges }, i + 1))
            }
            Some(_) => {
                let lo = read(&mut i)?;
                let hi =
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
                        i += 1;
                        read(&mut i)?
                    } else {
                        lo
                    };
                ranges.push((lo, hi));
            }
        }
    }
}

/// Lexical path cleaning like Go's `path.Clean`: collapses `//`, drops `.`,
/// resolves `..` against earlier elements.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn cleans_patterns() {
        let text = "# comment\n\n  /foo/bar/  \n./a/../b\n! /c//d\n #notcomment\n!\n**/x\n";
        let rules = IgnoreRules::parse(text);
        assert_eq!(
            rules.patterns(),
            vec!["foo/bar", "b", "!c/d", "#notcomment", "**/x"]
        );
    }

    #[test]
    fn matches_paths() {
        let cases: [(&str, &[(&str, bool)]); 10] = [
            (
                "node_modules",
                &[
                    ("node_modules", true),
                    ("node_modules/a/b.js", true),
                    ("src/node_modules", false),
                ],
            ),
            (
                "*.md\n!README.md",
                &[("a.md", true), ("README.md", false), ("docs/a.md", false)],
            ),
            (
                "**/*.md",
                &[("a.md", true), ("docs/x/a.md", true), ("a.mdx", false)],
            ),
            (
                "docs/**",
                &[
                    ("docs", false),
                    ("docs/a", true),
                    ("docs/a/b", true),
                    ("docsx", false),
                ],
            ),
            (
                "a/**/b",
                &[
                    ("a/b", true),
                    ("a/x/y/b", true),
                    ("a/x/b/c", true),
                    ("ab", false),
                ],
            ),
            (
                "**/.git",
                &[(".git", true), ("sub/.git/HEAD", true), ("x.git", false)],
            ),
            (
                "?.txt\nfile[0-9]\n[^a]bc",
                &[
                    ("a.txt", true),
                    ("ab.txt", false),
                    ("file7", true),
                    ("filex", false),
                    ("xbc", true),
                    ("abc", false),
                ],
            ),
            (
                "*\n!src\nsrc/*.tmp",
                &[
                    ("Dockerfile", true),
                    ("src/main.rs", false),
                    ("src/x.tmp", true),
                ],
            ),
            (
                "dir\n!dir/keep",
                &[
                    ("dir/drop", true),
                    ("dir/keep", false),
                    ("dir/keep/inner", false),
                ],
            ),
            (
                "a\\*b\n/abs",
                &[
                    ("a*b", true),
                    ("axb", false),
                    ("abs", true),
                    ("./abs", true),
                    ("/abs/x", true),
                ],
            ),
        ];
        for (rules, paths) in cases {
            let parsed = IgnoreRules::parse(rules);
            for (path, want) in paths {
                assert_eq!(
                    parsed.is_ignored(path),
                    *want,
                    "rules {rules:?} path {path}"
                );
            }
        }
    }

    #[test]
    fn cleans_paths() {
        let cases = [
            ("a//b/./c", "a/b/c"),
            ("./", "."),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("", "."),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "input {input}");
        }
    }
    /// The backtracking matcher this file used to have, kept as the reference.
    fn reference(tokens: &[Token], text: &[char]) -> bool {
        let Some((token, rest)) = tokens.split_first() else {
            return text.is_empty();
        };
        let one = |ok: bool| ok && reference(rest, &text[1..]);
        match token {
            Token::Char(c) => one(text.first() == Some(c)),
            Token::AnyChar => one(text.first().is_some_and(|&c| c != '/')),
            Token::Class { negated, ranges } => one(text
                .first()
                .is_some_and(|&c| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated)),
            Token::AnyRun => {
                let run = text.iter().take_while(|&&c| c != '/').count();
                (0..=run).any(|n| reference(rest, &text[n..]))
            }
            Token::AnyRest => true,
            Token::AnyDirs => {
                reference(rest, text)
                    || (0..text.len())
                        .filter(|&i| text[i] == '/')
                        .any(|i| reference(rest, &text[i + 1..]))
            }
        }
    }

    #[test]
    fn agrees_with_backtracking() {
        let patterns = [
            "a", "*", "a*", "*b", "a/**/b", "**/b", "a/**", "**", "?/*", "[ab]*/b", "*/**/*",
        ];
        let texts = [
            "", "a", "b", "ab", "a/b", "a/x/b", "a/b/c", "aa/b", "/b", "a//b",
        ];
        for pattern in patterns {
            let tokens = compile(pattern);
            for text in texts {
                let text: Vec<char> = text.chars().collect();
                assert_eq!(
                    match_tokens(&tokens, &text),
                    reference(&tokens, &text),
                    "{pattern} on {text:?}"
                );
            }
        }
    }

    #[test]
    fn many_stars_take_polynomial_time() {
        let rules = IgnoreRules::parse(&format!("{}b\n", "*a".repeat(16)));
        let path = format!("{}/{}", "a".repeat(3000), "a".repeat(3000));
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(rules.is_ignored(&path));
        });
        let got = wait.recv_timeout(std::time::Duration::from_secs(30));
        assert_eq!(got, Ok(false), "matching did not finish in 30 s");
    }
}
