//! The JSON log format: one object a line, with kaniko's (logrus') keys `level`, `msg` and
//! `time` (RFC 3339, UTC), then the fields of the enclosing spans and of the event, each key
//! once. A span's `name` field is written under the span's own name (the `stage` span's
//! `name` becomes `"stage": "build"`); an event field wins over a span field of the same
//! name; fields that would shadow `level`, `msg` or `time` get a `field.` prefix.

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// See the module comment.
pub struct JsonLayer;

/// The fields a span was made with (and recorded later), as they will be written.
struct SpanFields(Map<String, Value>);

/// Collects fields into a map; `rename_name` is the span name the field `name` goes under.
struct Collect<'a> {
    map: &'a mut Map<String, Value>,
    rename_name: Option<&'static str>,
}

impl Collect<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let key = match (field.name(), self.rename_name) {
            ("name", Some(span)) => span.to_string(),
            ("message", None) => "msg".to_string(),
            (name @ ("level" | "msg" | "time"), _) => format!("field.{name}"),
            (name, _) => name.to_string(),
        };
        self.map.insert(key, value);
    }
}

impl Visit for Collect<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl<S> Layer<S> for JsonLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut map = Map::new();
        attrs.record(&mut Collect {
            map: &mut map,
            rename_name: Some(span.name()),
        });
        span.extensions_mut().insert(SpanFields(map));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(map)) = extensions.get_mut::<SpanFields>() {
            values.record(&mut Collect {
                map,
                rename_name: Some(span.name()),
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(map)) = span.extensions().get::<SpanFields>() {
                    fields.extend(map.clone());
                }
            }
        }
        event.record(&mut Collect {
            map: &mut fields,
            rename_name: None,
        });
        let mut line = Map::new();
        line.insert(
            "level".into(),
            Value::String(level_name(event.metadata().level()).to_string()),
        );
        let msg = fields.remove("msg").unwrap_or(Value::String(String::new()));
        line.insert("msg".into(), msg);
        line.insert("time".into(), Value::String(now()));
        line.extend(fields);
        let text = serde_json::to_string(&Value::Object(line)).unwrap_or_default();
        let mut bytes = crate::redaction::redact(&text).into_owned().into_bytes();
        bytes.push(b'\n');
        // one write a line, so lines of stages running side by side never mix; around a
        // live view when one is drawn
        crate::progress::write_log(&bytes);
    }
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    crate::image::rfc3339(secs)
}

/// logrus' level names (`warning`, not `warn`), so kaniko's log pipelines match.
fn level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warning",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}
