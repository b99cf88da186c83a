//! HEALTHCHECK: its type word (NONE or CMD, in any case, read from the instruction's text),
//! the `config.Healthcheck` object, its flags, and Go duration strings (`30s`, `1m30s`,
//! `500ms`) turned into nanoseconds as Docker stores them.

use serde_json::{json, Map, Value};

use crate::config::ImageConfig;
use crate::error::{Error, Result};
use crate::instruction::Instruction;

/// BuildKit refuses intervals below this (zero means "use the default").
const MIN_DURATION_NS: i64 = 1_000_000;

/// Applies HEALTHCHECK NONE | CMD ... with its flags. Exec form: the arguments are the
/// items of `CMD [...]`; shell form: the text after the flags (`NONE`, `cmd curl -f x`).
pub fn apply(ins: &Instruction, cfg: &mut ImageConfig) -> Result<()> {
    let want = |want| Error::Arguments {
        keyword: ins.keyword.clone(),
        want,
    };
    let (kind, rest) = split(ins).ok_or_else(|| want("NONE or CMD"))?;
    let mut hc = Map::new();
    match kind.as_str() {
        "NONE" => {
            if !rest.is_empty() || !ins.flags.is_empty() {
                return Err(want("no arguments or flags after NONE"));
            }
            hc.insert("Test".into(), json!(["NONE"]));
        }
        "CMD" => {
            if rest.is_empty() || rest.iter().all(|a| a.trim().is_empty()) {
                return Err(want("a command after CMD"));
            }
            let test: Vec<String> = if ins.exec_form {
                std::iter::once("CMD".to_string())
                    .chain(rest.iter().cloned())
                    .collect()
            } else {
                vec!["CMD-SHELL".to_string(), rest.join(" ")]
            };
            hc.insert("Test".into(), json!(test));
            for (flag, value) in &ins.flags {
                let (key, n) = flag_value(flag, value.as_deref().unwrap_or(""))?;
                if n != 0 {
                    hc.insert(key.into(), json!(n));
                }
            }
        }
        _ => return Err(want("NONE or CMD as its first word")),
    }
    cfg.set("Healthcheck", Value::Object(hc));
    Ok(())
}

/// The type word, upper-cased, and the arguments after it. Exec form is `CMD` and its
/// items; shell form splits the text at its first blank, the rest being one command line
/// (none when blank). `None` without arguments.
fn split(ins: &Instruction) -> Option<(String, Vec<String>)> {
    if ins.exec_form {
        return Some(("CMD".to_string(), ins.args.clone()));
    }
    if ins.args.is_empty() {
        return None;
    }
    let text = ins.args.join(" ");
    let text = text.trim();
    let (first, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    let rest = if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest.to_string()]
    };
    Some((first.to_ascii_uppercase(), rest))
}

