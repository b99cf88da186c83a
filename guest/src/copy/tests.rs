//! COPY/ADD rules on the in-memory tree: destination rules, directory contents, globs,
//! ownership (`--chown`, `--from`), `--chmod`, symlinks, ADD archives, flag errors.

use super::*;
use crate::fake::{FakeFs, FIXTURE_MTIME};
use serde_json::json;

const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
const GROUP: &[u8] = b"root:x:0:\nstaff:x:50:app\napp:x:1000:\n";

fn fixture() -> FakeFs {
    let fs = FakeFs::new();
    let (ctx, stage, from) = (fs.context(), fs.stage(), fs.from());
    fs.add_file(ctx, "/app.py", b"print()", 0o644);
    fs.add_file(ctx, "/run.sh", b"#!/bin/sh", 0o755);
    fs.add_file(ctx, "/a.txt", b"a", 0o644);
    fs.add_file(ctx, "/b.txt", b"b", 0o644);
    fs.add_dir(ctx, "/src", 0o750);
    fs.add_file(ctx, "/src/main.rs", b"fn main() {}", 0o644);
    fs.add_file(ctx, "/src/lib/mod.rs", b"", 0o600);
    fs.add_symlink(ctx, "/src/link", "main.rs");
    fs.add_symlink(ctx, "/conf.link", "app.py");
    fs.add_symlink(ctx, "/dir.link", "/src");
    fs.set_fixture_meta(ctx, "/src", 501, 20, (77, 7));
    fs.set_fixture_meta(ctx, "/app.py", 501, 20, (88, 8));
    fs.add_file(ctx, "/site.tar.gz", &[0x1f, 0x8b, 8, 0, 0], 0o644);
    fs.add_file(ctx, "/notes.txt", b"just text", 0o644);
    let mut tar = vec![0u8; 600];
    tar[257..262].copy_from_slice(b"ustar");
    fs.add_file(ctx, "/data.tar", &tar, 0o644);

    fs.add_file(stage, "/etc/passwd", PASSWD, 0o644);
    fs.add_file(stage, "/etc/group", GROUP, 0o644);
    fs.add_dir(stage, "/opt", 0o700);
    fs.add_dir(stage, "/usr/bin", 0o755);
    fs.add_symlink(stage, "/bin", "usr/bin");
    fs.add_file(stage, "/existing.txt", b"old", 0o600);

    fs.add_dir(from, "/out/bin", 0o750);
    fs.add_file(from, "/out/bin/tool", b"ELF", 0o4755);
    fs.add_symlink(from, "/out/lib", "/out/bin");
    fs.add_file(from, "/out/site.tar.gz", &[0x1f, 0x8b, 8], 0o644);
    fs.set_fixture_meta(from, "/out", 7, 8, FIXTURE_MTIME);
    fs.set_fixture_meta(from, "/out/bin", 1000, 2000, FIXTURE_MTIME);
    fs.set_fixture_meta(from, "/out/bin/tool", 1000, 2000, FIXTURE_MTIME);
    fs.set_fixture_meta(from, "/out/lib", 5, 5, FIXTURE_MTIME);
    fs
}

/// Runs COPY/ADD in `/srv` (or `workdir`) and returns the touched paths.
fn run_in(
    fs: &FakeFs,
    workdir: &str,
    keyword: &str,
    args: &[&str],
    flags: &[(&str, Option<&str>)],
) -> Result<Vec<String>> {
    let has_from = flags.iter().any(|(k, _)| *k == "from");
    let roots = Roots {
        stage: fs.stage(),
        context: fs.context(),
        from: has_from.then(|| fs.from()),
    };
    let ins = Instruction {
        keyword: keyword.to_string(),
        line: 4,
        args: args.iter().map(|s| s.to_string()).collect(),
        flags: flags
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect(),
        exec_form: false,
    };
    let cfg = ImageConfig::parse(&json!({"config": {"WorkingDir": workdir}}).to_string())?;
    let mut touched = Touched::default();
    apply(fs, &ins, &cfg, &roots, &mut touched)?;
    Ok(touched.into_vec())
}

fn run(fs: &FakeFs, args: &[&str], flags: &[(&str, Option<&str>)]) -> Result<Vec<String>> {
    run_in(fs, "/srv", "COPY", args, flags)
}

