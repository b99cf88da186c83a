//! How an error reads to a person: the error and its causes on one line (`chain`), and for a
//! build's error the Dockerfile named as the user gave it with the line at fault quoted
//! (`render`, through the `DockerfileSource` the orchestrator attaches). Used by `main` for
//! the final error and by modules that fold a foreign error's chain into a message of their
//! own. Each module's error types are its own.

use std::fmt;

/// The Dockerfile a build read, attached to the build's error as context so that `render` can
/// name the file as given (`-f lint/x.Dockerfile`) and quote the line every `Dockerfile:N`
/// of the message points at. Its own text is empty: the chain reads as without it.
#[derive(Debug, Clone)]
pub struct DockerfileSource {
    /// the path as the user typed it (or where kiln found it)
    pub name: String,
    pub text: String,
}

impl fmt::Display for DockerfileSource {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

/// Lines of the Dockerfile quoted before and after the one at fault.
const QUOTED_AROUND: usize = 2;

impl DockerfileSource {
    /// `message` with each `Dockerfile:N` naming the real file, followed by the lines around
    /// the first such N, the line itself marked `>>>` (with its continuation lines).
    pub fn annotate(&self, message: &str) -> String {
        let (text, first) = self.rename(message);
        match first {
            Some(line) => format!(
                "{text}
{}",
                self.excerpt(line)
            ),
            None => text,
        }
    }

    /// Replaces every `Dockerfile:N` (at the start of the message or after a blank or `(`)
    /// with `<name>:N`; returns the text and the first N.
    fn rename(&self, message: &str) -> (String, Option<usize>) {
        const MARK: &str = "Dockerfile:";
        let mut out = String::with_capacity(message.len());
        let mut first = None;
        let mut rest = message;
        while let Some(at) = rest.find(MARK) {
            let before = &rest[..at];
            let digits: String = rest[at + MARK.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let starts_word =
                before.is_empty() && out.is_empty() || before.ends_with([' ', '(', '\n']);
            out.push_str(before);
            match digits.parse::<usize>() {
                Ok(n) if starts_word => {
                    out.push_str(&self.name);
                    out.push(':');
                    first.get_or_insert(n);
                }
                _ => out.push_str(MARK),
            }
            rest = &rest[at + MARK.len()..];
        }
        out.push_str(rest);
        (out, first)
    }

    /// The lines around `line` (1-based), framed as BuildKit frames them.
    fn excerpt(&self, line: usize) -> String {
        let lines: Vec<&str> = self.text.lines().collect();
        if line == 0 || line > lines.len() {
            return String::new();
        }
        // the instruction's continuation lines are marked with it
        let mut last = line;
        while last < lines.len() && lines[last - 1].trim_end().ends_with(['\\', '`']) {
            last += 1;
        }
        let from = line.saturating_sub(QUOTED_AROUND).max(1);
        let to = (last + QUOTED_AROUND).min(lines.len());
        let width = to.to_string().len().max(3);
        let rule = "-".repeat(20);
        let mut out = format!(" {}:{line}\n{rule}\n", self.name);
        for n in from..=to {
            let mark = if (line..=last).contains(&n) {
                ">>>"
            } else {
                "   "
            };
            let quoted = crate::redaction::shown(lines[n - 1]);
            out.push_str(&format!(" {n:>width$} | {mark} {quoted}\n"));
        }
        out.push_str(&rule);
        out
    }
}

/// A build's error as `main` prints it: the chain on one line, and when the orchestrator
/// attached the Dockerfile, its real name and the quoted line.
pub fn render(e: &anyhow::Error) -> String {
    let text = chain(&**e);
    match e.downcast_ref::<DockerfileSource>() {
        Some(source) => source.annotate(&text),
        None => text,
    }
}

/// `e` and its causes on one line, joined by `: `, each cause once: several of kiln's errors
/// already name their cause in their own message, so a cause whose text is already there is
/// left out (an empty one too). Credentials in URLs are masked (`redaction`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    crate::redaction::redact(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Link(&'static str, Option<Box<Link>>);

    impl std::fmt::Display for Link {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Link {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    fn links(texts: &[&'static str]) -> Link {
        texts
            .iter()
            .rev()
            .fold(None, |below, text| Some(Link(text, below.map(Box::new))))
            .unwrap()
    }

    #[test]
    fn renders_the_real_file_and_line() {
        let source = DockerfileSource {
            name: "lint/bad2.Dockerfile".into(),
            text: "FROM scratch\nCOPY a /a\nRUNN x \\\n  y\nCMD z\nENV a=b\nUSER u\n".into(),
        };
        let e = anyhow::anyhow!("Dockerfile:3: unknown instruction \"RUNN\" (did you mean RUN?)")
            .context(source.clone());
        let text = render(&e);
        let want = "lint/bad2.Dockerfile:3: unknown instruction \"RUNN\" (did you mean RUN?)\n \
                    lint/bad2.Dockerfile:3\n--------------------\n   \
                    1 |     FROM scratch\n   2 |     COPY a /a\n   3 | >>> RUNN x \\\n   \
                    4 | >>>   y\n   5 |     CMD z\n   6 |     ENV a=b\n--------------------";
        assert_eq!(text, want);
        // not a location: left alone
        for message in ["reading my.Dockerfile:3", "no line here"] {
            assert_eq!(source.annotate(message), message);
        }
        assert_eq!(
            render(&anyhow::anyhow!("Dockerfile:1: x")),
            "Dockerfile:1: x"
        );
    }

    #[test]
    fn joins_causes_once() {
        for (texts, want) in [
            (&["pulling x"][..], "pulling x"),
            (
                &["pulling x", "connection refused"],
                "pulling x: connection refused",
            ),
            (
                &["pulling x: connection refused", "connection refused"],
                "pulling x: connection refused",
            ),
            (&["pulling x", "", "timed out"], "pulling x: timed out"),
            (&["", "timed out"], "timed out"),
        ] {
            assert_eq!(chain(&links(texts)), want, "{texts:?}");
        }
        let e = anyhow::Error::new(links(&["reading a", "gone"])).context("building");
        assert_eq!(chain(&*e), "building: reading a: gone");
    }
}
