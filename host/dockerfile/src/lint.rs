//! Lints on a parsed Dockerfile: the checks `docker build --check` reports (BuildKit's rule
//! names and meanings), plus two of kiln's own (`UnreachableStage`, `MultipleSourcesToFile`).
//! Pure: the findings are values; printing them, and `--check`'s exit code, are kiln's.
//!
//! The lints cannot see a base image's environment (that needs the image), so `UndefinedVar`
//! assumes a stage built on an image may get any UPPER_CASE variable from it, and reports such
//! a name there only when it is a likely typo of a defined one (`$PAHT` for `$PATH`).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::fmt;

use super::expand::{expand_word, Lookup};
use super::suggestion::closest;
use super::{Args, Dockerfile, Instruction, Keyword};

/// One finding: the rule, the line it points at and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// BuildKit's rule name (`StageNameCasing`, …)
    pub rule: &'static str,
    /// 1-based line of the instruction
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.message)
    }
}

/// What the lints need to know about the build beyond the file.
#[derive(Debug, Clone, Default)]
pub struct LintOptions<'a> {
    /// `--target`; the last stage when unset
    pub target: Option<&'a str>,
}

/// BuildKit's automatic platform ARGs, usable in FROM without a declaration.
const PLATFORM_ARGS: [&str; 8] = [
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
];

/// Words in an ARG or ENV name that suggest a secret, and words that say it is not one
/// (BuildKit's lists; a word is a whole name or a `_`-separated part of it).
const SECRET_WORDS: [&str; 10] = [
    "apikey",
    "auth",
    "credential",
    "credentials",
    "key",
    "password",
    "pword",
    "passwd",
    "secret",
    "token",
];
const NOT_SECRET_WORDS: [&str; 3] = ["public", "file", "version"];

/// What a stage left for the stages built on it.
#[derive(Debug, Clone, Default)]
struct StageFacts {
    name: Option<String>,
    /// variables defined (ARG, ENV) by the stage and the stages under it
    defined: HashSet<String>,
    /// built on an image: its environment is unknown
    on_image: bool,
    absolute_workdir: bool,
    shell_set: bool,
    /// the stages it reads (its base, `--from`, `RUN --mount from=`)
    uses: Vec<usize>,
}

/// Every lint of `df`, in line order, less those the file's `# check=skip=…` directive turns off.
pub fn lint(df: &Dockerfile, opts: &LintOptions) -> Vec<Lint> {
    let mut out = Vec::new();
    let mut globals: HashSet<String> = PLATFORM_ARGS.iter().map(|s| s.to_string()).collect();
    let mut stages: Vec<StageFacts> = Vec::new();
    let mut seen: Vec<(Keyword, usize)> = Vec::new();
    for ins in &df.instructions {
        if ins.keyword == Keyword::From {
            flag_overridden(&seen, &mut out);
            seen.clear();
            stages.push(lint_from(ins, &stages, &globals, &mut out));
            continue;
        }
        let uses = stage_uses(ins, &stages[..stages.len().saturating_sub(1)]);
        let Some(stage) = stages.last_mut() else {
            if ins.keyword == Keyword::Arg {
                lint_arg(ins, &mut globals, false, &mut out);
            }
            continue;
        };
        if matches!(
            ins.keyword,
            Keyword::Cmd | Keyword::Entrypoint | Keyword::Healthcheck
        ) {
            seen.push((ins.keyword, ins.line));
        }
        lint_instruction(ins, stage, &mut out);
        stage.uses.extend(uses);
    }
    flag_overridden(&seen, &mut out);
    lint_unreachable(df, &stages, opts.target, &mut out);
    let skipped = skipped_rules(df);
    out.retain(|l| !skipped.contains(l.rule) && !skipped.contains("all"));
    out.sort_by_key(|l| l.line);
    out
}

