//! The `--chmod` value of COPY and ADD: an octal mode (`755`, `4755`) every copied entry
//! gets as is, or a symbolic mode (`u+x`, `go-w`, `a=r,u+w`, `+x`; BuildKit ≥ 0.13,
//! Dockerfile 1.7) applied to each entry's own mode. Which entries get the mode is
//! `copy.rs`'s business.
//!
//! Symbolic modes follow BSD `setmode(3)` with a umask of 0, as BuildKit's parser
//! (`dchapes/mode`) does: comma-separated clauses `[ugoa]*([-+=]([rwxXst]*|[ugo]))+`; no
//! `who` means every bit; `X` adds execute only to directories and to entries that already
//! had an execute bit (judged on the mode before the whole `--chmod`, as BSD does).

use crate::error::{Error, Result};

/// setuid, setgid and the permission bits: what `a` and a missing `who` stand for
const STANDARD_BITS: u32 = 0o6777;
const USER_BITS: u32 = 0o4700;
const GROUP_BITS: u32 = 0o2070;
const OTHER_BITS: u32 = 0o0007;
const STICKY: u32 = 0o1000;
const EXEC_BITS: u32 = 0o111;
/// the mask a missing `who` selects with a umask of 0
const ALL_BITS: u32 = 0o7777;

/// A parsed `--chmod` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chmod {
    /// an absolute mode: every entry gets exactly these bits
    Octal(u32),
    /// a symbolic mode: operations applied in order to each entry's own mode
    Symbolic(Vec<Op>),
}

/// One operation of a symbolic mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Set(u32),
    Clear(u32),
    /// `X`: set the bits if the entry is a directory or had any execute bit
    SetIfExecutable(u32),
    /// `g=u` and friends: the permission triple at bit offset `from` (6 user, 3 group,
    /// 0 other) cleared from and/or copied into each triple in `to`
    CopyTriple {
        from: u32,
        to: [bool; 3],
        clear: bool,
        set: bool,
    },
}

impl Chmod {
    /// Parses a `--chmod` value: all digits is octal (at most 07777), anything else symbolic.
    pub fn parse(value: &str) -> Result<Chmod> {
        let bad = || Error::FlagValue {
            flag: "chmod".to_string(),
            value: value.to_string(),
            reason: "expected an octal mode like 755 or a symbolic mode like u+x or go-w"
                .to_string(),
        };
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return u32::from_str_radix(value, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal)
                .ok_or_else(bad);
        }
        parse_symbolic(value).map(Chmod::Symbolic).ok_or_else(bad)
    }

    /// The mode (mask 0o7777) an entry with mode `old` gets.
    pub fn apply(&self, old: u32, is_dir: bool) -> u32 {
        let ops = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(ops) => ops,
        };
        let old = old & ALL_BITS;
        let mut new = old;
        for op in ops {
            match *op {
                Op::Set(bits) => new |= bits,
                Op::Clear(bits) => new &= !bits,
                Op::SetIfExecutable(bits) => {
                    if is_dir || old & EXEC_BITS != 0 {
                        new |= bits;
                    }
                }
                Op::CopyTriple {
                    from,
                    to,
                    clear,
                    set,
                } => {
                    let value = (new >> from) & 0o7;
                    let cleared = if set { 0o7 } else { value };
                    let shifts = [6, 3, 0].into_iter().zip(to).filter(|(_, on)| *on);
                    if clear {
                        for (shift, _) in shifts.clone() {
                            new &= !(cleared << shift);
                        }
                    }
                    if set {
                        for (shift, _) in shifts {
                            new |= value << shift;
                        }
                    }
                }
            }
        }
        new & ALL_BITS
    }
}

/// The bits an operator touches for `who` (0 when no `who` was written).
fn selected(who: u32) -> u32 {
    if who == 0 {
        ALL_BITS
    } else {
        who
    }
}

/// `+`, `-` or `=` with plain permission bits.
fn push_bits(ops: &mut Vec<Op>, op: u8, who: u32, perm: u32) {
    let bits = selected(who) & perm;
    match op {
        b'+' => ops.push(Op::Set(bits)),
        b'-' => ops.push(Op::Clear(bits)),
        _ => {
            ops.push(Op::Clear(if who == 0 { STANDARD_BITS } else { who }));
            ops.push(Op::Set(bits));
        }
    }
}

