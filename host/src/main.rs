//! The `kiln` binary: parse flags, set up logging, run the build, print the error chain once
//! and exit with the right code (a failed RUN's own code, as kaniko does).

use std::process::ExitCode;

use clap::Parser;
use kiln::cli::{self, Cli, Command, LogFormat};
use kiln::error;
use kiln::pipeline::{self, RunFailed};

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::with_default_subcommand(std::env::args_os()));
    let (verbosity, log_format) = match &cli.command {
        Command::Build(args) => (args.verbosity, args.log_format),
        Command::Warm(args) => (args.verbosity, args.log_format),
        Command::CheckArgs { args } => {
            return match cli::check_args(args) {
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
            // before any thread exists
            opts.isolation.enter_process()?;
            let rt = runtime()?;
            let result = rt.block_on(async {
                tokio::select! {
                    r = pipeline::run(opts) => r,
                    s = interrupted() => Err(anyhow::anyhow!("stopped by {s}")),
                }
            });
            // a RUN still going when a signal came: it and all it started go now
            kiln::run::kill_running();
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
            result.map(|image| image.manifest_digest.to_string())
        }),
        Command::Warm(args) => args.into_options().and_then(|opts| {
            let warmed = runtime()?.block_on(kiln::warm::run(opts))?;
            Ok(warmed.join("\n"))
        }),
        Command::CheckArgs { .. } => Ok(String::new()),
    };
    match result {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", error::chain(&*e));
            let code = e.downcast_ref::<RunFailed>().map_or(1, |r| r.code);
            ExitCode::from(u8::try_from(code).unwrap_or(1).max(1))
        }
    }
}

/// Waits for SIGINT or SIGTERM; returns its name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