/// One HEALTHCHECK flag → its config key and value.
fn flag_value(flag: &str, value: &str) -> Result<(&'static str, i64)> {
    let bad = |reason: &str| Error::FlagValue {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let key = match flag {
        "interval" => "Interval",
        "timeout" => "Timeout",
        "start-period" => "StartPeriod",
        "start-interval" => "StartInterval",
        "retries" => {
            let n: i64 = value.parse().map_err(|_| bad("expected an integer"))?;
            if n < 0 {
                return Err(bad("retries cannot be negative"));
            }
            return Ok(("Retries", n));
        }
        _ => {
            return Err(Error::UnknownFlag {
                keyword: "HEALTHCHECK".to_string(),
                flag: flag.to_string(),
            })
        }
    };
    let ns = parse_duration(value).ok_or_else(|| bad("expected a duration like 30s or 1m30s"))?;
    if ns != 0 && ns < MIN_DURATION_NS {
        return Err(bad("cannot be less than 1ms"));
    }
    Ok((key, ns))
}

/// Go `time.ParseDuration`: `[-+]` then one or more `<number><unit>`, units ns, us (µs, μs),
/// ms, s, m, h; fractions allowed; `0` alone allowed. `None` if malformed or out of range.
pub fn parse_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = after
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after.len(), |(i, _)| i);
        let (unit, after) = after.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().ok()?
        };
        let mut value = whole.checked_mul(scale)?;
        if !frac_part.is_empty() {
            // digits beyond nanosecond precision of the largest unit do not matter
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: i128 = digits.parse().ok()?;
            value += frac * scale / 10i128.pow(digits.len() as u32);
        }
        total = total.checked_add(value)?;
        if total > i64::MAX as i128 {
            return None;
        }
        rest = after;
    }
    let total = if neg { -total } else { total };
    i64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, want) in [
            ("30s", Some(30_000_000_000)),
            ("1m30s", Some(90_000_000_000)),
            ("500ms", Some(500_000_000)),
            ("1.5h", Some(5_400_000_000_000)),
            ("2h45m", Some(9_900_000_000_000)),
            ("100us", Some(100_000)),
            ("100µs", Some(100_000)),
            ("7ns", Some(7)),
            (".5s", Some(500_000_000)),
            ("0", Some(0)),
            ("-1s", Some(-1_000_000_000)),
            ("", None),
            ("30", None),
            ("s", None),
            ("1x", None),
            ("3000000h", None),
        ] {
            assert_eq!(parse_duration(s), want, "{s:?}");
        }
    }

    fn hc(args: &[&str], exec_form: bool, flags: &[(&str, &str)]) -> Result<Value> {
        let ins = Instruction {
            keyword: "HEALTHCHECK".to_string(),
            line: 3,
            args: args.iter().map(|s| s.to_string()).collect(),
            flags: flags
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
            exec_form,
        };
        let mut cfg = ImageConfig::parse("{}")?;
        apply(&ins, &mut cfg)?;
        let v: Value = serde_json::from_str(&cfg.to_json()).unwrap_or(Value::Null);
        Ok(v["config"]["Healthcheck"].clone())
    }

    /// Shell form hands over the raw text: the type word in any case, then the command line.
    #[test]
    fn healthcheck_forms() {
        for (args, exec, flags, want) in [
            (vec!["NONE"], false, vec![], json!({"Test": ["NONE"]})),
            (vec!["none"], false, vec![], json!({"Test": ["NONE"]})),
            (vec!["  None  "], false, vec![], json!({"Test": ["NONE"]})),
            (
                vec!["curl", "-f", "http://x/"],
                true,
                vec![],
                json!({"Test": ["CMD", "curl", "-f", "http://x/"]}),
            ),
            (
                vec!["CMD curl -f http://x/ || exit 1"],
                false,
                vec![
                    ("interval", "1m30s"),
                    ("timeout", "500ms"),
                    ("start-period", "2s"),
                    ("start-interval", "1s"),
                    ("retries", "4"),
                ],
                json!({"Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"],
                       "Interval": 90_000_000_000i64, "Timeout": 500_000_000,
                       "StartPeriod": 2_000_000_000i64, "StartInterval": 1_000_000_000,
                       "Retries": 4}),
            ),
            (
                vec!["cmd true"],
                false,
                vec![("interval", "0s"), ("retries", "0")],
                json!({"Test": ["CMD-SHELL", "true"]}),
            ),
            (
                vec![" Cmd\t  echo  a   b  "],
                false,
                vec![],
                json!({"Test": ["CMD-SHELL", "echo  a   b"]}),
            ),
        ] {
            assert_eq!(hc(&args, exec, &flags).unwrap(), want, "{args:?} {flags:?}");
        }
    }

    #[test]
    fn healthcheck_errors() {
        for (args, exec, flags, want) in [
            (
                vec!["CMD x"],
                false,
                vec![("bogus", "1")],
                "unknown flag --bogus for HEALTHCHECK",
            ),
            (
                vec!["CMD x"],
                false,
                vec![("interval", "10")],
                "invalid --interval value \"10\"",
            ),
            (
                vec!["CMD x"],
                false,
                vec![("timeout", "10us")],
                "cannot be less than 1ms",
            ),
            (
                vec!["CMD x"],
                false,
                vec![("retries", "-1")],
                "cannot be negative",
            ),
            (
                vec!["NONE"],
                false,
                vec![("interval", "1s")],
                "no arguments or flags",
            ),
            (vec!["none x"], false, vec![], "no arguments or flags"),
            (vec!["CMD"], false, vec![], "a command after CMD"),
            (vec!["cmd   "], false, vec![], "a command after CMD"),
            (vec![], true, vec![], "a command after CMD"),
            (
                vec!["WAIT x"],
                false,
                vec![],
                "NONE or CMD as its first word",
            ),
            (vec![""], false, vec![], "NONE or CMD as its first word"),
            (vec![], false, vec![], "HEALTHCHECK requires NONE or CMD"),
        ] {
            let err = hc(&args, exec, &flags).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
