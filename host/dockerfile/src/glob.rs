//! Shell patterns for `${V#p}`, `${V%p}` and `${V/p/r}`: `*` and `?` with
//! backslash escapes, no bracket expressions (BuildKit's subset). Matching is
//! bash-like: shortest or longest prefix/suffix, leftmost-longest replacement.
//!
//! The lexer in `expand.rs` decides when a pattern is needed; `.dockerignore`
//! globs are a different dialect and live in `ignore.rs`.

/// One element of a `${V#pattern}`-style pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Token {
    Char(char),
    AnyChar,
    AnyRun,
}

/// A shell pattern with `*` and `?` (no bracket expressions, like BuildKit).
#[derive(Debug)]
pub(crate) struct Glob(Vec<Token>);

impl Glob {
    pub(crate) fn compile(pattern: &str) -> Result<Glob, String> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            tokens.push(match ch {
                '*' => Token::AnyRun,
                '?' => Token::AnyChar,
                '\\' => match chars.next() {
                    Some(next @ ('*' | '?' | '\\' | '}' | '/')) => Token::Char(next),
                    Some(next) => return Err(format!("invalid escape '\\{next}' in pattern")),
                    None => return Err("invalid escape at end of pattern".to_string()),
                },
                other => Token::Char(other),
            });
        }
        Ok(Glob(tokens))
    }

    /// Whether the whole of `text` matches.
    fn matches(&self, text: &[char]) -> bool {
        fn go(tokens: &[Token], text: &[char]) -> bool {
            match tokens.split_first() {
                None => text.is_empty(),
                Some((Token::AnyRun, rest)) => (0..=text.len()).any(|skip| go(rest, &text[skip..])),
                Some((Token::AnyChar, rest)) => !text.is_empty() && go(rest, &text[1..]),
                Some((Token::Char(c), rest)) => text.first() == Some(c) && go(rest, &text[1..]),
            }
        }
        go(&self.0, text)
    }

    /// Removes the shortest (or longest) matching prefix.
    pub(crate) fn trim_prefix(&self, value: &[char], greedy: bool) -> String {
        let mut lengths: Vec<usize> = (0..=value.len()).collect();
        if greedy {
            lengths.reverse();
        }
        match lengths.into_iter().find(|&n| self.matches(&value[..n])) {
            Some(n) => value[n..].iter().collect(),
            None => value.iter().collect(),
        }
    }

    /// Removes the shortest (or longest) matching suffix.
    pub(crate) fn trim_suffix(&self, value: &[char], greedy: bool) -> String {
        let mut lengths: Vec<usize> = (0..=value.len()).collect();
        if greedy {
            lengths.reverse();
        }
        let len = value.len();
        match lengths
            .into_iter()
            .find(|&n| self.matches(&value[len - n..]))
        {
            Some(n) => value[..len - n].iter().collect(),
            None => value.iter().collect(),
        }
    }

    /// Replaces the first (or every) leftmost-longest non-empty match.
    pub(crate) fn replace(&self, value: &[char], replacement: &str, all: bool) -> String {
        let mut out = String::new();
        let mut start = 0;
        let mut replaced = false;
        while start < value.len() {
            let found = if replaced && !all {
                None
            } else {
                (start + 1..=value.len())
                    .rev()
                    .find(|&end| self.matches(&value[start..end]))
            };
            match found {
                Some(end) => {
                    out.push_str(replacement);
                    start = end;
                    replaced = true;
                }
                None => {
                    out.push(value[start]);
                    start += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn trims_and_replaces() {
        let v = chars("a.b.c");
        let cases = [
            ("*.", false, true, "b.c"),
            ("*.", true, true, "c"),
            (".*", false, false, "a.b"),
            (".*", true, false, "a"),
            ("x", false, true, "a.b.c"),
        ];
        for (pattern, greedy, prefix, want) in cases {
            let glob = Glob::compile(pattern).unwrap();
            let got = if prefix {
                glob.trim_prefix(&v, greedy)
            } else {
                glob.trim_suffix(&v, greedy)
            };
            assert_eq!(got, want, "pattern {pattern} greedy {greedy}");
        }
        let backslash = Glob::compile("\\\\").unwrap();
        assert_eq!(backslash.replace(&chars("a\\b\\c"), "/", true), "a/b/c");
        let star = Glob::compile("\\*").unwrap();
        assert_eq!(star.replace(&chars("a*b*c"), "/", false), "a/b*c");
        assert!(Glob::compile("\\x").is_err());
    }
}
