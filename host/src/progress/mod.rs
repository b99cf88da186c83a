//! What a person watching a build sees: the pipeline reports steps (started, their RUN
//! output, finished, cached, failed), byte transfers (pulls, pushes) and the final summary
//! to one sink, installed once by `main`; a renderer draws them: `tty` (a live view on a
//! terminal), `plain` (one line per event, no escape codes) or `json` (one object a line,
//! kaniko's log keys). Without an installed sink every report is dropped, so library callers
//! and `kiln warm` need nothing. The tally behind the summary lives in `summary`; tracing
//! logs keep their own path (`logging`), drawn around the live view through [`write_log`].

mod json;
mod plain;
pub mod summary;
mod tty;

use std::io::IsTerminal as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use summary::Summary;

/// How progress is shown, as resolved for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// the live view (stderr is a terminal)
    Tty,
    /// one line per step start and finish, RUN output prefixed by its step
    Plain,
    /// one JSON object per event, next to JSON logs
    Json,
}

/// What the user asked for (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Requested {
    /// tty on a terminal unless NO_COLOR or TERM=dumb say otherwise, else plain; json with
    /// JSON logs
    Auto,
    Tty,
    Plain,
    Json,
    /// docker's name for json
    Rawjson,
}

/// Whether this process may draw a live view on stderr: a terminal, NO_COLOR unset or
/// empty, TERM not `dumb`.
fn terminal_allows_escapes() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
    std::io::stderr().is_terminal() && !no_color && !dumb
}

/// The mode `requested` resolves to; `json_logs`: the logs are JSON. A tty view where
/// escape codes are not allowed falls back to plain.
pub fn resolve(requested: Requested, json_logs: bool) -> Mode {
    match requested {
        Requested::Json | Requested::Rawjson => Mode::Json,
        Requested::Auto if json_logs => Mode::Json,
        Requested::Auto | Requested::Tty if terminal_allows_escapes() => Mode::Tty,
        Requested::Auto | Requested::Tty | Requested::Plain => Mode::Plain,
    }
}

/// A step as the renderers see it.
#[derive(Debug)]
pub struct StepInfo {
    pub id: u64,
    /// the stage's name (`stage-N` when unnamed)
    pub stage: String,
    /// BuildKit's `position/count`, FROM being 1
    pub number: String,
    /// the instruction as written
    pub text: String,
    /// its Dockerfile line
    pub line: usize,
}

impl StepInfo {
    /// `[stage 2/3]`
    pub fn label(&self) -> String {
        format!("[{} {}]", self.stage, self.number)
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Done,
    Cached,
    Failed,
}

/// A byte transfer as the renderers see it.
#[derive(Debug)]
pub struct TransferInfo {
    pub id: u64,
    /// `pull REF`, `push REF`
    pub label: String,
    pub total: u64,
}

/// What a renderer draws.
trait Render: Send + Sync {
    fn step_started(&self, step: &StepInfo);
    fn step_output(&self, step: &StepInfo, stream: &str, text: &str);
    fn step_finished(&self, step: &StepInfo, how: Finish, elapsed: Duration);
    fn transfer_started(&self, transfer: &TransferInfo);
    fn transfer_progress(&self, transfer: &TransferInfo, done: u64);
    fn transfer_finished(&self, transfer: &TransferInfo, elapsed: Duration);
    fn summary(&self, summary: &Summary);
    /// a formatted log line, written without breaking the view
    fn log(&self, bytes: &[u8]);
    /// the build is over (or failed): leave the terminal clean for the error
    fn close(&self);
    /// whether lines are redrawn in place (short-lived byte counts are worth showing)
    fn live(&self) -> bool {
        false
    }
}

struct Sink {
    render: Box<dyn Render>,
    /// below the default verbosity: steps and the summary are not shown
    quiet: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Installs the process's sink. `quiet`: the verbosity is below info (only logs show).
/// Call once, before logging starts; later calls change nothing.
pub fn init(mode: Mode, quiet: bool) {
    let render: Box<dyn Render> = match mode {
        Mode::Tty => Box::new(tty::Tty::new()),
        Mode::Plain => Box::new(plain::Plain),
        Mode::Json => Box::new(json::Json),
    };
    let _ = SINK.set(Sink { render, quiet });
}

/// The sink, when one is installed and steps are to be shown.
fn shown() -> Option<&'static dyn Render> {
    SINK.get().filter(|s| !s.quiet).map(|s| &*s.render)
}

/// Whether steps are shown (a sink is installed, the verbosity not below info): RUN output
/// then goes to its step; otherwise it takes the way it took before there was a view.
pub fn active() -> bool {
    shown().is_some()
}

/// Whether the live view is drawn (`--progress tty`): byte counts of work that is over in
/// moments (compressing a layer) are shown there only.
pub fn live() -> bool {
    shown().is_some_and(|r| r.live())
}

/// Writes a formatted log line to stderr around the live view, if there is one.
pub fn write_log(bytes: &[u8]) {
    match SINK.get() {
        Some(sink) => sink.render.log(bytes),
        None => {
            let _ = std::io::stderr().lock().write_all(bytes);
        }
    }
}

/// Ends the live view (before the error or the digest is printed).
pub fn close() {
    if let Some(sink) = SINK.get() {
        sink.render.close();
    }
}

/// Shows the build's summary.
pub fn report_summary(summary: &Summary) {
    if let Some(r) = shown() {
        r.summary(summary);
    }
}

/// A running step. Finish it with [`Step::done`] or [`Step::cached`]; dropped unfinished
/// (its error is on the way up), it is shown as failed.
pub struct Step {
    info: Arc<StepInfo>,
    started: Instant,
    finished: bool,
}

impl Step {
    pub fn start(stage: &str, number: &str, text: &str, line: usize) -> Step {
        let info = Arc::new(StepInfo {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stage: stage.to_string(),
            number: number.to_string(),
            text: crate::redaction::shown(text),
            line,
        });
        if let Some(r) = shown() {
            r.step_started(&info);
        }
        Step {
            info,
            started: Instant::now(),
            finished: false,
        }
    }

