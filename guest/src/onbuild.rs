//! ONBUILD: registering a trigger in `config.OnBuild`, and at the start of a stage taking the
//! base image's triggers out of the config (a child image does not inherit them). Parsing a
//! trigger's text and running it is the host's (its Dockerfile front end and pipeline); the
//! config document itself is `config.rs`.

use serde_json::Value;

use crate::config::{no_flags, one_arg, want, ImageConfig};
use crate::error::Result;
use crate::instruction::{Instruction, StageStart};

/// The config key that holds the triggers.
const ON_BUILD: &str = "OnBuild";

/// Keywords a trigger may not start with (BuildKit refuses them when ONBUILD is read).
const FORBIDDEN: [&str; 3] = ["ONBUILD", "FROM", "MAINTAINER"];

/// Applies `ONBUILD <instruction>`: the trigger text is appended to `config.OnBuild`.
pub fn apply(ins: &Instruction, cfg: &mut ImageConfig) -> Result<()> {
    no_flags(ins)?;
    let trigger = one_arg(ins)?;
    let first = trigger
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if first.is_empty() || FORBIDDEN.contains(&first.as_str()) {
        return Err(want(
            ins,
            "a trigger instruction other than ONBUILD, FROM or MAINTAINER",
        ));
    }
    cfg.edit_list(ON_BUILD, |l| l.push(Value::String(trigger.to_string())));
    Ok(())
}

/// The config a stage starts from: the base's `config.OnBuild` removed (whatever it holds),
/// and its string items returned, in order, as the triggers to run first.
pub fn start_stage(config: &str) -> Result<StageStart> {
    let mut cfg = ImageConfig::parse(config)?;
    let triggers = match cfg.take(ON_BUILD) {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(StageStart {
        config: cfg.to_json(),
        triggers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ins(args: &[&str]) -> Instruction {
        Instruction {
            keyword: "ONBUILD".to_string(),
            line: 1,
            args: args.iter().map(|s| s.to_string()).collect(),
            flags: vec![],
            exec_form: false,
        }
    }

    #[test]
    fn registers_triggers() {
        for (base, trigger, want) in [
            (json!({}), "RUN make", json!(["RUN make"])),
            (
                json!({"OnBuild": ["COPY . /src"]}),
                "run make",
                json!(["COPY . /src", "run make"]),
            ),
            (json!({"OnBuild": null}), "ENV A=1", json!(["ENV A=1"])),
        ] {
            let mut cfg = ImageConfig::parse(&json!({ "config": base }).to_string()).unwrap();
            apply(&ins(&[trigger]), &mut cfg).unwrap();
            let got: Value = serde_json::from_str(&cfg.to_json()).unwrap();
            assert_eq!(got["config"]["OnBuild"], want, "{trigger}");
        }
    }

    #[test]
    fn refuses_bad_triggers() {
        for (args, flag, want) in [
            (vec!["ONBUILD RUN x"], None, "ONBUILD requires a trigger"),
            (vec!["from alpine"], None, "ONBUILD requires a trigger"),
            (vec!["MAINTAINER jo"], None, "ONBUILD requires a trigger"),
            (vec!["   "], None, "ONBUILD requires a trigger"),
            (vec![], None, "ONBUILD requires exactly one argument"),
            (vec!["RUN a", "RUN b"], None, "exactly one argument"),
            (vec!["RUN a"], Some("x"), "unknown flag --x for ONBUILD"),
        ] {
            let mut i = ins(&args);
            if let Some(f) = flag {
                i.flags.push((f.to_string(), None));
            }
            let mut cfg = ImageConfig::parse("{}").unwrap();
            let err = apply(&i, &mut cfg).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    /// The base's triggers come out of the config, whatever `OnBuild` holds; every other
    /// field stays.
    #[test]
    fn start_stage_takes_the_triggers() {
        for (base, want_config, want_triggers) in [
            (
                json!({"os": "linux", "config": {"Env": ["A=1"], "OnBuild": ["RUN a", "COPY . /"]}}),
                json!({"os": "linux", "config": {"Env": ["A=1"]}}),
                vec!["RUN a", "COPY . /"],
            ),
            (
                json!({"config": {"OnBuild": null, "Cmd": ["sh"]}}),
                json!({"config": {"Cmd": ["sh"]}}),
                vec![],
            ),
            (
                json!({"config": {"OnBuild": ["RUN a", 7, null]}}),
                json!({"config": {}}),
                vec!["RUN a"],
            ),
            (
                json!({"config": {"OnBuild": "RUN a"}}),
                json!({"config": {}}),
                vec![],
            ),
            (
                json!({"config": {"Cmd": ["sh"]}}),
                json!({"config": {"Cmd": ["sh"]}}),
                vec![],
            ),
            (json!({"config": null}), json!({"config": null}), vec![]),
            (json!({}), json!({}), vec![]),
        ] {
            let got = start_stage(&base.to_string()).unwrap();
            let config: Value = serde_json::from_str(&got.config).unwrap();
            assert_eq!(config, want_config, "{base}");
            assert_eq!(got.triggers, want_triggers, "{base}");
        }
    }

    #[test]
    fn start_stage_needs_a_config_document() {
        let err = start_stage("[]").unwrap_err().to_string();
        assert!(err.starts_with("invalid image config"), "{err}");
    }
}
