//! The command line: the subcommands, the argument vector as kaniko's executor and
//! `docker build` users type it (no subcommand, `--flag value` for booleans, deprecated
//! spellings), and the settings every subcommand shares (log level and format, build
//! arguments). The flags of each subcommand live beside it: `build` (with `compat` for
//! kaniko's and docker's extra flags), `registry`, `warm`; `typo` the tip for an unknown flag. Nothing here touches the network
//! or the build.

mod build;
mod compat;
mod registry;
mod typo;
mod warm;

use std::ffi::OsString;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

pub use crate::logging::{LogFormat, LogSettings, Verbosity};
pub use build::CliArgs;
pub use compat::{Output, ProgressMode};
pub use registry::RegistryArgs;
pub use typo::parse;
pub use warm::WarmArgs;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build OCI images from Dockerfiles, no daemon needed"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference between the two argument sets is harmless.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and push it or write it locally
    Build(CliArgs),
    /// Fill a --cache-dir with base images, for builds without network access to them
    Warm(WarmArgs),
    /// Print kiln's version
    Version,
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell
    Completion { shell: clap_complete::Shell },
    /// Print kiln's manual page (roff), or a subcommand's, made from the same flag
    /// definitions
    #[command(hide = true)]
    Manpage { subcommand: Option<String> },
    /// Check a command line without running it: the arguments are parsed exactly as
    /// `kiln ARGS…` would parse them (deploy/ manifests are checked this way)
    #[command(hide = true)]
    CheckArgs {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Remove a finished build's scratch directories (started by a build whose removal was
    /// not done when the rest was: `crate::run::removal`)
    #[command(hide = true, name = "remove-scratch")]
    RemoveScratch { paths: Vec<std::path::PathBuf> },
}

/// The argument vector as clap should see it:
/// - kaniko's executor takes its flags with no subcommand (`executor --context=…`), and pod
///   specs written for it pass them that way: a vector that starts with a flag other than
///   help or version is a `build`, or a `warm` when it names `--image` as kaniko's warmer
///   image takes it;
/// - a boolean flag followed by a separate `true` or `false` takes it as its value
///   (`--no-push false`), the same for every boolean flag; `--flag` alone means true and
///   `--flag=BOOL` always works.
pub fn with_default_subcommand<I>(argv: I) -> Vec<OsString>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let implicit = argv.get(1).and_then(|a| a.to_str()).is_some_and(|first| {
        first.starts_with('-') && !matches!(first, "-h" | "--help" | "-V" | "--version")
    });
    if implicit {
        // kaniko's warmer is its own image, taking `--image` (which `build` does not have)
        let warmer = argv.iter().filter_map(|a| a.to_str()).any(|a| {
            a == "-i" || a.starts_with("--image=") || a == "--image" || a.starts_with("-i=")
        });
        argv.insert(1, if warmer { "warm" } else { "build" }.into());
    }
    join_bool_values(argv)
}

/// `--flag true` → `--flag=true` for the boolean flags of `build` and `warm`.
fn join_bool_values(argv: Vec<OsString>) -> Vec<OsString> {
    let bools = bool_flags();
    let mut out: Vec<OsString> = Vec::with_capacity(argv.len());
    let mut iter = argv.into_iter().peekable();
    while let Some(arg) = iter.next() {
        let is_bool = arg
            .to_str()
            .and_then(|a| a.strip_prefix("--"))
            .is_some_and(|name| bools.iter().any(|b| b == name));
        let value = iter
            .peek()
            .and_then(|v| v.to_str())
            .filter(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "false"))
            .map(str::to_ascii_lowercase);
        match (is_bool, value) {
            (true, Some(value)) => {
                let mut joined = arg;
                joined.push(format!("={value}"));
                out.push(joined);
                iter.next();
            }
            _ => out.push(arg),
        }
    }
    out
}

/// The long names (and aliases) of every boolean flag, read from the definitions.
fn bool_flags() -> Vec<String> {
    use clap::CommandFactory as _;
    let cli = Cli::command();
    let mut names = Vec::new();
    for sub in cli.get_subcommands() {
        for arg in sub.get_arguments() {
            if is_bool_flag(arg) {
                names.extend(arg.get_long().map(str::to_string));
                names.extend(
                    arg.get_all_aliases()
                        .unwrap_or_default()
                        .into_iter()
                        .map(str::to_string),
                );
            }
        }
    }
    names
}

fn is_bool_flag(arg: &clap::Arg) -> bool {
    arg.get_value_names()
        .is_some_and(|v| v.iter().any(|n| n.as_str() == "BOOL"))
}

/// The deprecated spellings kaniko still accepts, with the name to use instead; `main`
/// warns once for each one on the command line.
pub const DEPRECATED: &[(&str, &str)] = &[
    ("snapshotMode", "snapshot-mode"),
    ("customPlatform", "custom-platform"),
    ("tarPath", "tar-path"),
    ("whitelist-var-run", "ignore-var-run"),
];