/// (kind, mode, uid, gid) of a stage path, not following a final symlink.
fn meta(fs: &FakeFs, p: &str) -> (Kind, u32, u32, u32) {
    let st = fs.lstat(fs.stage(), p).unwrap();
    (st.kind, st.mode, st.uid, st.gid)
}

#[test]
fn destination_rules() {
    for (args, want_touched, want_file) in [
        (vec!["app.py", "/dst"], vec!["dst"], "/dst"),
        (
            vec!["app.py", "/dst/"],
            vec!["dst", "dst/app.py"],
            "/dst/app.py",
        ),
        (vec!["app.py", "/opt"], vec!["opt/app.py"], "/opt/app.py"),
        (vec!["app.py", "dst"], vec!["srv", "srv/dst"], "/srv/dst"),
        (
            vec!["app.py", "."],
            vec!["srv", "srv/app.py"],
            "/srv/app.py",
        ),
        (
            vec!["app.py", "./"],
            vec!["srv", "srv/app.py"],
            "/srv/app.py",
        ),
        (
            vec!["app.py", "sub/."],
            vec!["srv", "srv/sub", "srv/sub/app.py"],
            "/srv/sub/app.py",
        ),
        (
            vec!["app.py", "/bin/"],
            vec!["usr/bin/app.py"],
            "/usr/bin/app.py",
        ),
        (
            vec!["app.py", "/bin"],
            vec!["usr/bin/app.py"],
            "/usr/bin/app.py",
        ),
        (
            vec!["app.py", "/existing.txt"],
            vec!["existing.txt"],
            "/existing.txt",
        ),
        (
            vec!["app.py", "/a/b/c.py"],
            vec!["a", "a/b", "a/b/c.py"],
            "/a/b/c.py",
        ),
        (
            vec!["/src/../app.py", "../../x/"],
            vec!["x", "x/app.py"],
            "/x/app.py",
        ),
        (vec!["conf.link", "/c"], vec!["c"], "/c"),
    ] {
        let fs = fixture();
        let touched = run(&fs, &args, &[]).unwrap();
        assert_eq!(touched, want_touched, "{args:?}");
        assert_eq!(
            fs.content(fs.stage(), want_file).as_deref(),
            Some(&b"print()"[..]),
            "{args:?}"
        );
        // context files are owned by root and keep mode and mtime
        assert_eq!(meta(&fs, want_file), (Kind::File, 0o644, 0, 0), "{args:?}");
        let st = fs.lstat(fs.stage(), want_file).unwrap();
        assert_eq!((st.mtime_sec, st.mtime_nsec), (88, 8), "{args:?}");
        // parents the copy created are 0755 root
        for t in &touched {
            if fs.lstat(fs.stage(), &format!("/{t}")).unwrap().is_dir() {
                assert_eq!(meta(&fs, &format!("/{t}")), (Kind::Dir, 0o755, 0, 0), "{t}");
            }
        }
    }
}

#[test]
fn directory_sources_copy_their_contents() {
    for (args, root_dir) in [
        (vec!["src", "/dst"], "/dst"),
        (vec!["src/", "/dst/"], "/dst"),
        (vec!["dir.link", "/dst"], "/dst"),
        (vec!["src", "dst"], "/srv/dst"),
    ] {
        let fs = fixture();
        let touched = run(&fs, &args, &[]).unwrap();
        let rel = root_dir.trim_start_matches('/');
        let mut want: Vec<String> = ["", "/lib", "/lib/mod.rs", "/link", "/main.rs"]
            .iter()
            .map(|s| format!("{rel}{s}"))
            .collect();
        if root_dir == "/srv/dst" {
            want.insert(0, "srv".to_string());
        }
        assert_eq!(touched, want, "{args:?}");
        // the created destination is a plain 0755 dir with the source's mtime, owner root
        assert_eq!(meta(&fs, root_dir), (Kind::Dir, 0o755, 0, 0), "{args:?}");
        let st = fs.lstat(fs.stage(), root_dir).unwrap();
        assert_eq!((st.mtime_sec, st.mtime_nsec), (77, 7));
        assert_eq!(
            meta(&fs, &format!("{root_dir}/lib/mod.rs")),
            (Kind::File, 0o600, 0, 0)
        );
        assert_eq!(
            fs.readlink(fs.stage(), &format!("{root_dir}/link"))
                .unwrap(),
            "main.rs"
        );
        let tree: Vec<String> = fs
            .listing(fs.stage())
            .into_iter()
            .filter(|p| p[2..].starts_with(&format!("{root_dir}/")))
            .collect();
        let want: Vec<String> = ["d:/lib", "f:/lib/mod.rs", "l:/link", "f:/main.rs"]
            .iter()
            .map(|s| format!("{}{root_dir}{}", &s[..2], &s[2..]))
            .collect();
        assert_eq!(tree, want, "{args:?}");
    }
}

