//! The layout rules of `docs/architecture.md`, checked on the sources themselves: every file
//! opens with a `//!`, no file over 800 lines and no function over 100 lines outside tests,
//! no import circle between the files of a crate, a Dockerfile crate without I/O, and
//! process control only in `run/`.
//! Test code (`#[cfg(test)]` items and the files only tests declare) is left out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kiln_tests::workspace_root;

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 100;

/// The crates whose sources the rules cover: (source dir, name `crate::` means there).
const CRATES: [&str; 3] = ["host/src", "host/dockerfile/src", "guest/src"];

/// One source file, its test code blanked out.
struct Source {
    /// path relative to the workspace
    rel: String,
    /// the module path inside its crate (`pipeline::step`; empty for the crate root)
    module: Vec<String>,
    /// whether the file is a module's front door (`mod.rs`, `lib.rs`, `main.rs`)
    front: bool,
    /// lines, with test code replaced by empty lines
    lines: Vec<String>,
}

#[test]
fn files_and_functions_stay_small() {
    let mut over = Vec::new();
    for src in sources() {
        let count = src.lines.iter().filter(|l| !l.trim().is_empty()).count();
        if count > MAX_FILE_LINES {
            over.push(format!("{}: {count} non-test lines", src.rel));
        }
        for (name, line, len) in functions(&src.lines) {
            if len > MAX_FN_LINES {
                over.push(format!("{}:{line}: fn {name} is {len} lines", src.rel));
            }
        }
    }
    assert!(
        over.is_empty(),
        "over the limits ({MAX_FILE_LINES} lines a file, {MAX_FN_LINES} a function):\n{}",
        over.join("\n")
    );
}

#[test]
fn every_file_says_what_it_owns() {
    let root = checked_root();
    let mut files = Vec::new();
    for dir in CRATES.iter().chain(&["tests/src", "tests/tests"]) {
        walk(&root.join(dir), &mut files);
    }
    let silent: Vec<String> = files
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        silent.is_empty(),
        "files that do not open with a `//!` saying what they own:\n{}",
        silent.join("\n")
    );
}