/// A new stage: its name's casing, `FROM … AS` casing, variables in the base name.
fn lint_from(
    ins: &Instruction,
    stages: &[StageFacts],
    globals: &HashSet<String>,
    out: &mut Vec<Lint>,
) -> StageFacts {
    let words = ins.words().unwrap_or_default();
    let image = words.first().cloned().unwrap_or_default();
    let name = match words.as_slice() {
        [_, as_word, name] => {
            let from_word = ins.original.split_whitespace().next().unwrap_or("FROM");
            if !same_casing(from_word, as_word) {
                out.push(lint_at(
                    ins,
                    "FromAsCasing",
                    format!("'{as_word}' and '{from_word}' keywords' casing do not match"),
                ));
            }
            if name.to_lowercase() != *name {
                out.push(lint_at(
                    ins,
                    "StageNameCasing",
                    format!("Stage name '{name}' should be lowercase"),
                ));
            }
            Some(name.to_lowercase())
        }
        _ => None,
    };
    for var in undefined_in(&image, globals, ins.escape) {
        let hint = suggest(&var, globals);
        out.push(lint_at(
            ins,
            "UndefinedArgInFrom",
            format!("FROM argument '{var}' is not declared{hint}"),
        ));
    }
    let lower = image.to_lowercase();
    let mut facts = match stages
        .iter()
        .rposition(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        Some(base) => StageFacts {
            uses: vec![base],
            ..stages[base].clone()
        },
        None => StageFacts {
            on_image: !lower.eq_ignore_ascii_case("scratch"),
            ..StageFacts::default()
        },
    };
    facts.name = name;
    facts
}

/// The lints of one instruction inside a stage; updates what the stage has defined.
fn lint_instruction(ins: &Instruction, stage: &mut StageFacts, out: &mut Vec<Lint>) {
    match ins.keyword {
        Keyword::Maintainer => out.push(lint_at(
            ins,
            "MaintainerDeprecated",
            "Maintainer instruction is deprecated in favor of using label".into(),
        )),
        Keyword::Env | Keyword::Label => lint_key_values(ins, stage, out),
        Keyword::Arg => {
            let mut defined = std::mem::take(&mut stage.defined);
            lint_arg(ins, &mut defined, stage.on_image, out);
            stage.defined = defined;
        }
        Keyword::Cmd | Keyword::Entrypoint
            if matches!(ins.args, Args::Shell(_)) && !stage.shell_set =>
        {
            out.push(lint_at(
                ins,
                "JSONArgsRecommended",
                format!(
                    "JSON arguments recommended for {} to prevent unintended behavior \
                     related to OS signals",
                    ins.keyword
                ),
            ));
        }
        Keyword::Shell => stage.shell_set = true,
        Keyword::Workdir => {
            let path = ins.words().unwrap_or_default().concat();
            check_vars(ins, &path, stage, out);
            if path.starts_with('/') || path.starts_with('$') {
                stage.absolute_workdir = true;
            } else if !stage.absolute_workdir {
                out.push(lint_at(
                    ins,
                    "WorkdirRelativePath",
                    format!(
                        "Relative workdir {path:?} can have unexpected results if the base \
                         image changes"
                    ),
                ));
            }
        }
        Keyword::Copy | Keyword::Add => {
            let words = ins.words().unwrap_or_default();
            for word in &words {
                check_vars(ins, word, stage, out);
            }
            let sources = words.len().saturating_sub(1) + ins.heredocs.len();
            let sources = sources
                .saturating_sub(words.iter().filter(|w| crate::is_heredoc_marker(w)).count());
            if let Some(dest) = words.last() {
                let dir = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
                if sources > 1 && !dir && !dest.contains('$') && ins.flag("parents").is_none() {
                    out.push(lint_at(
                        ins,
                        "MultipleSourcesToFile",
                        format!(
                            "{} has several sources and the destination {dest:?} does not end \
                             with /: each source replaces the one before",
                            ins.keyword
                        ),
                    ));
                }
            }
        }
        Keyword::Expose | Keyword::Stopsignal | Keyword::User | Keyword::Volume => {
            for word in ins.words().unwrap_or_default() {
                check_vars(ins, &word, stage, out);
            }
        }
        _ => {}
    }
}