#[test]
fn existing_directories_keep_their_mode() {
    let fs = fixture();
    let touched = run(&fs, &["src", "/opt/"], &[]).unwrap();
    assert_eq!(
        touched,
        vec!["opt/lib", "opt/lib/mod.rs", "opt/link", "opt/main.rs"]
    );
    assert_eq!(meta(&fs, "/opt"), (Kind::Dir, 0o700, 0, 0));
}

#[test]
fn whole_context_and_globs() {
    for (args, want) in [
        (
            vec![".", "/ctx/"],
            vec![
                "ctx/app.py",
                "ctx/src/main.rs",
                "ctx/conf.link",
                "ctx/dir.link",
            ],
        ),
        (
            vec!["*.txt", "/t/"],
            vec!["t/a.txt", "t/b.txt", "t/notes.txt"],
        ),
        (vec!["s?c/*.rs", "/r/"], vec!["r/main.rs"]),
        (vec!["a.t[x]t", "/one"], vec!["one"]),
    ] {
        let fs = fixture();
        let touched = run(&fs, &args, &[]).unwrap();
        for w in &want {
            assert!(
                touched.contains(&w.to_string()),
                "{args:?}: {w} not in {touched:?}"
            );
        }
    }
    let fs = fixture();
    fs.add_dir(fs.context(), "/", 0o700);
    run(&fs, &[".", "/ctx"], &[]).unwrap();
    assert_eq!(fs.readlink(fs.stage(), "/ctx/dir.link").unwrap(), "/src");
    assert_eq!(meta(&fs, "/ctx"), (Kind::Dir, 0o755, 0, 0));
}

