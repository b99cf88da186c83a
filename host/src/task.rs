//! Blocking work (tar, snapshots, the guest, RUN) handed to tokio's blocking pool from async
//! code, inside the caller's tracing span, so its log lines still name the stage they belong to.

/// `spawn_blocking` inside the caller's span.
pub(crate) fn blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}