/// ENV and LABEL: the legacy `key value` form; ENV also secrets in names, undefined variables
/// in values, and defines its keys.
fn lint_key_values(ins: &Instruction, stage: &mut StageFacts, out: &mut Vec<Lint>) {
    let Ok(pairs) = ins.key_values_with_form() else {
        return;
    };
    if pairs.iter().any(|(_, _, with_equals)| !with_equals) {
        let k = ins.keyword;
        out.push(lint_at(
            ins,
            "LegacyKeyValueFormat",
            format!("\"{k} key=value\" should be used instead of legacy \"{k} key value\" format"),
        ));
    }
    for (key, value, _) in pairs {
        check_vars(ins, &value, stage, out);
        if ins.keyword == Keyword::Env {
            check_secret(ins, &key, out);
            stage.defined.insert(key);
        }
    }
}

/// ARG: secrets in names, undefined variables in defaults; defines its names.
fn lint_arg(ins: &Instruction, defined: &mut HashSet<String>, on_image: bool, out: &mut Vec<Lint>) {
    for (name, default) in ins.arg_decls().unwrap_or_default() {
        if let Some(default) = default {
            let facts = StageFacts {
                defined: defined.clone(),
                on_image,
                ..StageFacts::default()
            };
            check_vars(ins, &default, &facts, out);
        }
        check_secret(ins, &name, out);
        // a stage's `ARG NAME` also brings a global ARG of that name in scope
        defined.insert(name);
    }
}

/// `UndefinedVar` for every variable `word` uses that the stage has not defined. The set of
/// known names is built only when one is missing (for the suggestion): an ENV costs its own
/// size, not the number of variables before it.
fn check_vars(ins: &Instruction, word: &str, stage: &StageFacts, out: &mut Vec<Lint>) {
    let missing = undefined_in(word, &stage.defined, ins.escape);
    if missing.is_empty() {
        return;
    }
    let known: HashSet<String> = stage
        .defined
        .iter()
        .cloned()
        .chain(always_defined().map(str::to_string))
        .collect();
    for var in missing {
        let hint = suggest(&var, &known);
        let from_image = stage.on_image
            && var
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if from_image && hint.is_empty() {
            continue;
        }
        out.push(lint_at(
            ins,
            "UndefinedVar",
            format!("Usage of undefined variable '${var}'{hint}"),
        ));
    }
}

/// Names defined in every stage: `PATH` and the proxy ARGs.
fn always_defined() -> impl Iterator<Item = &'static str> {
    std::iter::once("PATH").chain(crate::PROXY_ARGS.iter().copied())
}

fn suggest(var: &str, known: &HashSet<String>) -> String {
    let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
    names.sort_unstable();
    closest(var, names)
        .map(|s| format!(" (did you mean ${s}?)"))
        .unwrap_or_default()
}

/// A lookup that answers every defined name and remembers the others asked for.
struct Recorder<'a> {
    known: &'a HashSet<String>,
    missing: RefCell<Vec<String>>,
}

impl Lookup for Recorder<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        if self.known.contains(name) || always_defined().any(|d| d == name) {
            return Some("");
        }
        let mut missing = self.missing.borrow_mut();
        if !missing.iter().any(|m| m == name) {
            missing.push(name.to_string());
        }
        None
    }
}

/// The variables `word` uses that `known` does not define, in order of use.
fn undefined_in(word: &str, known: &HashSet<String>, escape: char) -> Vec<String> {
    let recorder = Recorder {
        known,
        missing: RefCell::new(Vec::new()),
    };
    // an expansion error (`${X:?}`) still recorded the names it met
    let _ = expand_word(word, &recorder, escape);
    recorder.missing.into_inner()
}

fn check_secret(ins: &Instruction, name: &str, out: &mut Vec<Lint>) {
    let parts: Vec<String> = name.split('_').map(str::to_lowercase).collect();
    let has = |words: &[&str]| parts.iter().any(|p| words.contains(&p.as_str()));
    if has(&SECRET_WORDS) && !has(&NOT_SECRET_WORDS) {
        out.push(lint_at(
            ins,
            "SecretsUsedInArgOrEnv",
            format!(
                "Do not use ARG or ENV instructions for sensitive data ({} {name:?})",
                ins.keyword
            ),
        ));
    }
}

