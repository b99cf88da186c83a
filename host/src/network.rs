//! How long kiln waits on a network peer before giving up on a request: the idle timeout
//! (no byte for this long, whether waiting for the first byte of an answer or in the middle
//! of a body) every HTTP client of kiln uses (registries, `https://` contexts and
//! Dockerfiles, `ADD <url>`, git over HTTP), and the `KILN_NETWORK_IDLE_TIMEOUT_SECS`
//! override tests and slow links set. Each client's owner keeps its own default and its
//! retries; this module only says how the override is read.
//!
//! It also reads HTTP dates (`Last-Modified`, `Retry-After`) and owns the minimum transfer rate ([`RateFloor`]): a server that sends a byte every
//! few seconds never trips the idle timeout, so a body must bring at least
//! `KILN_NETWORK_MIN_RATE` bytes per second (default 1 KiB/s) over each window of
//! `KILN_NETWORK_MIN_RATE_WINDOW_SECS` (default 60 s) after the first half window (a grace for
//! slow starts); `KILN_NETWORK_MIN_RATE=0` turns the rule off.

use std::time::{Duration, Instant};

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

/// Bytes per second a body must average, overriding [`MIN_RATE`]; 0 turns the rule off.
pub const MIN_RATE_ENV: &str = "KILN_NETWORK_MIN_RATE";
/// Seconds of the window the minimum rate is measured over, overriding [`RATE_WINDOW`].
pub const RATE_WINDOW_ENV: &str = "KILN_NETWORK_MIN_RATE_WINDOW_SECS";
/// The minimum average rate of a body: 1 KiB/s.
const MIN_RATE: u64 = 1024;
/// The window the rate is averaged over; the first half of one is a grace.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Watches one body's progress and fails it when it comes slower than the minimum rate.
#[derive(Debug)]
pub struct RateFloor {
    /// Bytes per second; 0 checks nothing.
    rate: u64,
    window: Duration,
    /// Start of the window being measured, and the bytes that arrived in it.
    window_start: Instant,
    in_window: u64,
}

impl RateFloor {
    /// The rule as the environment sets it, starting now (when the body's first byte is
    /// awaited).
    pub fn from_env() -> RateFloor {
        let rate = std::env::var(MIN_RATE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(MIN_RATE);
        let window = std::env::var(RATE_WINDOW_ENV)
            .ok()
            .and_then(|v| parse_seconds(&v))
            .unwrap_or(RATE_WINDOW);
        RateFloor::new(rate, window, Instant::now())
    }

    fn new(rate: u64, window: Duration, now: Instant) -> RateFloor {
        RateFloor {
            rate,
            window,
            // the grace: the first window is measured from half a window in
            window_start: now + window / 2,
            in_window: 0,
        }
    }

    /// Leaves `waited` out of the measure: time the body was not read because its reader
    /// was busy (a layer extracted as it downloads) is not the peer's slowness.
    pub fn pause(&mut self, waited: Duration) {
        self.window_start += waited;
    }

    /// Records `n` bytes that just arrived; an error (saying the rate and the rule) when the
    /// window that ended brought too few.
    pub fn note(&mut self, n: u64) -> Result<(), String> {
        self.note_at(n, Instant::now())
    }

    fn note_at(&mut self, n: u64, now: Instant) -> Result<(), String> {
        if self.rate == 0 || now < self.window_start {
            return Ok(());
        }
        self.in_window += n;
        let elapsed = now - self.window_start;
        if elapsed < self.window {
            return Ok(());
        }
        let needed = (self.rate as f64 * elapsed.as_secs_f64()) as u64;
        if self.in_window < needed {
            return Err(format!(
                "the transfer is too slow: {} bytes in {:.0?}, under the minimum of {} bytes/s \
                 ({MIN_RATE_ENV}, over {:?} windows, {RATE_WINDOW_ENV})",
                self.in_window, elapsed, self.rate, self.window
            ));
        }
        self.window_start = now;
        self.in_window = 0;
        Ok(())
    }
}

/// Seconds since the epoch of an HTTP date in the preferred form
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) or the asctime form (`Sun Nov  6 08:49:37 1994`).
pub fn parse_http_date(text: &str) -> Option<i64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (day, month, year, clock) = match words.as_slice() {
        [_, day, month, year, clock, "GMT"] => (*day, *month, *year, *clock),
        [_, month, day, clock, year] => (*day, *month, *year, *clock),
        _ => return None,
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = clock.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn parse_seconds(text: &str) -> Option<Duration> {
    let secs: f64 = text.trim().parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_dates() {
        for (text, want) in [
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sun Nov  6 08:49:37 1994", Some(784_111_777)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Tue, 29 Feb 2000 12:00:00 GMT", Some(951_825_600)),
            ("yesterday", None),
        ] {
            assert_eq!(parse_http_date(text), want, "date {text}");
        }
    }

    #[test]
    fn reads_positive_seconds_only() {
        assert_eq!(parse_seconds("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_seconds(" 0.5 "), Some(Duration::from_millis(500)));
        for bad in ["0", "-1", "soon", "", "inf", "NaN"] {
            assert_eq!(parse_seconds(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_trickle_fails_after_the_grace_and_a_window() {
        let start = Instant::now();
        let mut floor = RateFloor::new(1024, Duration::from_secs(60), start);
        // one byte every 5 s: nothing is said in the grace, then the first window fails
        let mut failed_at = None;
        for i in 1..40u64 {
            if floor
                .note_at(1, start + Duration::from_secs(5 * i))
                .is_err()
            {
                failed_at = Some(5 * i);
                break;
            }
        }
        assert_eq!(failed_at, Some(90));
        // a steady 2 KiB/s passes every window
        let mut floor = RateFloor::new(1024, Duration::from_secs(60), start);
        for i in 1..400u64 {
            floor
                .note_at(2048, start + Duration::from_secs(i))
                .expect("a fast enough body");
        }
        // 0 turns the rule off
        let mut floor = RateFloor::new(0, Duration::from_secs(60), start);
        assert!(floor.note_at(1, start + Duration::from_secs(1000)).is_ok());
    }

    #[test]
    fn time_spent_waiting_on_the_reader_is_left_out() {
        let start = Instant::now();
        // 2 KiB/s, but the reader held the body up for 100 s of the first 130
        let mut floor = RateFloor::new(1024, Duration::from_secs(60), start);
        floor.pause(Duration::from_secs(100));
        for i in 1..=30u64 {
            floor
                .note_at(2048, start + Duration::from_secs(100 + i))
                .expect("the wait is not the peer's");
        }
        // without the pause the same bytes fail
        let mut floor = RateFloor::new(1024, Duration::from_secs(60), start);
        let failed = (1..=30u64).any(|i| {
            floor
                .note_at(2048, start + Duration::from_secs(100 + i))
                .is_err()
        });
        assert!(failed);
    }
}
