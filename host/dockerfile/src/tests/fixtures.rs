//! The crate's own fixtures, kept in the repository (`host/dockerfile/tests/fixtures/`):
//! `parse.cases` (Dockerfiles and the parser's dump of them, or the error they must give) and
//! `expand.table` (words, the environment they expand in and what they become). Written for
//! this project, they cover what BuildKit's goldens do (continuations, escapes and the escape
//! directive, JSON and shell forms, flags, ENV/LABEL forms, ONBUILD, heredocs, expansion
//! operators and quoting), so `cargo test` needs nothing outside the checkout.

use std::collections::HashMap;
use std::path::PathBuf;

use super::{dump_all, read};
use crate::{expand_word, expand_words, parse};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    read(&path)
}

/// One `=== NAME` block of `parse.cases`.
struct ParseCase {
    name: String,
    line: usize,
    dockerfile: String,
    /// `Ok(dump)` after `--- want`, `Err(text)` after `--- error`.
    want: Result<String, String>,
}

fn parse_cases(text: &str) -> Vec<ParseCase> {
    let mut cases: Vec<ParseCase> = Vec::new();
    // which part of the current case a line belongs to: 0 Dockerfile, 1 want, 2 error
    let mut part = 0;
    for (number, line) in text.lines().enumerate() {
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(ParseCase {
                name: name.to_string(),
                line: number + 1,
                dockerfile: String::new(),
                want: Ok(String::new()),
            });
            part = 0;
            continue;
        }
        let Some(case) = cases.last_mut() else {
            continue; // the header comment
        };
        match (line, part) {
            ("--- want", 0) => part = 1,
            ("--- error", 0) => {
                part = 2;
                case.want = Err(String::new());
            }
            (_, 0) => {
                case.dockerfile.push_str(line);
                case.dockerfile.push('\n');
            }
            (_, 1) if !line.is_empty() => {
                if let Ok(dump) = &mut case.want {
                    dump.push_str(line);
                    dump.push('\n');
                }
            }
            (_, 2) if !line.is_empty() => case.want = Err(line.to_string()),
            _ => {}
        }
    }
    cases
}

#[test]
fn parser_fixtures() {
    let cases = parse_cases(&fixture("parse.cases"));
    assert!(cases.len() >= 25, "only {} parse cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let label = format!("parse.cases:{} ({})", case.line, case.name);
        match (parse(&case.dockerfile), &case.want) {
            (Ok(df), Ok(want)) => {
                let got = dump_all(&df.instructions);
                if &got != want {
                    failures.push(format!("{label}\n--- want\n{want}--- got\n{got}"));
                }
            }
            (Err(e), Err(want)) if e.to_string().contains(want.as_str()) => {}
            (Err(e), Err(want)) => {
                failures.push(format!("{label}: error {e:?} does not mention {want:?}"))
            }
            (Err(e), Ok(_)) => failures.push(format!("{label}: parse failed: {e}")),
            (Ok(df), Err(want)) => failures.push(format!(
                "{label}: parsed, but should fail with {want:?}:\n{}",
                dump_all(&df.instructions)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} parse fixture(s) failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Checks one `word`/`words` line; returns what went wrong.
fn check_expansion(
    kind: &str,
    rest: &str,
    env: &HashMap<String, String>,
    escape: char,
) -> Result<(), String> {
    let (source, want) = rest
        .split_once(" =>")
        .ok_or_else(|| format!("no ` => ` in {rest:?}"))?;
    let want = want.strip_prefix(' ').unwrap_or(want);
    let got = match kind {
        "word" => expand_word(source, env, escape).map(|w| vec![w]),
        _ => expand_words(source, env, escape),
    };
    let want: Result<Vec<String>, ()> = match (want, kind) {
        ("!error", _) => Err(()),
        ("", "words") => Ok(Vec::new()),
        (_, "word") => Ok(vec![want.to_string()]),
        _ => Ok(want.split('|').map(str::to_string).collect()),
    };
    match (&got, &want) {
        (Ok(got), Ok(want)) if got == want => Ok(()),
        (Err(_), Err(())) => Ok(()),
        _ => Err(format!("{kind} {source:?}: want {want:?}, got {got:?}")),
    }
}

#[test]
fn expander_fixtures() {
    let text = fixture("expand.table");
    let mut env: HashMap<String, String> = HashMap::new();
    let mut escape = '\\';
    let (mut checked, mut failures) = (0, Vec::new());
    for (number, line) in text.lines().enumerate() {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "" | "#" => {}
            "env" => {
                let (name, value) = rest.split_once('=').expect("env NAME=VALUE");
                env.insert(name.to_string(), value.to_string());
            }
            "unset" => {
                env.remove(rest);
            }
            "escape" => escape = rest.chars().next().expect("escape C"),
            "word" | "words" => {
                checked += 1;
                if let Err(e) = check_expansion(kind, rest, &env, escape) {
                    failures.push(format!("expand.table:{}: {e}", number + 1));
                }
            }
            other => panic!("expand.table:{}: unknown line kind {other:?}", number + 1),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} expansion fixture(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 80, "only {checked} expansion lines checked");
}
