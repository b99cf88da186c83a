//! `RUN --mount` and `RUN --network`: the flag values parsed into plain specs, with BuildKit's
//! keys, defaults and errors. Where each mount's contents come from (cache dir, secret,
//! stage, context) and how it reaches the command is `mounts`' and the child's business.

use std::fmt;

/// The kind of a `--mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Cache,
    Tmpfs,
    Secret,
}

/// How concurrent builds share a cache mount (BuildKit's `sharing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One parsed `--mount` value.
#[derive(Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub kind: MountKind,
    /// where it appears in the command's root; relative paths are taken from the workdir
    pub target: Option<String>,
    pub source: Option<String>,
    pub from: Option<String>,
    pub readonly: bool,
    pub id: Option<String>,
    pub sharing: Sharing,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub env: Option<String>,
    pub required: bool,
    pub size: Option<u64>,
}

// Debug without values that could identify a secret's environment mapping is not needed:
// a MountSpec holds names only, never secret contents.
impl fmt::Debug for MountSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MountSpec")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("id", &self.id)
            .field("from", &self.from)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    #[default]
    Default,
    None,
    Host,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("--mount {spec}: unknown key {key:?}")]
    UnknownKey { spec: String, key: String },
    #[error("--mount {spec}: unknown type {kind:?} (expected bind, cache, tmpfs or secret)")]
    UnknownType { spec: String, kind: String },
    #[error("--mount {spec}: type=ssh is not supported")]
    Ssh { spec: String },
    #[error("--mount {spec}: {key}={value:?} is not valid: {why}")]
    BadValue {
        spec: String,
        key: String,
        value: String,
        why: &'static str,
    },
    #[error("--mount {spec}: a target is required")]
    NoTarget { spec: String },
    #[error("--network={0}: expected default, none or host")]
    Network(String),
}

fn parse_bool(spec: &str, key: &str, value: Option<&str>) -> Result<bool, SpecError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(SpecError::BadValue {
            spec: spec.into(),
            key: key.into(),
            value: v.into(),
            why: "expected true or false",
        }),
    }
}

fn parse_num(spec: &str, key: &str, value: &str, radix: u32) -> Result<u32, SpecError> {
    u32::from_str_radix(value, radix).map_err(|_| SpecError::BadValue {
        spec: spec.into(),
        key: key.into(),
        value: value.into(),
        why: if radix == 8 {
            "expected an octal mode"
        } else {
            "expected a number"
        },
    })
}

/// Parses a size like `64m`, `1g`, `4096` (bytes).
fn parse_size(spec: &str, value: &str) -> Result<u64, SpecError> {
    let lower = value.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (digits, mult) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        _ => (trimmed, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| SpecError::BadValue {
            spec: spec.into(),
            key: "size".into(),
            value: value.into(),
            why: "expected a size such as 64m",
        })
}

/// The `type=` of a mount.
fn parse_kind(spec: &str, value: &str) -> Result<MountKind, SpecError> {
    match value {
        "bind" => Ok(MountKind::Bind),
        "cache" => Ok(MountKind::Cache),
        "tmpfs" => Ok(MountKind::Tmpfs),
        "secret" => Ok(MountKind::Secret),
        "ssh" => Err(SpecError::Ssh { spec: spec.into() }),
        other => Err(SpecError::UnknownType {
            spec: spec.into(),
            kind: other.into(),
        }),
    }
}

impl MountSpec {
    /// Parses one `--mount` value (comma-separated `key=value`, BuildKit's keys).
    pub fn parse(spec: &str) -> Result<MountSpec, SpecError> {
        let mut kind = MountKind::Bind;
        let mut pairs = Vec::new();
        for field in spec.split(',').filter(|f| !f.is_empty()) {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (field.trim().to_ascii_lowercase(), None),
            };
            if key == "type" {
                kind = parse_kind(spec, value.unwrap_or_default())?;
            } else {
                pairs.push((key, value));
            }
        }
        let mut m = MountSpec {
            kind,
            target: None,
            source: None,
            from: None,
            readonly: kind == MountKind::Bind || kind == MountKind::Secret,
            id: None,
            sharing: Sharing::Shared,
            mode: None,
            uid: None,
            gid: None,
            env: None,
            required: false,
            size: None,
        };
        for (key, value) in pairs {
            m.set(spec, key, value)?;
        }
        m.complete(spec)?;
        Ok(m)
    }

    /// One `key=value` of the spec, checked against the mount's type.
    fn set(&mut self, spec: &str, key: String, value: Option<&str>) -> Result<(), SpecError> {
        let kind = self.kind;
        let text = || value.unwrap_or_default().to_string();
        let owned = matches!(kind, MountKind::Cache | MountKind::Secret);
        match key.as_str() {
            "target" | "dst" | "destination" => self.target = Some(text()),
            "source" | "src" => self.source = Some(text()),
            "from" => self.from = Some(text()),
            "readonly" | "ro" => self.readonly = parse_bool(spec, &key, value)?,
            "readwrite" | "rw" => self.readonly = !parse_bool(spec, &key, value)?,
            "id" if owned => self.id = Some(text()),
            "sharing" if kind == MountKind::Cache => {
                self.sharing = match value.unwrap_or_default() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    v => {
                        return Err(SpecError::BadValue {
                            spec: spec.into(),
                            key,
                            value: v.into(),
                            why: "expected shared, private or locked",
                        })
                    }
                }
            }
            "mode" if owned => self.mode = Some(parse_num(spec, &key, &text(), 8)?),
            "uid" if owned => self.uid = Some(parse_num(spec, &key, &text(), 10)?),
            "gid" if owned => self.gid = Some(parse_num(spec, &key, &text(), 10)?),
            "env" if kind == MountKind::Secret => self.env = Some(text()),
            "required" if kind == MountKind::Secret => {
                self.required = parse_bool(spec, &key, value)?
            }
            "size" if kind == MountKind::Tmpfs => self.size = Some(parse_size(spec, &text())?),
            _ => {
                return Err(SpecError::UnknownKey {
                    spec: spec.into(),
                    key,
                })
            }
        }
        Ok(())
    }

    /// BuildKit's defaults once every key is read: a secret's id from its target's base
    /// name and its target from its id, a cache's id from its target; every mount but an
    /// `env=` secret needs a target.
    fn complete(&mut self, spec: &str) -> Result<(), SpecError> {
        match self.kind {
            MountKind::Secret => {
                if self.id.is_none() {
                    self.id = self
                        .target
                        .as_deref()
                        .map(|t| t.trim_end_matches('/').rsplit('/').next().unwrap_or(t))
                        .map(String::from);
                }
                let Some(id) = self.id.clone().filter(|i| !i.is_empty()) else {
                    return Err(SpecError::NoTarget { spec: spec.into() });
                };
                if self.target.is_none() && self.env.is_none() {
                    self.target = Some(format!("/run/secrets/{id}"));
                }
            }
            _ => {
                if self.target.as_deref().is_none_or(str::is_empty) {
                    return Err(SpecError::NoTarget { spec: spec.into() });
                }
                if self.kind == MountKind::Cache && self.id.as_deref().is_none_or(str::is_empty) {
                    self.id = self.target.as_deref().map(clean_lexically);
                }
            }
        }
        Ok(())
    }

    /// The target as an absolute path inside the root, relative ones taken from `workdir`.
    pub fn target_in(&self, workdir: &str) -> Option<String> {
        let t = self.target.as_deref()?;
        let abs = if t.starts_with('/') {
            t.to_string()
        } else {
            format!("{}/{t}", workdir.trim_end_matches('/'))
        };
        Some(crate::rootfs::clean(&abs))
    }
}

