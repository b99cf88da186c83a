//! The live view on a terminal, drawn by `indicatif`: one line per running step (all stages
//! at once), updated in place with its elapsed time and the last lines of its RUN output
//! under it; a finished step collapses to one line with its duration, or `CACHED`; a failed
//! one shows all of its output. Pulls and pushes show their bytes. Log lines and the summary
//! are written above the running lines.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::{Finish, Render, StepInfo, Summary, TransferInfo};

/// Lines of a running step's output shown under it.
const TAIL_LINES: usize = 5;
/// Output kept per step, shown in full when it fails.
const KEPT_LINES: usize = 2000;
/// Characters of an output line shown under a running step.
const TAIL_WIDTH: usize = 100;
/// How often the elapsed times and spinners move.
const TICK: Duration = Duration::from_millis(100);

pub(super) struct Tty {
    multi: MultiProgress,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    steps: HashMap<u64, Running>,
    transfers: HashMap<u64, ProgressBar>,
}

struct Running {
    bar: ProgressBar,
    tail: VecDeque<String>,
    all: Vec<String>,
}

/// `{secs}`: the elapsed time as people read it.
fn secs(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = w.write_str(&super::human(state.elapsed()));
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key("secs", secs)
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
}

impl Tty {
    pub(super) fn new() -> Tty {
        Tty {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn print(&self, text: &str) {
        let _ = self.multi.println(text);
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= TAIL_WIDTH {
        return text.to_string();
    }
    let mut short: String = text.chars().take(TAIL_WIDTH - 1).collect();
    short.push('…');
    short
}

impl Render for Tty {
    fn step_started(&self, step: &StepInfo) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(style("{spinner} {wide_msg} {secs}"));
        bar.set_message(format!("{} {}", step.label(), step.text));
        bar.enable_steady_tick(TICK);
        self.state().steps.insert(
            step.id,
            Running {
                bar,
                tail: VecDeque::new(),
                all: Vec::new(),
            },
        );
    }

    fn step_output(&self, step: &StepInfo, _stream: &str, text: &str) {
        let mut state = self.state();
        let Some(running) = state.steps.get_mut(&step.id) else {
            return;
        };
        if running.all.len() < KEPT_LINES {
            running.all.push(text.to_string());
        }
        if running.tail.len() == TAIL_LINES {
            running.tail.pop_front();
        }
        let first = running.tail.is_empty();
        running.tail.push_back(shorten(text));
        let tail: Vec<String> = running.tail.iter().map(|l| format!("  │ {l}")).collect();
        if first {
            running
                .bar
                .set_style(style("{spinner} {wide_msg} {secs}\n{prefix}"));
        }
        running.bar.set_prefix(tail.join("\n"));
    }

    fn step_finished(&self, step: &StepInfo, how: Finish, elapsed: Duration) {
        let running = self.state().steps.remove(&step.id);
        let label = format!("{} {}", step.label(), step.text);
        let mut text = match how {
            Finish::Done => format!("=> {label}  {}", super::human(elapsed)),
            Finish::Cached => format!("=> CACHED {label}"),
            Finish::Failed => format!("=> ERROR {label}  {}", super::human(elapsed)),
        };
        if let Some(running) = running {
            running.bar.finish_and_clear();
            self.multi.remove(&running.bar);
            if how == Finish::Failed {
                for line in &running.all {
                    text.push_str(&format!("\n  │ {line}"));
                }
            }
        }
        self.print(&text);
    }

    fn transfer_started(&self, t: &TransferInfo) {
        let bar = self.multi.add(ProgressBar::new(t.total));
        bar.set_style(
            style("{spinner} {msg} {bytes}/{total_bytes} [{bar:24}] {secs}").progress_chars("=> "),
        );
        bar.set_message(t.label.clone());
        bar.enable_steady_tick(TICK);
        self.state().transfers.insert(t.id, bar);
    }

    fn transfer_progress(&self, t: &TransferInfo, done: u64) {
        if let Some(bar) = self.state().transfers.get(&t.id) {
            bar.set_position(done);
        }
    }

    fn transfer_finished(&self, t: &TransferInfo, elapsed: Duration) {
        if let Some(bar) = self.state().transfers.remove(&t.id) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.print(&format!(
            "=> {} {}  {}",
            t.label,
            super::bytes(t.total),
            super::human(elapsed)
        ));
    }

    fn summary(&self, summary: &Summary) {
        self.print(&summary.lines().join("\n"));
    }

    fn log(&self, bytes: &[u8]) {
        self.multi.suspend(|| {
            let _ = std::io::stderr().lock().write_all(bytes);
        });
    }

    fn live(&self) -> bool {
        true
    }

    fn close(&self) {
        let mut state = self.state();
        for (_, running) in state.steps.drain() {
            running.bar.finish_and_clear();
        }
        for (_, bar) in state.transfers.drain() {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}
