//! The plain renderer: one line when a step starts and one when it ends (with its duration,
//! `CACHED` or `ERROR`), RUN output prefixed by its step, transfers as a start and an end
//! line, the summary as a few lines. No escape codes; one write per line, so stages running
//! side by side never mix within a line.

use std::io::Write as _;
use std::time::Duration;

use super::{Finish, Render, StepInfo, Summary, TransferInfo};

pub(super) struct Plain;

fn line(text: &str) {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&bytes);
}

impl Render for Plain {
    fn step_started(&self, step: &StepInfo) {
        line(&format!("{} {}", step.label(), step.text));
    }

    fn step_output(&self, step: &StepInfo, _stream: &str, text: &str) {
        line(&format!("{} {text}", step.label()));
    }

    fn step_finished(&self, step: &StepInfo, how: Finish, elapsed: Duration) {
        let how = match how {
            Finish::Done => format!("DONE {}", super::human(elapsed)),
            Finish::Cached => "CACHED".to_string(),
            Finish::Failed => format!("ERROR {}", super::human(elapsed)),
        };
        line(&format!("{} {how}", step.label()));
    }

    fn transfer_started(&self, t: &TransferInfo) {
        line(&format!("{} {}", t.label, super::bytes(t.total)));
    }

    fn transfer_progress(&self, _t: &TransferInfo, _done: u64) {}

    fn transfer_finished(&self, t: &TransferInfo, elapsed: Duration) {
        line(&format!("{} DONE {}", t.label, super::human(elapsed)));
    }

    fn summary(&self, summary: &Summary) {
        line(&summary.lines().join("\n"));
    }

    fn log(&self, bytes: &[u8]) {
        let _ = std::io::stderr().lock().write_all(bytes);
    }

    fn close(&self) {}
}
