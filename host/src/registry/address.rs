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
    let parsed = grammar::parse(reference.trim()).map_err(invalid)?;
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

/// The distribution reference grammar, read by hand. oci-spec's own parser compiles a regular
/// expression whose tag part (128 repetitions of a Unicode class) takes tens of milliseconds
/// of CPU to build, once per process, before the first request of every build; this reads
/// the same grammar in microseconds. Tags are Docker's (`\w` is ASCII there). The checks after
/// the match (Docker Hub's defaults, the name's length, the digest's algorithm and length)
/// are oci-spec's, in the same order, so the errors are the same.
mod grammar {
    use oci_client::{ParseError, Reference};

    const NAME_TOTAL_LENGTH_MAX: usize = 255;

    pub(super) fn parse(s: &str) -> Result<Reference, ParseError> {
        if s.is_empty() {
            return Err(ParseError::NameEmpty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        let matches =
            valid_name(name) && tag.is_none_or(valid_tag) && digest.is_none_or(valid_digest);
        if !matches {
            return Err(ParseError::ReferenceInvalidFormat);
        }
        let (registry, repository) = split_domain(name);
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ParseError::NameTooLong);
        }
        if let Some(digest) = digest {
            let want = match digest.split_once(':') {
                None => return Err(ParseError::DigestInvalidFormat),
                Some(("sha256", _)) => 64,
                Some(("sha384", _)) => 96,
                Some(("sha512", _)) => 128,
                Some(_) => return Err(ParseError::DigestUnsupported),
            };
            if digest
                .split_once(':')
                .is_some_and(|(_, hex)| hex.len() != want)
            {
                return Err(ParseError::DigestInvalidLength);
            }
        }
        Ok(match (tag, digest) {
            (Some(t), Some(d)) => {
                Reference::with_tag_and_digest(registry, repository, t.into(), d.into())
            }
            (None, Some(d)) => Reference::with_digest(registry, repository, d.into()),
            (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest").into()),
        })
    }

    /// `[domain "/"] component ("/" component)*`
    fn valid_name(name: &str) -> bool {
        let path = |p: &str| p.split('/').all(valid_component);
        match name.split_once('/') {
            Some((domain, rest)) if valid_domain(domain) && path(rest) => true,
            _ => path(name),
        }
    }

    /// `[a-z0-9]+` runs joined by one `.`, one `_`, `__`, or any number of `-`.
    fn valid_component(c: &str) -> bool {
        let b = c.as_bytes();
        let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        if !b.first().is_some_and(|&x| alnum(x)) || !b.last().is_some_and(|&x| alnum(x)) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &b[start..i];
            let ok = matches!(sep, b"." | b"_" | b"__") || sep.iter().all(|&x| x == b'-');
            if !ok {
                return false;
            }
        }
        true
    }

