//! Where kiln's logs go and how they look. Everything but the image digest goes to stderr:
//! text (colour only on a terminal, unless asked for), or one JSON object a line
//! (`json`). kiln's own crates log at the chosen level; dependencies only show warnings
//! and errors, and everything at `trace`. `KILN_LOG` (a tracing filter) overrides both.
//! Text logs go through `progress`, so they are drawn above a live view.
//! Every line, text or JSON, goes through `redaction`: no credentials from URLs in logs.

mod json;

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// plain text
    Text,
    /// text with colours, even when stderr is not a terminal
    Color,
    /// one JSON object a line: level, msg, time and kiln's fields
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Verbosity {
    Panic,
    Fatal,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Verbosity {
    pub fn filter(self) -> &'static str {
        match self {
            Verbosity::Panic | Verbosity::Fatal | Verbosity::Error => "error",
            Verbosity::Warn => "warn",
            Verbosity::Info => "info",
            Verbosity::Debug => "debug",
            Verbosity::Trace => "trace",
        }
    }
}

/// How logs are written, from the flags every subcommand shares.
#[derive(Debug, Clone, Copy)]
pub struct LogSettings {
    pub verbosity: Verbosity,
    /// None: colour when stderr is a terminal and NO_COLOR is unset, else text
    pub format: Option<LogFormat>,
    pub timestamp: bool,
}
/// Set when logs are JSON: RUN output is then relayed as JSON events, not raw bytes.
static JSON: AtomicBool = AtomicBool::new(false);

/// Whether RUN output must be sent as log events (the JSON format) rather than written as
/// it is to stderr.
pub fn output_as_events() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// The format `settings` resolve to on this process's stderr.
pub fn resolve(settings: &LogSettings) -> LogFormat {
    settings.format.unwrap_or_else(|| {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if std::io::stderr().is_terminal() && !no_color {
            LogFormat::Color
        } else {
            LogFormat::Text
        }
    })
}

/// The filter for a verbosity: kiln's crates at `level`, dependencies at warnings (errors
/// when the level is error), all of it at trace.
fn directives(level: &str) -> String {
    match level {
        "trace" => "trace".to_string(),
        "error" => "error".to_string(),
        level => format!("warn,kiln={level},kiln_dockerfile={level},kiln_guest={level}"),
    }
}

/// Writes text logs to stderr around the live progress view (`progress::write_log`); the
/// formatter hands it one whole event a write.
struct ViewWriter;

impl std::io::Write for ViewWriter {
    /// The text layer writes each line in one call, so a URL is never split between two.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        crate::progress::write_log(crate::redaction::redact(&text).as_bytes());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(settings: &LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(directives(settings.verbosity.filter()))
    });
    let format = resolve(settings);
    if format == LogFormat::Json {
        JSON.store(true, Ordering::Relaxed);
        tracing_subscriber::registry()
            .with(filter)
            .with(json::JsonLayer)
            .init();
        return;
    }
    let text = tracing_subscriber::fmt::layer()
        .with_writer(|| ViewWriter)
        .with_target(false)
        .with_ansi(format == LogFormat::Color);
    let registry = tracing_subscriber::registry().with(filter);
    if settings.timestamp {
        registry.with(text).init();
    } else {
        registry.with(text.without_time()).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_quiet_below_trace() {
        assert_eq!(
            directives("info"),
            "warn,kiln=info,kiln_dockerfile=info,kiln_guest=info"
        );
        assert_eq!(directives("trace"), "trace");
        assert_eq!(directives("error"), "error");
    }
}
