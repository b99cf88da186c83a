//! Fuzz target bodies for this crate's readers of untrusted text: the Dockerfile parser (with
//! the instruction accessors and the lints that run on its output), the word expander and
//! `.dockerignore` rules. Each takes arbitrary bytes and returns nothing; a panic is a bug.
//! The cargo-fuzz crate in `fuzz/` and the stable smoke test in the `kiln-tests` e2e binary
//! (`fuzz_smoke`) both call these, so the two run the same code (docs/fuzzing.md).

use crate::{
    expand_heredoc, expand_word, expand_words, is_heredoc_marker, lint, parse, IgnoreRules,
    Instruction, LintOptions,
};

/// The variables every expansion input sees: set, empty, with spaces, with glob characters.
const VARS: [(&str, &str); 6] = [
    ("A", "a"),
    ("EMPTY", ""),
    ("S", "two words"),
    ("P", "/usr/local/bin:/usr/bin"),
    ("G", "*.tar?[ab]"),
    ("Q", "\"'\\$"),
];

/// Paths every `.dockerignore` input is asked about, besides its own lines.
const PATHS: [&str; 12] = [
    "",
    ".",
    "Dockerfile",
    ".dockerignore",
    "a",
    "a/b",
    "a/b/c.txt",
    ".git/config",
    "node_modules/x/y.js",
    "../x",
    "/abs/path",
    "dir/.env",
];

/// The Dockerfile parser: parses the text, runs every accessor on every instruction (and on
/// ONBUILD triggers) and the lints on the file.
pub fn dockerfile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(df) = parse(&text) else { return };
    assert!(
        !df.instructions.is_empty(),
        "parse accepted no instructions"
    );
    for ins in &df.instructions {
        accessors(ins);
        if let Ok(Some(trigger)) = ins.onbuild_trigger() {
            accessors(&trigger);
        }
    }
    lint(&df, &LintOptions::default());
    lint(&df, &LintOptions { target: Some("a") });
}

fn accessors(ins: &Instruction) {
    let _ = ins.words();
    let _ = ins.key_values();
    let _ = ins.arg_decls();
    let _ = ins.from_parts();
    let _ = ins.flag("from");
    let _ = ins.flags_named("mount").count();
}

/// The word expander: the first byte picks the escape character, the rest is expanded as a
/// word, as words, and as a heredoc body.
pub fn expand(data: &[u8]) {
    let (escape, rest) = match data.split_first() {
        Some((b, rest)) if b % 2 == 1 => ('`', rest),
        Some((_, rest)) => ('\\', rest),
        None => ('\\', data),
    };
    let text = String::from_utf8_lossy(rest);
    let env: Vec<(String, String)> = VARS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let word = expand_word(&text, &env, escape);
    let words = expand_words(&text, &env, escape);
    // the two lexers agree on whether the text is well formed
    assert_eq!(
        word.is_ok(),
        words.is_ok(),
        "expand_word and expand_words disagree"
    );
    let _ = expand_heredoc(&text, &env);
    let _ = is_heredoc_marker(&text);
}

/// `.dockerignore` rules: the text before the first NUL byte is the file, the lines after it
/// (or the file's own lines when there is none) are the paths asked about, with a fixed set.
pub fn dockerignore(data: &[u8]) {
    let (rules, paths) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, data),
    };
    let rules = IgnoreRules::parse(&String::from_utf8_lossy(rules));
    let _ = rules.patterns();
    let exceptions = rules.has_exceptions();
    let paths = String::from_utf8_lossy(paths);
    for path in PATHS.iter().copied().chain(paths.lines()) {
        let ignored = rules.is_ignored(path);
        // without exceptions, a path inside an ignored directory is ignored too
        if ignored && !exceptions && plain(path) {
            let inner = format!("{path}/inner");
            assert!(
                rules.is_ignored(&inner),
                "{path:?} is ignored but {inner:?} is not"
            );
        }
    }
}

/// A relative path of ordinary names: no empty, `.` or `..` element.
fn plain(path: &str) -> bool {
    path.split('/').all(|name| !matches!(name, "" | "." | ".."))
}
