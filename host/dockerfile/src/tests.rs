//! BuildKit's golden files, an extra check beside the crate's own fixtures
//! ([`fixtures`], in the repository): parser dumps, negative parser cases, and the lexer's
//! `envVarTest` and `wordsTest` tables, from `../shared/conformance/buildkit` beside the
//! checkout. They run when that directory is there; `KILN_SHARED=1` (as CI sets it) makes
//! them required, so a missing directory fails them, and `KILN_SHARED=0` turns them off.
//! `KILN_BUILDKIT_GOLDENS=DIR` names another copy (and makes it required too).

#[cfg(test)]
mod fixtures;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::parse::parse_syntax;
use super::{expand_word, expand_words, parse, Args, Instruction, Keyword};

/// Cases `parse` rejects on purpose although BuildKit's parser layer accepts
/// them (BuildKit rejects them one layer later). Their dumps are still checked
/// against `parse_syntax`.
const EXPECTED_FAILURES: [(&str, &str); 2] = [
    ("flags", "made-up flags (--user, --doit) and flags on CMD are rejected by parse"),
    ("health", "bare HEALTHCHECK, HEALTHCHECK CMD without a command and type CONNECT are rejected by parse"),
];

/// The goldens directory, or `None` (said on stderr) when they are not to be checked here.
fn goldens() -> Option<PathBuf> {
    let shared = std::env::var("KILN_SHARED").unwrap_or_default();
    let (dir, required) = match std::env::var_os("KILN_BUILDKIT_GOLDENS") {
        Some(dir) => (PathBuf::from(dir), true),
        None if shared == "0" => {
            eprintln!("BuildKit goldens not checked: KILN_SHARED=0");
            return None;
        }
        None => (
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/conformance/buildkit"
            )),
            !shared.is_empty(),
        ),
    };
    if !dir.is_dir() && !required {
        eprintln!(
            "BuildKit goldens not checked: {} is absent (KILN_SHARED=1 requires them)",
            dir.display()
        );
        return None;
    }
    assert!(
        dir.is_dir(),
        "buildkit goldens directory {} is missing (KILN_SHARED or KILN_BUILDKIT_GOLDENS requires it)",
        dir.display()
    );
    Some(dir)
}

fn read(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{} is not utf-8: {e}", path.display()))
}

fn cases(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            )
        })
        .collect();
    found.sort();
    found
}

/// Go's `strconv.Quote`.
fn go_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One instruction in BuildKit's `Node.Dump` format.
fn dump(inst: &Instruction) -> String {
    let written = inst
        .original
        .trim()
        .split(super::parse::is_blank)
        .next()
        .unwrap_or_default();
    let mut out = written.to_lowercase();
    if !inst.flags.is_empty() {
        let flags: Vec<String> = inst
            .flags
            .iter()
            .map(|f| {
                let value = f
                    .value
                    .as_ref()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default();
                go_quote(&format!("--{}{value}", f.name))
            })
            .collect();
        out.push_str(&format!(" [{}]", flags.join(" ")));
    }
    let args: Vec<String> = match inst.keyword {
        Keyword::Onbuild => match inst.onbuild_trigger().unwrap() {
            Some(trigger) => vec![format!("({})", dump(&trigger))],
            None => Vec::new(),
        },
        Keyword::Env | Keyword::Label => inst
            .key_values_with_form()
            .unwrap()
            .into_iter()
            .flat_map(|(k, v, eq)| {
                [
                    go_quote(&k),
                    go_quote(&v),
                    go_quote(if eq { "=" } else { "" }),
                ]
            })
            .collect(),
        _ => inst.words().unwrap().iter().map(|w| go_quote(w)).collect(),
    };
    for arg in args {
        out.push(' ');
        out.push_str(&arg);
    }
    out
}

fn dump_all(instructions: &[Instruction]) -> String {
    instructions
        .iter()
        .map(|i| format!("({})\n", dump(i)))
        .collect()
}