    /// Where the step's command writes its output lines.
    pub fn output(&self) -> StepOutput {
        StepOutput(self.info.clone())
    }

    pub fn done(mut self) {
        self.finish(Finish::Done);
    }

    pub fn cached(mut self) {
        self.finish(Finish::Cached);
    }

    fn finish(&mut self, how: Finish) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(r) = shown() {
            r.step_finished(&self.info, how, self.started.elapsed());
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.finish(Finish::Failed);
    }
}

/// A step's output channel, handed to RUN.
#[derive(Clone)]
pub struct StepOutput(Arc<StepInfo>);

impl std::fmt::Debug for StepOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.label())
    }
}

impl StepOutput {
    /// The step's `[stage 2/3]`.
    pub fn label(&self) -> String {
        self.0.label()
    }

    /// One line the command printed on `stream` (`stdout`, `stderr`), without its newline.
    pub fn line(&self, stream: &str, text: &str) {
        if let Some(r) = shown() {
            r.step_output(&self.0, stream, text);
        }
    }
}

/// A byte transfer (a pull's layers, a push's blobs) of a known total size.
pub struct Transfer {
    info: TransferInfo,
    done: AtomicU64,
    started: Instant,
}

impl Transfer {
    pub fn start(label: String, total: u64) -> Transfer {
        let info = TransferInfo {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            label,
            total,
        };
        if let Some(r) = shown() {
            r.transfer_started(&info);
        }
        Transfer {
            info,
            done: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// `bytes` more of the total have arrived or gone.
    pub fn add(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(r) = shown() {
            r.transfer_progress(&self.info, done);
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(r) = shown() {
            r.transfer_finished(&self.info, self.started.elapsed());
        }
    }
}

/// A duration as people read it: `0.3s`, `12.4s`, `2m05s`.
pub fn human(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    if tenths < 600 {
        format!("{}.{}s", tenths / 10, tenths % 10)
    } else {
        let secs = (d.as_millis() + 500) / 1000;
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// Seconds to one decimal, for JSON.
pub fn seconds(d: Duration) -> f64 {
    ((d.as_millis() + 50) / 100) as f64 / 10.0
}

/// A size as people read it: `512 B`, `3.4 MB` (powers of 1000, as registries show).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_as_people_write_them() {
        for (ms, want) in [
            (0, "0.0s"),
            (61, "0.1s"),
            (3049, "3.0s"),
            (59_940, "59.9s"),
            (59_960, "1m00s"),
            (125_400, "2m05s"),
        ] {
            assert_eq!(human(Duration::from_millis(ms)), want, "{ms} ms");
        }
        assert_eq!(seconds(Duration::from_micros(61_254)), 0.1);
        for (n, want) in [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1.0 kB"),
            (3_400_000, "3.4 MB"),
        ] {
            assert_eq!(bytes(n), want);
        }
    }

    #[test]
    fn plain_where_escape_codes_are_not_allowed() {
        // the test's stderr is not a terminal
        if !std::io::stderr().is_terminal() {
            assert_eq!(resolve(Requested::Tty, false), Mode::Plain);
            assert_eq!(resolve(Requested::Auto, false), Mode::Plain);
        }
        assert_eq!(resolve(Requested::Auto, true), Mode::Json);
        assert_eq!(resolve(Requested::Rawjson, false), Mode::Json);
        assert_eq!(resolve(Requested::Plain, false), Mode::Plain);
    }
}
