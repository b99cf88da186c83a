//! Recognises the JSON ("exec") form of instruction arguments.
//!
//! Only answers one question for the parser: is this text a JSON array, and if
//! so, are all its elements strings. A full JSON reader is not needed, but the
//! whole value is validated so that text which merely starts with `[` falls
//! back to the shell form exactly when Go's `encoding/json` would reject it.

/// How deeply arrays and objects may nest: Go's `encoding/json` gives up past
/// this depth, so BuildKit reads such text as the shell form, and so does kiln.
const MAX_DEPTH: usize = 10_000;

/// What the argument text turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonArray {
    /// Not a (valid) JSON array: the caller uses the shell form.
    NotJson,
    /// A valid JSON array holding something other than a string.
    NonString,
    /// A JSON array of strings.
    Strings(Vec<String>),
}

/// Classifies `text` (leading whitespace allowed).
pub(crate) fn parse_array(text: &str) -> JsonArray {
    let mut reader = Reader {
        bytes: text.trim_start().as_bytes(),
        pos: 0,
        all_strings: true,
    };
    if reader.bytes.first() != Some(&b'[') {
        return JsonArray::NotJson;
    }
    let items = match reader.array() {
        Some(items) => items,
        None => return JsonArray::NotJson,
    };
    reader.skip_ws();
    if reader.pos != reader.bytes.len() {
        return JsonArray::NotJson;
    }
    if reader.all_strings {
        JsonArray::Strings(items)
    } else {
        JsonArray::NonString
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Cleared when the top-level array holds a non-string element.
    all_strings: bool,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// The top-level array; returns its string elements.
    fn array(&mut self) -> Option<Vec<String>> {
        let mut items = Vec::new();
        self.pos += 1;
        self.skip_ws();
        if self.eat(b']') {
            return Some(items);
        }
        loop {
            self.skip_ws();
            if self.peek() == Some(b'"') {
                items.push(self.string()?);
            } else {
                self.all_strings = false;
                self.value()?;
            }
            self.skip_ws();
            if self.eat(b']') {
                return Some(items);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// Any JSON value, discarded. Nested arrays and objects are followed with
    /// a stack of their closing brackets, not by recursion, so no depth can
    /// overflow the stack; past Go's limit of `MAX_DEPTH` the text is not JSON,
    /// as `encoding/json` says.
    fn value(&mut self) -> Option<()> {
        // The closing bracket of each array or object open around the position.
        let mut open: Vec<u8> = Vec::new();
        loop {
            self.skip_ws();
            match self.peek()? {
                b'"' => self.string().map(drop)?,
                b'[' | b'{' => {
                    let close = if self.peek() == Some(b'[') {
                        b']'
                    } else {
                        b'}'
                    };
                    // The top-level array is one level already.
                    if open.len() + 1 >= MAX_DEPTH {
                        return None;
                    }
                    self.pos += 1;
                    self.skip_ws();
                    if !self.eat(close) {
                        open.push(close);
                        if close == b'}' {
                            self.member_key()?;
                        }
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // After a value: close what is open, or go on after a comma.
            loop {
                let Some(&close) = open.last() else {
                    return Some(());
                };
                self.skip_ws();
                if self.eat(close) {
                    open.pop();
                    continue;
                }
                if !self.eat(b',') {
                    return None;
                }
                if close == b'}' {
                    self.member_key()?;
                }
                break;
            }
        }
    }

    /// An object member's `"key":`.
    fn member_key(&mut self) -> Option<()> {
        self.skip_ws();
        if self.peek() != Some(b'"') {
            return None;
        }
        self.string()?;
        self.skip_ws();
        self.eat(b':').then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word) {
            self.pos = end;
            Some(())
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<()> {
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        let value = u32::from_str_radix(text, 16).ok()?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        self.pos += 4;
        Some(value)
    }

    fn string(&mut self) -> Option<String> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let byte = self.peek()?;
            self.pos += 1;
            match byte {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let escaped = self.peek()?;
                    self.pos += 1;
                    let ch = match escaped {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return None,
                other => out.push(other),
            }
        }
    }

    /// The character of a `\uXXXX` escape (after the `u`), joining surrogate
    /// pairs; an unpaired surrogate becomes U+FFFD as in Go.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if !(0xD800..0xDC00).contains(&first) {
            return Some(char::from_u32(first).unwrap_or('\u{fffd}'));
        }
        let save = self.pos;
        if self.eat(b'\\') && self.eat(b'u') {
            if let Some(second) = self.hex4() {
                if (0xDC00..0xE000).contains(&second) {
                    let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                    return Some(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
            }
        }
        self.pos = save;
        Some('\u{fffd}')
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> JsonArray {
        JsonArray::Strings(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn classifies_arguments() {
        let cases = [
            (r#"[]"#, strings(&[])),
            (r#" [ "a" , "b" ] "#, strings(&["a", "b"])),
            (r#"["\u00e9\ud83d\ude00\n"]"#, strings(&["é😀\n"])),
            (r#"["\ud800x"]"#, strings(&["\u{fffd}x"])),
            (r#"["a", 1]"#, JsonArray::NonString),
            (r#"["a", ["b"]]"#, JsonArray::NonString),
            (r#"[null]"#, JsonArray::NonString),
            (r#"[{"k": [1.5e3, true]}]"#, JsonArray::NonString),
            (r#"['a']"#, JsonArray::NotJson),
            (r#"["a""#, JsonArray::NotJson),
            (r#"["a",]"#, JsonArray::NotJson),
            (r#"["a"] x"#, JsonArray::NotJson),
            (r#"[01]"#, JsonArray::NotJson),
            (r#"["\x"]"#, JsonArray::NotJson),
            ("[\"a\tb\"]", JsonArray::NotJson),
            (r#"echo"#, JsonArray::NotJson),
            (
                r#"[{"a": 1, "b": {}}, [], {"c": [[]]}]"#,
                JsonArray::NonString,
            ),
            (r#"[{"a" 1}]"#, JsonArray::NotJson),
            (r#"[{1: 1}]"#, JsonArray::NotJson),
            (r#"[[1,]]"#, JsonArray::NotJson),
            (r#"[{"a": 1,}]"#, JsonArray::NotJson),
        ];
        for (input, want) in cases {
            assert_eq!(parse_array(input), want, "input {input}");
        }
    }

    #[test]
    fn deep_nesting_is_shell_form() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(parse_array(&nested(MAX_DEPTH)), JsonArray::NonString);
        assert_eq!(parse_array(&nested(MAX_DEPTH + 1)), JsonArray::NotJson);
        // Far past the limit, on a thread's small stack: no overflow.
        let deep = nested(200_000);
        let got = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || parse_array(&deep))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got, JsonArray::NotJson);
    }
}