/// `MultipleInstructionsDisallowed`: a CMD, ENTRYPOINT or HEALTHCHECK that a later one of the
/// same stage replaces.
fn flag_overridden(seen: &[(Keyword, usize)], out: &mut Vec<Lint>) {
    for (i, (keyword, line)) in seen.iter().enumerate() {
        if seen[i + 1..].iter().any(|(k, _)| k == keyword) {
            out.push(Lint {
                rule: "MultipleInstructionsDisallowed",
                line: *line,
                message: format!(
                    "Multiple {keyword} instructions should not be used in the same stage \
                     because only the last one will be used"
                ),
            });
        }
    }
}

/// The stages an instruction reads by name or index (`COPY --from`, `RUN --mount from=`).
fn stage_uses(ins: &Instruction, stages: &[StageFacts]) -> Vec<usize> {
    let copy_from = ins
        .flag("from")
        .filter(|_| matches!(ins.keyword, Keyword::Copy | Keyword::Add))
        .and_then(|f| f.value.clone());
    let mounts = ins.flags_named("mount").flat_map(|f| {
        let value = f.value.clone().unwrap_or_default();
        value
            .split(',')
            .filter_map(|kv| kv.strip_prefix("from=").map(str::to_string))
            .collect::<Vec<_>>()
    });
    copy_from
        .into_iter()
        .chain(mounts)
        .filter_map(|from| stage_index(&from, stages))
        .collect()
}

fn stage_index(name: &str, stages: &[StageFacts]) -> Option<usize> {
    if let Ok(n) = name.parse::<usize>() {
        return (n < stages.len()).then_some(n);
    }
    let lower = name.to_lowercase();
    stages
        .iter()
        .rposition(|s| s.name.as_deref() == Some(lower.as_str()))
}

/// `UnreachableStage`: stages the target does not need, which a build skips.
fn lint_unreachable(
    df: &Dockerfile,
    stages: &[StageFacts],
    target: Option<&str>,
    out: &mut Vec<Lint>,
) {
    let target = match target {
        Some(t) => stage_index(t, stages),
        None => stages.len().checked_sub(1),
    };
    let Some(target) = target else {
        return;
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(stages[i].uses.iter().copied().filter(|&u| u < i));
        }
    }
    let froms = df
        .instructions
        .iter()
        .filter(|i| i.keyword == Keyword::From);
    for (i, from) in froms.enumerate() {
        if !needed.contains(&i) {
            let name = stages[i]
                .name
                .clone()
                .unwrap_or_else(|| format!("stage-{i}"));
            out.push(lint_at(
                from,
                "UnreachableStage",
                format!("Stage '{name}' is not used by the target stage, so it is not built"),
            ));
        }
    }
}

/// The rules a `# check=skip=A,B` directive turns off (`all` for every one).
fn skipped_rules(df: &Dockerfile) -> HashSet<&str> {
    df.directives
        .iter()
        .filter(|(name, _)| name == "check")
        .flat_map(|(_, value)| value.split(';'))
        .filter_map(|part| part.trim().strip_prefix("skip="))
        .flat_map(|rules| rules.split(','))
        .map(str::trim)
        .collect()
}

/// Whether two keywords are written in the same case (both upper or both lower).
fn same_casing(a: &str, b: &str) -> bool {
    let upper = |s: &str| s == s.to_uppercase();
    let lower = |s: &str| s == s.to_lowercase();
    (upper(a) && upper(b)) || (lower(a) && lower(b))
}

