//! Turns Dockerfile text into `Instruction`s the way BuildKit's parser does:
//! parser directives, comments, line continuations, keyword and flag
//! splitting, exec (JSON) versus shell form, and heredoc bodies.
//!
//! `parse_syntax` is BuildKit's parser layer and is what the golden dumps
//! describe; `parse` adds the argument checks of `validate.rs` that BuildKit
//! does one layer later, so callers get every error up front.

use super::expand::{split_words, Mode, NoVars};
use super::json::{parse_array, JsonArray};
use super::{validate, Args, Dockerfile, Error, Flag, Heredoc, Instruction, Keyword, Result};

/// Parses and checks a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile> {
    let dockerfile = parse_syntax(text)?;
    validate::check(&dockerfile)?;
    Ok(dockerfile)
}

/// Parser directives recognised at the top of the file.
const DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Tracks the parser directives at the top of the file.
struct Directives {
    done: bool,
    found: Vec<(String, String)>,
    escape: char,
}

impl Directives {
    /// Looks at one (left-trimmed) line; the first line that is not a
    /// directive ends the directive block for good.
    fn observe(&mut self, line: &str, number: usize) -> Result<()> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = directive(line) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !DIRECTIVES.contains(&name.as_str()) {
            self.done = true;
            return Ok(());
        }
        if self.found.iter().any(|(seen, _)| *seen == name) {
            return Err(Error::DuplicateDirective { line: number, name });
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(Error::InvalidEscape {
                        line: number,
                        value: value.to_string(),
                    })
                }
            };
        }
        self.found.push((name, value.to_string()));
        Ok(())
    }
}

/// Matches `#[ \t]*name[ \t]*=[ \t]*value[ \t]*` where name is
/// `[a-zA-Z][a-zA-Z0-9]*` and value is non-empty.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let value = rest
        .trim_start_matches([' ', '\t'])
        .strip_prefix('=')?
        .trim_matches([' ', '\t']);
    (!value.is_empty()).then_some((name, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Removes a trailing continuation marker (the escape character followed only
/// by blanks), returning the rest and whether the logical line ends here. An
/// escape character preceded by another one is an escaped escape, not a
/// continuation.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, true);
    };
    if !before.is_empty() && before.ends_with(escape) {
        return (line, true);
    }
    (before, false)
}

/// Splits text into lines the way Go's line scanner does: on `\n`, with no
/// empty line after a final newline.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    lines
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// BuildKit's parser layer alone: no per-instruction argument checks.
pub(crate) fn parse_syntax(text: &str) -> Result<Dockerfile> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = split_lines(text);
    let mut directives = Directives {
        done: false,
        found: Vec::new(),
        escape: '\\',
    };
    let mut instructions = Vec::new();
    let mut warnings = Vec::new();
    let mut next = 0;
    while next < lines.len() {
        let first = trim_newline(lines[next]).trim_start();
        next += 1;
        let start = next;
        directives.observe(first, start)?;
        let first = if is_comment(first) { "" } else { first };
        let escape = directives.escape;
        let (piece, mut ended) = trim_continuation(first, escape);
        if ended && piece.is_empty() {
            continue;
        }
        let mut joined = piece.to_string();
        let mut empty_continuation = false;
        while !ended && next < lines.len() {
            let raw = lines[next];
            next += 1;
            let line = trim_newline(raw);
            directives.observe(line, next)?;
            if is_comment(raw) {
                continue;
            }
            if line.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (piece, end) = trim_continuation(line, escape);
            joined.push_str(piece);
            ended = end;
        }
        if empty_continuation {
            warnings.push(format!("Dockerfile:{start}: empty continuation line"));
        }
        let mut instruction = build_instruction(&joined, escape, start)?;
        if may_have_heredocs(&instruction)? {
            for mut heredoc in heredocs_in(&joined, start)? {
                let keyword = instruction.keyword.as_str();
                heredoc.content = read_heredoc(&lines, &mut next, &heredoc, (start, keyword))?;
                instruction.heredocs.push(heredoc);
            }
        }
        instruction.end_line = next;
        instructions.push(instruction);
    }
    if instructions.is_empty() {
        return Err(Error::NoInstructions);
    }
    Ok(Dockerfile {
        escape: directives.escape,
        directives: directives.found,
        instructions,
        warnings,
    })
}

