//! The `kiln` binary: parse flags, set up logging, run the build, print the error chain once
//! and exit with the right code (a failed RUN's own code, as kaniko does).

use std::process::ExitCode;

use clap::Parser;
use kiln::build::{self, RunFailed};
use kiln::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (verbosity, log_format) = match &cli.command {
        Command::Build(args) => (args.verbosity, args.log_format),
        Command::Warm(args) => (args.verbosity, args.log_format),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(verbosity.filter()));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match log_format {
        LogFormat::Json => fmt.json().init(),
        LogFormat::Text => fmt.with_ansi(false).init(),
        LogFormat::Color => fmt.init(),
    }
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    let result = match cli.command {
        Command::Build(args) => args.into_options().and_then(|opts| {
            let image = runtime()?.block_on(build::run(opts))?;
            Ok(image.manifest_digest.to_string())
        }),
        Command::Warm(args) => args.into_options().and_then(|opts| {
            let warmed = runtime()?.block_on(kiln::warm::run(opts))?;
            Ok(warmed.join("\n"))
        }),
    };
    match result {
        Ok(output) => {
            println!("{output}");
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
