//! The interpreter's entry points in plain Rust: one instruction in, the new image config
//! and the touched paths out; and USER resolution for RUN. `bindings.rs` converts the WIT
//! types to these and back; each instruction's rules live in its own module.

use crate::config::{self, ImageConfig};
use crate::copy;
use crate::error::Result;
use crate::files::{Files, RootId, Touched};
use crate::healthcheck;
use crate::user::{self, Identity};
use crate::workdir;

/// One Dockerfile instruction, variables already expanded by the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// upper case: ENV, LABEL, COPY, ...
    pub keyword: String,
    /// 1-based Dockerfile line (the host prefixes errors with it)
    pub line: u32,
    pub args: Vec<String>,
    /// `--name=value` flags in order; `--name` alone has no value
    pub flags: Vec<(String, Option<String>)>,
    /// the arguments were written as a JSON array
    pub exec_form: bool,
}

/// The trees one instruction may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roots {
    /// the stage's root filesystem, read-write
    pub stage: RootId,
    /// the build context, read-only
    pub context: RootId,
    /// `COPY --from`: the other stage or image, read-only
    pub from: Option<RootId>,
}

/// What an instruction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// the image config JSON after the instruction
    pub config: String,
    /// stage paths created or changed, relative, without a leading slash, sorted
    pub touched: Vec<String>,
}

/// Carries out one instruction against the image config JSON and the roots.
pub fn execute(
    files: &dyn Files,
    ins: &Instruction,
    config: &str,
    roots: &Roots,
) -> Result<Outcome> {
    let mut cfg = ImageConfig::parse(config)?;
    let mut touched = Touched::default();
    match ins.keyword.as_str() {
        "COPY" | "ADD" => copy::apply(files, ins, &cfg, roots, &mut touched)?,
        "WORKDIR" => workdir::apply(files, ins, &mut cfg, roots, &mut touched)?,
        "HEALTHCHECK" => healthcheck::apply(ins, &mut cfg)?,
        _ => config::apply(ins, &mut cfg)?,
    }
    Ok(Outcome {
        config: cfg.to_json(),
        touched: touched.into_vec(),
    })
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
            let out = execute(&fs, &ins, &config, &roots).unwrap();
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
            let err = execute(&fs, &ins, config, &roots).unwrap_err().to_string();
            assert!(err.starts_with("invalid image config"), "{err}");
        }
    }
}