/// Reads a heredoc body from the lines after `*next`, consuming its
/// terminator.
fn read_heredoc(
    lines: &[&str],
    next: &mut usize,
    heredoc: &Heredoc,
    (start, keyword): (usize, &'static str),
) -> Result<String> {
    let mut content = String::new();
    while *next < lines.len() {
        let raw = lines[*next];
        *next += 1;
        let mut candidate = trim_newline(raw);
        if heredoc.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == heredoc.name {
            return Ok(content);
        }
        content.push_str(if heredoc.chomp {
            raw.trim_start_matches('\t')
        } else {
            raw
        });
        content.push('\n');
    }
    Err(Error::UnterminatedHeredoc {
        line: start,
        keyword,
        name: heredoc.name.clone(),
    })
}

/// RUN, COPY and ADD in shell form (directly or as an ONBUILD trigger) may
/// carry heredocs.
fn may_have_heredocs(instruction: &Instruction) -> Result<bool> {
    let target = match instruction.onbuild_trigger()? {
        Some(trigger) => trigger,
        None => instruction.clone(),
    };
    Ok(
        matches!(target.keyword, Keyword::Run | Keyword::Copy | Keyword::Add)
            && matches!(target.args, Args::Shell(_)),
    )
}

/// Finds the `[n]<<[-]WORD` markers of a line, in order.
fn heredocs_in(line: &str, number: usize) -> Result<Vec<Heredoc>> {
    if !line.contains("<<") {
        return Ok(Vec::new());
    }
    let raw = Mode {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        skip_quotes: false,
    };
    // Like BuildKit, a line the lexer cannot split has no heredocs.
    let words = split_words(line, &NoVars, '\\', raw).unwrap_or_default();
    let mut found = Vec::new();
    for word in words {
        if let Some(heredoc) = heredoc_marker(&word, number)? {
            found.push(heredoc);
        }
    }
    Ok(found)
}

/// Parses one word as a heredoc marker, if it is one.
pub(crate) fn heredoc_marker(word: &str, number: usize) -> Result<Option<Heredoc>> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let lex = |raw_quotes| {
        let mode = Mode {
            raw_quotes,
            raw_escapes: false,
            skip_unset: true,
            skip_quotes: false,
        };
        split_words(rest, &NoVars, '\\', mode).map_err(|message| Error::Expansion {
            line: Some(number),
            word: rest.to_string(),
            message,
        })
    };
    let plain = lex(false)?;
    let [name] = plain.as_slice() else {
        return Ok(None);
    };
    let quoted = lex(true)?;
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    let expand = quoted.first().map(|q| quotes(q)) == Some(quotes(name));
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand,
        chomp,
        fd: (digits > 0).then(|| word[..digits].parse().ok()).flatten(),
    }))
}

