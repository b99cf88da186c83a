//! The `--sign-key` file: an ECDSA P-256 private key in PEM, read once before the build.
//!
//! Accepted blocks: `PRIVATE KEY` (PKCS#8), `EC PRIVATE KEY` (SEC1, as `openssl ecparam
//! -genkey` writes it, after an `EC PARAMETERS` block that is skipped), `ENCRYPTED PRIVATE
//! KEY` (PKCS#8 with PBES2, as `openssl pkcs8 -topk8` writes it) and cosign's own `ENCRYPTED
//! SIGSTORE PRIVATE KEY` (older: `ENCRYPTED COSIGN PRIVATE KEY`): a JSON envelope whose
//! scrypt-derived key opens a NaCl secretbox holding the PKCS#8 key. Encrypted keys take their
//! password from `COSIGN_PASSWORD`, as cosign reads it (set and empty is an empty password).
//! No error and no `Debug` output carries key or password bytes: errors name the file and
//! what is wrong with it in fixed words.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use p256::ecdsa::SigningKey;
use p256::pkcs8::der::Decode as _;
use p256::pkcs8::DecodePrivateKey as _;

/// The variable an encrypted key's password is read from (cosign's own).
pub const PASSWORD_VAR: &str = "COSIGN_PASSWORD";

/// Why a signing key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading signing key {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("signing key {path}: {reason}")]
    Invalid { path: PathBuf, reason: &'static str },
    #[error("signing key {path} is encrypted: set {PASSWORD_VAR} to its password")]
    NoPassword { path: PathBuf },
    #[error("signing key {path}: wrong password in {PASSWORD_VAR}, or the key is damaged")]
    WrongPassword { path: PathBuf },
}

/// A key that signs, and the file it came from (all `Debug` shows of it).
pub struct Key {
    path: PathBuf,
    signing: SigningKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("path", &self.path).finish()
    }
}

impl Key {
    /// Reads the key at `path`, its password (when it needs one) from `COSIGN_PASSWORD`.
    pub fn load(path: &Path) -> Result<Key, KeyError> {
        let password = std::env::var(PASSWORD_VAR).ok();
        Key::load_with(path, password.as_deref())
    }

    /// Reads the key at `path` with `password` for an encrypted one.
    pub fn load_with(path: &Path, password: Option<&str>) -> Result<Key, KeyError> {
        let text = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let signing = parse(&text, password).map_err(|problem| problem.at(path))?;
        Ok(Key {
            path: path.to_path_buf(),
            signing,
        })
    }

    /// The file the key was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ECDSA-SHA256 signature of `payload`, ASN.1 DER (deterministic, RFC 6979).
    pub fn sign(&self, payload: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer as _;
        let signature: p256::ecdsa::Signature = self.signing.sign(payload);
        signature.to_der().as_bytes().to_vec()
    }

    /// Whether `der` is this key's signature of `payload`.
    pub fn verifies(&self, payload: &[u8], der: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        p256::ecdsa::Signature::from_der(der)
            .is_ok_and(|s| self.signing.verifying_key().verify(payload, &s).is_ok())
    }
}

/// What is wrong with a key file, before the file's name is attached.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    Invalid(&'static str),
    NoPassword,
    WrongPassword,
}

impl Problem {
    fn at(self, path: &Path) -> KeyError {
        let path = path.to_path_buf();
        match self {
            Problem::Invalid(reason) => KeyError::Invalid { path, reason },
            Problem::NoPassword => KeyError::NoPassword { path },
            Problem::WrongPassword => KeyError::WrongPassword { path },
        }
    }
}

const NOT_P256: Problem = Problem::Invalid("not an ECDSA P-256 private key");

fn parse(text: &[u8], password: Option<&str>) -> Result<SigningKey, Problem> {
    let text = std::str::from_utf8(text).map_err(|_| Problem::Invalid("not a PEM file"))?;
    let (label, der) = key_block(text)?;
    match label {
        "PRIVATE KEY" => SigningKey::from_pkcs8_der(&der).map_err(|_| NOT_P256),
        "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&der)
            .map(SigningKey::from)
            .map_err(|_| NOT_P256),
        "ENCRYPTED PRIVATE KEY" => {
            let password = password.ok_or(Problem::NoPassword)?;
            let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(&der)
                .map_err(|_| Problem::Invalid("not an encrypted PKCS#8 key"))?;
            let plain = info.decrypt(password).map_err(|_| Problem::WrongPassword)?;
            SigningKey::from_pkcs8_der(plain.as_bytes()).map_err(|_| Problem::WrongPassword)
        }
        "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
            let password = password.ok_or(Problem::NoPassword)?;
            let plain = open_sigstore(&der, password)?;
            SigningKey::from_pkcs8_der(&plain).map_err(|_| NOT_P256)
        }
        "RSA PRIVATE KEY" => Err(NOT_P256),
        _ => Err(Problem::Invalid("no private key block in the PEM file")),
    }
}

/// The first PEM block that is not `EC PARAMETERS`: its label and decoded body.
fn key_block(text: &str) -> Result<(&str, Vec<u8>), Problem> {
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let body = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(body_end) = body.find(&end_marker) else {
            return Err(Problem::Invalid("a PEM block has no END line"));
        };
        rest = &body[body_end + end_marker.len()..];
        if label == "EC PARAMETERS" {
            continue;
        }
        let body = &body[..body_end];
        if body.contains("Proc-Type:") {
            return Err(Problem::Invalid(
                "legacy OpenSSL PEM encryption is not supported: convert the key with `openssl pkcs8 -topk8`",
            ));
        }
        let joined: String = body.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .map_err(|_| Problem::Invalid("a PEM block is not valid base64"))?;
        return Ok((label, der));
    }
    Err(Problem::Invalid("no PEM block in the file"))
}

