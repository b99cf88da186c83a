//! The VOLUME paths a stage declares, and the warning when a later RUN, COPY or ADD of the
//! stage names one that does not exist. kiln follows BuildKit (VOLUME does not create the
//! directory); kaniko, buildah and the classic builder create it, and Dockerfiles written for
//! them may write into it right away.

use serde_json::Value;

use crate::dockerfile::{Instruction, Keyword};
use crate::rootfs::Root;

/// Volumes declared so far in one stage, each with the line that declared it.
#[derive(Default)]
pub(super) struct Volumes {
    declared: Vec<(String, usize)>,
}

impl Volumes {
    /// After a VOLUME step: the paths `after` has that `before` did not.
    pub(super) fn note(&mut self, before: &Value, after: &Value, line: usize) {
        let old = volume_paths(before);
        for path in volume_paths(after) {
            if !old.contains(&path) && !self.declared.iter().any(|(p, _)| *p == path) {
                self.declared.push((path, line));
            }
        }
    }

    /// Whether `ins` is a RUN, COPY or ADD that names a declared volume's path.
    pub(super) fn named_by(&self, ins: &Instruction) -> bool {
        matches!(ins.keyword, Keyword::Run | Keyword::Copy | Keyword::Add)
            && self
                .declared
                .iter()
                .any(|(p, _)| mentions_path(&ins.original, p))
    }

    /// Warns (once per volume) for each declared volume `ins` names that is not in `root`.
    pub(super) fn warn_missing(&mut self, root: &Root, ins: &Instruction) {
        self.declared.retain(|(path, line)| {
            if !mentions_path(&ins.original, path) || root.exists(path) {
                return true;
            }
            tracing::warn!(
                "Dockerfile:{}: {} uses {path}, declared a VOLUME on line {line}, which does not \
                 exist: like BuildKit, kiln does not create VOLUME directories (kaniko and \
                 buildah do); create it before the VOLUME line (RUN mkdir -p {path})",
                ins.line,
                ins.keyword.as_str()
            );
            false
        });
    }
}

/// The keys of `config.Volumes`, without trailing slashes (`/` itself left out).
fn volume_paths(config: &Value) -> Vec<String> {
    config
        .pointer("/config/Volumes")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .map(|k| k.trim_end_matches('/').to_string())
                .filter(|k| !k.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `text` names `path` or something below it as a whole path: not preceded by a
/// path character, followed by the end, `/` or a character that ends a shell word.
fn mentions_path(text: &str, path: &str) -> bool {
    let is_path_char = |c: char| c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-');
    text.match_indices(path).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + path.len()..].chars().next();
        !before.is_some_and(is_path_char) && !after.is_some_and(|c| is_path_char(c) && c != '/')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_matched_whole() {
        for (text, want) in [
            ("RUN echo x > /data/f", true),
            ("RUN touch /data", true),
            ("COPY f /data/", true),
            ("RUN ls \"/data\"", true),
            ("RUN ls /database", false),
            ("RUN ls /srv/data", false),
            ("RUN ls /data.old", false),
        ] {
            assert_eq!(mentions_path(text, "/data"), want, "{text}");
        }
    }

    #[test]
    fn only_new_volumes_are_noted() {
        let mut v = Volumes::default();
        let before = json!({"config": {"Volumes": {"/base": {}}}});
        let after = json!({"config": {"Volumes": {"/base": {}, "/data/": {}, "/": {}}}});
        v.note(&before, &after, 3);
        assert_eq!(v.declared, vec![("/data".to_string(), 3)]);
    }
}
