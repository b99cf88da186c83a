//! Slash-separated path arithmetic inside a root: cleaning (with `..` clamped at the root),
//! joining onto a working directory, and Go `filepath.Match` glob matching of one path
//! component. Pure string work; nothing here touches a file.

/// Components of a path after cleaning, without empty, `.` or `..` parts.
pub fn components(p: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// The absolute, cleaned form of `p` inside a root: `..` cannot climb above `/`.
pub fn clean(p: &str) -> String {
    let comps = components(p);
    if comps.is_empty() {
        return "/".to_string();
    }
    let mut out = String::new();
    for c in comps {
        out.push('/');
        out.push_str(c);
    }
    out
}

/// `p` resolved against the directory `base` (absolute `p` ignores `base`), cleaned.
pub fn join(base: &str, p: &str) -> String {
    if p.starts_with('/') {
        clean(p)
    } else {
        clean(&format!("{base}/{p}"))
    }
}

/// Joins one name onto a cleaned absolute directory.
pub fn child(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Last component of a cleaned path (empty for the root).
pub fn base_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or("")
}

/// Parent of a cleaned absolute path (the root is its own parent).
pub fn parent(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

/// Whether a path component holds glob metacharacters (Go `hasMeta` on Unix).
pub fn has_meta(p: &str) -> bool {
    p.contains(['*', '?', '[', '\\'])
}

/// A malformed glob pattern (Go `filepath.ErrBadPattern`).
#[derive(Debug, PartialEq, Eq)]
pub struct BadPattern;

/// Go `filepath.Match` on Unix: `*` any run of non-`/`, `?` one non-`/` character,
/// `[...]` classes with `^` negation and ranges, `\` escapes.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let mut pat: &[char] = &pattern.chars().collect::<Vec<_>>();
    let name_chars: Vec<char> = name.chars().collect();
    let mut name: &[char] = &name_chars;
    'pattern: while !pat.is_empty() {
        let (star, chunk, rest) = scan_chunk(pat);
        pat = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains(&'/'));
        }
        let (t, ok) = match_chunk(chunk, name)?;
        if ok && (t.is_empty() || !pat.is_empty()) {
            name = t;
            continue;
        }
        if star {
            let mut i = 0;
            while i < name.len() && name[i] != '/' {
                let (t, ok) = match_chunk(chunk, &name[i + 1..])?;
                if ok {
                    if pat.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        // no match: still report a malformed remainder, as Go does
        while !pat.is_empty() {
            let (_, chunk, rest) = scan_chunk(pat);
            pat = rest;
            match_chunk(chunk, &[])?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

fn scan_chunk(pat: &[char]) -> (bool, &[char], &[char]) {
    let mut p = pat;
    let mut star = false;
    while let Some(('*', rest)) = p.split_first() {
        p = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &p[..i], &p[i..])
}

fn match_chunk<'a>(
    mut chunk: &[char],
    mut s: &'a [char],
) -> Result<(&'a [char], bool), BadPattern> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let mut r = '\0';
                if !failed {
                    r = s[0];
                    s = &s[1..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut nrange = 0;
                loop {
                    if chunk.first() == Some(&']') && nrange > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_esc(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&'-') {
                        let (h, rest) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    nrange += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if s[0] == '/' {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == '\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(BadPattern);
                    }
                }
                if !failed {
                    if chunk[0] != s[0] {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed {
        Ok((&[], false))
    } else {
        Ok((s, true))
    }
}

fn get_esc(chunk: &[char]) -> Result<(char, &[char]), BadPattern> {
    let mut chunk = chunk;
    match chunk.first() {
        None | Some('-') | Some(']') => return Err(BadPattern),
        Some('\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return Err(BadPattern);
            }
        }
        Some(_) => {}
    }
    let r = chunk[0];
    let rest = &chunk[1..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((r, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_and_join() {
        for (base, p, want) in [
            ("/", "a", "/a"),
            ("/app", "src/", "/app/src"),
            ("/app", "./x/../y", "/app/y"),
            ("/app", "../../../etc", "/etc"),
            ("/app", "/abs//dir/.", "/abs/dir"),
            ("/app", ".", "/app"),
            ("/", "", "/"),
            ("/", "..", "/"),
        ] {
            assert_eq!(join(base, p), want, "join({base:?}, {p:?})");
        }
    }

    #[test]
    fn base_name_parent_child() {
        for (p, base, par) in [("/a/b", "b", "/a"), ("/a", "a", "/"), ("/", "", "/")] {
            assert_eq!(base_name(p), base);
            assert_eq!(parent(p), par);
        }
        assert_eq!(child("/", "x"), "/x");
        assert_eq!(child("/a", "x"), "/a/x");
    }

    #[test]
    fn go_match_table() {
        // cases from Go's path/filepath match_test.go
        for (pattern, name, want) in [
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[!a]b", "a☺b", Ok(false)),
            ("*.txt", ".hidden.txt", Ok(true)),
            ("*x", "xxx", Ok(true)),
            ("[", "a", Err(BadPattern)),
            ("[^", "a", Err(BadPattern)),
            ("[^bc", "a", Err(BadPattern)),
            ("a[", "a", Err(BadPattern)),
            ("a[", "ab", Err(BadPattern)),
            ("[]a]", "]", Err(BadPattern)),
            ("[-]", "-", Err(BadPattern)),
            ("[x-]", "x", Err(BadPattern)),
            ("[a-b-c]", "a", Err(BadPattern)),
            ("\\", "a", Err(BadPattern)),
            ("[\\-x]", "-", Ok(true)),
            ("a[", "x", Err(BadPattern)),
            ("*x", "xxx", Ok(true)),
        ] {
            assert_eq!(
                glob_match(pattern, name),
                want,
                "match({pattern:?}, {name:?})"
            );
        }
    }

    #[test]
    fn meta_detection() {
        for (p, want) in [
            ("a.txt", false),
            ("*.txt", true),
            ("a?", true),
            ("[ab]", true),
        ] {
            assert_eq!(has_meta(p), want, "{p}");
        }
    }
}