#[test]
fn no_import_circles() {
    let sources = sources();
    let mut circles = Vec::new();
    for dir in CRATES {
        let files: Vec<&Source> = sources
            .iter()
            .filter(|s| crate_of(&s.rel) == Some(dir))
            .collect();
        let graph = imports(&files);
        circles.extend(
            strongly_connected(&graph)
                .into_iter()
                .filter(|c| c.len() > 1),
        );
    }
    assert!(
        circles.is_empty(),
        "files that import each other (directly or round a circle):\n{}",
        circles
            .iter()
            .map(|c| c.join(" -> "))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_dockerfile_crate_does_no_io() {
    let found = matches_outside(
        |rel| rel.starts_with("host/dockerfile/"),
        &[
            "std::fs",
            "std::net",
            "std::process",
            "std::env",
            "tokio",
            "File::",
        ],
    );
    assert!(
        found.is_empty(),
        "I/O in the Dockerfile crate:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_run_forks_into_a_root() {
    let found = matches_outside(
        |rel| rel.starts_with("host/src/") && !rel.starts_with("host/src/run/"),
        &[
            "pre_exec",
            "libc::fork",
            "unshare(",
            "pivot_root",
            "chroot(",
        ],
    );
    assert!(
        found.is_empty(),
        "process control outside host/src/run:\n{}",
        found.join("\n")
    );
}

/// Lines of non-test code in the files `select` picks that contain one of `needles`
/// (comments left out).
fn matches_outside(select: impl Fn(&str) -> bool, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for src in sources().iter().filter(|s| select(&s.rel)) {
        for (i, line) in src.lines.iter().enumerate() {
            let code = strip_comment(line);
            if let Some(n) = needles.iter().find(|n| code.contains(**n)) {
                found.push(format!("{}:{}: {n}", src.rel, i + 1));
            }
        }
    }
    found
}

fn crate_of(rel: &str) -> Option<&'static str> {
    CRATES
        .iter()
        .copied()
        .filter(|dir| rel.starts_with(&format!("{dir}/")))
        .max_by_key(|dir| dir.len())
}

/// The tree checked: this workspace, or `KILN_ARCH_ROOT` (to see the checks fail on another
/// checkout).
fn checked_root() -> PathBuf {
    std::env::var_os("KILN_ARCH_ROOT").map_or_else(workspace_root, PathBuf::from)
}

/// Every non-test source file of the covered crates.
fn sources() -> Vec<Source> {
    let root = checked_root();
    let mut out = Vec::new();
    for dir in CRATES {
        let mut files = Vec::new();
        walk(&root.join(dir), &mut files);
        let test_only = test_only_files(&files);
        for path in files {
            if test_only.contains(&path) {
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let inner = path.strip_prefix(root.join(dir)).unwrap();
            let mut module: Vec<String> = inner
                .with_extension("")
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            let front = matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            );
            if front {
                module.pop();
            }
            out.push(Source {
                rel,
                module,
                front,
                lines: blank_tests(&text),
            });
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files declared only under `#[cfg(test)]` (`#[cfg(test)] mod tests;`).
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for path in files {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let dir = match path.file_stem().and_then(|s| s.to_str()) {
            Some("mod" | "lib" | "main") => path.parent().unwrap().to_path_buf(),
            _ => path.with_extension(""),
        };
        for (i, line) in lines.iter().enumerate() {
            if line.trim() != "#[cfg(test)]" {
                continue;
            }
            let decl = lines[i + 1..]
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.starts_with("#["))
                .unwrap_or("");
            if let Some(name) = decl
                .trim_start_matches("pub ")
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'))
            {
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(name).join("mod.rs"));
            }
        }
    }
    out
}

/// The text's lines with every `#[cfg(test)]` item replaced by empty lines.
fn blank_tests(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "#[cfg(test)]" {
            i += 1;
            continue;
        }
        let (mut depth, mut opened, mut j) = (0i64, false, i);
        while j < lines.len() {
            let code = strip_comment(&lines[j]);
            depth += braces(&code);
            opened |= code.contains('{');
            if (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';') && j > i) {
                break;
            }
            j += 1;
        }
        let last = j.min(lines.len() - 1);
        for line in &mut lines[i..=last] {
            line.clear();
        }
        i = j + 1;
    }
    lines
}

/// `{` minus `}` outside string and char literals.
fn braces(code: &str) -> i64 {
    let mut n = 0;
    let mut in_str = false;
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_str => {
                chars.next();
            }
            '"' => in_str = !in_str,
            '\'' if !in_str => {
                // a char literal ('{', '\''), not a lifetime
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with("\\") {
                    chars.nth(2);
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                }
            }
            '{' if !in_str => n += 1,
            '}' if !in_str => n -= 1,
            _ => {}
        }
    }
    n
}

fn strip_comment(line: &str) -> String {
    let mut in_str = false;
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if in_str => i += 1,
            b'"' => in_str = !in_str,
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return line[..i].to_string(),
            _ => {}
        }
        i += 1;
    }
    line.to_string()
}

/// Every function with a body: (name, first line, length in lines).
fn functions(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        let (mut depth, mut opened) = (0i64, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            let code = strip_comment(l);
            if !opened && code.trim_end().ends_with(';') {
                break;
            }
            depth += braces(&code);
            opened |= code.contains('{');
            if opened && depth <= 0 {
                out.push((name.clone(), i + 1, j - i + 1));
                break;
            }
        }
    }
    out
}

fn fn_name(line: &str) -> Option<String> {
    let mut words = line.split_whitespace().peekable();
    while let Some(w) = words.next() {
        match w {
            "pub" | "async" | "const" | "unsafe" | "extern" | "\"C\"" => continue,
            w if w.starts_with("pub(") => continue,
            "fn" => {
                let name = words.next()?;
                let end = name.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
                return Some(name[..end].to_string());
            }
            _ => return None,
        }
    }
    None
}

