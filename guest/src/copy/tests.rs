//! COPY/ADD rules on the in-memory tree: destination rules, directory contents, globs,
//! ownership (`--chown`, `--from`), `--chmod` (octal and symbolic), `--exclude`,
//! `--parents`, symlinks, ADD archives, flag errors.

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
    let gz_text = [&[0x1f, 0x8b, 8, 0][..], crate::fake::NOT_A_TAR].concat();
    fs.add_file(ctx, "/notes.txt.gz", &gz_text, 0o644);
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
        (
            vec!["*.go", "/x/"],
            vec![],
            "COPY failed: no source files were specified: *.go matches nothing in build context",
        ),
        (
            vec!["nope.txt", "/x"],
            vec![],
            "nope.txt: not found in build context",
        ),
        (
            vec!["nope", "/x"],
            vec![("from", Some("builder"))],
            "nope: not found in stage or image \"builder\"",
        ),
        (
            vec!["/x"],
            vec![],
            "COPY requires at least one source and a destination",
        ),
        (
            vec!["https://example.com/a", "/x"],
            vec![],
            "COPY does not accept a URL as source: https://example.com/a",
        ),
        (
            vec!["src", "/existing.txt"],
            vec![],
            "cannot copy to non-directory: /existing.txt",
        ),
        (
            vec!["app.py", "/existing.txt/"],
            vec![],
            "/existing.txt exists and is not a directory",
        ),
    ] {
        let fs = fixture();
        let flags: Vec<(&str, Option<&str>)> = flags;
        let err = run(&fs, &args, &flags).unwrap_err().to_string();
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn several_sources_onto_a_path_in_turn() {
    // files: the last wins
    let fs = fixture();
    run(&fs, &["a.txt", "b.txt", "/dst"], &[]).unwrap();
    assert_eq!(fs.read_file(fs.stage(), "/dst", 10).unwrap(), b"b");
    // directories merge; a file after a directory lands in it
    let fs = fixture();
    run(&fs, &["src", "a.txt", "/d"], &[]).unwrap();
    for p in ["/d/main.rs", "/d/lib/mod.rs", "/d/a.txt"] {
        assert_eq!(meta(&fs, p).0, Kind::File, "{p}");
    }
    // a directory after a file cannot copy onto it
    let fs = fixture();
    let err = run(&fs, &["a.txt", "src", "/f"], &[]).unwrap_err();
    assert!(
        err.to_string().contains("cannot copy to non-directory: /f"),
        "{err}"
    );
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
        ("a=r", Ok(0o444)),
        ("u+y", Err(())),
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
fn fifos_are_recreated() {
    let fs = fixture();
    fs.add_fifo(fs.context(), "/src/pipe");
    let touched = run(&fs, &["src", "/d"], &[]).unwrap();
    assert!(touched.contains(&"d/pipe".to_string()), "{touched:?}");
    assert_eq!(meta(&fs, "/d/pipe"), (Kind::Fifo, 0o644, 0, 0));
    run(&fs, &["src/pipe", "/named"], &[("chown", Some("1:2"))]).unwrap();
    assert_eq!(meta(&fs, "/named"), (Kind::Fifo, 0o644, 1, 2));
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
        // compressed but not a tar: copied as it is
        (
            "ADD",
            vec!["notes.txt.gz", "/g/"],
            vec![],
            vec!["g", "g/notes.txt.gz"],
        ),
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
        ("COPY", vec![("parents", None)], Ok(())),
        ("COPY", vec![("parents", Some("TRUE"))], Ok(())),
        ("COPY", vec![("parents", Some("false"))], Ok(())),
        (
            "COPY",
            vec![("parents", Some("yes"))],
            Err("invalid --parents value \"yes\": expected true or false"),
        ),
        ("COPY", vec![("exclude", Some("*.md"))], Ok(())),
        (
            "ADD",
            vec![("exclude", Some("*.md")), ("exclude", Some("x"))],
            Ok(()),
        ),
        (
            "COPY",
            vec![("exclude", None)],
            Err("invalid --exclude value \"\": a value is required"),
        ),
        ("COPY", vec![("exclude", Some("!keep"))], Ok(())),
        (
            "COPY",
            vec![("chmod", Some("u+q"))],
            Err("invalid --chmod value \"u+q\": expected an octal mode like 755 or a symbolic mode like u+x or go-w"),
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

/// Kind-tagged stage entries at or under `dir` (`d:`, `f:`, `l:`), sorted.
fn tree_under(fs: &FakeFs, dir: &str) -> Vec<String> {
    fs.listing(fs.stage())
        .into_iter()
        .filter(|p| p[2..] == *dir || p[2..].starts_with(&format!("{dir}/")))
        .collect()
}

/// The fixture plus a project tree for `--exclude` and `--parents`.
fn project() -> FakeFs {
    let fs = fixture();
    let ctx = fs.context();
    for p in [
        "/proj/README.md",
        "/proj/docs/a.md",
        "/proj/docs/img/x.png",
        "/proj/src/main.rs",
        "/proj/src/gen/out.rs",
        "/proj/build/obj.o",
        "/proj/.git/HEAD",
    ] {
        fs.add_file(ctx, p, b"x", 0o644);
    }
    fs.add_dir(ctx, "/proj/docs/img", 0o700);
    fs
}

#[test]
fn exclude_leaves_out_matching_entries() {
    let everything = [
        "d:/dst",
        "d:/dst/.git",
        "f:/dst/.git/HEAD",
        "f:/dst/README.md",
        "d:/dst/build",
        "f:/dst/build/obj.o",
        "d:/dst/docs",
        "f:/dst/docs/a.md",
        "d:/dst/docs/img",
        "f:/dst/docs/img/x.png",
        "d:/dst/src",
        "d:/dst/src/gen",
        "f:/dst/src/gen/out.rs",
        "f:/dst/src/main.rs",
    ];
    let without = |gone: &[&str]| -> Vec<&str> {
        everything
            .iter()
            .copied()
            .filter(|p| !gone.contains(p))
            .collect()
    };
    for (keyword, args, excludes, want) in [
        ("COPY", vec!["proj", "/dst"], vec![], everything.to_vec()),
        // relative to the source root: `*.md` is only the top level
        (
            "COPY",
            vec!["proj", "/dst"],
            vec!["*.md"],
            without(&["f:/dst/README.md"]),
        ),
        (
            "COPY",
            vec!["proj", "/dst"],
            vec!["**/*.md"],
            without(&["f:/dst/README.md", "f:/dst/docs/a.md"]),
        ),
        // a directory takes everything below it along
        (
            "COPY",
            vec!["proj", "/dst"],
            vec!["docs", ".git"],
            without(&[
                "d:/dst/.git",
                "f:/dst/.git/HEAD",
                "d:/dst/docs",
                "f:/dst/docs/a.md",
                "d:/dst/docs/img",
                "f:/dst/docs/img/x.png",
            ]),
        ),
        // `dir/**` empties the directory but keeps it
        (
            "COPY",
            vec!["proj", "/dst"],
            vec!["docs/**"],
            without(&[
                "f:/dst/docs/a.md",
                "d:/dst/docs/img",
                "f:/dst/docs/img/x.png",
            ]),
        ),
        (
            "COPY",
            vec!["proj/", "/dst/"],
            vec!["src/*/out.rs", "build/*"],
            without(&["f:/dst/src/gen/out.rs", "f:/dst/build/obj.o"]),
        ),
        (
            "ADD",
            vec!["proj", "/dst"],
            vec!["*/*/*.png", "?EADME.md"],
            without(&["f:/dst/README.md", "f:/dst/docs/img/x.png"]),
        ),
        // each glob match is a root of its own; a file source itself is never excluded
        (
            "COPY",
            vec!["proj/*", "/dst/"],
            vec!["*.md", "img"],
            vec![
                "d:/dst",
                "f:/dst/HEAD",
                "f:/dst/README.md",
                "d:/dst/gen",
                "f:/dst/gen/out.rs",
                "f:/dst/main.rs",
                "f:/dst/obj.o",
            ],
        ),
        // `!` exceptions: the last matching pattern decides; an excluded directory is
        // created only for what is taken back inside it
        (
            "COPY",
            vec!["proj", "/dst"],
            vec!["*.md", "docs", "!docs/img", "!README.md"],
            without(&["f:/dst/docs/a.md"]),
        ),
        (
            "COPY",
            vec!["proj", "/dst"],
            vec!["**", "!src/gen/*.rs"],
            vec![
                "d:/dst",
                "d:/dst/src",
                "d:/dst/src/gen",
                "f:/dst/src/gen/out.rs",
            ],
        ),
        (
            "COPY",
            vec!["proj", "/dst"],
            vec!["src", "!src/none"],
            without(&[
                "d:/dst/src",
                "d:/dst/src/gen",
                "f:/dst/src/gen/out.rs",
                "f:/dst/src/main.rs",
            ]),
        ),
        (
            "COPY",
            vec![".", "/dst/"],
            vec!["proj/*", "*.*", "src", "*.link", "data.tar"],
            vec!["d:/dst", "d:/dst/proj"],
        ),
    ] {
        let fs = project();
        let flags: Vec<(&str, Option<&str>)> =
            excludes.iter().map(|e| ("exclude", Some(*e))).collect();
        run_in(&fs, "/", keyword, &args, &flags).unwrap();
        assert_eq!(
            tree_under(&fs, "/dst"),
            want,
            "{keyword} {args:?} {excludes:?}"
        );
    }
}

#[test]
fn exclude_with_from_keeps_owners() {
    let fs = fixture();
    let flags = [
        ("from", Some("builder")),
        ("exclude", Some("bin/tool")),
        ("exclude", Some("*.gz")),
    ];
    let touched = run(&fs, &["/out", "/x"], &flags).unwrap();
    assert_eq!(touched, vec!["x", "x/bin", "x/lib"]);
    assert_eq!(tree_under(&fs, "/x"), vec!["d:/x", "d:/x/bin", "l:/x/lib"]);
    assert_eq!(meta(&fs, "/x/bin"), (Kind::Dir, 0o750, 1000, 2000));
}

#[test]
fn parents_keep_source_directories() {
    for (args, flags, want) in [
        (
            vec!["a.txt", "src/main.rs", "/dst/"],
            vec![],
            vec!["d:/dst", "f:/dst/a.txt", "d:/dst/src", "f:/dst/src/main.rs"],
        ),
        // the destination is a directory even without a trailing slash
        (
            vec!["src/*.rs", "/dst"],
            vec![],
            vec!["d:/dst", "d:/dst/src", "f:/dst/src/main.rs"],
        ),
        (
            vec!["s*/l*/*.rs", "/dst"],
            vec![],
            vec![
                "d:/dst",
                "d:/dst/src",
                "d:/dst/src/lib",
                "f:/dst/src/lib/mod.rs",
            ],
        ),
        // only what follows the `/./` pivot is kept
        (
            vec!["./src/./lib/mod.rs", "/dst/"],
            vec![],
            vec!["d:/dst", "d:/dst/lib", "f:/dst/lib/mod.rs"],
        ),
        (
            vec!["src/./", "/dst/"],
            vec![],
            vec![
                "d:/dst",
                "d:/dst/lib",
                "f:/dst/lib/mod.rs",
                "l:/dst/link",
                "f:/dst/main.rs",
            ],
        ),
        // a directory source lands under its own name, with its contents
        (
            vec!["src/lib", "/dst/"],
            vec![],
            vec![
                "d:/dst",
                "d:/dst/src",
                "d:/dst/src/lib",
                "f:/dst/src/lib/mod.rs",
            ],
        ),
        // a named symlink stays a symlink, as every entry of BuildKit's walk does
        (
            vec!["conf.link", "/dst/"],
            vec![],
            vec!["d:/dst", "l:/dst/conf.link"],
        ),
        // --exclude is relative to the pivot and applies to the source itself
        (
            vec!["src", "a.txt", "/dst/"],
            vec![("exclude", Some("src/lib")), ("exclude", Some("*.txt"))],
            vec![
                "d:/dst",
                "d:/dst/src",
                "l:/dst/src/link",
                "f:/dst/src/main.rs",
            ],
        ),
        (
            vec!["a.txt", "/dst/"],
            vec![("exclude", Some("a.txt"))],
            vec!["d:/dst"],
        ),
        (
            vec!["src/./lib", "/dst/"],
            vec![("exclude", Some("lib/*.rs"))],
            vec!["d:/dst", "d:/dst/lib"],
        ),
        // --parents=false is a plain COPY
        (
            vec!["src/lib/mod.rs", "/dst/"],
            vec![("parents", Some("false"))],
            vec!["d:/dst", "f:/dst/mod.rs"],
        ),
    ] {
        let fs = fixture();
        fs.add_dir(fs.context(), "/src/lib", 0o700);
        let mut flags: Vec<(&str, Option<&str>)> = flags;
        if !flags.iter().any(|(k, _)| *k == "parents") {
            flags.push(("parents", None));
        }
        run_in(&fs, "/", "COPY", &args, &flags).unwrap();
        assert_eq!(tree_under(&fs, "/dst"), want, "{args:?} {flags:?}");
    }
}

#[test]
fn parents_modes_and_owners() {
    // (chown, path, want): the destination is created 0755, root or the --chown owner;
    // the kept parents and copied directories keep their source mode (/src/lib is 0700
    // here, /src 0750)
    for (chown, path, want) in [
        (None, "/dst", (Kind::Dir, 0o755, 0, 0)),
        (None, "/dst/src", (Kind::Dir, 0o750, 0, 0)),
        (None, "/dst/src/lib", (Kind::Dir, 0o700, 0, 0)),
        (None, "/dst/src/lib/mod.rs", (Kind::File, 0o600, 0, 0)),
        (Some("app"), "/dst", (Kind::Dir, 0o755, 1000, 1000)),
        (Some("app"), "/dst/src", (Kind::Dir, 0o750, 1000, 1000)),
        (Some("app"), "/dst/src/lib", (Kind::Dir, 0o700, 1000, 1000)),
        (
            Some("app"),
            "/dst/src/lib/mod.rs",
            (Kind::File, 0o600, 1000, 1000),
        ),
    ] {
        let fs = fixture();
        fs.add_dir(fs.context(), "/src/lib", 0o700);
        fs.add_file(fs.context(), "/src/lib/mod.rs", b"", 0o600);
        let mut flags = vec![("parents", None)];
        if let Some(c) = chown {
            flags.push(("chown", Some(c)));
        }
        let touched = run_in(&fs, "/", "COPY", &["src/lib", "/dst/"], &flags).unwrap();
        assert_eq!(
            touched,
            vec!["dst", "dst/src", "dst/src/lib", "dst/src/lib/mod.rs"]
        );
        assert_eq!(meta(&fs, path), want, "{chown:?} {path}");
    }
    // --from keeps source owners for what is copied and for the kept parents, not for
    // the destination itself
    let fs = fixture();
    let flags = [("parents", None), ("from", Some("builder"))];
    run_in(&fs, "/", "COPY", &["/out/bin/tool", "/x/"], &flags).unwrap();
    assert_eq!(meta(&fs, "/x"), (Kind::Dir, 0o755, 0, 0));
    assert_eq!(meta(&fs, "/x/out"), (Kind::Dir, 0o755, 7, 8));
    assert_eq!(meta(&fs, "/x/out/bin"), (Kind::Dir, 0o750, 1000, 2000));
    assert_eq!(
        meta(&fs, "/x/out/bin/tool"),
        (Kind::File, 0o4755, 1000, 2000)
    );
}

#[test]
fn parents_errors() {
    for (args, want) in [
        (
            vec!["nope.txt", "/dst/"],
            "nope.txt: not found in build context",
        ),
        (
            vec!["src/./nope", "/dst/"],
            "src/./nope: not found in build context",
        ),
        (
            vec!["*.go", "/dst/"],
            "no source files were specified: *.go",
        ),
        (
            vec!["a.txt", "/existing.txt"],
            "/existing.txt exists and is not a directory",
        ),
        // the destination resolves through /bin -> usr/bin; a symlink where a copied
        // directory goes is refused like any walk conflict
        (
            vec!["src", "/bin/"],
            "cannot copy to non-directory: /usr/bin/src",
        ),
    ] {
        let fs = fixture();
        fs.add_symlink(fs.stage(), "/usr/bin/src", "/opt");
        let err = run_in(&fs, "/", "COPY", &args, &[("parents", None)]).unwrap_err();
        assert!(err.to_string().contains(want), "{args:?}: {err}");
    }
}

#[test]
fn symbolic_chmod_is_relative_to_each_mode() {
    // (value, modes of /m, /m/main.rs (0644), /m/lib (0755), /m/lib/mod.rs (0600))
    for (value, want) in [
        ("u+x,go-w", [0o755, 0o744, 0o755, 0o700]),
        ("a=rX", [0o555, 0o444, 0o555, 0o444]),
        ("a+X", [0o755, 0o644, 0o755, 0o600]),
        ("g=u", [0o775, 0o664, 0o775, 0o660]),
        ("go-rwx", [0o700, 0o600, 0o700, 0o600]),
        ("+x", [0o755, 0o755, 0o755, 0o711]),
        ("o+t", [0o755, 0o644, 0o755, 0o600]),
    ] {
        let fs = fixture();
        run(&fs, &["src", "/m"], &[("chmod", Some(value))]).unwrap();
        let got = ["/m", "/m/main.rs", "/m/lib", "/m/lib/mod.rs"].map(|p| meta(&fs, p).1);
        assert_eq!(got, want, "{value}");
        assert_eq!(meta(&fs, "/m/link").0, Kind::Symlink);
    }
    // with --from and --chown: setuid is removed relative to the source's 04755
    let fs = fixture();
    let flags = [("from", Some("builder")), ("chmod", Some("u-s,g+w"))];
    run(&fs, &["/out/bin/tool", "/t"], &flags).unwrap();
    assert_eq!(meta(&fs, "/t"), (Kind::File, 0o775, 1000, 2000));
    // implicitly created parents are not chmodded
    let fs = fixture();
    run(&fs, &["run.sh", "/p/q/"], &[("chmod", Some("a-x"))]).unwrap();
    assert_eq!(meta(&fs, "/p/q"), (Kind::Dir, 0o755, 0, 0));
    assert_eq!(meta(&fs, "/p/q/run.sh"), (Kind::File, 0o644, 0, 0));
}

#[test]
fn chmod_reaches_directories_copied_onto() {
    let fs = fixture();
    fs.add_dir(fs.stage(), "/c", 0o711);
    run(&fs, &["src/", "/c"], &[("chmod", Some("400"))]).unwrap();
    assert_eq!(meta(&fs, "/c/lib").1, 0o400);
    let touched = run(&fs, &["src/", "/c"], &[("chmod", Some("755"))]).unwrap();
    assert_eq!(meta(&fs, "/c/lib").1, 0o755);
    assert!(touched.contains(&"c/lib".to_string()), "{touched:?}");
    // the destination itself keeps its mode, as in BuildKit
    assert_eq!(meta(&fs, "/c").1, 0o711);
    // without --chmod an existing directory keeps its mode
    let fs = fixture();
    fs.add_dir(fs.stage(), "/c/lib", 0o700);
    run(&fs, &["src/", "/c"], &[]).unwrap();
    assert_eq!(meta(&fs, "/c/lib").1, 0o700);
}

#[test]
fn octal_chmod_gives_new_parents_its_mode() {
    let fs = fixture();
    run(
        &fs,
        &["a.txt", "/nested/a/b/foo"],
        &[("chmod", Some("705"))],
    )
    .unwrap();
    for p in ["/nested", "/nested/a", "/nested/a/b", "/nested/a/b/foo"] {
        assert_eq!(meta(&fs, p).1, 0o705, "{p}");
    }
    // an existing parent keeps its mode
    run(&fs, &["a.txt", "/opt/new/f"], &[("chmod", Some("705"))]).unwrap();
    assert_eq!(meta(&fs, "/opt").1, 0o700);
    assert_eq!(meta(&fs, "/opt/new").1, 0o705);
    // a symbolic --chmod leaves new parents 0755
    run(&fs, &["a.txt", "/sym/d/f"], &[("chmod", Some("u+x"))]).unwrap();
    assert_eq!(meta(&fs, "/sym/d").1, 0o755);
    assert_eq!(meta(&fs, "/sym/d/f").1, 0o744);
}
