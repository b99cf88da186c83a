//! How registries, images and blobs are named: registry hosts (loopback or not, one name
//! compared with another as the user may spell it), image references with Docker's defaults,
//! and blob digests checked before they become file names. Which hosts get plain HTTP or
//! skipped TLS checks is the client's (`client.rs`).

use oci_client::Reference;

use super::error::{Error, Result};
use crate::oci::digest;

/// Whether `host` (with or without a port) is this machine: `localhost`, `127.0.0.0/8` or
/// `::1`. Docker falls back to plain HTTP for these without being told to.
pub fn is_local_registry(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1] or [::1]:5000
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else if host.matches(':').count() > 1 {
        // a bare IPv6 address, no port
        host
    } else {
        host.split_once(':').map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// Compares a user-given registry name (maybe with a scheme or trailing slash) with a host.
pub(super) fn same_registry(given: &str, host: &str) -> bool {
    let given = given.trim();
    let given = given
        .strip_prefix("https://")
        .or_else(|| given.strip_prefix("http://"))
        .unwrap_or(given);
    let given = given.trim_end_matches('/');
    given.eq_ignore_ascii_case(host) || (given == "docker.io" && host == "index.docker.io")
}

/// Parses an image reference, with Docker's defaults: `docker.io` and `library/` for bare
/// names, `latest` when neither tag nor digest is given.
pub(super) fn parse_reference(reference: &str) -> Result<Reference> {
    let invalid = |source| Error::InvalidReference {
        reference: reference.to_string(),
        source,
    };
    let parsed = reference.trim().parse::<Reference>().map_err(invalid)?;
    // oci-spec takes an uppercase first component for a Docker Hub name; Docker refuses it.
    if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(invalid(oci_client::ParseError::NameContainsUppercase));
    }
    Ok(parsed)
}

/// The hex part of a `sha256:` digest, refused unless it is exactly 64 lowercase hex digits
/// (it becomes a file name).
pub(super) fn sha256_hex(reference: &str, digest: &str) -> Result<String> {
    digest::sha256_hex(digest)
        .map(str::to_string)
        .ok_or_else(|| Error::UnsupportedDigest {
            reference: reference.to_string(),
            digest: digest.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_references() {
        let d = "sha256:3fc9b689459d738f8c88a3a48aa9e33542016b7a4052e001aaa536fca74813cb";
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest".to_string()),
            ("busybox:1.36", "docker.io/library/busybox:1.36".to_string()),
            (
                "library/busybox",
                "docker.io/library/busybox:latest".to_string(),
            ),
            ("user/app:v1", "docker.io/user/app:v1".to_string()),
            (
                "index.docker.io/library/debian:bookworm",
                "docker.io/library/debian:bookworm".to_string(),
            ),
            (
                &format!("debian@{d}"),
                format!("docker.io/library/debian@{d}"),
            ),
            (
                "127.0.0.1:5000/library/busybox:latest",
                "127.0.0.1:5000/library/busybox:latest".to_string(),
            ),
            ("localhost/x", "localhost/x:latest".to_string()),
            ("ghcr.io/o/r/img", "ghcr.io/o/r/img:latest".to_string()),
        ] {
            assert_eq!(parse_reference(input).unwrap().whole(), want, "{input}");
        }
        let hub = parse_reference("busybox").unwrap();
        assert_eq!(hub.resolve_registry(), "index.docker.io");
        for bad in ["", "UPPER/case", "a@sha256:123", ":tag"] {
            let err = parse_reference(bad).unwrap_err();
            assert!(
                err.to_string().contains("invalid image reference"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn recognises_local_registries() {
        for (host, want) in [
            ("localhost", true),
            ("localhost:5000", true),
            ("LOCALHOST:5000", true),
            ("127.0.0.1", true),
            ("127.0.0.1:5000", true),
            ("127.1.2.3:80", true),
            ("[::1]", true),
            ("[::1]:5000", true),
            ("::1", true),
            ("128.0.0.1:5000", false),
            ("10.0.0.1:5000", false),
            ("localhost.example.com", false),
            ("docker.io", false),
            ("[::2]:5000", false),
        ] {
            assert_eq!(is_local_registry(host), want, "{host}");
        }
    }

    #[test]
    fn validates_blob_digests() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert!(sha256_hex("r", &good).is_ok());
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha512:{}", "ab".repeat(64)),
            format!("sha256:{}", "ab".repeat(31)),
        ] {
            assert!(sha256_hex("r", &bad).is_err(), "{bad}");
        }
    }
}
