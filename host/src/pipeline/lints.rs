//! The Dockerfile's lints (`dockerfile::lint`) as the user sees them: one warning each, naming
//! the file as given and the line. A build prints them and goes on; `--check` stops after them.

use crate::dockerfile::{self, Dockerfile, LintOptions};

/// Logs every lint of `df` as a warning; returns how many there were.
pub(super) fn warn(name: &str, df: &Dockerfile, target: Option<&str>) -> usize {
    let lints = dockerfile::lint(df, &LintOptions { target });
    for l in &lints {
        tracing::warn!("{name}:{}: {}: {}", l.line, l.rule, l.message);
    }
    lints.len()
}