/// Go's `path.Clean`, which BuildKit applies to a cache mount's target to make its default
/// id: repeated and trailing slashes and `.` go, `..` eats the component before it (at the
/// root it stays the root; a relative path keeps the `..`s it cannot eat).
fn clean_lexically(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." if out.last().is_some_and(|c| *c != "..") => {
                out.pop();
            }
            ".." if rooted => {}
            c => out.push(c),
        }
    }
    match (rooted, out.is_empty()) {
        (true, _) => format!("/{}", out.join("/")),
        (false, true) => ".".into(),
        (false, false) => out.join("/"),
    }
}

impl Network {
    pub fn parse(value: &str) -> Result<Network, SpecError> {
        match value {
            "default" | "" => Ok(Network::Default),
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            other => Err(SpecError::Network(other.into())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_mount_values() {
        let m =
            MountSpec::parse("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1,gid=2")
                .unwrap();
        assert_eq!(m.kind, MountKind::Cache);
        assert_eq!(m.id.as_deref(), Some("/root/.cache"));
        assert_eq!((m.mode, m.uid, m.gid), (Some(0o700), Some(1), Some(2)));
        assert_eq!(m.sharing, Sharing::Locked);
        assert!(!m.readonly);

        let s = MountSpec::parse("type=secret,id=tok").unwrap();
        assert_eq!(s.target.as_deref(), Some("/run/secrets/tok"));
        let s = MountSpec::parse("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!(s.target, None);
        let s = MountSpec::parse("type=secret,target=/etc/key,required").unwrap();
        assert_eq!((s.id.as_deref(), s.required), (Some("key"), true));

        let b = MountSpec::parse("target=/src,from=build,source=/out,rw").unwrap();
        assert_eq!(b.kind, MountKind::Bind);
        assert!(!b.readonly);
        let t = MountSpec::parse("type=tmpfs,dst=/t,size=64m").unwrap();
        assert_eq!(t.size, Some(64 << 20));
        assert_eq!(
            MountSpec::parse("type=cache,target=c")
                .unwrap()
                .target_in("/w"),
            Some("w/c".into())
        );
    }

    #[test]
    fn cache_ids_default_to_the_cleaned_target() {
        for (target, want) in [
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b"),
            ("/a/./b//", "/a/b"),
            ("/a/../b", "/b"),
            ("/../a", "/a"),
            ("/", "/"),
            ("c/", "c"),
            ("./c/./d/..", "c"),
            ("../c", "../c"),
            (".", "."),
        ] {
            let m = MountSpec::parse(&format!("type=cache,target={target}")).unwrap();
            assert_eq!(m.id.as_deref(), Some(want), "{target}");
        }
        let m = MountSpec::parse("type=cache,target=/a/b/,id=/x/").unwrap();
        assert_eq!(
            m.id.as_deref(),
            Some("/x/"),
            "an explicit id is kept as written"
        );
    }

    #[test]
    fn rejects_bad_mount_values() {
        for (spec, want) in [
            ("type=foo,target=/x", "unknown type \"foo\""),
            ("type=bind", "a target is required"),
            ("type=tmpfs,target=/x,id=a", "unknown key \"id\""),
            (
                "type=cache,target=/x,sharing=all",
                "expected shared, private or locked",
            ),
            ("type=cache,target=/x,mode=999", "expected an octal mode"),
            ("type=ssh", "type=ssh is not supported"),
            ("type=secret", "a target is required"),
        ] {
            let err = MountSpec::parse(spec).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
        assert!(Network::parse("bridge").is_err());
        assert_eq!(Network::parse("none").unwrap(), Network::None);
    }
}
