//! sha256 digests as OCI spells them (`sha256:<hex>`): computing one over bytes or over a
//! file's content, and checking that a digest read from a manifest is one that can safely name
//! a file. What to do with a digest that fails the check is the caller's error to report; the
//! `Digest`/`DiffId` newtypes of built layers are `layer`'s.

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

/// Read size when hashing a file.
const HASH_BUFFER: usize = 1 << 20;

/// `sha256:<hex>` of `bytes`.
pub fn of_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Hex sha256 of a file's content.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The hex part of a `sha256:` digest, or `None` unless it is exactly 64 lowercase hex digits
/// (so that it can become a file name).
pub fn sha256_hex(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn hashes_bytes_and_files() {
        assert_eq!(of_bytes(b"hello"), format!("sha256:{HELLO}"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(hash_file(&path).unwrap(), HELLO);
    }

    #[test]
    fn checks_digests() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(sha256_hex(&good), Some("ab".repeat(32).as_str()));
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha512:{}", "ab".repeat(64)),
            format!("sha256:{}", "ab".repeat(31)),
        ] {
            assert_eq!(sha256_hex(&bad), None, "{bad}");
        }
    }
}