/// BuildKit's whitespace class for splitting instructions: `[\t\v\f\r ]`.
pub(crate) fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Builds an instruction from one logical line (continuations joined).
/// `end_line` and heredocs are filled in by the caller.
pub(crate) fn build_instruction(line: &str, escape: char, number: usize) -> Result<Instruction> {
    let trimmed = line.trim();
    let (word, rest) = match trimmed.find(is_blank) {
        Some(at) => (&trimmed[..at], trimmed[at..].trim_start_matches(is_blank)),
        None => (trimmed, ""),
    };
    let keyword = Keyword::from_word(word).ok_or_else(|| Error::UnknownInstruction {
        line: number,
        word: word.to_string(),
        suggestion: crate::suggestion::closest(word, Keyword::ALL.iter().map(Keyword::as_str)),
    })?;
    let (rest, flags) = extract_flags(rest);
    let text = rest.trim();
    let json = |text: &str| match parse_array(text) {
        JsonArray::Strings(items) => Ok(Some(items)),
        JsonArray::NotJson => Ok(None),
        JsonArray::NonString => Err(Error::NotStringArray {
            line: number,
            keyword: keyword.as_str(),
        }),
    };
    let exec = match keyword {
        Keyword::Run
        | Keyword::Cmd
        | Keyword::Entrypoint
        | Keyword::Shell
        | Keyword::Copy
        | Keyword::Add
        | Keyword::Volume => json(text)?,
        Keyword::Healthcheck => {
            let (kind, command) = match text.find(char::is_whitespace) {
                Some(at) => (&text[..at], text[at..].trim_start()),
                None => (text, ""),
            };
            let items = json(command)?;
            items.filter(|_| kind.eq_ignore_ascii_case("cmd"))
        }
        _ => None,
    };
    let instruction = Instruction {
        keyword,
        line: number,
        end_line: number,
        flags,
        args: match exec {
            Some(items) => Args::Exec(items),
            None => Args::Shell(text.to_string()),
        },
        heredocs: Vec::new(),
        original: line.to_string(),
        escape,
    };
    // Surface errors in ENV/LABEL syntax and in ONBUILD triggers here, where
    // BuildKit's parser reports them.
    match keyword {
        Keyword::Env | Keyword::Label => {
            instruction.key_values()?;
        }
        Keyword::Onbuild => {
            instruction.onbuild_trigger()?;
        }
        _ => {}
    }
    Ok(instruction)
}

/// Splits leading `--name[=value]` flags off the arguments, removing quotes
/// and backslash escapes inside them; a lone `--` ends the flags. Returns the
/// remaining text.
fn extract_flags(text: &str) -> (&str, Vec<Flag>) {
    let mut flags = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &text[pos..];
        let skipped = rest.len() - rest.trim_start().len();
        pos += skipped;
        let rest = &text[pos..];
        if !rest.starts_with("--") {
            return (rest, flags);
        }
        let (word, used) = flag_word(rest);
        pos += used;
        if word == "--" {
            return (&text[pos..], flags);
        }
        if let Some(body) = word.strip_prefix("--") {
            flags.push(match body.split_once('=') {
                Some((name, value)) => Flag {
                    name: name.to_string(),
                    value: Some(value.to_string()),
                },
                None => Flag {
                    name: body.to_string(),
                    value: None,
                },
            });
        }
        if pos >= text.len() {
            return ("", flags);
        }
    }
}

