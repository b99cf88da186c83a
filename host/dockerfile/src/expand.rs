//! Shell-word expansion with BuildKit's lexer semantics: quote removal, the
//! escape character, `$V` / `${V...}` substitution and word splitting.
//!
//! This file owns only the lexer. Which instruction arguments get expanded, and
//! with which environment, is the orchestrator's business; the parser uses the
//! raw-mode lexer here to find heredoc markers.

use std::collections::{BTreeMap, HashMap};

use super::glob::Glob;
use super::{Error, Result};

/// A read-only view of the variables visible to an expansion.
pub trait Lookup {
    /// The value of `name`, or `None` when it is unset (set-but-empty is `Some("")`).
    fn get(&self, name: &str) -> Option<&str>;
}

impl Lookup for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Lookup for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// An ordered list of assignments; a later entry overrides an earlier one.
impl Lookup for &[(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        last_assignment(self, name)
    }
}

impl Lookup for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        last_assignment(self, name)
    }
}

fn last_assignment<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// An environment with nothing set.
pub(crate) struct NoVars;

impl Lookup for NoVars {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Expands one word: quotes are removed, escapes resolved and variables
/// substituted; whitespace is kept as written.
pub fn expand_word(word: &str, env: &dyn Lookup, escape: char) -> Result<String> {
    Lexer::new(word, env, escape, Mode::default())
        .run()
        .map(|(text, _)| text)
        .map_err(|message| expansion_error(word, message))
}

/// Expands `text` and splits it into words the way a shell would: unquoted
/// whitespace separates words, while quoted text and escaped characters do not,
/// and the result of an unquoted `$V` is split again.
pub fn expand_words(text: &str, env: &dyn Lookup, escape: char) -> Result<Vec<String>> {
    Lexer::new(text, env, escape, Mode::default())
        .run()
        .map(|(_, words)| words)
        .map_err(|message| expansion_error(text, message))
}

/// Expands the body of a heredoc whose delimiter was not quoted, as BuildKit does for
/// COPY/ADD: `$V` and `${V...}` are substituted and `\` escapes the next character, while
/// quotes are ordinary text and whitespace is kept.
pub fn expand_heredoc(body: &str, env: &dyn Lookup) -> Result<String> {
    let mode = Mode {
        skip_quotes: true,
        ..Mode::default()
    };
    Lexer::new(body, env, '\\', mode)
        .run()
        .map(|(text, _)| text)
        .map_err(|message| expansion_error(body, message))
}

fn expansion_error(word: &str, message: String) -> Error {
    Error::Expansion {
        line: None,
        word: word.to_string(),
        message,
    }
}

/// Lexer switches mirroring BuildKit's `Lex` options.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Mode {
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of emptying them.
    pub skip_unset: bool,
    /// Treat quote characters as ordinary text (BuildKit's `SkipProcessQuotes`).
    pub skip_quotes: bool,
}

/// Splits `text` into words in the given mode, returning the lexer's message on
/// a syntax error.
pub(crate) fn split_words(
    text: &str,
    env: &dyn Lookup,
    escape: char,
    mode: Mode,
) -> std::result::Result<Vec<String>, String> {
    Lexer::new(text, env, escape, mode)
        .run()
        .map(|(_, words)| words)
}

type LexResult<T> = std::result::Result<T, String>;

/// How deeply `${...}` may nest inside one word: far beyond any real
/// Dockerfile, and shallow enough that a hostile one cannot overflow the stack.
pub const MAX_NESTING: usize = 64;

/// The most bytes one expansion may produce (16 MiB): enough for any real
/// value, while `ARG A=${A}${A}` repeated cannot double its way to gigabytes.
pub const MAX_EXPANSION_BYTES: usize = 16 << 20;

/// Fails once an expansion's output has grown past `MAX_EXPANSION_BYTES`.
fn check_size(text: &str) -> LexResult<()> {
    if text.len() > MAX_EXPANSION_BYTES {
        return Err(too_large());
    }
    Ok(())
}

fn too_large() -> String {
    format!("the expansion grows past {MAX_EXPANSION_BYTES} bytes (the limit on one expanded word)")
}

