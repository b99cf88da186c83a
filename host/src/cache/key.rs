//! Cache keys: a digest over named, length-prefixed components, kept component by component
//! so a miss can say which input changed.

use std::io::Read;

use sha2::{Digest as _, Sha256};

use crate::rootfs::{self, Root};
use crate::sandbox::SourceRead;

/// One step's key and the components it was made of, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// lowercase hex sha256
    pub hex: String,
    pub components: Vec<(String, String)>,
}

impl Key {
    /// The first component that differs from `earlier`'s (by name and position), or the
    /// first one `earlier` lacks.
    pub fn first_difference(&self, earlier: &[(String, String)]) -> Option<&str> {
        for (i, (name, digest)) in self.components.iter().enumerate() {
            match earlier.get(i) {
                Some((n, d)) if n == name && d == digest => continue,
                _ => return Some(name),
            }
        }
        (earlier.len() != self.components.len()).then_some("instruction")
    }
}

/// Builds a key component by component. Every part is length-prefixed, so no two different
/// part lists hash alike.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    components: Vec<(String, String)>,
}

/// A running digest of length-prefixed parts.
#[derive(Default)]
pub struct Parts(Sha256);

impl Parts {
    pub fn add(&mut self, part: impl AsRef<[u8]>) -> &mut Parts {
        let part = part.as_ref();
        self.0.update((part.len() as u64).to_be_bytes());
        self.0.update(part);
        self
    }

    pub fn hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// The digest of a list of parts.
pub fn digest_of<I, P>(parts: I) -> String
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let mut p = Parts::default();
    for part in parts {
        p.add(part);
    }
    p.hex()
}

impl KeyBuilder {
    pub fn new() -> KeyBuilder {
        KeyBuilder::default()
    }

    /// Adds a component made of `parts`.
    pub fn component<I, P>(&mut self, name: &str, parts: I) -> &mut KeyBuilder
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        self.components.push((name.to_string(), digest_of(parts)));
        self
    }

    /// Adds a component whose digest is already computed.
    pub fn digest(&mut self, name: &str, hex: String) -> &mut KeyBuilder {
        self.components.push((name.to_string(), hex));
        self
    }

    pub fn finish(&self) -> Key {
        let mut p = Parts::default();
        p.add("kiln-cache-key-v1");
        for (name, digest) in &self.components {
            p.add(name).add(digest);
        }
        Key {
            hex: p.hex(),
            components: self.components.clone(),
        }
    }
}

/// The digest of what a file instruction reads: for each path (sorted), its type, mode,
/// owner, link target and, when its bytes are read, their sha256. Modification times are
/// not inputs. A path that does not exist counts as absent.
pub fn sources_digest(
    reads: &[SourceRead],
    context: &Root,
    from: Option<&Root>,
) -> anyhow::Result<String> {
    let mut p = Parts::default();
    let mut reads = reads.to_vec();
    reads.sort();
    reads.dedup();
    for read in &reads {
        let root = match (read.from, from) {
            (true, Some(f)) => f,
            _ => context,
        };
        p.add(if read.from { "from" } else { "context" });
        p.add(&read.path);
        let st = match root.lstat(&read.path) {
            Ok(st) => st,
            Err(rootfs::Error::NotFound { .. } | rootfs::Error::NotDirectory { .. }) => {
                p.add("absent");
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        p.add(format!("{:?} {:o} {}:{}", st.kind, st.mode, st.uid, st.gid));
        if st.kind == rootfs::Kind::Symlink {
            let target = root.readlink(&read.path)?;
            p.add(target.as_encoded_bytes());
        }
        if read.content {
            // the bytes the instruction copies: a top-level symlink is followed, as copy does
            match root.stat(&read.path) {
                Ok(st) if st.kind == rootfs::Kind::File => {
                    let mut file = root.open_read(&read.path)?;
                    let mut h = Sha256::new();
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = file.read(&mut buf)?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                    p.add(hex::encode(h.finalize()));
                }
                _ => {
                    p.add("no-content");
                }
            }
        }
    }
    Ok(p.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(digest_of(["ab", "c"]), digest_of(["a", "bc"]));
        assert_eq!(digest_of(["ab", "c"]), digest_of(["ab", "c"]));
    }

    #[test]
    fn first_difference_names_the_component() {
        let mut a = KeyBuilder::new();
        a.component("parent", ["p"]).component("env", ["A=1"]);
        let mut b = KeyBuilder::new();
        b.component("parent", ["p"]).component("env", ["A=2"]);
        let (a, b) = (a.finish(), b.finish());
        assert_ne!(a.hex, b.hex);
        assert_eq!(b.first_difference(&a.components), Some("env"));
        assert_eq!(a.first_difference(&a.components), None);
    }
}
