//! How long kiln waits on a network peer before giving up on a request: the idle timeout
//! (no byte for this long, whether waiting for the first byte of an answer or in the middle
//! of a body) every HTTP client of kiln uses (registries, `https://` contexts and
//! Dockerfiles, `ADD <url>`, git over HTTP), and the `KILN_NETWORK_IDLE_TIMEOUT_SECS`
//! override tests and slow links set. Each client's owner keeps its own default and its
//! retries; this module only says how the override is read.

use std::time::Duration;

/// Seconds of silence after which a network read fails, overriding each client's default.
pub const IDLE_TIMEOUT_ENV: &str = "KILN_NETWORK_IDLE_TIMEOUT_SECS";

/// The idle timeout: `KILN_NETWORK_IDLE_TIMEOUT_SECS` when it holds a positive number of
/// seconds (fractions allowed), else `default`.
pub fn idle_timeout(default: Duration) -> Duration {
    std::env::var(IDLE_TIMEOUT_ENV)
        .ok()
        .and_then(|v| parse_seconds(&v))
        .unwrap_or(default)
}

/// The connect timeout: the idle timeout when it is shorter than `default`, so a test that
/// shortens one does not wait on the other.
pub fn connect_timeout(default: Duration) -> Duration {
    idle_timeout(default).min(default)
}

fn parse_seconds(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_positive_seconds_only() {
        assert_eq!(parse_seconds("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_seconds(" 0.5 "), Some(Duration::from_millis(500)));
        for bad in ["0", "-1", "soon", "", "inf", "NaN"] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
    }
}
