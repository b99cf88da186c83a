//! The Dockerfile front end: text in, a list of `Instruction`s out, plus the
//! shell-word expansion and `.dockerignore` rules that go with it.
//!
//! This crate does no I/O: no files, no network, no processes, no environment.
//! Every function takes text (or a `Lookup` for variables) and returns values;
//! the host reads the Dockerfile and the `.dockerignore` and hands their text in.
//! It depends on nothing of the host (kiln re-exports it as `kiln::dockerfile`).
//!
//! Semantics follow BuildKit's frontend: the crate's own fixtures
//! (`tests/fixtures/`) are the judge, and BuildKit's goldens under
//! `../shared/conformance/buildkit` an extra one where that directory exists. This crate knows nothing of
//! stages, images or the build context on disk: turning instructions into a
//! `BuildPlan` and deciding which words to expand with which environment is the
//! orchestrator's job.
//!
//! - `parse.rs`: lines, directives, continuations, heredocs, flags, JSON form.
//! - `validate.rs`: per-instruction argument checks done by `parse`.
//! - `instruction.rs`: accessors the orchestrator calls on an `Instruction`.
//! - `expand.rs`: the shell lexer, `glob.rs` its `${V#pattern}` patterns;
//!   `json.rs`: exec-form detection.
//! - `ignore.rs`: `.dockerignore` parsing and matching.
//! - `lint.rs`: the warnings `--check` reports (BuildKit's lint rules), on a parsed file.
//! - `suggestion.rs`: "did you mean" by edit distance.
//! - `fuzzing.rs`: the fuzz targets' bodies (parser, expander, `.dockerignore`).

mod expand;
#[doc(hidden)]
pub mod fuzzing;
mod glob;
mod ignore;
mod instruction;
mod json;
mod lint;
mod parse;
mod suggestion;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
mod validate;

use std::fmt;

pub use expand::{expand_heredoc, expand_word, expand_words, Lookup};
pub use ignore::IgnoreRules;
pub use lint::{lint, Lint, LintOptions};
pub use parse::parse;
pub use suggestion::{closest, distance};

/// ARGs every build has without declaring them (BuildKit's predefined proxy ARGs): RUN sees
/// them when given with --build-arg, they stay out of history, and no lint calls them undefined.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether a COPY/ADD source word as written (`<<EOF`, `<<-"EOF"`) stands for a heredoc.
pub fn is_heredoc_marker(word: &str) -> bool {
    matches!(parse::heredoc_marker(word, 0), Ok(Some(_)))
}

/// An instruction keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    From,
    Run,
    Cmd,
    Label,
    Maintainer,
    Expose,
    Env,
    Add,
    Copy,
    Entrypoint,
    Volume,
    User,
    Workdir,
    Arg,
    Onbuild,
    Stopsignal,
    Healthcheck,
    Shell,
}

impl Keyword {
    /// Every keyword, in declaration order.
    pub const ALL: [Keyword; 18] = [
        Keyword::From,
        Keyword::Run,
        Keyword::Cmd,
        Keyword::Label,
        Keyword::Maintainer,
        Keyword::Expose,
        Keyword::Env,
        Keyword::Add,
        Keyword::Copy,
        Keyword::Entrypoint,
        Keyword::Volume,
        Keyword::User,
        Keyword::Workdir,
        Keyword::Arg,
        Keyword::Onbuild,
        Keyword::Stopsignal,
        Keyword::Healthcheck,
        Keyword::Shell,
    ];

    /// The keyword in upper case, as conventionally written.
    pub fn as_str(&self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Run => "RUN",
            Keyword::Cmd => "CMD",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Expose => "EXPOSE",
            Keyword::Env => "ENV",
            Keyword::Add => "ADD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Volume => "VOLUME",
            Keyword::User => "USER",
            Keyword::Workdir => "WORKDIR",
            Keyword::Arg => "ARG",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Shell => "SHELL",
        }
    }

    /// Looks a keyword up, ignoring case.
    pub fn from_word(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--name[=value]` flag written before an instruction's arguments, with
/// quotes already removed (`--chown="a b"` has value `a b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    /// `None` for a bare `--link`, `Some("")` for `--link=`.
    pub value: Option<String>,
}

/// A here-document attached to RUN, COPY or ADD (or an ONBUILD of those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`<<"EOF"` gives `EOF`).
    pub name: String,
    /// The body, one `\n`-terminated line per source line. For `<<-` the
    /// leading tabs are already stripped.
    pub content: String,
    /// False when the delimiter was quoted: the body is taken literally.
    pub expand: bool,
    /// Written as `<<-`.
    pub chomp: bool,
    /// The file descriptor written before `<<` (`3<<EOF`).
    pub fd: Option<u32>,
}

