//! Secrets in URLs kept out of what kiln shows: the user info of any `scheme://user:pw@host`
//! (`--context`, `--dockerfile`, ADD sources, registry mirrors) and the values of query
//! parameters that carry credentials (`token=`, `X-Amz-Signature=`, …) become `***`.
//!
//! [`redact`] is the one function for it. It takes any text, a URL or a whole line with URLs
//! in it, so it is applied where text leaves kiln: every log line (text and JSON), the final
//! error (`error::chain`), and the image history (`created_by`). [`shown`] also caps the
//! length, for instructions quoted in step lines and errors.

use std::borrow::Cow;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Query parameters whose values are credentials (compared case-insensitively).
const SECRET_PARAMS: &[&str] = &[
    "access_token",
    "auth",
    "key",
    "password",
    "secret",
    "sig",
    "signature",
    "token",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
    "x-goog-credential",
    "x-goog-signature",
];

/// How a piece of the Dockerfile is shown in a log line or an error: [`redact`]ed, and at most
/// `SHOWN_CHARS` characters, so a megabyte-long instruction does not become a log line.
pub fn shown(text: &str) -> String {
    const SHOWN_CHARS: usize = 500;
    let text = redact(text);
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
        None => text.into_owned(),
    }
}

/// `text` with the user info of every URL in it and the values of credential query
/// parameters replaced by [`MASK`]. Text without `://` is returned as is.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c.is_whitespace() || "\"'<>`".contains(c))
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        redact_url_rest(url, &mut out);
        rest = tail;
    }
    out.push_str(rest);
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// Writes `url` (what follows `scheme://`) to `out` with its secrets masked.
fn redact_url_rest(url: &str, out: &mut String) {
    let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
    let (authority, path) = url.split_at(authority_end);
    match authority.rfind('@') {
        Some(i) => {
            out.push_str(MASK);
            out.push_str(&authority[i..]);
        }
        None => out.push_str(authority),
    }
    let Some(q) = path.find('?') else {
        out.push_str(path);
        return;
    };
    out.push_str(&path[..=q]);
    let query = &path[q + 1..];
    let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if is_secret_param(name) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
}

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.contains(&name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_text_is_masked_and_cut_short() {
        assert_eq!(shown("ADD https://u:p@h/x /x"), "ADD https://***@h/x /x");
        let long = format!("LABEL a={}", "é".repeat(2000));
        let cut = shown(&long);
        assert_eq!(cut.chars().count(), 500 + "… (4008 bytes)".chars().count());
        assert!(cut.ends_with("… (4008 bytes)"), "{cut}");
    }

    #[test]
    fn masks_user_info_and_secret_parameters() {
        for (text, want) in [
            ("plain text", "plain text"),
            ("https://h/r.git", "https://h/r.git"),
            (
                "context http://user:TOKEN@h:8080/r.git: denied",
                "context http://***@h:8080/r.git: denied",
            ),
            (
                "ADD https://TOKEN@h/a.tar /x and git://u:p@g/r#main",
                "ADD https://***@h/a.tar /x and git://***@g/r#main",
            ),
            (
                "url=\"https://h/f?X-Amz-Signature=abc&part=1#frag\"",
                "url=\"https://h/f?X-Amz-Signature=***&part=1#frag\"",
            ),
            ("https://h/p@x/y", "https://h/p@x/y"),
            (
                "mirror=https://a:b@m.example",
                "mirror=https://***@m.example",
            ),
        ] {
            assert_eq!(redact(text), want, "{text}");
        }
    }
}
