//! The `kiln` binary: parse flags, set up logging, run the build, print the error chain once
//! and exit with the right code (a failed RUN's own code, as kaniko does).

use std::process::ExitCode;

use clap::Parser;
use kiln::build::{self, RunFailed};
use kiln::cli::{self, Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::with_default_subcommand(std::env::args_os()));
    let args = match cli.command {
        Command::Build(args) => args,
        Command::CheckArgs { args } => {
            return match cli::check_args(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // clap's rendering already starts with "error:"
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(args.verbosity.filter()));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match args.log_format {
        LogFormat::Json => fmt.json().init(),
        LogFormat::Text => fmt.with_ansi(false).init(),
        LogFormat::Color => fmt.init(),
    }
    let result = args.into_options().and_then(|opts| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        rt.block_on(build::run(opts))
    });
    match result {
        Ok(image) => {
            println!("{}", image.manifest_digest);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            let code = e.downcast_ref::<RunFailed>().map_or(1, |r| r.code);
            ExitCode::from(u8::try_from(code).unwrap_or(1).max(1))
        }
    }
}

/// The error chain on one line, each cause once: several of kiln's errors already name
/// their cause in their own message.
fn chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}
