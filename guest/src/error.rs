//! The guest's error types. [`Error`] is the one error of the crate: every message is for
//! the person who wrote the Dockerfile, lowercase, naming the value or path at fault. The
//! host adds the Dockerfile line, so no variant repeats it. One enum for the crate because
//! every variant ends up as the same WIT `string`; variants stay structured so tests can
//! match on them. [`FsError`] is a failed `fs` call as the host reports it: the `Files`
//! trait (`files.rs`) returns it and [`Error::Fs`] wraps it with the operation and path.

use std::fmt;

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

/// A failed file operation, as the host reports it; the payload is the host's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsError {
    NotFound(String),
    Exists(String),
    NotDirectory(String),
    IsDirectory(String),
    ReadOnly(String),
    Invalid(String),
    Io(String),
}

impl FsError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::NotFound(_))
    }

    /// Not found, or a non-directory met on the way: either way nothing is at the path.
    pub fn is_missing(&self) -> bool {
        matches!(self, FsError::NotFound(_) | FsError::NotDirectory(_))
    }
}

/// The host's message already names the path and the failure (`/x: not found`); the kind
/// is only spelled out when the message is empty.
impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, msg) = match self {
            FsError::NotFound(m) => ("not found", m),
            FsError::Exists(m) => ("already exists", m),
            FsError::NotDirectory(m) => ("not a directory", m),
            FsError::IsDirectory(m) => ("is a directory", m),
            FsError::ReadOnly(m) => ("read-only", m),
            FsError::Invalid(m) => ("invalid", m),
            FsError::Io(m) => ("i/o error", m),
        };
        f.write_str(if msg.is_empty() { what } else { msg })
    }
}

impl std::error::Error for FsError {}
