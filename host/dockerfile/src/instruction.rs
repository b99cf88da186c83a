//! Accessors on `Instruction` that split its raw arguments the way BuildKit
//! does for each keyword. Nothing here expands variables or removes quotes:
//! callers pass the returned raw words to `expand_word`.

use super::parse::{build_instruction, is_blank};
use super::{Args, Error, Flag, Instruction, Keyword, Result};

impl Instruction {
    /// The first flag called `name` (flags are written without `--`).
    pub fn flag(&self, name: &str) -> Option<&Flag> {
        self.flags.iter().find(|f| f.name == name)
    }

    /// Every flag called `name`, for repeatable ones such as `--mount`.
    pub fn flags_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Flag> + 'a {
        self.flags.iter().filter(move |f| f.name == name)
    }

    /// The shell-form text, or `""` for the exec form.
    fn text(&self) -> &str {
        match &self.args {
            Args::Shell(text) => text,
            Args::Exec(_) => "",
        }
    }

    /// ENV/LABEL pairs as raw words (quotes kept, nothing expanded). Accepts
    /// both `K=V K2="v 2"` and the legacy `K some value`.
    pub fn key_values(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .key_values_with_form()?
            .into_iter()
            .map(|(key, value, _)| (key, value))
            .collect())
    }

    /// Like `key_values`, also telling whether each pair was written `K=V`
    /// (true) or in the legacy `K V` form (false).
    pub(crate) fn key_values_with_form(&self) -> Result<Vec<(String, String, bool)>> {
        let text = self.text();
        let words = quoted_words(text, self.escape);
        let Some(first) = words.first() else {
            return Ok(Vec::new());
        };
        if !first.contains('=') {
            let (key, value) = split_blank_once(text);
            if value.is_empty() {
                return Err(Error::MissingArguments {
                    line: self.line,
                    keyword: self.keyword.as_str(),
                    expected: "a name and a value",
                });
            }
            return Ok(vec![(key.to_string(), value.to_string(), false)]);
        }
        words
            .into_iter()
            .map(|word| match word.split_once('=') {
                Some((key, value)) => Ok((key.to_string(), value.to_string(), true)),
                None => Err(Error::KeyValue {
                    line: self.line,
                    keyword: self.keyword.as_str(),
                    word,
                }),
            })
            .collect()
    }

    /// ARG declarations: `ARG A` gives `("A", None)`, `ARG A=1` gives
    /// `("A", Some("1"))`; values are raw words.
    pub fn arg_decls(&self) -> Result<Vec<(String, Option<String>)>> {
        Ok(quoted_words(self.text(), self.escape)
            .into_iter()
            .map(|word| match word.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (word, None),
            })
            .collect())
    }

    /// The argument list as BuildKit's parser splits it, raw (quotes kept):
    /// - exec form: the JSON items (for HEALTHCHECK, `"CMD"` then the items);
    /// - COPY, ADD, VOLUME, FROM, EXPOSE: the text split on blanks;
    /// - ARG, ENV, LABEL: quote-aware words;
    /// - HEALTHCHECK: the type word, then the rest of the text as one word;
    /// - RUN, CMD, ENTRYPOINT, SHELL, MAINTAINER, USER, WORKDIR, STOPSIGNAL,
    ///   ONBUILD: the whole text as one word (`WORKDIR /a b` is one path).
    pub fn words(&self) -> Result<Vec<String>> {
        let text = match &self.args {
            Args::Exec(items) if self.keyword == Keyword::Healthcheck => {
                return Ok(std::iter::once("CMD".to_string())
                    .chain(items.iter().cloned())
                    .collect())
            }
            Args::Exec(items) => return Ok(items.clone()),
            Args::Shell(text) => text.as_str(),
        };
        if text.is_empty() {
            return Ok(Vec::new());
        }
        Ok(match self.keyword {
            Keyword::Copy | Keyword::Add | Keyword::Volume | Keyword::From | Keyword::Expose => {
                text.split(is_blank)
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            Keyword::Arg | Keyword::Env | Keyword::Label => quoted_words(text, self.escape),
            Keyword::Healthcheck => {
                let (kind, rest) = match text.find(char::is_whitespace) {
                    Some(at) => (&text[..at], text[at..].trim_start()),
                    None => (text, ""),
                };
                std::iter::once(kind)
                    .chain((!rest.is_empty()).then_some(rest))
                    .map(str::to_string)
                    .collect()
            }
            _ => vec![text.to_string()],
        })
    }

    /// FROM's image and optional stage name (`FROM img AS name`). Flags such
    /// as `--platform` stay in `flags`.
    pub fn from_parts(&self) -> Result<(String, Option<String>)> {
        let words = self.words()?;
        match words.as_slice() {
            [image] => Ok((image.clone(), None)),
            [image, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                Ok((image.clone(), Some(name.clone())))
            }
            [] => Err(Error::MissingArguments {
                line: self.line,
                keyword: "FROM",
                expected: "an image",
            }),
            _ => Err(Error::InvalidFrom {
                line: self.line,
                found: self.text().to_string(),
            }),
        }
    }

    /// For ONBUILD, the trigger parsed as an instruction on the same lines
    /// (sharing the heredocs); `None` for other keywords or an empty ONBUILD.
    pub fn onbuild_trigger(&self) -> Result<Option<Instruction>> {
        let text = self.text();
        if self.keyword != Keyword::Onbuild || text.is_empty() {
            return Ok(None);
        }
        let mut trigger = build_instruction(text, self.escape, self.line)?;
        trigger.end_line = self.end_line;
        trigger.heredocs = self.heredocs.clone();
        Ok(Some(trigger))
    }
}

