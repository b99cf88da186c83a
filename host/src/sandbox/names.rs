//! File names that are not UTF-8, carried across the guest boundary. WIT paths are strings,
//! so the host shows the guest each byte that is not part of valid UTF-8 as one character of
//! a private-use range (U+10FF80 + byte - 0x80, the last plane's final 128 code points), and
//! turns those characters back into the bytes on every path the guest hands in. A name is
//! copied with the bytes it has; the guest never needs to know.
//!
//! The snapshot keys paths as strings: a path holding such a name is given to it with U+FFFD
//! in place of the bytes ([`for_snapshot`]), which makes it walk instead of trusting the path.

/// First of the 128 code points standing for the bytes 0x80..=0xFF.
const ESCAPE_BASE: u32 = 0x10FF80;

/// A name from the filesystem as the guest sees it.
pub(super) fn to_guest(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    for chunk in name.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.push(escape(b));
        }
    }
    out
}

/// A path from the guest as the filesystem spells it.
pub(super) fn from_guest(path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for c in path.chars() {
        match unescape(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// A guest path as the snapshot takes it: escaped bytes become U+FFFD.
pub(crate) fn for_snapshot(path: &str) -> String {
    if path.chars().any(|c| unescape(c).is_some()) {
        String::from_utf8_lossy(&from_guest(path)).into_owned()
    } else {
        path.to_string()
    }
}

fn escape(b: u8) -> char {
    // 0x80..=0xFF map into U+10FF80..=U+10FFFF, all valid `char`s; ASCII is always valid UTF-8
    char::from_u32(ESCAPE_BASE + u32::from(b) - 0x80).unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn unescape(c: char) -> Option<u8> {
    let v = c as u32;
    (ESCAPE_BASE..=0x10FFFF)
        .contains(&v)
        .then(|| (v - ESCAPE_BASE + 0x80) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_guest() {
        for name in [
            b"plain".as_slice(),
            b"caf\xc3\xa9",
            b"name-\xff",
            b"\x80\xfe mixed \xe2\x82",
        ] {
            let shown = to_guest(name);
            assert_eq!(from_guest(&shown), name, "{shown:?}");
        }
        assert_eq!(to_guest(b"caf\xc3\xa9"), "café");
        assert!(for_snapshot(&to_guest(b"x\xff")).contains(char::REPLACEMENT_CHARACTER));
        assert_eq!(for_snapshot("plain/path"), "plain/path");
    }
}