/// The deprecated spellings used in `argv`, as (used, preferred).
pub fn deprecated_in(argv: &[OsString]) -> Vec<(&'static str, &'static str)> {
    DEPRECATED
        .iter()
        .filter(|(old, _)| {
            argv.iter().filter_map(|a| a.to_str()).any(|a| {
                a.strip_prefix("--")
                    .is_some_and(|f| f == *old || f.starts_with(&format!("{old}=")))
            })
        })
        .copied()
        .collect()
}

/// Parses `args` (without the program name) as kiln's command line, for `kiln check-args`.
pub fn check_args(args: &[OsString]) -> Result<()> {
    let argv = with_default_subcommand(std::iter::once("kiln".into()).chain(args.iter().cloned()));
    let cli = parse(&argv).map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    match cli.command {
        Command::CheckArgs { .. } => bail!("error: check-args cannot check itself"),
        // the checks that need no network and no file: what `build` refuses before starting
        Command::Build(args) => args.check().map_err(|e| anyhow::anyhow!("error: {e:#}")),
        _ => Ok(()),
    }
}

/// `--build-arg` values: `K=V`, or a bare `K` that takes `K` from the environment and is
/// empty when the environment has none (as kaniko). An empty name is refused.
pub fn parse_build_args(flags: &[String]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for a in flags {
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.clone(), std::env::var(a).unwrap_or_default()),
        };
        if k.is_empty() || k.chars().any(char::is_whitespace) {
            bail!("--build-arg {a}: expected NAME=VALUE or NAME, with a non-empty name");
        }
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        let argv = with_default_subcommand(std::iter::once("kiln").chain(args.iter().copied()));
        Cli::try_parse_from(argv)
    }

    fn build(args: &[&str]) -> CliArgs {
        match parse(args).expect("parses").command {
            Command::Build(a) => a,
            other => panic!("not a build: {other:?}"),
        }
    }

    #[test]
    fn boolean_flags_take_a_separate_value_the_same_way() {
        assert!(!build(&["--no-push", "false", "-d", "r/x"]).no_push);
        assert!(build(&["--no-push", "true"]).no_push);
        assert!(build(&["--no-push"]).no_push);
        assert!(!build(&["--no-push=false", "-d", "r/x"]).no_push);
        assert_eq!(build(&["--cache", "true", "--no-push"]).cache, Some(true));
        assert_eq!(build(&["--cache=false", "--no-push"]).cache, Some(false));
        // a positional context is not taken as a boolean's value
        let a = build(&["--no-push", "."]);
        assert!(a.no_push);
        assert_eq!(a.context_dir.as_deref(), Some("."));
    }

    #[test]
    fn the_removal_subcommand_is_the_one_the_removal_starts() {
        let name = crate::run::removal::SUBCOMMAND;
        match parse(&[name, "/k/.removing", "/k/build-1"])
            .expect("parses")
            .command
        {
            Command::RemoveScratch { paths } => {
                assert_eq!(
                    paths,
                    [
                        std::path::Path::new("/k/.removing"),
                        std::path::Path::new("/k/build-1")
                    ]
                )
            }
            other => panic!("not {name}: {other:?}"),
        }
    }

    #[test]
    fn kaniko_warmer_arguments_are_a_warm() {
        let cli = parse(&["--cache-dir=/cache", "--image=busybox:1"]).expect("parses");
        assert!(matches!(cli.command, Command::Warm(_)), "{:?}", cli.command);
        let cli = parse(&["--context=.", "--no-push"]).expect("parses");
        assert!(matches!(cli.command, Command::Build(_)));
    }

    #[test]
    fn build_args_follow_kaniko() {
        std::env::remove_var("KILN_TEST_UNSET_ARG");
        let got = parse_build_args(&["A=1".into(), "KILN_TEST_UNSET_ARG".into()]).unwrap();
        assert_eq!(
            got,
            vec![
                ("A".into(), "1".into()),
                ("KILN_TEST_UNSET_ARG".into(), String::new())
            ]
        );
        assert!(parse_build_args(&["=x".into()]).is_err());
        assert!(parse_build_args(&["".into()]).is_err());
    }

    #[test]
    fn deprecated_spellings_are_accepted_and_named() {
        let argv: Vec<OsString> = ["kiln", "--snapshotMode=redo", "--tarPath", "/tmp/x.tar"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            deprecated_in(&argv),
            vec![("snapshotMode", "snapshot-mode"), ("tarPath", "tar-path")]
        );
        let a = build(&[
            "--snapshotMode=redo",
            "--tarPath",
            "/tmp/x.tar",
            "--no-push",
        ]);
        assert_eq!(
            a.tar_path.as_deref(),
            Some(std::path::Path::new("/tmp/x.tar"))
        );
    }
}