/// Accumulates words while the lexer walks the input.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    current: String,
    in_word: bool,
}

impl Words {
    /// An unquoted character: whitespace ends the current word.
    fn push_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.current.is_empty() {
                self.done.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.push_raw_char(ch);
        }
    }

    /// A quoted or escaped character: always part of the word.
    fn push_raw_char(&mut self, ch: char) {
        self.current.push(ch);
        self.in_word = true;
    }

    fn push_str(&mut self, text: &str) {
        text.chars().for_each(|ch| self.push_char(ch));
    }

    fn push_raw_str(&mut self, text: &str) {
        self.current.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn Lookup,
    escape: char,
    mode: Mode,
    /// How many `${` are open at the current position.
    depth: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &str, env: &'a dyn Lookup, escape: char, mode: Mode) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            env,
            escape,
            mode,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn run(mut self) -> LexResult<(String, Vec<String>)> {
        let raw = self.mode.raw_escapes;
        self.until(None, raw)
    }

    /// Processes input up to `stop` (consumed) or the end of input, returning
    /// the joined text and the words. Reaching the end while looking for
    /// `stop` is an error.
    fn until(&mut self, stop: Option<char>, raw_escapes: bool) -> LexResult<(String, Vec<String>)> {
        let saved = self.mode.raw_escapes;
        self.mode.raw_escapes = raw_escapes;
        let out = self.until_inner(stop);
        self.mode.raw_escapes = saved;
        out
    }

    fn until_inner(&mut self, stop: Option<char>) -> LexResult<(String, Vec<String>)> {
        let mut text = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((text, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    text.push_str(&value);
                    check_size(&text)?;
                    words.push_str(&value);
                }
                '\'' | '"' if self.mode.skip_quotes => {
                    self.pos += 1;
                    text.push(ch);
                    words.push_char(ch);
                }
                '\'' => {
                    let value = self.single_quoted()?;
                    text.push_str(&value);
                    words.push_raw_str(&value);
                }
                '"' => {
                    let value = self.double_quoted()?;
                    text.push_str(&value);
                    words.push_raw_str(&value);
                }
                _ => {
                    self.pos += 1;
                    if ch != self.escape {
                        text.push(ch);
                        words.push_char(ch);
                        continue;
                    }
                    if self.mode.raw_escapes {
                        text.push(ch);
                        words.push_raw_char(ch);
                    }
                    // An escape at the very end is dropped.
                    let Some(escaped) = self.next() else { break };
                    text.push(escaped);
                    words.push_raw_char(escaped);
                }
            }
        }
        match stop {
            Some(stop) => Err(format!(
                "unexpected end of text while looking for matching {stop}"
            )),
            None => Ok((text, words.finish())),
        }
    }

    /// Everything between single quotes is literal; nothing can be escaped.
    fn single_quoted(&mut self) -> LexResult<String> {
        let mut out = String::new();
        let open = self.next();
        if self.mode.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err("unterminated single quote".to_string()),
                Some('\'') => {
                    if self.mode.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    /// Double quotes keep everything but `$`; the escape character only
    /// escapes `"`, `$` and itself, and is kept literally before anything else.
    fn double_quoted(&mut self) -> LexResult<String> {
        let mut out = String::new();
        let open = self.next();
        if self.mode.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err("unterminated double quote".to_string()),
                Some('"') => {
                    self.pos += 1;
                    if self.mode.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    out.push_str(&self.dollar()?);
                    check_size(&out)?;
                }
                Some(ch) => {
                    self.pos += 1;
                    if ch != self.escape {
                        out.push(ch);
                        continue;
                    }
                    if self.mode.raw_escapes {
                        out.push(ch);
                    }
                    match self.peek() {
                        None => {}
                        Some(next) if next == '"' || next == '$' || next == self.escape => {
                            self.pos += 1;
                            out.push(next);
                        }
                        Some(_) => out.push(ch),
                    }
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get(name).map(str::to_string)
    }

    /// Handles a `$` at the current position.
    fn dollar(&mut self) -> LexResult<String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.mode.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        if self.depth >= MAX_NESTING {
            return Err(format!("substitutions nest more than {MAX_NESTING} deep"));
        }
        self.depth += 1;
        let value = self.braced();
        self.depth -= 1;
        value
    }

    /// `${...}` after its `${`.
    fn braced(&mut self) -> LexResult<String> {
        match self.peek() {
            None => return Err("missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.name();
        let op = self.next();
        match op {
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.mode.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let modifier = self.next();
                self.modifier(&name, modifier, true)
            }
            Some(ch @ ('+' | '-' | '?' | '#' | '%')) => self.modifier(&name, Some(ch), false),
            Some('/') => self.substitute(&name),
            other => Err(unsupported(other, false)),
        }
    }

    /// `${name[:]op word}` for the operators `-`, `+`, `?`, `#`, `%`.
    fn modifier(&mut self, name: &str, op: Option<char>, colon: bool) -> LexResult<String> {
        let pattern_op = matches!(op, Some('#' | '%'));
        if colon && pattern_op {
            return Err(unsupported(op, colon));
        }
        let word = match self.until(Some('}'), pattern_op) {
            Ok((word, _)) => word,
            Err(_) if self.peek().is_none() => return Err("missing '}'".to_string()),
            Err(e) => return Err(e),
        };
        let value = self.lookup(name);
        if value.is_none() && self.mode.skip_unset {
            let op = op.map(String::from).unwrap_or_default();
            let colon = if colon { ":" } else { "" };
            return Ok(format!("${{{name}{colon}{op}{word}}}"));
        }
        let empty = value.as_deref().is_none_or(|v| colon && v.is_empty());
        match op {
            Some('-') => Ok(if empty {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if empty { String::new() } else { word }),
            Some('?') => match value {
                Some(v) if !empty => Ok(v),
                _ => {
                    let default = match value {
                        None => "is not allowed to be unset",
                        Some(_) => "is not allowed to be empty",
                    };
                    let message = if word.is_empty() { default } else { &word };
                    Err(format!("{name}: {message}"))
                }
            },
            Some(op @ ('#' | '%')) => {
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let pattern = Glob::compile(pattern)?;
                let value: Vec<char> = value.unwrap_or_default().chars().collect();
                Ok(if op == '#' {
                    pattern.trim_prefix(&value, greedy)
                } else {
                    pattern.trim_suffix(&value, greedy)
                })
            }
            other => Err(unsupported(other, colon)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn substitute(&mut self, name: &str) -> LexResult<String> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = match self.until(Some('/'), true) {
            Ok((pattern, _)) => pattern,
            Err(_) if self.peek().is_none() => return Err("missing '/' in ${}".to_string()),
            Err(e) => return Err(e),
        };
        let replacement = match self.until(Some('}'), true) {
            Ok((replacement, _)) => replacement,
            Err(_) if self.peek().is_none() => return Err("missing '}'".to_string()),
            Err(e) => return Err(e),
        };
        let Some(value) = self.lookup(name) else {
            if self.mode.skip_unset {
                let slash = if all { "//" } else { "/" };
                return Ok(format!("${{{name}{slash}{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let glob = Glob::compile(&pattern)?;
        let value: Vec<char> = value.chars().collect();
        glob.replace(&value, &replacement, all, MAX_EXPANSION_BYTES)
            .ok_or_else(too_large)
    }

    /// A variable name: letters, digits and `_`; a run of digits (positional
    /// parameter); or one special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(digit) = self.peek().filter(char::is_ascii_digit) {
                    name.push(digit);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }
}

fn unsupported(op: Option<char>, colon: bool) -> String {
    let colon = if colon { ":" } else { "" };
    let op = op.map(String::from).unwrap_or_default();
    format!("unsupported modifier ({colon}{op}) in substitution")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        [
            ("V", "hello/world/file.tar.gz"),
            ("EMPTY", ""),
            ("S", "a b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn expands_patterns() {
        let cases = [
            ("${V#*/}", "world/file.tar.gz"),
            ("${V##*/}", "file.tar.gz"),
            ("${V%.*}", "hello/world/file.tar"),
            ("${V%%.*}", "hello/world/file"),
            ("${V%/*}", "hello/world"),
            ("${V#nomatch}", "hello/world/file.tar.gz"),
            ("${V/o/0}", "hell0/world/file.tar.gz"),
            ("${V//o/0}", "hell0/w0rld/file.tar.gz"),
            ("${V/w*d/X}", "hello/X/file.tar.gz"),
            ("${V//?.?/_}", "hello/world/fil_a_z"),
            ("${UNSET/a/b}", ""),
            ("${V:+set}", "set"),
            ("${EMPTY-dflt}", ""),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("`$V", "$V"),
            ("\"a`\"b\"", "a\"b"),
        ];
        for (input, want) in cases {
            assert_eq!(
                expand_word(input, &env(), '`').unwrap(),
                want,
                "input {input}"
            );
        }
    }

    #[test]
    fn reports_errors() {
        let cases = [
            ("${UNSET?must be set}", "UNSET: must be set"),
            ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
            ("${V:#x}", "unsupported modifier (:#) in substitution"),
            ("'open", "unterminated single quote"),
        ];
        for (input, want) in cases {
            let err = expand_word(input, &env(), '\\').unwrap_err();
            assert!(err.to_string().contains(want), "input {input}: {err}");
        }
    }

    #[test]
    fn splits_words() {
        let list: Vec<(String, String)> = vec![
            ("S".to_string(), "x".to_string()),
            ("S".to_string(), "a  b".to_string()),
        ];
        let slice: &[(String, String)] = &list;
        let cases = [
            ("$S c", vec!["a", "b", "c"]),
            ("\"$S\" c", vec!["a  b", "c"]),
            ("'' x", vec!["x"]),
        ];
        for (input, want) in cases {
            assert_eq!(
                expand_words(input, &slice, '\\').unwrap(),
                want,
                "input {input}"
            );
            assert_eq!(
                expand_words(input, &list, '\\').unwrap(),
                want,
                "input {input}"
            );
        }
    }

    #[test]
    fn heredoc_bodies_keep_quotes() {
        let vars: HashMap<String, String> = [("X".to_string(), "1".to_string())].into();
        let cases = [
            ("a 'b $X' \"$X\" c\n", "a 'b 1' \"1\" c\n"),
            ("\\$X ${X}${Y:-y}\n\tz\n", "$X 1y\n\tz\n"),
            ("it's\n", "it's\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                expand_heredoc(input, &vars).unwrap(),
                want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn raw_mode_keeps_quotes_and_unset_vars() {
        let mode = Mode {
            raw_quotes: true,
            raw_escapes: true,
            skip_unset: true,
            skip_quotes: false,
        };
        let words = split_words(r#"cat <<"EOF" $X ${Y:-z} a\ b"#, &NoVars, '\\', mode).unwrap();
        assert_eq!(words, vec!["cat", "<<\"EOF\"", "$X", "${Y:-z}", "a\\ b"]);
    }
    #[test]
    fn deep_nesting_is_an_error() {
        let nested = |depth: usize| format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
        assert_eq!(
            expand_word(&nested(MAX_NESTING), &NoVars, '\\').unwrap(),
            "x"
        );
        // 10,000 deep on a thread's small stack: an error, not an overflow.
        let deep = nested(10_000);
        let err = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(move || expand_word(&deep, &NoVars, '\\'))
            .unwrap()
            .join()
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("nest more than 64 deep"), "{err}");
    }

    #[test]
    fn expansion_size_is_capped() {
        let half = MAX_EXPANSION_BYTES / 2 + 1;
        let vars: HashMap<String, String> = [("A".to_string(), "a".repeat(half))].into();
        for input in ["${A}${A}", "\"$A$A\"", "${A/a/$A}", "${A//a/aa}"] {
            let err = expand_word(input, &vars, '\\').unwrap_err();
            assert!(err.to_string().contains("grows past"), "{input}: {err}");
        }
        assert_eq!(expand_word("${A}", &vars, '\\').unwrap().len(), half);
    }
}