    /// `label ("." label)* [":" [0-9]+]`, a label alphanumeric with inner `-`.
    fn valid_domain(d: &str) -> bool {
        let (host, port) = match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        };
        let label = |l: &str| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        };
        host.split('.').all(label)
            && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|x| x.is_ascii_digit()))
    }

    /// `\w[\w.-]{0,127}`
    fn valid_tag(t: &str) -> bool {
        let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
        let b = t.as_bytes();
        !b.is_empty()
            && b.len() <= 128
            && word(b[0])
            && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
    }

    /// `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
    fn valid_digest(d: &str) -> bool {
        let Some((algorithm, hex)) = d.split_once(':') else {
            return false;
        };
        let part = |p: &str| {
            let b = p.as_bytes();
            b.first().is_some_and(u8::is_ascii_alphabetic)
                && b.iter().all(u8::is_ascii_alphanumeric)
        };
        algorithm.split(['-', '_', '+', '.']).all(part)
            && hex.len() >= 32
            && hex.bytes().all(|x| x.is_ascii_hexdigit())
    }

    /// Docker's defaults: `docker.io` unless the first component looks like a host, and
    /// `library/` for a bare Docker Hub name.
    fn split_domain(name: &str) -> (String, String) {
        let (mut domain, mut rest) = match name.split_once('/') {
            Some((left, right))
                if left.contains('.') || left.contains(':') || left == "localhost" =>
            {
                (left.to_string(), right.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if domain == "index.docker.io" {
            domain = "docker.io".to_string();
        }
        if domain == "docker.io" && !rest.contains('/') {
            rest = format!("library/{rest}");
        }
        (domain, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-read grammar agrees with oci-spec's regular expression, on good references
    /// and on each way one can be wrong.
    #[test]
    fn the_grammar_agrees_with_oci_spec() {
        let d = "3fc9b689459d738f8c88a3a48aa9e33542016b7a4052e001aaa536fca74813cb";
        let mut cases: Vec<String> = [
            "busybox",
            "busybox:1.36",
            "library/busybox",
            "user/app:v1",
            "a",
            "a:b",
            "index.docker.io/library/debian:bookworm",
            "127.0.0.1:5000/library/busybox:latest",
            "localhost/x",
            "localhost:5000/x",
            "ghcr.io/o/r/img",
            "test.com:tag",
            "test.com:5000",
            "test.com/repo:tag",
            "test:5000/repo",
            "sub-dom1.foo.com/bar/baz/quux",
            "a.b-c__d---e/f_g.h:T_a-g.1",
            "UPPER/case",
            "Up.per/x",
            "upper/Case",
            "",
            ":tag",
            "a@",
            "a:",
            "a/",
            "/a",
            "a//b",
            "a/.b",
            "a/b.",
            "a/b..c",
            "a/b___c",
            "a/b.-c",
            "a/b_-c",
            "a/b--c",
            "-a/b",
            "a-/b",
            "a.-b.com/c",
            "a.com:/b",
            "a.com:x/b",
            "a.com:5000:6000/b",
            "a:5000/b",
            "a:-x",
            "a:.x",
            "a:x.y-z_",
            "a:ü",
            "ü/a",
            "a@sha256:123",
            "a@sha256:xyz",
            "a@sha1:0123456789abcdef0123456789abcdef01234567",
            "a@sha512:0123456789abcdef0123456789abcdef",
            "a@sha256+b:0123456789abcdef0123456789abcdef",
            "a@SHA256:0123456789abcdef0123456789abcdef",
            "a@@sha256:x",
            "a@x@y",
            "a:t@sha256:0123",
            "a b",
            "a/b c",
            "a\tb",
            "a/b:c/d",
            "a.com/b:c:d",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.push(format!("debian@sha256:{d}"));
        cases.push(format!("reg.io:443/a/b:t@sha256:{d}"));
        cases.push(format!("a:{}", "t".repeat(128)));
        cases.push(format!("a:{}", "t".repeat(129)));
        cases.push(format!("x.io/{}", "a".repeat(255)));
        cases.push(format!("x.io/{}", "a".repeat(256)));
        cases.push(format!("a@sha384:{}", "0".repeat(96)));
        cases.push(format!("a@sha384:{}", "0".repeat(64)));
        for case in &cases {
            let theirs = case.parse::<Reference>();
            let ours = grammar::parse(case);
            match (&theirs, &ours) {
                (Ok(t), Ok(o)) => {
                    assert_eq!(t.whole(), o.whole(), "{case}");
                    assert_eq!(
                        (t.registry(), t.repository(), t.tag(), t.digest()),
                        (o.registry(), o.repository(), o.tag(), o.digest()),
                        "{case}"
                    );
                }
                (Err(t), Err(o)) => assert_eq!(t, o, "{case}"),
                _ if case.contains('ü') => {} // `\w` is ASCII here, Unicode there
                _ => panic!("{case}: oci-spec {theirs:?}, kiln {ours:?}"),
            }
        }
    }

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
