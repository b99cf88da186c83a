//! The `kiln` binary: parse flags, set up logging, run the build, print the image digest on
//! stdout (and nothing else there), report the error chain once on stderr and exit with the
//! right code: 2 for a bad command line, a failed RUN's own code (as kaniko), 130 and 143
//! after SIGINT and SIGTERM, 1 for any other failure.

use std::io::Write as _;
use std::process::ExitCode;

use clap::CommandFactory as _;
use kiln::cli::{self, Cli, Command, LogFormat};
use kiln::error;
use kiln::pipeline::{self, RunFailed};

/// The build was stopped by a signal: kiln cleaned up and exits with 128 + its number.
#[derive(Debug)]
struct Stopped {
    signal: &'static str,
    code: u8,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stopped by {}", self.signal)
    }
}

impl std::error::Error for Stopped {}

fn main() -> ExitCode {
    let argv = cli::with_default_subcommand(std::env::args_os());
    let deprecated = cli::deprecated_in(&argv);
    let cli = match cli::parse(&argv) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let mut settings = match &cli.command {
        Command::Build(args) => args.log_settings(),
        Command::Warm(args) => args.log_settings(),
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
        Command::RemoveScratch { paths } => {
            let refused = kiln::run::removal::remove_scratch(paths);
            for why in &refused {
                eprintln!("kiln {}: refused {why}", kiln::run::removal::SUBCOMMAND);
            }
            return match refused.is_empty() {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(2),
            };
        }
        Command::Version => return print(&format!("kiln {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Completion { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "kiln", &mut out);
            return print(&String::from_utf8_lossy(&out));
        }
        Command::Manpage { subcommand } => return manpage(subcommand.as_deref()),
    };
    if let Command::Build(args) = &cli.command {
        let (mode, quiet) = args.progress(&settings);
        kiln::progress::init(mode, quiet);
        if mode == kiln::progress::Mode::Tty && settings.verbosity == cli::Verbosity::Info {
            // the live view says what info logs would: only warnings and errors join it
            settings.verbosity = cli::Verbosity::Warn;
        }
    }
    kiln::logging::init(&settings);
    for (old, new) in deprecated {
        tracing::warn!("--{old} is deprecated: use --{new}");
    }
    let json = kiln::logging::resolve(&settings) == LogFormat::Json;
    let result = match cli.command {
        Command::Build(args) => args.into_options().and_then(build),
        Command::Warm(args) => args.into_options().and_then(|opts| {
            let warmed = runtime()?.block_on(kiln::warm::run(opts))?;
            Ok(Some(warmed.join("\n")))
        }),
        _ => Ok(None),
    };
    // the live view ends before the digest or the error is printed
    kiln::progress::close();
    match result {
        Ok(output) => {
            if let Some(output) = output {
                return print(&format!("{output}\n"));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = exit_code(&e);
            let mut text = error::render(&e);
            if let Some(cause) = kiln::registry::cause(&*e) {
                text = format!("{cause}: {text}");
            }
            if json {
                tracing::error!(exit_code = code, "{text}");
            } else {
                eprintln!("error: {text}");
            }
            ExitCode::from(code)
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Runs one build; returns the manifest digest to print (None for a dry run).
fn build(opts: pipeline::BuildOptions) -> anyhow::Result<Option<String>> {
    if opts.check {
        runtime()?.block_on(pipeline::check(&opts))?;
        return Ok(None);
    }
    if opts.dry_run {
        runtime()?.block_on(pipeline::dry_run(&opts))?;
        return Ok(None);
    }
    // before any thread exists
    opts.isolation.enter_process()?;
    let rt = runtime()?;
    let result = rt.block_on(async {
        tokio::select! {
            r = pipeline::run(opts) => r,
            s = interrupted() => Err(anyhow::Error::new(s)),
        }
    });
    // a RUN still going when a signal came: it and all it started go now
    kiln::run::kill_running();
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    result.map(Some)
}

/// The exit code for a failed build.
fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(stopped) = e.downcast_ref::<Stopped>() {
        return stopped.code;
    }
    let code = e.downcast_ref::<RunFailed>().map_or(1, |r| r.code);
    u8::try_from(code).unwrap_or(1).max(1)
}

/// Writes `text` to stdout; a closed stdout (`| head`) is not an error worth a panic.
fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

/// `kiln manpage [SUBCOMMAND]`: the roff page of kiln or of one subcommand.
fn manpage(subcommand: Option<&str>) -> ExitCode {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match subcommand {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            // leaked once: clap names are &'static, and the process ends right after
            Some(sub) => sub.clone().name(&*format!("kiln-{name}").leak()),
            None => {
                eprintln!("error: no subcommand {name:?}");
                return ExitCode::from(2);
            }
        },
    };
    let mut out = Vec::new();
    if let Err(e) = clap_mangen::Man::new(page).render(&mut out) {
        eprintln!("error: rendering the manual page: {e}");
        return ExitCode::from(1);
    }
    print(&String::from_utf8_lossy(&out))
}

/// Waits for SIGINT or SIGTERM.
async fn interrupted() -> Stopped {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => Stopped { signal: "SIGINT", code: 130 },
        _ = term.recv() => Stopped { signal: "SIGTERM", code: 143 },
    }
}
