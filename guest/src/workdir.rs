//! WORKDIR: sets `config.WorkingDir` (relative paths join the current one) and creates the
//! directory with its missing parents in the stage root, mode 0755, owned by root — or, as
//! BuildKit does, by the configured USER when one is set (a name it cannot resolve, even
//! without a passwd file, stands for root).

use serde_json::Value;

use crate::config::{no_flags, ImageConfig};
use crate::error::{Error, Result};
use crate::files::{create_dirs, resolve, Files, Owner, Touched};
use crate::instruction::{Instruction, Roots};
use crate::path;
use crate::user;

/// Mode of directories the builder creates on its own.
pub const IMPLICIT_DIR_MODE: u32 = 0o755;

pub fn apply(
    files: &dyn Files,
    ins: &Instruction,
    cfg: &mut ImageConfig,
    roots: &Roots,
    touched: &mut Touched,
) -> Result<()> {
    no_flags(ins)?;
    let dir = match ins.args.as_slice() {
        [d] if !d.is_empty() => d,
        _ => {
            return Err(Error::Arguments {
                keyword: ins.keyword.clone(),
                want: "exactly one path",
            })
        }
    };
    let wd = path::join(&cfg.working_dir(), dir);
    let owner = match cfg.user() {
        Some(u) => user::resolve_dir_owner(files, roots.stage, &u)?,
        None => Owner::default(),
    };
    // created through symlinks as the host resolves them; `touched` names the real paths
    let target = resolve(files, roots.stage, &wd)?;
    create_dirs(
        files,
        roots.stage,
        &target,
        IMPLICIT_DIR_MODE,
        owner,
        touched,
    )?;
    cfg.set("WorkingDir", Value::String(wd));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeFs;
    use crate::files::RootId;
    use serde_json::json;

    fn workdir(
        fs: &FakeFs,
        stage: RootId,
        start: Value,
        arg: &str,
    ) -> Result<(Value, Vec<String>)> {
        let mut cfg = ImageConfig::parse(&start.to_string())?;
        let ins = Instruction {
            keyword: "WORKDIR".into(),
            line: 2,
            args: vec![arg.to_string()],
            flags: vec![],
            exec_form: false,
        };
        let roots = Roots {
            stage,
            context: fs.context(),
            from: None,
        };
        let mut touched = Touched::default();
        apply(fs, &ins, &mut cfg, &roots, &mut touched)?;
        let v: Value = serde_json::from_str(&cfg.to_json()).unwrap_or(Value::Null);
        Ok((v["config"]["WorkingDir"].clone(), touched.into_vec()))
    }

    #[test]
    fn relative_absolute_and_touched() {
        for (current, arg, want_wd, want_touched) in [
            (None, "/app", "/app", vec!["app"]),
            (None, "app", "/app", vec!["app"]),
            (
                Some("/srv"),
                "web/static",
                "/srv/web/static",
                vec!["srv/web", "srv/web/static"],
            ),
            (Some("/srv"), "../opt/./x/", "/opt/x", vec!["opt/x"]),
            (Some("/srv"), "/srv", "/srv", vec![]),
            (Some("/srv"), "../../..", "/", vec![]),
            (Some("/"), "/link/new", "/link/new", vec!["opt/new"]),
        ] {
            let fs = FakeFs::new();
            let stage = fs.stage();
            fs.add_dir(stage, "/srv", 0o700);
            fs.add_dir(stage, "/opt", 0o755);
            fs.add_symlink(stage, "/link", "/opt");
            let start = match current {
                Some(c) => json!({"config": {"WorkingDir": c}}),
                None => json!({}),
            };
            let (wd, touched) = workdir(&fs, stage, start, arg).unwrap();
            assert_eq!(wd, json!(want_wd), "{arg}");
            assert_eq!(touched, want_touched, "{arg}");
            let st = fs.stat(stage, want_wd).unwrap();
            assert!(st.is_dir());
            if !want_touched.is_empty() {
                assert_eq!((st.mode, st.uid, st.gid), (0o755, 0, 0), "{arg}");
            }
        }
    }

    #[test]
    fn owner_follows_configured_user() {
        for (user, want) in [
            ("app", (1000, 1000)),
            ("42:43", (42, 43)),
            ("1000", (1000, 1000)),
        ] {
            let fs = FakeFs::new();
            let stage = fs.stage();
            fs.add_file(
                stage,
                "/etc/passwd",
                b"app:x:1000:1000::/home/app:/bin/sh\n",
                0o644,
            );
            let start = json!({"config": {"User": user}});
            let (_, touched) = workdir(&fs, stage, start, "/data/x").unwrap();
            assert_eq!(touched, vec!["data", "data/x"]);
            for p in ["/data", "/data/x"] {
                let st = fs.stat(stage, p).unwrap();
                assert_eq!((st.uid, st.gid), want, "{user} {p}");
            }
        }
    }

    #[test]
    fn unresolvable_user_owns_as_root() {
        for (passwd, user, want) in [
            (None, "root", (0, 0)),
            (None, "ghost:staff", (0, 0)),
            (None, "ghost:7", (0, 7)),
            (Some("app:x:1000:1001::/:/bin/sh\n"), "ghost", (0, 0)),
            (
                Some("app:x:1000:1001::/:/bin/sh\n"),
                "app:nogroup",
                (1000, 1001),
            ),
        ] {
            let fs = FakeFs::new();
            let stage = fs.stage();
            if let Some(text) = passwd {
                fs.add_file(stage, "/etc/passwd", text.as_bytes(), 0o644);
            }
            workdir(&fs, stage, json!({"config": {"User": user}}), "/w").unwrap();
            let st = fs.stat(stage, "/w").unwrap();
            assert_eq!((st.uid, st.gid), want, "{user} {passwd:?}");
        }
    }

    #[test]
    fn file_in_the_way_fails() {
        let fs = FakeFs::new();
        let stage = fs.stage();
        fs.add_file(stage, "/etc/passwd", b"", 0o644);
        fs.add_file(stage, "/file", b"x", 0o644);
        let err = workdir(&fs, stage, json!({}), "/file/sub").unwrap_err();
        assert_eq!(err.to_string(), "/file exists and is not a directory");
    }
}
