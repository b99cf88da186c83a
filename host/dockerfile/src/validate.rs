//! Per-instruction argument checks that BuildKit makes when it turns parse
//! nodes into commands: required arguments, which flags each keyword takes,
//! SHELL's JSON form, FROM's shape, HEALTHCHECK types and ONBUILD triggers.
//!
//! Only shape is checked here. Flag values (durations, `--mount` specs, ...)
//! and expanded words are left to the orchestrator, which understands them.

use super::{Args, Dockerfile, Error, Instruction, Keyword, Result};

/// Checks every instruction of a syntactically parsed file.
pub(crate) fn check(dockerfile: &Dockerfile) -> Result<()> {
    if dockerfile.instructions.is_empty() {
        return Err(Error::NoInstructions);
    }
    dockerfile
        .instructions
        .iter()
        .try_for_each(check_instruction)
}

/// The flags each keyword accepts (BuildKit's set).
fn allowed_flags(keyword: Keyword) -> &'static [&'static str] {
    match keyword {
        Keyword::From => &["platform"],
        Keyword::Run => &["mount", "network", "security", "device"],
        Keyword::Copy => &["from", "chown", "chmod", "link", "parents", "exclude"],
        Keyword::Add => &[
            "chown",
            "chmod",
            "link",
            "keep-git-dir",
            "checksum",
            "exclude",
            "unpack",
        ],
        Keyword::Healthcheck => &[
            "interval",
            "timeout",
            "start-period",
            "start-interval",
            "retries",
        ],
        _ => &[],
    }
}

/// Flags that may be given more than once.
const REPEATABLE_FLAGS: [&str; 3] = ["mount", "exclude", "device"];

fn check_flags(inst: &Instruction) -> Result<()> {
    let allowed = allowed_flags(inst.keyword);
    for (i, flag) in inst.flags.iter().enumerate() {
        if !allowed.contains(&flag.name.as_str()) {
            let value = flag
                .value
                .as_ref()
                .map(|v| format!("={v}"))
                .unwrap_or_default();
            return Err(Error::BadFlag {
                line: inst.line,
                keyword: inst.keyword.as_str(),
                flag: format!("--{}{value}", flag.name),
            });
        }
        let repeated = inst.flags[..i].iter().any(|f| f.name == flag.name);
        if repeated && !REPEATABLE_FLAGS.contains(&flag.name.as_str()) {
            return Err(Error::DuplicateFlag {
                line: inst.line,
                keyword: inst.keyword.as_str(),
                flag: flag.name.clone(),
            });
        }
    }
    Ok(())
}

fn missing(inst: &Instruction, expected: &'static str) -> Error {
    Error::MissingArguments {
        line: inst.line,
        keyword: inst.keyword.as_str(),
        expected,
    }
}

fn check_instruction(inst: &Instruction) -> Result<()> {
    check_flags(inst)?;
    let words = inst.words()?;
    let empty_shell = matches!(&inst.args, Args::Shell(text) if text.is_empty());
    match inst.keyword {
        Keyword::From => {
            inst.from_parts()?;
        }
        Keyword::Cmd | Keyword::Entrypoint => {
            // The exec form may be empty (`CMD []`); the shell form may not.
            if empty_shell {
                return Err(missing(inst, "at least one argument"));
            }
        }
        Keyword::Shell => match &inst.args {
            Args::Shell(text) if !text.is_empty() => {
                return Err(Error::ShellNotJson { line: inst.line })
            }
            _ if words.is_empty() => return Err(missing(inst, "at least one argument")),
            _ => {}
        },
        Keyword::Copy | Keyword::Add => {
            if words.len() < 2 {
                return Err(missing(
                    inst,
                    "at least two arguments (sources and a destination)",
                ));
            }
        }
        Keyword::Env | Keyword::Label => {
            let pairs = inst.key_values()?;
            if pairs.is_empty() {
                return Err(missing(inst, "at least one name=value pair"));
            }
            if let Some((key, value)) = pairs.into_iter().find(|(key, _)| key.is_empty()) {
                return Err(Error::KeyValue {
                    line: inst.line,
                    keyword: inst.keyword.as_str(),
                    word: format!("{key}={value}"),
                });
            }
        }
        Keyword::Healthcheck => check_healthcheck(inst, &words)?,
        Keyword::Onbuild => {
            let Some(trigger) = inst.onbuild_trigger()? else {
                return Err(missing(inst, "a trigger instruction"));
            };
            if matches!(
                trigger.keyword,
                Keyword::Onbuild | Keyword::From | Keyword::Maintainer
            ) {
                return Err(Error::OnbuildTrigger {
                    line: inst.line,
                    trigger: trigger.keyword.as_str(),
                });
            }
            check_instruction(&trigger)?;
        }
        Keyword::Run
        | Keyword::Volume
        | Keyword::Expose
        | Keyword::Arg
        | Keyword::Maintainer
        | Keyword::User
        | Keyword::Workdir
        | Keyword::Stopsignal => {
            if words.is_empty() {
                return Err(missing(inst, "at least one argument"));
            }
        }
    }
    Ok(())
}

