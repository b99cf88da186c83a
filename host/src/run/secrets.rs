//! Build secrets (`--secret id=…,src=…|env=…`): read once when the build starts, kept in
//! memory, handed to `RUN --mount=type=secret` only. Nothing here ever prints a value: the
//! Debug form lists ids.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("--secret {0}: expected id=ID with src=FILE or env=VAR")]
    Syntax(String),
    #[error("--secret id={id}: reading {path}: {source}")]
    Read {
        id: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--secret id={id}: environment variable {var} is not set")]
    NoEnv { id: String, var: String },
}

/// The secrets of one build, by id.
#[derive(Clone, Default)]
pub struct Secrets(BTreeMap<String, Vec<u8>>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secrets")
            .field(&self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Secrets {
    /// Reads every `--secret` value: `id=ID,src=FILE` (also `source=`), `id=ID,env=VAR`,
    /// or bare `id=ID`, which takes the variable `ID` from the environment (Docker's rule).
    pub fn from_flags(flags: &[String]) -> Result<Secrets, SecretError> {
        let mut out = BTreeMap::new();
        for flag in flags {
            let (mut id, mut src, mut env) = (None, None, None);
            for field in flag.split(',') {
                match field.split_once('=') {
                    Some(("id", v)) => id = Some(v.to_string()),
                    Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                    Some(("env", v)) => env = Some(v.to_string()),
                    Some(("type", "file" | "env")) => {}
                    _ => return Err(SecretError::Syntax(flag.clone())),
                }
            }
            let id = id
                .filter(|i| !i.is_empty())
                .ok_or_else(|| SecretError::Syntax(flag.clone()))?;
            let value = match (src, env) {
                (Some(path), None) => std::fs::read(&path).map_err(|source| SecretError::Read {
                    id: id.clone(),
                    path,
                    source,
                })?,
                (None, var) => {
                    let var = var.unwrap_or_else(|| id.clone());
                    std::env::var_os(&var)
                        .map(std::os::unix::ffi::OsStringExt::into_vec)
                        .ok_or(SecretError::NoEnv {
                            id: id.clone(),
                            var,
                        })?
                }
                (Some(_), Some(_)) => return Err(SecretError::Syntax(flag.clone())),
            };
            out.insert(id, value);
        }
        Ok(Secrets(out))
    }

    pub fn get(&self, id: &str) -> Option<&[u8]> {
        self.0.get(id).map(Vec::as_slice)
    }

    /// The secrets' ids (never their values), for the provenance.
    pub fn ids(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_and_env_and_never_prints_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "file-value").unwrap();
        let secrets = Secrets::from_flags(&[
            format!("id=a,src={}", file.display()),
            "id=b,env=PATH".into(),
        ])
        .unwrap();
        assert_eq!(secrets.get("a"), Some(&b"file-value"[..]));
        assert!(secrets.get("b").is_some());
        assert!(!format!("{secrets:?}").contains("file-value"));
        assert!(Secrets::from_flags(&["src=x".into()]).is_err());
        assert!(Secrets::from_flags(&["id=x,env=KILN_SURELY_UNSET_VAR".into()]).is_err());
    }
}