#[test]
fn source_errors() {
    for (args, flags, want) in [
        (vec!["a.txt", "b.txt", "/dst"], vec![], "when using COPY with more than one source file, the destination must be a directory and end with a /"),
        (vec!["*.txt", "/dst"], vec![], "when using COPY with more than one source file"),
        (vec!["*.go", "/x/"], vec![], "COPY failed: no source files were specified: *.go matches nothing in build context"),
        (vec!["nope.txt", "/x"], vec![], "nope.txt: not found in build context"),
        (vec!["nope", "/x"], vec![("from", Some("builder"))], "nope: not found in stage or image \"builder\""),
        (vec!["/x"], vec![], "COPY requires at least one source and a destination"),
        (vec!["https://example.com/a", "/x"], vec![], "COPY does not accept a URL as source: https://example.com/a"),
        (vec!["src", "/existing.txt"], vec![], "cannot copy to non-directory: /existing.txt"),
        (vec!["app.py", "/existing.txt/"], vec![], "/existing.txt exists and is not a directory"),
    ] {
        let fs = fixture();
        let flags: Vec<(&str, Option<&str>)> = flags;
        let err = run(&fs, &args, &flags).unwrap_err().to_string();
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn several_sources_into_a_directory() {
    let fs = fixture();
    let touched = run(&fs, &["a.txt", "b.txt", "src", "/dst/"], &[]).unwrap();
    for w in [
        "dst",
        "dst/a.txt",
        "dst/b.txt",
        "dst/main.rs",
        "dst/lib/mod.rs",
    ] {
        assert!(touched.contains(&w.to_string()), "{w} not in {touched:?}");
    }
    // the directory was created for the files first: 0755, not the source dir's mode
    assert_eq!(meta(&fs, "/dst"), (Kind::Dir, 0o755, 0, 0));
}

#[test]
fn chown_by_name_number_and_unknown() {
    for (spec, want) in [
        ("app", Ok((1000, 1000))),
        ("app:staff", Ok((1000, 50))),
        ("1234:5678", Ok((1234, 5678))),
        ("42", Ok((42, 42))),
        (
            "ghost",
            Err("unable to find user ghost: no matching entries in passwd file"),
        ),
        ("app:nobody", Err("unable to find group nobody")),
    ] {
        let fs = fixture();
        let got = run(
            &fs,
            &["app.py", "src", "/new/dir/"],
            &[("chown", Some(spec))],
        );
        match (got, want) {
            (Ok(_), Ok((uid, gid))) => {
                for (p, kind, mode) in [
                    ("/new", Kind::Dir, 0o755),
                    ("/new/dir", Kind::Dir, 0o755),
                    ("/new/dir/app.py", Kind::File, 0o644),
                    ("/new/dir/lib", Kind::Dir, 0o755),
                    ("/new/dir/lib/mod.rs", Kind::File, 0o600),
                    ("/new/dir/link", Kind::Symlink, 0o777),
                ] {
                    assert_eq!(meta(&fs, p), (kind, mode, uid, gid), "{spec} {p}");
                }
            }
            (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{spec}: {e}"),
            (g, w) => panic!("{spec}: got {g:?}, want {w:?}"),
        }
    }
}

#[test]
fn from_keeps_source_owner_unless_chowned() {
    for (flags, tool_owner, lib_owner, top_owner) in [
        (
            vec![("from", Some("builder"))],
            (1000, 2000),
            (5, 5),
            (7, 8),
        ),
        (
            vec![("from", Some("builder")), ("chown", Some("0:0"))],
            (0, 0),
            (0, 0),
            (0, 0),
        ),
    ] {
        let fs = fixture();
        run(&fs, &["/out", "/x"], &flags).unwrap();
        let (_, mode, uid, gid) = meta(&fs, "/x/bin/tool");
        assert_eq!((mode, (uid, gid)), (0o4755, tool_owner), "{flags:?}");
        let (kind, _, uid, gid) = meta(&fs, "/x/lib");
        assert_eq!((kind, (uid, gid)), (Kind::Symlink, lib_owner), "{flags:?}");
        assert_eq!(fs.readlink(fs.stage(), "/x/lib").unwrap(), "/out/bin");
        let (_, _, uid, gid) = meta(&fs, "/x");
        assert_eq!((uid, gid), top_owner, "{flags:?}");
    }
    // a context file owned by 501 lands as root
    let fs = fixture();
    run(&fs, &["app.py", "/p"], &[]).unwrap();
    assert_eq!(meta(&fs, "/p"), (Kind::File, 0o644, 0, 0));
}

#[test]
fn chmod_applies_to_files_and_directories() {
    for (value, want) in [
        ("640", Ok(0o640)),
        ("0755", Ok(0o755)),
        ("4755", Ok(0o4755)),
        ("u+x", Err(())),
        ("999", Err(())),
        ("", Err(())),
    ] {
        let fs = fixture();
        let got = run(&fs, &["src", "/m"], &[("chmod", Some(value))]);
        match (got, want) {
            (Ok(_), Ok(mode)) => {
                for p in ["/m", "/m/main.rs", "/m/lib", "/m/lib/mod.rs"] {
                    assert_eq!(meta(&fs, p).1, mode, "{value} {p}");
                }
            }
            (Err(e), Err(())) => assert!(e.to_string().starts_with("invalid --chmod value"), "{e}"),
            (g, w) => panic!("{value}: got {g:?}, want {w:?}"),
        }
    }
}

#[test]
fn walk_conflicts() {
    for (setup, want) in [
        ("symlink-dir", Err("cannot copy to non-directory: /dst/lib")),
        (
            "dir-for-file",
            Err("cannot replace directory /dst/main.rs with a file"),
        ),
        ("file-for-link", Ok(())),
    ] {
        let fs = fixture();
        let stage = fs.stage();
        match setup {
            "symlink-dir" => fs.add_symlink(stage, "/dst/lib", "/usr/bin"),
            "dir-for-file" => fs.add_dir(stage, "/dst/main.rs", 0o755),
            _ => fs.add_file(stage, "/dst/link", b"old", 0o644),
        }
        match (run(&fs, &["src", "/dst"], &[]), want) {
            (Ok(_), Ok(())) => assert_eq!(fs.readlink(stage, "/dst/link").unwrap(), "main.rs"),
            (Err(e), Err(w)) => assert_eq!(e.to_string(), w),
            (g, w) => panic!("{setup}: got {g:?}, want {w:?}"),
        }
    }
}

#[test]
fn special_files_are_skipped() {
    let fs = fixture();
    fs.add_fifo(fs.context(), "/src/pipe");
    let touched = run(&fs, &["src", "/d"], &[]).unwrap();
    assert!(!touched.contains(&"d/pipe".to_string()), "{touched:?}");
}

#[test]
fn add_unpacks_local_archives_only() {
    for (keyword, args, flags, want) in [
        (
            "ADD",
            vec!["site.tar.gz", "/web"],
            vec![],
            vec!["web", "web/unpacked"],
        ),
        (
            "ADD",
            vec!["data.tar", "/d/"],
            vec![],
            vec!["d", "d/unpacked"],
        ),
        (
            "ADD",
            vec!["*.tar*", "/all/"],
            vec![],
            vec!["all", "all/unpacked"],
        ),
        (
            "ADD",
            vec!["site.tar.gz", "/opt"],
            vec![],
            vec!["opt/unpacked"],
        ),
        ("ADD", vec!["notes.txt", "/n"], vec![], vec!["n"]),
        ("COPY", vec!["site.tar.gz", "/web"], vec![], vec!["web"]),
        (
            "ADD",
            vec!["/out/site.tar.gz", "/w"],
            vec![("from", Some("builder"))],
            vec!["w"],
        ),
    ] {
        let fs = fixture();
        let touched = run_in(&fs, "/", keyword, &args, &flags).unwrap();
        assert_eq!(touched, want, "{keyword} {args:?}");
        if want.len() == 1 && !want[0].ends_with("unpacked") {
            assert_eq!(
                meta(&fs, &format!("/{}", want[0])).0,
                Kind::File,
                "{args:?}"
            );
        }
    }
}

#[test]
fn flag_handling() {
    for (keyword, flags, want) in [
        ("COPY", vec![("link", None)], Ok(())),
        ("COPY", vec![("link", Some("true"))], Ok(())),
        (
            "COPY",
            vec![("parents", None)],
            Err("COPY --parents is not supported yet"),
        ),
        (
            "COPY",
            vec![("exclude", Some("*.md"))],
            Err("COPY --exclude is not supported yet"),
        ),
        (
            "ADD",
            vec![("checksum", Some("sha256:x"))],
            Err("ADD --checksum is not supported yet"),
        ),
        (
            "COPY",
            vec![("bogus", None)],
            Err("unknown flag --bogus for COPY"),
        ),
        (
            "COPY",
            vec![("chown", None)],
            Err("invalid --chown value \"\": a value is required"),
        ),
    ] {
        let fs = fixture();
        match (run_in(&fs, "/", keyword, &["app.py", "/x"], &flags), want) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(w)) => assert_eq!(e.to_string(), w),
            (g, w) => panic!("{flags:?}: got {g:?}, want {w:?}"),
        }
    }
    let fs = fixture();
    let err = run_in(&fs, "/", "ADD", &["https://example.com/x.tgz", "/x"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ADD from a URL is not supported yet: https://example.com/x.tgz"
    );
    let err = run_in(&fs, "/", "ADD", &["git@github.com:a/b.git", "/x"], &[]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("ADD from a URL is not supported yet"),
        "{err}"
    );
}

#[test]
fn from_without_a_root_is_an_error() {
    let fs = fixture();
    let ins = Instruction {
        keyword: "COPY".into(),
        line: 1,
        args: vec!["/out".into(), "/x".into()],
        flags: vec![("from".into(), Some("builder".into()))],
        exec_form: false,
    };
    let roots = Roots {
        stage: fs.stage(),
        context: fs.context(),
        from: None,
    };
    let cfg = ImageConfig::parse("{}").unwrap();
    let err = apply(&fs, &ins, &cfg, &roots, &mut Touched::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--from was given but the host passed no source root for builder"
    );
}