#[test]
fn parser_goldens() {
    let Some(goldens) = goldens() else { return };
    let dir = goldens.join("testfiles");
    let all = cases(&dir);
    assert!(
        all.len() >= 30,
        "expected the buildkit testfiles in {}",
        dir.display()
    );
    for (name, _) in EXPECTED_FAILURES {
        assert!(
            all.iter().any(|(n, _)| n == name),
            "expected failure {name} is not a case"
        );
    }
    let mut failures = Vec::new();
    for (name, path) in &all {
        let text = read(&path.join("Dockerfile"));
        let want = read(&path.join("result"));
        let syntax = match parse_syntax(&text) {
            Ok(df) => dump_all(&df.instructions),
            Err(e) => format!("error: {e}\n"),
        };
        if syntax != want {
            failures.push(format!(
                "{name}: parse_syntax dump differs\n--- want\n{want}--- got\n{syntax}"
            ));
        }
        let expected_failure = EXPECTED_FAILURES.iter().any(|(n, _)| n == name);
        match (parse(&text), expected_failure) {
            (Ok(df), false) if dump_all(&df.instructions) == want => {}
            (Ok(_), false) => failures.push(format!("{name}: parse dump differs")),
            (Err(e), false) => failures.push(format!("{name}: parse failed: {e}")),
            (Ok(_), true) => failures.push(format!(
                "{name}: listed as expected failure but parse accepts it"
            )),
            (Err(_), true) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn negative_goldens() {
    let Some(goldens) = goldens() else { return };
    let dir = goldens.join("testfiles-negative");
    let all = cases(&dir);
    assert!(!all.is_empty(), "no negative cases in {}", dir.display());
    for (name, path) in all {
        let text = read(&path.join("Dockerfile"));
        assert!(parse(&text).is_err(), "{name}: parse should fail");
    }
}

#[test]
fn env_var_goldens() {
    let Some(goldens) = goldens() else { return };
    let env: HashMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let text = read(&goldens.join("envVarTest"));
    let mut checked = 0;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(3, '|').collect();
        let [platform, source, expected] = fields[..] else {
            panic!("envVarTest line {}: malformed {line:?}", number + 1)
        };
        if platform.trim() == "W" {
            continue;
        }
        let (source, expected) = (source.trim(), expected.trim());
        let got = expand_word(source, &env, '\\');
        match expected {
            "error" => assert!(
                got.is_err(),
                "line {}: {source:?} should fail, got {got:?}",
                number + 1
            ),
            want => assert_eq!(got.as_deref(), Ok(want), "line {}: {source:?}", number + 1),
        }
        checked += 1;
    }
    assert!(checked > 200, "only {checked} envVarTest lines checked");
}

#[test]
fn words_goldens() {
    let Some(goldens) = goldens() else { return };
    let mut env: HashMap<String, String> = HashMap::new();
    let text = read(&goldens.join("wordsTest"));
    let mut checked = 0;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            let (name, value) = assignment.split_once('=').unwrap();
            env.insert(name.to_string(), value.to_string());
            continue;
        }
        let (input, expected) = line.split_once('|').unwrap();
        let (input, expected) = (input.trim(), expected.trim_start());
        let got = expand_words(input, &env, '\\');
        match expected {
            "error" => assert!(got.is_err(), "line {}: {input:?} should fail", number + 1),
            want => {
                let want: Vec<String> = want.split(',').map(str::to_string).collect();
                assert_eq!(got, Ok(want), "line {}: {input:?}", number + 1);
            }
        }
        checked += 1;
    }
    assert!(checked > 20, "only {checked} wordsTest lines checked");
}

#[test]
fn exec_and_shell_forms() {
    let df = parse("FROM a\nRUN [\"echo\", \"hi\"]\nRUN ['x']\nCOPY [\"a b\", \"/c\"]\n").unwrap();
    let args: Vec<&Args> = df.instructions.iter().map(|i| &i.args).collect();
    assert_eq!(
        args[1],
        &Args::Exec(vec!["echo".to_string(), "hi".to_string()])
    );
    assert_eq!(args[2], &Args::Shell("['x']".to_string()));
    assert_eq!(
        args[3],
        &Args::Exec(vec!["a b".to_string(), "/c".to_string()])
    );
}
