//! The guest's one error type. Every message is for the person who wrote the Dockerfile:
//! lowercase, naming the value or path at fault. The host adds the Dockerfile line, so no
//! variant repeats it. One enum for the crate because every variant ends up as the same
//! WIT `string`; variants stay structured so tests can match on them.

use crate::files::FsError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported instruction {keyword}")]
    UnsupportedInstruction { keyword: String },

    #[error("{keyword} requires {want}")]
    Arguments { keyword: String, want: &'static str },

    #[error("unknown flag --{flag} for {keyword}")]
    UnknownFlag { keyword: String, flag: String },

    #[error("invalid --{flag} value {value:?}: {reason}")]
    FlagValue {
        flag: String,
        value: String,
        reason: String,
    },

    #[error("{what} is not supported yet")]
    NotSupportedYet { what: String },

    #[error("ADD from a URL is not supported yet: {url}")]
    UrlSource { url: String },

    #[error("COPY does not accept a URL as source: {url}")]
    CopyUrl { url: String },

    #[error("invalid image config: {reason}")]
    Config { reason: String },

    #[error("invalid EXPOSE port {value:?}: {reason}")]
    Port { value: String, reason: &'static str },

    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser { name: String },

    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup { name: String },

    #[error("unable to find {what} {name}: {path} does not exist in the stage")]
    NoDatabase {
        what: &'static str,
        name: String,
        path: &'static str,
    },

    #[error("invalid user {value:?}: {reason}")]
    UserSpec { value: String, reason: &'static str },

    #[error("{op} {path}: {source}")]
    Fs {
        op: &'static str,
        path: String,
        source: FsError,
    },

    #[error(
        "{keyword} failed: no source files were specified: {pattern} matches nothing in {root}"
    )]
    NoSourceFiles {
        keyword: String,
        pattern: String,
        root: String,
    },

    #[error("{path}: not found in {root}")]
    SourceNotFound { path: String, root: String },

    #[error("syntax error in pattern {pattern:?}")]
    BadPattern { pattern: String },

    #[error(
        "when using {keyword} with more than one source file, the destination must be a directory and end with a /"
    )]
    MultipleSources { keyword: String },

    #[error("cannot copy to non-directory: {path}")]
    NotDirectory { path: String },

    #[error("{path} exists and is not a directory")]
    PathNotDirectory { path: String },

    #[error("too many levels of symbolic links resolving {path}")]
    SymlinkLoop { path: String },

    #[error("cannot replace directory {path} with a file")]
    ReplaceDirectory { path: String },

    #[error("--from was given but the host passed no source root for {from}")]
    MissingFromRoot { from: String },
}
