//! How an error reads to a person: the error and its causes on one line. Used by `main` for
//! the final error and by modules that fold a foreign error's chain into a message of their
//! own. Each module's error types are its own.

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