/// cosign's envelope (secure-systems-lab's `encrypted` format).
#[derive(serde::Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(serde::Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(serde::Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(serde::Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Opens cosign's encrypted key envelope: scrypt(password, salt) → secretbox key.
fn open_sigstore(envelope: &[u8], password: &str) -> Result<Vec<u8>, Problem> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    let invalid = || Problem::Invalid("not a cosign encrypted key envelope");
    let envelope: Envelope = serde_json::from_slice(envelope).map_err(|_| invalid())?;
    if envelope.kdf.name != "scrypt" || envelope.cipher.name != "nacl/secretbox" {
        return Err(Problem::Invalid(
            "cosign key uses a key derivation or cipher other than scrypt and nacl/secretbox",
        ));
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.decode(s);
    let salt = b64(&envelope.kdf.salt).map_err(|_| invalid())?;
    let nonce = b64(&envelope.cipher.nonce).map_err(|_| invalid())?;
    let sealed = b64(&envelope.ciphertext).map_err(|_| invalid())?;
    let KdfParams { n, r, p } = envelope.kdf.params;
    if !n.is_power_of_two() || n < 2 || nonce.len() != 24 {
        return Err(invalid());
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p).map_err(|_| invalid())?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password.as_bytes(), &salt, &params, &mut key).map_err(|_| invalid())?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    key.fill(0);
    cipher
        .decrypt(
            crypto_secretbox::Nonce::from_slice(&nonce),
            sealed.as_slice(),
        )
        .map_err(|_| Problem::WrongPassword)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePrivateKey as _;

    fn test_key() -> SigningKey {
        SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    fn sigstore_envelope(pkcs8: &[u8], password: &str) -> Vec<u8> {
        use crypto_secretbox::aead::{Aead as _, KeyInit as _};
        let salt = [3u8; 32];
        let nonce = [5u8; 24];
        let params = scrypt::Params::new(10, 8, 1).unwrap();
        let mut key = [0u8; 32];
        scrypt::scrypt(password.as_bytes(), &salt, &params, &mut key).unwrap();
        let sealed = crypto_secretbox::XSalsa20Poly1305::new(&key.into())
            .encrypt(crypto_secretbox::Nonce::from_slice(&nonce), pkcs8)
            .unwrap();
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        serde_json::to_vec(&serde_json::json!({
            "kdf": {"name": "scrypt", "params": {"N": 1024, "r": 8, "p": 1}, "salt": b64(&salt)},
            "cipher": {"name": "nacl/secretbox", "nonce": b64(&nonce)},
            "ciphertext": b64(&sealed),
        }))
        .unwrap()
    }

    #[test]
    fn reads_each_format() {
        let want = test_key();
        let pkcs8 = want.to_pkcs8_der().unwrap();
        let sec1 = p256::SecretKey::from(&want).to_sec1_der().unwrap();
        let cosign = sigstore_envelope(pkcs8.as_bytes(), "pw");
        let params =
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n";
        for (text, password) in [
            (pem("PRIVATE KEY", pkcs8.as_bytes()), None),
            (format!("{params}{}", pem("EC PRIVATE KEY", &sec1)), None),
            (pem("ENCRYPTED SIGSTORE PRIVATE KEY", &cosign), Some("pw")),
            (pem("ENCRYPTED COSIGN PRIVATE KEY", &cosign), Some("pw")),
        ] {
            let got = parse(text.as_bytes(), password).unwrap();
            assert_eq!(got.to_bytes(), want.to_bytes(), "{text}");
        }
    }

    #[test]
    fn refuses_without_saying_the_key() {
        let pkcs8 = test_key().to_pkcs8_der().unwrap();
        let cosign = pem(
            "ENCRYPTED SIGSTORE PRIVATE KEY",
            &sigstore_envelope(pkcs8.as_bytes(), "pw"),
        );
        for (text, password, want) in [
            (cosign.as_str(), Some("nope"), Problem::WrongPassword),
            (cosign.as_str(), None, Problem::NoPassword),
            ("hello", None, Problem::Invalid("no PEM block in the file")),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                None,
                Problem::Invalid("no private key block in the PEM file"),
            ),
        ] {
            assert_eq!(parse(text.as_bytes(), password).unwrap_err(), want);
        }
        let err = Problem::WrongPassword.at(Path::new("/k/cosign.key"));
        assert_eq!(
            err.to_string(),
            "signing key /k/cosign.key: wrong password in COSIGN_PASSWORD, or the key is damaged"
        );
    }

    #[test]
    fn signatures_verify() {
        let key = Key {
            path: PathBuf::from("k"),
            signing: test_key(),
        };
        let sig = key.sign(b"payload");
        assert!(key.verifies(b"payload", &sig));
        assert!(!key.verifies(b"other", &sig));
        assert_eq!(
            key.sign(b"payload"),
            sig,
            "RFC 6979 signatures are deterministic"
        );
        assert!(!format!("{key:?}").contains("signing"));
    }
}