fn parse_symbolic(s: &str) -> Option<Vec<Op>> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut ops = Vec::new();
    loop {
        let mut who = 0;
        while let Some(c) = b.get(i) {
            who |= match c {
                b'a' => STANDARD_BITS,
                b'u' => USER_BITS,
                b'g' => GROUP_BITS,
                b'o' => OTHER_BITS,
                _ => break,
            };
            i += 1;
        }
        // one or more actions: an operator and its permissions
        loop {
            let op = *b.get(i).filter(|c| matches!(c, b'+' | b'-' | b'='))?;
            i += 1;
            who &= !STICKY;
            let (mut perm, mut exec_if, mut equal_done) = (0, 0, false);
            // `s` and `t` mean nothing for "other" alone
            let special_ok = who == 0 || who & !OTHER_BITS != 0;
            loop {
                match b.get(i) {
                    Some(b'r') => perm |= 0o444,
                    Some(b'w') => perm |= 0o222,
                    Some(b'x') => perm |= EXEC_BITS,
                    Some(b'X') => exec_if = EXEC_BITS,
                    Some(b's') if special_ok => perm |= 0o6000,
                    Some(b't') if special_ok => {
                        if who != 0 {
                            who |= STICKY;
                        }
                        perm |= STICKY;
                    }
                    Some(b's' | b't') => {}
                    Some(&c @ (b'u' | b'g' | b'o')) => {
                        if perm != 0 {
                            push_bits(&mut ops, op, who, perm);
                            perm = 0;
                        }
                        equal_done |= op == b'=';
                        if op == b'+' && exec_if != 0 {
                            ops.push(Op::SetIfExecutable(selected(who) & exec_if));
                            exec_if = 0;
                        }
                        let to = if who == 0 {
                            [true; 3]
                        } else {
                            [who & 0o400 != 0, who & 0o040 != 0, who & 0o004 != 0]
                        };
                        ops.push(Op::CopyTriple {
                            from: match c {
                                b'u' => 6,
                                b'g' => 3,
                                _ => 0,
                            },
                            to,
                            clear: op != b'+',
                            set: op != b'-',
                        });
                    }
                    _ => break,
                }
                i += 1;
            }
            if perm != 0 || (op == b'=' && !equal_done) {
                push_bits(&mut ops, op, who, perm);
            }
            // BSD would also add execute for `-X`; BuildKit's Go port ignores it
            if exec_if != 0 && op != b'-' {
                ops.push(Op::SetIfExecutable(selected(who) & exec_if));
            }
            match b.get(i) {
                None => return Some(ops),
                Some(b',') => {
                    i += 1;
                    break;
                }
                Some(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolic_and_octal_modes() {
        // (value, mode before, is a directory, mode after)
        for (value, old, dir, want) in [
            ("755", 0o600, false, 0o755),
            ("0640", 0o777, true, 0o640),
            ("4755", 0o644, false, 0o4755),
            ("u+x", 0o644, false, 0o744),
            ("+x", 0o644, false, 0o755),
            ("a+x", 0o600, false, 0o711),
            ("go-w", 0o666, false, 0o644),
            ("go-rwx", 0o755, true, 0o700),
            ("a=r,u+w", 0o777, false, 0o644),
            ("u=rwx,g=rx,o=", 0o000, false, 0o750),
            ("=r", 0o4755, false, 0o444),
            ("o=", 0o777, false, 0o770),
            ("a-w", 0o777, false, 0o555),
            ("u+x-w", 0o644, false, 0o544),
            ("u=rw,go=r", 0o755, false, 0o644),
            // X: directories, and entries that already had an execute bit
            ("a+X", 0o644, false, 0o644),
            ("a+X", 0o644, true, 0o755),
            ("a+X", 0o744, false, 0o755),
            ("go+X", 0o700, true, 0o711),
            ("a=rX", 0o640, false, 0o444),
            ("a=rX", 0o750, false, 0o555),
            ("a=rX", 0o700, true, 0o555),
            ("u=rwX,go=rX", 0o600, true, 0o755),
            ("u=rwX,go=rX", 0o600, false, 0o644),
            // judged on the mode before the whole --chmod (BSD), not the running result
            ("a-x,a+X", 0o755, false, 0o755),
            ("a-X", 0o755, false, 0o755),
            // copying a triple
            ("g=u", 0o740, false, 0o770),
            ("go=u", 0o600, false, 0o666),
            ("o+g", 0o750, false, 0o755),
            ("g-o", 0o777, false, 0o707),
            // special bits
            ("u+s", 0o755, false, 0o4755),
            ("g+s", 0o755, true, 0o2755),
            ("+s", 0o755, false, 0o6755),
            ("o+s", 0o755, false, 0o755),
            ("+t", 0o777, true, 0o1777),
            ("a+t", 0o777, true, 0o1777),
            ("o+t", 0o777, true, 0o777),
            ("u-s", 0o4755, false, 0o755),
            ("a=rwx", 0o1755, true, 0o1777),
        ] {
            let got = Chmod::parse(value).map(|c| c.apply(old, dir));
            assert_eq!(got.ok(), Some(want), "{value} on {old:o} (dir {dir})");
        }
    }

    #[test]
    fn bad_modes() {
        for value in [
            "", "999", "8", "17777", "u", "x", "u+y", "u+x,", ",u+x", "u+x,,g+w", "a+rw x", "ugo",
            "u+x;", "U+x", "+7",
        ] {
            let err = Chmod::parse(value).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid --chmod value {value:?}: expected")),
                "{value}: {err}"
            );
        }
    }
}
