//! The JSON renderer: every event one object a line with the keys of kiln's JSON logs
//! (`level`, `msg`, `time`), then `event` and its fields. RUN output keeps the shape JSON
//! logs gave it: the line as `msg`, with `stream`, `stage`, `step` and `line`.

use std::io::Write as _;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::{Finish, Render, StepInfo, Summary, TransferInfo};

pub(super) struct Json;

fn emit(msg: &str, event: Option<&str>, fields: Value) {
    let mut line = Map::new();
    line.insert("level".into(), Value::from("info"));
    line.insert("msg".into(), Value::from(msg));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    line.insert("time".into(), Value::from(crate::image::rfc3339(now)));
    if let Some(event) = event {
        line.insert("event".into(), Value::from(event));
    }
    if let Value::Object(fields) = fields {
        line.extend(fields);
    }
    let mut bytes = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
    bytes.push(b'\n');
    let _ = std::io::stderr().lock().write_all(&bytes);
}

fn step_fields(step: &StepInfo) -> Value {
    json!({"stage": step.stage, "step": step.number, "line": step.line})
}

impl Render for Json {
    fn step_started(&self, step: &StepInfo) {
        let mut fields = step_fields(step);
        fields["status"] = Value::from("started");
        emit(
            &format!("{} {}", step.label(), step.text),
            Some("step"),
            fields,
        );
    }

    fn step_output(&self, step: &StepInfo, stream: &str, text: &str) {
        let mut fields = step_fields(step);
        fields["stream"] = Value::from(stream);
        emit(text, None, fields);
    }

    fn step_finished(&self, step: &StepInfo, how: Finish, elapsed: Duration) {
        let status = match how {
            Finish::Done => "done",
            Finish::Cached => "cached",
            Finish::Failed => "error",
        };
        let mut fields = step_fields(step);
        fields["status"] = Value::from(status);
        fields["seconds"] = Value::from(super::seconds(elapsed));
        emit(
            &format!("{} {}", step.label(), status.to_uppercase()),
            Some("step"),
            fields,
        );
    }

    fn transfer_started(&self, t: &TransferInfo) {
        let fields = json!({"name": t.label, "total": t.total, "status": "started"});
        emit(&t.label, Some("transfer"), fields);
    }

    fn transfer_progress(&self, _t: &TransferInfo, _done: u64) {}

    fn transfer_finished(&self, t: &TransferInfo, elapsed: Duration) {
        let fields = json!({"name": t.label, "total": t.total, "status": "done",
            "seconds": super::seconds(elapsed)});
        emit(&format!("{} DONE", t.label), Some("transfer"), fields);
    }

    fn summary(&self, summary: &Summary) {
        emit(
            &format!("built {}", summary.digest),
            Some("summary"),
            summary.fields(),
        );
    }

    fn log(&self, bytes: &[u8]) {
        let _ = std::io::stderr().lock().write_all(bytes);
    }

    fn close(&self) {}
}