/// File → the files of the same crate it names through `crate::`, `super::` or `self::`
/// paths. Paths into a module's front door (`mod.rs`, `lib.rs`) are left out: a front door
/// declares its children and lends them its shared types, which is no circle.
fn imports(files: &[&Source]) -> BTreeMap<String, BTreeSet<String>> {
    let by_module: BTreeMap<Vec<String>, &Source> =
        files.iter().map(|s| (s.module.clone(), *s)).collect();
    let mut graph = BTreeMap::new();
    for src in files {
        let mut to = BTreeSet::new();
        let text = src
            .lines
            .iter()
            .map(|l| strip_comment(l))
            .collect::<Vec<_>>()
            .join("\n");
        for path in paths(&text) {
            let Some(abs) = absolute(&src.module, &path) else {
                continue;
            };
            // the deepest module the path names
            let target = (1..=abs.len())
                .rev()
                .find_map(|n| by_module.get(&abs[..n]))
                .copied();
            if let Some(t) = target {
                if !t.front && t.rel != src.rel {
                    to.insert(t.rel.clone());
                }
            }
        }
        graph.insert(src.rel.clone(), to);
    }
    graph
}

/// Every `crate::`/`super::`/`self::` path in the text, with `use` groups expanded.
fn paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts = ["crate::", "super::", "self::"]
            .iter()
            .any(|p| text_at(&bytes, i, p))
            && (i == 0
                || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':'));
        if !starts {
            i += 1;
            continue;
        }
        let (end, found) = expand(&bytes, i, Vec::new());
        out.extend(found);
        i = end.max(i + 1);
    }
    out
}

fn text_at(chars: &[char], i: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, c)| chars.get(i + k) == Some(&c))
}

/// Reads a path (and a `{…}` group) from `i`; returns where it ended and the full paths.
fn expand(chars: &[char], mut i: usize, prefix: Vec<String>) -> (usize, Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        let start = i;
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        if i > start {
            path.push(chars[start..i].iter().collect());
        }
        if text_at(chars, i, "::") {
            i += 2;
            if chars.get(i) == Some(&'{') {
                i += 1;
                let mut all = Vec::new();
                loop {
                    while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                        i += 1;
                    }
                    if i >= chars.len() || chars[i] == '}' {
                        return (i + 1, all);
                    }
                    let (end, found) = expand(chars, i, path.clone());
                    all.extend(found);
                    // skip `as name` and anything else up to the next item
                    i = end;
                    while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                        i += 1;
                    }
                }
            }
            continue;
        }
        return (i, vec![path]);
    }
}

/// A path as seen from `module` made absolute inside the crate (None: it leaves the crate).
fn absolute(module: &[String], path: &[String]) -> Option<Vec<String>> {
    // `super::` from a front door (`a/mod.rs`, module `a`) is `a`'s parent; from `a/b.rs`
    // (module `a::b`) it is `a`
    let mut base: Vec<String> = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        // `self::` in `a/b.rs` is `a::b`, in `a/mod.rs` it is `a`
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Tarjan's strongly connected components, each as a sorted list of files.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            component.sort();
            s.out.push(component);
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_checker_sees_what_it_must() {
    // a circle between two files, a long function, test code left out
    let a =
        blank_tests("use super::b::X;\nfn f() {\n}\n#[cfg(test)]\nmod tests {\n fn g() {}\n}\n");
    assert_eq!(a.iter().filter(|l| !l.is_empty()).count(), 3);
    assert_eq!(functions(&a), vec![("f".to_string(), 2, 2)]);
    let long: Vec<String> = std::iter::once("fn big() {".to_string())
        .chain((0..150).map(|_| "    let x = '{';".to_string()))
        .chain(std::iter::once("}".to_string()))
        .collect();
    assert_eq!(functions(&long), vec![("big".to_string(), 1, 152)]);
    let b = "use super::{a::{Y, Z as W}, c};\nfn h() { crate::m::a::q(); }\n";
    let found = paths(b);
    assert!(
        found.contains(&vec!["super".into(), "a".into(), "Y".into()]),
        "{found:?}"
    );
    assert!(
        found.contains(&vec!["super".into(), "c".into()]),
        "{found:?}"
    );
    assert!(
        found.contains(&vec!["crate".into(), "m".into(), "a".into(), "q".into()]),
        "{found:?}"
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    graph.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    let circles: Vec<_> = strongly_connected(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
    assert_eq!(circles, vec![vec!["a".to_string(), "b".to_string()]]);
    assert_eq!(
        absolute(&["p".into(), "s".into()], &["super".into(), "t".into()]),
        Some(vec!["p".to_string(), "t".to_string()])
    );
}