fn lint_at(ins: &Instruction, rule: &'static str, message: String) -> Lint {
    Lint {
        rule,
        line: ins.line,
        message,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::parse;

    fn rules(text: &str, target: Option<&str>) -> Vec<(&'static str, usize)> {
        let df = parse(text).unwrap();
        lint(&df, &LintOptions { target })
            .into_iter()
            .map(|l| (l.rule, l.line))
            .collect()
    }

    #[test]
    fn each_rule() {
        for (text, want) in [
            ("FROM a AS Build\n", vec![("StageNameCasing", 1)]),
            ("FROM a as b\n", vec![("FromAsCasing", 1)]),
            ("from a AS b\n", vec![("FromAsCasing", 1)]),
            ("FROM a\nENV A 1\n", vec![("LegacyKeyValueFormat", 2)]),
            ("FROM a\nMAINTAINER me\n", vec![("MaintainerDeprecated", 2)]),
            (
                "FROM a\nCMD [\"a\"]\nCMD [\"b\"]\n",
                vec![("MultipleInstructionsDisallowed", 2)],
            ),
            (
                "FROM a\nENTRYPOINT run me\n",
                vec![("JSONArgsRecommended", 2)],
            ),
            ("FROM a\nSHELL [\"sh\", \"-c\"]\nCMD run me\n", vec![]),
            ("FROM a\nCOPY $foo /x\n", vec![("UndefinedVar", 2)]),
            ("FROM a\nENV PATH=$PAHT:/x\n", vec![("UndefinedVar", 2)]),
            ("FROM a\nCOPY $FROM_IMAGE /x\n", vec![]),
            ("FROM scratch\nCOPY $FOO /x\n", vec![("UndefinedVar", 2)]),
            ("FROM a\nARG foo\nCOPY $foo /x\n", vec![]),
            ("FROM a\nWORKDIR app\n", vec![("WorkdirRelativePath", 2)]),
            ("FROM a\nWORKDIR /app\nWORKDIR src\n", vec![]),
            (
                "FROM a\nARG GITHUB_TOKEN\n",
                vec![("SecretsUsedInArgOrEnv", 2)],
            ),
            ("FROM a\nENV PUBLIC_KEY=x\n", vec![]),
            (
                "FROM a\nCOPY a b /dest\n",
                vec![("MultipleSourcesToFile", 2)],
            ),
            ("FROM a\nCOPY a b /dest/\n", vec![]),
            ("FROM a AS unused\nFROM b\n", vec![("UnreachableStage", 1)]),
            ("FROM a AS dep\nFROM b\nCOPY --from=dep /a /b\n", vec![]),
            ("FROM ${NOPE}\n", vec![("UndefinedArgInFrom", 1)]),
            ("ARG V=1\nFROM a:${V}\n", vec![]),
            (
                "# check=skip=MaintainerDeprecated\nFROM a\nMAINTAINER me\n",
                vec![],
            ),
        ] {
            assert_eq!(rules(text, None), want, "{text}");
        }
    }

    #[test]
    fn fixtures_every_rule_and_clean() {
        let every = include_str!("../tests/fixtures/lint/every-rule.Dockerfile");
        let want = vec![
            ("StageNameCasing", 1),
            ("UnreachableStage", 1),
            ("FromAsCasing", 2),
            ("MaintainerDeprecated", 3),
            ("LegacyKeyValueFormat", 4),
            ("SecretsUsedInArgOrEnv", 5),
            ("WorkdirRelativePath", 6),
            ("UndefinedVar", 7),
            ("MultipleSourcesToFile", 8),
            ("MultipleInstructionsDisallowed", 9),
            ("JSONArgsRecommended", 10),
        ];
        assert_eq!(rules(every, None), want);
        let clean = include_str!("../tests/fixtures/lint/clean.Dockerfile");
        assert_eq!(rules(clean, None), vec![]);
    }

    #[test]
    fn target_decides_reachability() {
        let text = "FROM a AS one\nFROM b AS two\n";
        assert_eq!(rules(text, Some("one")), vec![("UnreachableStage", 2)]);
        assert_eq!(rules(text, None), vec![("UnreachableStage", 1)]);
    }

    #[test]
    fn typo_gets_a_suggestion() {
        let df = parse("FROM a\nENV PATH=$PAHT:/x\n").unwrap();
        let lints = lint(&df, &LintOptions::default());
        assert!(
            lints[0].message.contains("did you mean $PATH?"),
            "{:?}",
            lints[0]
        );
    }
}
