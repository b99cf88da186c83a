//! A flag nobody knows: the command line parsed as `Cli`, and when clap meets an unknown
//! `--flag`, the tip names the known flag (or kaniko's or docker's spelling of one) closest to
//! it by edit distance, in place of clap's own guess (which offers `--target` for `--tga`).

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory as _, Parser as _};

use super::Cli;
use crate::dockerfile::closest;

/// Parses `argv` (as `with_default_subcommand` left it).
pub fn parse(argv: &[OsString]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(argv).map_err(|e| retip(e, argv))
}

/// An unknown `--flag` error with kiln's tip; other errors unchanged.
fn retip(e: clap::Error, argv: &[OsString]) -> clap::Error {
    if e.kind() != ErrorKind::UnknownArgument {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let Some(typed) = arg.strip_prefix("--") else {
        return e;
    };
    let typed = typed.split_once('=').map_or(typed, |(name, _)| name);
    let mut cli = Cli::command();
    cli.build();
    let sub = argv
        .get(1)
        .and_then(|a| a.to_str())
        .and_then(|name| cli.find_subcommand(name))
        .unwrap_or(&cli);
    let tip = suggest(sub, typed)
        .map(|flag| format!("\n\n  tip: did you mean '--{flag}'?"))
        .unwrap_or_default();
    let path = match sub.get_name() {
        "kiln" => "kiln".to_string(),
        name => format!("kiln {name}"),
    };
    clap::Error::raw(
        ErrorKind::UnknownArgument,
        format!("unexpected argument '{arg}' found{tip}\n\nFor more information, try '{path} --help'.\n"),
    )
}

/// The long flag of `cmd` closest to `typed`, by its name or any alias; named by its own name.
fn suggest(cmd: &clap::Command, typed: &str) -> Option<String> {
    let mut names: Vec<(&str, &str)> = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        names.push((long, long));
        for alias in arg.get_all_aliases().unwrap_or_default() {
            names.push((alias, long));
        }
    }
    let near = closest(typed, names.iter().map(|(name, _)| *name))?;
    names
        .iter()
        .find(|(name, _)| *name == near)
        .map(|(_, long)| long.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(args: &[&str]) -> String {
        let argv = super::super::with_default_subcommand(
            std::iter::once("kiln").chain(args.iter().copied()),
        );
        match parse(&argv) {
            Ok(_) => String::new(),
            Err(e) => e.render().to_string(),
        }
    }

    #[test]
    fn tips_name_the_closest_flag() {
        for (args, want) in [
            (&["build", "--tga", "x"][..], Some("--tag")),
            (&["build", "--destinaton", "x"], Some("--destination")),
            (&["--destinaton=x"], Some("--destination")),
            (&["build", "--targte", "x"], Some("--target")),
            (&["build", "--dryrn"], Some("--dryrun")),
            (&["build", "--tarpath", "x"], Some("--tar-path")),
            (&["build", "--zzzzzzzz"], None),
        ] {
            let text = message(args);
            assert!(text.contains("unexpected argument"), "{args:?}: {text}");
            match want {
                Some(flag) => assert!(
                    text.contains(&format!("did you mean '{flag}'?")),
                    "{args:?}: {text}"
                ),
                None => assert!(!text.contains("did you mean"), "{args:?}: {text}"),
            }
        }
        // kaniko's and docker's spellings still parse
        for args in [
            &["build", "--tag", "x", "--no-push"][..],
            &["--tarPath=x", "--no-push"],
            &["--dry-run"],
        ] {
            assert_eq!(message(args), "", "{args:?}");
        }
    }
}
