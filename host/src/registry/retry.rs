//! Retries of transient registry failures: one request (a manifest or blob transfer) a few
//! times with a doubling wait (or the wait a 429's `Retry-After` asks for, capped), and whole pulls and pushes as often as `--image-download-retry`
//! and `--push-retry` say. Which failures are transient is `Error::is_transient`'s call.

use std::future::Future;
use std::time::Duration;

use tracing::warn;

use super::error::{Error, Result};

/// Retries after the first attempt of one request (a manifest or blob transfer) that failed
/// in a transient way; `--push-retry` and `--image-download-retry` retry whole operations on
/// top of these.
const MAX_RETRIES: u32 = 3;
/// Wait before the first retry of a whole push or pull; doubled for each further one.
pub(super) const FIRST_OPERATION_BACKOFF: Duration = Duration::from_secs(1);
/// Wait before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait a registry's `Retry-After` may impose on one retry.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Runs `attempt` until it succeeds, fails permanently, or has been retried [`MAX_RETRIES`]
/// times, doubling the wait each time. `what` names the operation in debug logs.
pub(super) async fn with_retries<T, F, Fut>(what: &str, attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry(
        what,
        MAX_RETRIES,
        FIRST_BACKOFF,
        Error::is_transient,
        attempt,
    )
    .await
}

/// Runs `attempt` until it succeeds, fails with an error `should_retry` refuses, or has been
/// retried `max` times, waiting `first` and doubling the wait each time; a failure whose
/// answer said `Retry-After` waits that long instead when it is longer (at most
/// [`MAX_RETRY_AFTER`]).
pub(super) async fn retry<T, F, Fut>(
    what: &str,
    max: u32,
    first: Duration,
    should_retry: fn(&Error) -> bool,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = first;
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(e) if retries < max && should_retry(&e) => {
                retries += 1;
                let wait = e
                    .retry_after()
                    .map_or(delay, |asked| asked.min(MAX_RETRY_AFTER).max(delay));
                warn!(what, retry = retries, of = max, wait = ?wait, error = %e, "registry failure, retrying");
                tokio::time::sleep(wait).await;
                delay *= 2;
            }
            result => return result,
        }
    }
}