/// Splits at the first run of blanks: `("K", "rest of text")`.
fn split_blank_once(text: &str) -> (&str, &str) {
    match text.find(is_blank) {
        Some(at) => (&text[..at], text[at..].trim_start_matches(is_blank)),
        None => (text, ""),
    }
}

/// BuildKit's `parseWords`: splits on unquoted whitespace, keeping quotes and
/// escape characters in the words. An escape character at the very end is
/// dropped.
pub(crate) fn quoted_words(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut keep_empty = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match quote {
            None if ch.is_whitespace() => {
                if in_word && (keep_empty || !word.is_empty()) {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
                keep_empty = false;
            }
            None => {
                in_word = true;
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    keep_empty = true;
                }
                if ch == escape {
                    let Some(next) = chars.next() else { break };
                    word.push(ch);
                    word.push(next);
                } else {
                    word.push(ch);
                }
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    let Some(next) = chars.next() else { break };
                    word.push(ch);
                    word.push(next);
                } else {
                    word.push(ch);
                }
            }
        }
    }
    if in_word && (keep_empty || !word.is_empty()) {
        words.push(word);
    }
    words
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::parse;

    fn first_after_from(text: &str) -> Instruction {
        let df = parse(&format!("FROM scratch\n{text}\n")).unwrap();
        df.instructions[1].clone()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn splits_quoted_words() {
        let cases = [
            ("a b", '\\', vec!["a", "b"]),
            ("a=\"x y\" b", '\\', vec!["a=\"x y\"", "b"]),
            ("a\\ b c", '\\', vec!["a\\ b", "c"]),
            ("'a\\'b''", '\\', vec!["'a\\'b''"]),
            ("\"a\\\"b\"", '\\', vec!["\"a\\\"b\""]),
            ("\"\" x", '\\', vec!["\"\"", "x"]),
            ("a`  b", '`', vec!["a` ", "b"]),
            ("end\\", '\\', vec!["end"]),
        ];
        for (input, escape, want) in cases {
            assert_eq!(quoted_words(input, escape), strings(&want), "input {input}");
        }
    }

    #[test]
    fn reads_key_values() {
        let cases = [
            ("ENV A b c", vec![("A", "b c")]),
            ("ENV A=1 B=\"x y\"", vec![("A", "1"), ("B", "\"x y\"")]),
            ("LABEL a.b=c\\ d", vec![("a.b", "c\\ d")]),
            ("ENV E=", vec![("E", "")]),
        ];
        for (input, want) in cases {
            let got = first_after_from(input).key_values().unwrap();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "input {input}");
        }
    }

    #[test]
    fn reads_arg_decls() {
        let inst = first_after_from("ARG A B=2 C=\"x y\"");
        let want = vec![
            ("A".to_string(), None),
            ("B".to_string(), Some("2".to_string())),
            ("C".to_string(), Some("\"x y\"".to_string())),
        ];
        assert_eq!(inst.arg_decls().unwrap(), want);
    }

    #[test]
    fn reads_words() {
        let cases = [
            (
                "COPY --chown=1 a  \"b c\" /d",
                vec!["a", "\"b", "c\"", "/d"],
            ),
            ("COPY [\"a b\", \"/d\"]", vec!["a b", "/d"]),
            ("WORKDIR /a b", vec!["/a b"]),
            ("EXPOSE 80/tcp\t443", vec!["80/tcp", "443"]),
            (
                "HEALTHCHECK --retries=2 CMD  curl -f x",
                vec!["CMD", "curl -f x"],
            ),
            (
                "HEALTHCHECK CMD [\"curl\", \"x\"]",
                vec!["CMD", "curl", "x"],
            ),
            ("HEALTHCHECK NONE", vec!["NONE"]),
            ("RUN echo  hi", vec!["echo  hi"]),
        ];
        for (input, want) in cases {
            assert_eq!(
                first_after_from(input).words().unwrap(),
                strings(&want),
                "input {input}"
            );
        }
    }

    #[test]
    fn reads_from_parts() {
        let cases = [
            ("FROM alpine", ("alpine", None)),
            (
                "FROM --platform=$BUILDPLATFORM alpine:3 AS build",
                ("alpine:3", Some("build")),
            ),
            ("from x as y", ("x", Some("y"))),
        ];
        for (input, (image, name)) in cases {
            let df = parse(input).unwrap();
            let got = df.instructions[0].from_parts().unwrap();
            assert_eq!(
                got,
                (image.to_string(), name.map(str::to_string)),
                "input {input}"
            );
        }
        let df = parse("FROM --platform=linux/arm64 a").unwrap();
        let platform = df.instructions[0]
            .flag("platform")
            .and_then(|f| f.value.clone());
        assert_eq!(platform.as_deref(), Some("linux/arm64"));
    }

    #[test]
    fn reads_onbuild_trigger() {
        let inst = first_after_from("ONBUILD RUN --network=none echo hi");
        assert_eq!(
            inst.args,
            Args::Shell("RUN --network=none echo hi".to_string())
        );
        let trigger = inst.onbuild_trigger().unwrap().unwrap();
        assert_eq!(trigger.keyword, Keyword::Run);
        assert_eq!(
            trigger.flag("network").and_then(|f| f.value.as_deref()),
            Some("none")
        );
        assert_eq!(trigger.args, Args::Shell("echo hi".to_string()));
    }
}