/// An instruction's arguments after the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// The JSON array form, e.g. `CMD ["a", "b"]`. For HEALTHCHECK this is the
    /// array after `CMD`.
    Exec(Vec<String>),
    /// The raw text after the flags, trimmed, continuations joined, nothing
    /// expanded or unquoted. For ONBUILD this is the trigger instruction.
    Shell(String),
}

/// One instruction of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub keyword: Keyword,
    /// 1-based line the instruction starts on.
    pub line: usize,
    /// 1-based last line, including continuation lines and heredoc bodies.
    pub end_line: usize,
    pub flags: Vec<Flag>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// The instruction as written, continuation lines joined without newlines.
    pub original: String,
    /// The file's escape character; the word-splitting helpers need it.
    pub escape: char,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `\` unless changed by an `# escape=` directive.
    pub escape: char,
    /// Parser directives in order, names lower-cased (`syntax`, `escape`, `check`).
    pub directives: Vec<(String, String)>,
    pub instructions: Vec<Instruction>,
    /// Non-fatal findings, each naming its line.
    pub warnings: Vec<String>,
}

/// What can go wrong while parsing or expanding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the dockerfile has no instructions")]
    NoInstructions,
    #[error("Dockerfile:{line}: unknown instruction {word:?}{}", did_you_mean(.suggestion))]
    UnknownInstruction {
        line: usize,
        word: String,
        /// the keyword the word is closest to
        suggestion: Option<&'static str>,
    },
    #[error("Dockerfile:{line}: {keyword} requires {expected}")]
    MissingArguments {
        line: usize,
        keyword: &'static str,
        expected: &'static str,
    },
    #[error("Dockerfile:{line}: {keyword} arguments in JSON form must all be strings")]
    NotStringArray { line: usize, keyword: &'static str },
    #[error("Dockerfile:{line}: SHELL requires the JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]")]
    ShellNotJson { line: usize },
    #[error("Dockerfile:{line}: {keyword} does not accept the flag {flag:?}")]
    BadFlag {
        line: usize,
        keyword: &'static str,
        flag: String,
    },
    #[error("Dockerfile:{line}: {keyword}: flag --{flag} is given more than once")]
    DuplicateFlag {
        line: usize,
        keyword: &'static str,
        flag: String,
    },
    #[error("Dockerfile:{line}: {keyword} expects name=value pairs but found {word:?}")]
    KeyValue {
        line: usize,
        keyword: &'static str,
        word: String,
    },
    #[error("Dockerfile:{line}: FROM takes an image and an optional `AS name`, found {found:?}")]
    InvalidFrom { line: usize, found: String },
    #[error("Dockerfile:{line}: unknown HEALTHCHECK type {kind:?} (expected CMD or NONE)")]
    HealthcheckType { line: usize, kind: String },
    #[error("Dockerfile:{line}: HEALTHCHECK NONE takes no further arguments")]
    HealthcheckNone { line: usize },
    #[error("Dockerfile:{line}: {trigger} is not allowed as an ONBUILD trigger")]
    OnbuildTrigger { line: usize, trigger: &'static str },
    #[error("Dockerfile:{line}: {keyword}: heredoc <<{name} is never terminated")]
    UnterminatedHeredoc {
        line: usize,
        keyword: &'static str,
        name: String,
    },
    #[error("Dockerfile:{line}: escape directive must be ` or \\, found {value:?}")]
    InvalidEscape { line: usize, value: String },
    #[error("Dockerfile:{line}: parser directive {name:?} is given more than once")]
    DuplicateDirective { line: usize, name: String },
    #[error("{}cannot expand {word:?}: {message}", line_prefix(.line))]
    Expansion {
        /// Filled in by the parser, or by the caller through `Error::at_line`.
        line: Option<usize>,
        word: String,
        message: String,
    },
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

fn line_prefix(line: &Option<usize>) -> String {
    line.map(|n| format!("Dockerfile:{n}: "))
        .unwrap_or_default()
}

impl Error {
    /// Attaches a Dockerfile line to an expansion error that has none.
    pub fn at_line(self, at: usize) -> Error {
        match self {
            Error::Expansion {
                line: None,
                word,
                message,
            } => Error::Expansion {
                line: Some(at),
                word,
                message,
            },
            other => other,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
