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

    /// Whether a run that reached `states` may also stand after each `*`:
    /// a `*` can match nothing, so reaching it reaches what follows it too.
    fn close(&self, states: &mut [bool]) {
        for (at, token) in self.0.iter().enumerate() {
            if states[at] && *token == Token::AnyRun {
                states[at + 1] = true;
            }
        }
    }

    /// The states reached from `states` by reading `ch` (closed).
    fn step(&self, states: &[bool], ch: char, next: &mut [bool]) {
        next.fill(false);
        for (at, token) in self.0.iter().enumerate() {
            if !states[at] {
                continue;
            }
            match *token {
                Token::AnyRun => next[at] = true,
                Token::AnyChar => next[at + 1] = true,
                Token::Char(c) if c == ch => next[at + 1] = true,
                Token::Char(_) => {}
            }
        }
        self.close(next);
    }

    /// The lengths `n` for which `text[..n]` matches the whole pattern, in
    /// ascending order. The pattern runs as a set of states over the text once
    /// (no backtracking): time is the text's length times the pattern's.
    fn matching_prefixes(&self, text: &[char]) -> Vec<usize> {
        let accept = self.0.len();
        let mut states = vec![false; accept + 1];
        let mut next = states.clone();
        states[0] = true;
        self.close(&mut states);
        let mut found = Vec::new();
        for n in 0..=text.len() {
            if states[accept] {
                found.push(n);
            }
            let Some(&ch) = text.get(n) else { break };
            self.step(&states, ch, &mut next);
            std::mem::swap(&mut states, &mut next);
            if !states.contains(&true) {
                break;
            }
        }
        found
    }

    /// The pattern read backwards, for matching suffixes as prefixes of the
    /// reversed text.
    fn reversed(&self) -> Glob {
        Glob(self.0.iter().rev().copied().collect())
    }

    /// For each position, whether some match (possibly empty) starts there:
    /// one backward pass over the text.
    fn match_starts(&self, text: &[char]) -> Vec<bool> {
        let len = self.0.len();
        let mut after = vec![false; len + 1];
        let mut here = after.clone();
        let mut starts = vec![false; text.len() + 1];
        for at in (0..=text.len()).rev() {
            let ch = text.get(at).copied();
            here[len] = true;
            for (i, token) in self.0.iter().enumerate().rev() {
                here[i] = match *token {
                    Token::AnyRun => here[i + 1] || (ch.is_some() && after[i]),
                    Token::AnyChar => ch.is_some() && after[i + 1],
                    Token::Char(c) => ch == Some(c) && after[i + 1],
                };
            }
            starts[at] = here[0];
            std::mem::swap(&mut here, &mut after);
        }
        starts
    }

    /// Removes the shortest (or longest) matching prefix.
    pub(crate) fn trim_prefix(&self, value: &[char], greedy: bool) -> String {
        let found = self.matching_prefixes(value);
        let pick = if greedy { found.last() } else { found.first() };
        match pick {
            Some(&n) => value[n..].iter().collect(),
            None => value.iter().collect(),
        }
    }

    /// Removes the shortest (or longest) matching suffix.
    pub(crate) fn trim_suffix(&self, value: &[char], greedy: bool) -> String {
        let reversed: Vec<char> = value.iter().rev().copied().collect();
        let found = self.reversed().matching_prefixes(&reversed);
        let pick = if greedy { found.last() } else { found.first() };
        match pick {
            Some(&n) => value[..value.len() - n].iter().collect(),
            None => value.iter().collect(),
        }
    }

    /// Replaces the first (or every) leftmost-longest non-empty match; `None`
    /// once the result would grow past `limit` bytes.
    ///
    /// Only positions where a match can start are tried, and a run from one
    /// stops once no state is left, so the work stays the text's length times
    /// the pattern's.
    pub(crate) fn replace(
        &self,
        value: &[char],
        replacement: &str,
        all: bool,
        limit: usize,
    ) -> Option<String> {
        let starts = self.match_starts(value);
        let mut out = String::new();
        let mut start = 0;
        let mut replaced = false;
        while start < value.len() {
            let found = if (replaced && !all) || !starts[start] {
                None
            } else {
                self.matching_prefixes(&value[start..])
                    .last()
                    .filter(|&&n| n > 0)
                    .map(|&n| start + n)
            };
            match found {
                Some(end) => {
                    if out.len() + replacement.len() > limit {
                        return None;
                    }
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
        Some(out)
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
        assert_eq!(
            backslash.replace(&chars("a\\b\\c"), "/", true, 99).unwrap(),
            "a/b/c"
        );
        let star = Glob::compile("\\*").unwrap();
        assert_eq!(
            star.replace(&chars("a*b*c"), "/", false, 99).unwrap(),
            "a/b*c"
        );
        assert_eq!(star.replace(&chars("a*b*c"), "long", true, 8), None);
        assert!(Glob::compile("\\x").is_err());
    }
    /// The backtracking matcher this file used to have: the reference the
    /// state-set matcher must agree with on small inputs.
    fn reference(tokens: &[Token], text: &[char]) -> bool {
        match tokens.split_first() {
            None => text.is_empty(),
            Some((Token::AnyRun, rest)) => (0..=text.len()).any(|n| reference(rest, &text[n..])),
            Some((Token::AnyChar, rest)) => !text.is_empty() && reference(rest, &text[1..]),
            Some((Token::Char(c), rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    #[test]
    fn agrees_with_backtracking() {
        let patterns = [
            "", "*", "a", "?", "a*", "*a", "*a*", "a?b", "**b", "*a*b*", "?*?",
        ];
        let texts = ["", "a", "b", "ab", "ba", "aab", "abab", "bbba", "xaxbx"];
        for pattern in patterns {
            let glob = Glob::compile(pattern).unwrap();
            for text in texts {
                let text = chars(text);
                let want: Vec<usize> = (0..=text.len())
                    .filter(|&n| reference(&glob.0, &text[..n]))
                    .collect();
                assert_eq!(glob.matching_prefixes(&text), want, "{pattern} on {text:?}");
                let starts: Vec<bool> = (0..=text.len())
                    .map(|s| (s..=text.len()).any(|e| reference(&glob.0, &text[s..e])))
                    .collect();
                assert_eq!(glob.match_starts(&text), starts, "{pattern} on {text:?}");
            }
        }
    }

    #[test]
    fn many_stars_take_polynomial_time() {
        // `*a*a...*b` against a long run of `a`s: exponential for a
        // backtracking matcher, a few milliseconds here.
        let pattern = format!("{}b", "*a".repeat(16));
        let value = chars(&"a".repeat(4000));
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let glob = Glob::compile(&pattern).unwrap();
            let trimmed = glob.trim_prefix(&value, true);
            let replaced = glob.replace(&value, "x", true, usize::MAX).unwrap();
            let _ = done.send((trimmed.len(), replaced.len()));
        });
        let got = wait.recv_timeout(std::time::Duration::from_secs(30));
        assert_eq!(got, Ok((4000, 4000)), "matching did not finish in 30 s");
    }
}