fn check_healthcheck(inst: &Instruction, words: &[String]) -> Result<()> {
    let Some(kind) = words.first() else {
        return Err(missing(inst, "CMD <command> or NONE"));
    };
    if kind.eq_ignore_ascii_case("none") {
        if words.len() > 1 {
            return Err(Error::HealthcheckNone { line: inst.line });
        }
    } else if kind.eq_ignore_ascii_case("cmd") {
        if words.len() < 2 {
            return Err(missing(inst, "a command after CMD"));
        }
    } else {
        return Err(Error::HealthcheckType {
            line: inst.line,
            kind: kind.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::parse;

    #[test]
    fn accepts_valid_instructions() {
        let cases = [
            "CMD []",
            "ENTRYPOINT []",
            "SHELL [\"/bin/bash\", \"-c\"]",
            "RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t make",
            "COPY --from=build --chown=1:1 --link /a /b",
            "COPY --exclude=*.md --exclude=*.txt . /src",
            "ADD --checksum=sha256:abc https://x/y /y",
            "COPY <<EOF /etc/motd\nhi\nEOF",
            "HEALTHCHECK --interval=5s CMD curl -f http://localhost/",
            "HEALTHCHECK NONE",
            "ONBUILD COPY . /app",
            "ARG A",
            "ENV A=",
            "STOPSIGNAL SIGTERM",
        ];
        for input in cases {
            let text = format!("FROM scratch\n{input}\n");
            assert!(parse(&text).is_ok(), "input {input}: {:?}", parse(&text));
        }
    }

    #[test]
    fn rejects_invalid_instructions() {
        let cases = [
            ("RUN", "Dockerfile:2: RUN requires at least one argument"),
            ("RUN []", "Dockerfile:2: RUN requires at least one argument"),
            ("CMD", "Dockerfile:2: CMD requires at least one argument"),
            (
                "COPY a",
                "Dockerfile:2: COPY requires at least two arguments (sources and a destination)",
            ),
            (
                "SHELL /bin/sh -c",
                "Dockerfile:2: SHELL requires the JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]",
            ),
            (
                "SHELL []",
                "Dockerfile:2: SHELL requires at least one argument",
            ),
            (
                "ENV =x",
                "Dockerfile:2: ENV expects name=value pairs but found \"=x\"",
            ),
            (
                "CMD --doit [\"a\"]",
                "Dockerfile:2: CMD does not accept the flag \"--doit\"",
            ),
            (
                "COPY --user=me a b",
                "Dockerfile:2: COPY does not accept the flag \"--user=me\"",
            ),
            (
                "COPY --from=a --from=b x y",
                "Dockerfile:2: COPY: flag --from is given more than once",
            ),
            (
                "HEALTHCHECK",
                "Dockerfile:2: HEALTHCHECK requires CMD <command> or NONE",
            ),
            (
                "HEALTHCHECK CMD",
                "Dockerfile:2: HEALTHCHECK requires a command after CMD",
            ),
            (
                "HEALTHCHECK NONE x",
                "Dockerfile:2: HEALTHCHECK NONE takes no further arguments",
            ),
            (
                "HEALTHCHECK CONNECT TCP 7000",
                "Dockerfile:2: unknown HEALTHCHECK type \"CONNECT\" (expected CMD or NONE)",
            ),
            (
                "ONBUILD",
                "Dockerfile:2: ONBUILD requires a trigger instruction",
            ),
            (
                "ONBUILD ONBUILD RUN x",
                "Dockerfile:2: ONBUILD is not allowed as an ONBUILD trigger",
            ),
            (
                "ONBUILD FROM x",
                "Dockerfile:2: FROM is not allowed as an ONBUILD trigger",
            ),
            (
                "ONBUILD MAINTAINER me",
                "Dockerfile:2: MAINTAINER is not allowed as an ONBUILD trigger",
            ),
            (
                "ONBUILD RUN",
                "Dockerfile:2: RUN requires at least one argument",
            ),
            (
                "ONBUILD BOGUS x",
                "Dockerfile:2: unknown instruction \"BOGUS\"",
            ),
            (
                "FROM a b",
                "Dockerfile:2: FROM takes an image and an optional `AS name`, found \"a b\"",
            ),
            ("FROM", "Dockerfile:2: FROM requires an image"),
            (
                "WORKDIR",
                "Dockerfile:2: WORKDIR requires at least one argument",
            ),
            (
                "LABEL",
                "Dockerfile:2: LABEL requires at least one name=value pair",
            ),
        ];
        for (input, want) in cases {
            let text = format!("FROM scratch\n{input}\n");
            let err = parse(&text).unwrap_err();
            assert_eq!(err.to_string(), want, "input {input}");
        }
    }
}