/// Reads one flag word (up to unquoted whitespace), returning it with quotes
/// and escapes removed, and the number of bytes used.
fn flag_word(text: &str) -> (String, usize) {
    let mut word = String::new();
    let mut quote = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, ch)) = chars.next() {
        match (quote, ch) {
            (None, c) if c.is_whitespace() => return (word, at),
            (None, '\'' | '"') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                if let Some((_, escaped)) = chars.next() {
                    word.push(escaped);
                }
            }
            (_, c) => word.push(c),
        }
    }
    (word, text.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn flag(name: &str, value: Option<&str>) -> Flag {
        Flag {
            name: name.to_string(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn extracts_flags() {
        let cases = [
            ("a b", "a b", vec![]),
            ("--link a b", "a b", vec![flag("link", None)]),
            (
                "--chown=\"a b\" --from=x\\ y  src dst",
                "src dst",
                vec![flag("chown", Some("a b")), flag("from", Some("x y"))],
            ),
            ("--x=1 -- --y", " --y", vec![flag("x", Some("1"))]),
            ("--only", "", vec![flag("only", None)]),
            ("-x a", "-x a", vec![]),
        ];
        for (input, rest, flags) in cases {
            assert_eq!(extract_flags(input), (rest, flags), "input {input}");
        }
    }

    #[test]
    fn recognises_directives() {
        let cases = [
            ("# escape=`", Some(("escape", "`"))),
            (
                "#syntax = docker/dockerfile:1 ",
                Some(("syntax", "docker/dockerfile:1")),
            ),
            ("# check=skip=all", Some(("check", "skip=all"))),
            ("# escape=", None),
            ("# 1x=y", None),
            ("# just a comment", None),
        ];
        for (input, want) in cases {
            assert_eq!(directive(input), want, "input {input}");
        }
    }

    #[test]
    fn handles_continuations() {
        let cases = [
            ("a \\", '\\', ("a ", false)),
            ("a\\  \t", '\\', ("a", false)),
            ("\\", '\\', ("", false)),
            ("a\\\\", '\\', ("a\\\\", true)),
            ("a `", '`', ("a ", false)),
            ("a \\", '`', ("a \\", true)),
        ];
        for (input, escape, want) in cases {
            assert_eq!(trim_continuation(input, escape), want, "input {input:?}");
        }
    }

    #[test]
    fn finds_heredocs() {
        let doc = |name: &str, expand, chomp, fd| Heredoc {
            name: name.to_string(),
            content: String::new(),
            expand,
            chomp,
            fd,
        };
        let cases = [
            ("RUN cat <<EOF", vec![doc("EOF", true, false, None)]),
            (
                "RUN <<-'X' 3<<\"Y\" cat",
                vec![doc("X", false, true, None), doc("Y", false, false, Some(3))],
            ),
            ("RUN echo '<<EOF' <<<here x<<EOF", vec![]),
        ];
        for (input, want) in cases {
            assert_eq!(heredocs_in(input, 1).unwrap(), want, "input {input}");
        }
    }

    #[test]
    fn parses_heredoc_bodies() {
        let text = "FROM x\nRUN <<A <<-B cat\none\n  two\nA\n\tthree\n\tB\nCMD y\n";
        let df = parse_syntax(text).unwrap();
        let run = &df.instructions[1];
        assert_eq!((run.line, run.end_line), (2, 7));
        assert_eq!(run.heredocs[0].content, "one\n  two\n");
        assert_eq!(run.heredocs[1].content, "three\n");
        assert_eq!(df.instructions[2].line, 8);
    }

    #[test]
    fn reports_line_errors() {
        let cases = [
            (
                "FROM x\nRUN <<EOF\nbody\n",
                "Dockerfile:2: RUN: heredoc <<EOF is never terminated",
            ),
            (
                "FROM x\n\nFORM y",
                "Dockerfile:3: unknown instruction \"FORM\" (did you mean FROM?)",
            ),
            (
                "# escape=x\nFROM y",
                "Dockerfile:1: escape directive must be ` or \\, found \"x\"",
            ),
            (
                "# syntax=a\n# syntax=b\nFROM y",
                "Dockerfile:2: parser directive \"syntax\" is given more than once",
            ),
            (
                "FROM x\nCMD [\"a\", 1]",
                "Dockerfile:2: CMD arguments in JSON form must all be strings",
            ),
            (
                "FROM x\nENV a=b c",
                "Dockerfile:2: ENV expects name=value pairs but found \"c\"",
            ),
            (
                "FROM x\nENV PATH",
                "Dockerfile:2: ENV requires a name and a value",
            ),
            ("# only\n\n", "the dockerfile has no instructions"),
        ];
        for (input, want) in cases {
            let err = parse_syntax(input).unwrap_err();
            assert_eq!(err.to_string(), want, "input {input:?}");
        }
    }

    #[test]
    fn records_directives_and_warnings() {
        let text = "\u{feff}# Syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN x `\n\n  y\n";
        let df = parse_syntax(text).unwrap();
        assert_eq!(df.escape, '`');
        let want = [("syntax", "docker/dockerfile:1"), ("escape", "`")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(df.directives, want);
        assert_eq!(
            df.warnings,
            vec!["Dockerfile:4: empty continuation line".to_string()]
        );
        assert_eq!(df.instructions[1].original, "RUN x   y");
        assert_eq!(df.instructions[1].end_line, 6);
    }
}
