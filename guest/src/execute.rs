//! The interpreter's entry points in plain Rust: one instruction in, the new image config,
//! the touched paths and the stage's state out; a stage's start (the base's ONBUILD triggers
//! taken out); and USER resolution for RUN. `bindings.rs` converts the WIT types to these
//! and back; the shared types are `instruction.rs`; each instruction's rules live in its own
//! module, this file only dispatches.

use crate::config::{self, ImageConfig};
use crate::copy;
use crate::error::Result;
use crate::files::{Files, RootId, Touched};
use crate::healthcheck;
use crate::instruction::{Instruction, Outcome, Roots, StageStart, StageState};
use crate::onbuild;
use crate::user::{self, Identity};
use crate::workdir;

/// Carries out one instruction against the image config JSON and the roots, in a stage
/// whose state so far is `state`.
pub fn execute(
    files: &dyn Files,
    ins: &Instruction,
    config: &str,
    roots: &Roots,
    mut state: StageState,
) -> Result<Outcome> {
    let mut cfg = ImageConfig::parse(config)?;
    let mut touched = Touched::default();
    match ins.keyword.as_str() {
        "COPY" | "ADD" => copy::apply(files, ins, &cfg, roots, &mut touched)?,
        "WORKDIR" => workdir::apply(files, ins, &mut cfg, roots, &mut touched)?,
        "HEALTHCHECK" => healthcheck::apply(ins, &mut cfg)?,
        "ONBUILD" => onbuild::apply(ins, &mut cfg)?,
        _ => config::apply(ins, &mut cfg, &mut state)?,
    }
    Ok(Outcome {
        config: cfg.to_json(),
        touched: touched.into_vec(),
        state,
    })
}

/// The config a stage starts from, given its base image's, and the base's ONBUILD triggers.
pub fn start_stage(config: &str) -> Result<StageStart> {
    onbuild::start_stage(config)
}

/// Resolves a USER value against the stage's /etc/passwd and /etc/group, for RUN.
pub fn resolve_user(files: &dyn Files, user: &str, stage: RootId) -> Result<Identity> {
    user::resolve_user(files, stage, user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeFs;
    use serde_json::{json, Value};

    #[test]
    fn dispatch_keeps_unknown_fields_and_reports_touched() {
        let config = json!({"os": "linux", "rootfs": {"diff_ids": ["sha256:x"]},
                            "config": {"Env": ["A=1"], "X-Custom": true}})
        .to_string();
        for (keyword, args, want_touched) in [
            ("ENV", vec!["B", "2"], vec![]),
            ("WORKDIR", vec!["/srv"], vec!["srv"]),
            ("COPY", vec!["app.py", "/srv/"], vec!["srv", "srv/app.py"]),
            ("HEALTHCHECK", vec!["NONE"], vec![]),
        ] {
            let ins = Instruction {
                keyword: keyword.into(),
                line: 1,
                args: args.iter().map(|s| s.to_string()).collect(),
                flags: vec![],
                exec_form: false,
            };
            let fs = FakeFs::new();
            let roots = Roots {
                stage: fs.stage(),
                context: fs.context(),
                from: None,
            };
            fs.add_file(roots.context, "/app.py", b"print()", 0o644);
            let out = execute(&fs, &ins, &config, &roots, StageState::default()).unwrap();
            assert_eq!(out.touched, want_touched, "{keyword}");
            let v: Value = serde_json::from_str(&out.config).unwrap();
            assert_eq!(v["rootfs"], json!({"diff_ids": ["sha256:x"]}), "{keyword}");
            assert_eq!(v["config"]["X-Custom"], json!(true), "{keyword}");
        }
    }

    #[test]
    fn bad_config_is_an_error() {
        let fs = FakeFs::new();
        let roots = Roots {
            stage: fs.stage(),
            context: fs.context(),
            from: None,
        };
        let ins = Instruction {
            keyword: "USER".into(),
            line: 1,
            args: vec!["x".into()],
            flags: vec![],
            exec_form: false,
        };
        for config in ["", "[]", "{"] {
            let err = execute(&fs, &ins, config, &roots, StageState::default())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("invalid image config"), "{err}");
        }
    }
}
