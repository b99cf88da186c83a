//! The image config JSON and the instructions that only edit it: ENV, LABEL, MAINTAINER,
//! USER, EXPOSE, VOLUME, CMD, ENTRYPOINT (with BuildKit's rule that it drops an inherited
//! CMD), SHELL, STOPSIGNAL. HEALTHCHECK lives in `healthcheck.rs`, ONBUILD (registering
//! triggers and taking the base's) in `onbuild.rs`, WORKDIR (which also creates a
//! directory) in `workdir.rs`.
//!
//! Only `config` and `author` are edited; every other field, known or not, passes through.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::instruction::{Instruction, StageState};

/// Docker's default SHELL.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The whole image config document (OCI/Docker image config JSON).
#[derive(Debug)]
pub struct ImageConfig {
    /// every top-level field but `config`, untouched unless `author` is set
    doc: Map<String, Value>,
    /// the `config` object when it is one; created on first edit otherwise
    config: Option<Map<String, Value>>,
}

impl ImageConfig {
    pub fn parse(json: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(json).map_err(|e| Error::Config {
            reason: e.to_string(),
        })?;
        let Value::Object(mut doc) = value else {
            return Err(Error::Config {
                reason: "the document is not a JSON object".to_string(),
            });
        };
        let config = match doc.remove("config") {
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                doc.insert("config".to_string(), other);
                None
            }
            None => None,
        };
        Ok(Self { doc, config })
    }

    pub fn to_json(&self) -> String {
        let mut doc = self.doc.clone();
        if let Some(config) = &self.config {
            doc.insert("config".to_string(), Value::Object(config.clone()));
        }
        Value::Object(doc).to_string()
    }

    fn config_str(&self, key: &str) -> Option<&str> {
        self.config.as_ref()?.get(key)?.as_str()
    }

    /// `config.WorkingDir`, `/` when unset.
    pub fn working_dir(&self) -> String {
        match self.config_str("WorkingDir") {
            Some(d) if !d.is_empty() => d.to_string(),
            _ => "/".to_string(),
        }
    }

    /// `config.User` when set and non-empty.
    pub fn user(&self) -> Option<String> {
        self.config_str("User")
            .filter(|u| !u.is_empty())
            .map(str::to_string)
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.config
            .get_or_insert_with(Map::new)
            .insert(key.to_string(), value);
    }

    /// Removes a `config` field and returns it; `None` when absent or `config` is not an
    /// object.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.config.as_mut()?.remove(key)
    }

    pub fn set_author(&mut self, author: &str) {
        self.doc
            .insert("author".to_string(), Value::String(author.to_string()));
    }

    /// Edits a `config` field that must be a JSON object (Labels, ExposedPorts, Volumes);
    /// null or a wrong type starts over as `{}`.
    fn edit_object(&mut self, key: &str, f: impl FnOnce(&mut Map<String, Value>)) {
        let config = self.config.get_or_insert_with(Map::new);
        let mut m = match config.remove(key) {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        f(&mut m);
        config.insert(key.to_string(), Value::Object(m));
    }

    /// Edits a `config` field that must be a JSON array (Env, OnBuild).
    pub(crate) fn edit_list(&mut self, key: &str, f: impl FnOnce(&mut Vec<Value>)) {
        let config = self.config.get_or_insert_with(Map::new);
        let mut v = match config.remove(key) {
            Some(Value::Array(v)) => v,
            _ => Vec::new(),
        };
        f(&mut v);
        config.insert(key.to_string(), Value::Array(v));
    }

    /// `config.Shell`, Docker's default when unset or empty.
    fn shell(&self) -> Vec<String> {
        let configured: Vec<String> = self
            .config
            .as_ref()
            .and_then(|c| c.get("Shell"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if configured.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            configured
        }
    }
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

/// Errors unless the instruction came without flags.
pub fn no_flags(ins: &Instruction) -> Result<()> {
    match ins.flags.first() {
        None => Ok(()),
        Some((flag, _)) => Err(Error::UnknownFlag {
            keyword: ins.keyword.clone(),
            flag: flag.clone(),
        }),
    }
}

pub(crate) fn want(ins: &Instruction, want: &'static str) -> Error {
    Error::Arguments {
        keyword: ins.keyword.clone(),
        want,
    }
}

pub(crate) fn one_arg(ins: &Instruction) -> Result<&str> {
    match ins.args.as_slice() {
        [a] => Ok(a),
        _ => Err(want(ins, "exactly one argument")),
    }
}

/// Applies a config-only instruction; `state` is the stage's (CMD records itself there).
pub fn apply(ins: &Instruction, cfg: &mut ImageConfig, state: &mut StageState) -> Result<()> {
    no_flags(ins)?;
    match ins.keyword.as_str() {
        "ENV" => env(ins, cfg),
        "LABEL" => label(ins, cfg),
        "MAINTAINER" => {
            if ins.args.is_empty() {
                return Err(want(ins, "a name"));
            }
            cfg.set_author(&ins.args.join(" "));
            Ok(())
        }
        "USER" => {
            let user = one_arg(ins)?;
            if user.is_empty() {
                return Err(want(ins, "a user name or uid"));
            }
            cfg.set("User", Value::String(user.to_string()));
            Ok(())
        }
        "EXPOSE" => expose(ins, cfg),
        "VOLUME" => volume(ins, cfg),
        "CMD" => {
            let cmd = command(ins, cfg)?;
            cfg.set("Cmd", cmd);
            state.cmd_set = true;
            Ok(())
        }
        "ENTRYPOINT" => {
            let cmd = command(ins, cfg)?;
            cfg.set("Entrypoint", cmd);
            // BuildKit: ENTRYPOINT drops a CMD inherited from the base, not one set in this
            // stage
            if !state.cmd_set {
                cfg.set("Cmd", Value::Null);
            }
            Ok(())
        }
        "SHELL" => {
            if !ins.exec_form {
                return Err(want(ins, "the arguments in JSON form"));
            }
            if ins.args.is_empty() {
                return Err(want(ins, "at least one argument"));
            }
            cfg.set("Shell", strings(&ins.args));
            Ok(())
        }
        "STOPSIGNAL" => {
            let sig = one_arg(ins)?;
            if sig.is_empty() {
                return Err(want(ins, "a signal name or number"));
            }
            cfg.set("StopSignal", Value::String(sig.to_string()));
            Ok(())
        }
        _ => Err(Error::UnsupportedInstruction {
            keyword: ins.keyword.clone(),
        }),
    }
}

fn pairs(ins: &Instruction) -> Result<Vec<(&str, &str)>> {
    if ins.args.is_empty() || !ins.args.len().is_multiple_of(2) {
        return Err(want(ins, "key-value pairs"));
    }
    let mut out = Vec::new();
    for kv in ins.args.chunks(2) {
        if let [k, v] = kv {
            if k.is_empty() {
                return Err(want(ins, "non-empty keys"));
            }
            out.push((k.as_str(), v.as_str()));
        }
    }
    Ok(out)
}

fn env(ins: &Instruction, cfg: &mut ImageConfig) -> Result<()> {
    for (k, v) in pairs(ins)? {
        let entry = Value::String(format!("{k}={v}"));
        cfg.edit_list("Env", |list| {
            let existing = list.iter().position(|e| {
                e.as_str()
                    .map(|s| s.split_once('=').map_or(s, |(name, _)| name) == k)
                    .unwrap_or(false)
            });
            match existing {
                Some(i) => list[i] = entry,
                None => list.push(entry),
            }
        });
    }
    Ok(())
}

fn label(ins: &Instruction, cfg: &mut ImageConfig) -> Result<()> {
    let pairs = pairs(ins)?;
    cfg.edit_object("Labels", |labels| {
        for (k, v) in pairs {
            labels.insert(k.to_string(), Value::String(v.to_string()));
        }
    });
    Ok(())
}

/// `port`, `port/proto` or `start-end/proto` → the `ExposedPorts` keys it stands for.
pub fn parse_ports(value: &str) -> Result<Vec<String>> {
    let bad = |reason| Error::Port {
        value: value.to_string(),
        reason,
    };
    let (ports, proto) = match value.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (value, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(bad("the protocol must be tcp, udp or sctp"));
    }
    let (start, end) = ports.split_once('-').unwrap_or((ports, ports));
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| bad("expected a port number 0-65535 or a range start-end"))
    };
    let (start, end) = (parse(start)?, parse(end)?);
    if start > end {
        return Err(bad("the range ends before it starts"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn expose(ins: &Instruction, cfg: &mut ImageConfig) -> Result<()> {
    if ins.args.is_empty() {
        return Err(want(ins, "at least one port"));
    }
    let mut keys = Vec::new();
    for a in &ins.args {
        keys.extend(parse_ports(a)?);
    }
    cfg.edit_object("ExposedPorts", |exposed| {
        for k in keys {
            exposed.insert(k, Value::Object(Map::new()));
        }
    });
    Ok(())
}

fn volume(ins: &Instruction, cfg: &mut ImageConfig) -> Result<()> {
    if ins.args.is_empty() || ins.args.iter().any(|v| v.trim().is_empty()) {
        return Err(want(ins, "non-empty paths"));
    }
    cfg.edit_object("Volumes", |volumes| {
        for v in &ins.args {
            volumes.insert(v.clone(), Value::Object(Map::new()));
        }
    });
    Ok(())
}

/// CMD/ENTRYPOINT: the exec-form list, or the shell plus the command line.
fn command(ins: &Instruction, cfg: &ImageConfig) -> Result<Value> {
    if ins.exec_form {
        return Ok(strings(&ins.args));
    }
    if ins.args.is_empty() {
        return Err(want(ins, "a command"));
    }
    let mut cmd = cfg.shell();
    cmd.push(ins.args.join(" "));
    Ok(strings(&cmd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ins(keyword: &str, args: &[&str], exec_form: bool) -> Instruction {
        Instruction {
            keyword: keyword.to_string(),
            line: 1,
            args: args.iter().map(|s| s.to_string()).collect(),
            flags: vec![],
            exec_form,
        }
    }

    fn run(start: Value, i: Instruction) -> Result<Value> {
        let mut cfg = ImageConfig::parse(&start.to_string())?;
        apply(&i, &mut cfg, &mut StageState::default())?;
        Ok(serde_json::from_str(&cfg.to_json()).unwrap())
    }

    #[test]
    fn metadata_instructions() {
        let base = json!({"architecture": "amd64", "rootfs": {"type": "layers"}, "x-unknown": 1,
            "config": {"Env": ["PATH=/bin", "A=1"], "Shell": null, "Labels": null}});
        for (i, want) in [
            (
                ins("ENV", &["A", "2", "B", "x=y"], false),
                json!({"Env": ["PATH=/bin", "A=2", "B=x=y"], "Shell": null, "Labels": null}),
            ),
            (
                ins("LABEL", &["a.b", "c", "d", ""], false),
                json!({"Env": ["PATH=/bin", "A=1"], "Shell": null, "Labels": {"a.b": "c", "d": ""}}),
            ),
            (
                ins("CMD", &["echo hi"], false),
                json!({"Env": ["PATH=/bin", "A=1"], "Shell": null, "Labels": null,
                    "Cmd": ["/bin/sh", "-c", "echo hi"]}),
            ),
            (
                ins("ENTRYPOINT", &["/app", "--x"], true),
                json!({"Env": ["PATH=/bin", "A=1"], "Shell": null, "Labels": null,
                    "Entrypoint": ["/app", "--x"], "Cmd": null}),
            ),
            (
                ins("USER", &["app:staff"], false),
                json!({"Env": ["PATH=/bin", "A=1"], "Shell": null, "Labels": null, "User": "app:staff"}),
            ),
            (
                ins("EXPOSE", &["80", "53/UDP", "8000-8002/udp"], false),
                json!({"Env": ["PATH=/bin", "A=1"], "Shell": null, "Labels": null,
                    "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000/udp": {}, "8001/udp": {}, "8002/udp": {}}}),
            ),
            (
                ins("VOLUME", &["/data", "/logs"], true),
                json!({"Env": ["PATH=/bin", "A=1"], "Shell": null, "Labels": null,
                    "Volumes": {"/data": {}, "/logs": {}}}),
            ),
            (
                ins("SHELL", &["/bin/bash", "-c"], true),
                json!({"Env": ["PATH=/bin", "A=1"], "Shell": ["/bin/bash", "-c"], "Labels": null}),
            ),
            (
                ins("STOPSIGNAL", &["SIGKILL"], false),
                json!({"Env": ["PATH=/bin", "A=1"], "Shell": null, "Labels": null, "StopSignal": "SIGKILL"}),
            ),
        ] {
            let keyword = i.keyword.clone();
            let got = run(base.clone(), i).unwrap();
            assert_eq!(got["config"], want, "{keyword}");
            assert_eq!(got["x-unknown"], 1, "{keyword} keeps unknown keys");
            assert_eq!(got["rootfs"], json!({"type": "layers"}));
        }
    }

    #[test]
    fn shell_form_uses_configured_shell() {
        let base = json!({"config": {"Shell": ["/bin/bash", "-eu", "-c"]}});
        let got = run(base, ins("CMD", &["make all"], false)).unwrap();
        assert_eq!(
            got["config"]["Cmd"],
            json!(["/bin/bash", "-eu", "-c", "make all"])
        );
    }

    /// BuildKit: ENTRYPOINT drops the base's CMD, not one given earlier in the stage; CMD
    /// after ENTRYPOINT is kept either way.
    #[test]
    fn entrypoint_and_inherited_cmd() {
        for (base, steps, want_cmd, want_cmd_set) in [
            (
                json!({"Cmd": ["bash"]}),
                vec!["ENTRYPOINT"],
                json!(null),
                false,
            ),
            (json!({}), vec!["ENTRYPOINT"], json!(null), false),
            (
                json!({"Cmd": ["bash"]}),
                vec!["CMD", "ENTRYPOINT"],
                json!(["run"]),
                true,
            ),
            (
                json!({"Cmd": ["bash"]}),
                vec!["ENTRYPOINT", "CMD"],
                json!(["run"]),
                true,
            ),
            (
                json!({"Cmd": ["bash"]}),
                vec!["ENTRYPOINT", "CMD", "ENTRYPOINT"],
                json!(["run"]),
                true,
            ),
            (
                json!({"Cmd": ["bash"]}),
                vec!["ENV"],
                json!(["bash"]),
                false,
            ),
        ] {
            let mut cfg = ImageConfig::parse(&json!({ "config": base }).to_string()).unwrap();
            let mut state = StageState::default();
            for keyword in &steps {
                let i = match *keyword {
                    "CMD" => ins("CMD", &["run"], true),
                    "ENV" => ins("ENV", &["A", "1"], false),
                    _ => ins(keyword, &["/x"], true),
                };
                apply(&i, &mut cfg, &mut state).unwrap();
            }
            let got: Value = serde_json::from_str(&cfg.to_json()).unwrap();
            assert_eq!(got["config"]["Cmd"], want_cmd, "{steps:?}");
            assert_eq!(state.cmd_set, want_cmd_set, "{steps:?}");
        }
    }

    #[test]
    fn maintainer_sets_author_and_missing_config_is_created() {
        let got = run(json!({}), ins("MAINTAINER", &["Jo <jo@x>"], false)).unwrap();
        assert_eq!(got, json!({"author": "Jo <jo@x>"}));
        let got = run(json!({"config": null}), ins("ENV", &["A", "1"], false)).unwrap();
        assert_eq!(got, json!({"config": {"Env": ["A=1"]}}));
    }

    #[test]
    fn parse_ports_table() {
        for (value, want) in [
            ("8080", Ok(vec!["8080/tcp"])),
            ("8080/TCP", Ok(vec!["8080/tcp"])),
            ("1-3/sctp", Ok(vec!["1/sctp", "2/sctp", "3/sctp"])),
            ("http", Err("invalid EXPOSE port \"http\"")),
            ("80/icmp", Err("protocol")),
            ("3-1", Err("range ends")),
            ("70000", Err("0-65535")),
            ("", Err("invalid EXPOSE port")),
        ] {
            match (parse_ports(value), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{value}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{value}: {e}"),
                (got, w) => panic!("{value}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn invalid_uses() {
        for (i, want) in [
            (
                ins("SHELL", &["/bin/sh -c"], false),
                "SHELL requires the arguments in JSON form",
            ),
            (ins("ENV", &["A"], false), "ENV requires key-value pairs"),
            (
                ins("USER", &[], false),
                "USER requires exactly one argument",
            ),
            (
                ins("ONBUILD", &["RUN x"], false),
                "unsupported instruction ONBUILD",
            ),
            (ins("ARG", &["X"], false), "unsupported instruction ARG"),
            (ins("FROM", &["x"], false), "unsupported instruction FROM"),
            (
                ins("VOLUME", &[""], false),
                "VOLUME requires non-empty paths",
            ),
        ] {
            let err = run(json!({}), i).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let mut flagged = ins("ENV", &["A", "1"], false);
        flagged.flags.push(("x".into(), None));
        let err = run(json!({}), flagged).unwrap_err().to_string();
        assert_eq!(err, "unknown flag --x for ENV");
    }
}
