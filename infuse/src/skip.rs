//! Bypassing breakers for a scope (infuse's `skip_breaker=True`).

use std::future::Future;

tokio::task_local! {
    static SKIP: ();
}

/// Runs `future` with every breaker bypassed for the calls made inside it: they run
/// without being checked or counted. Useful for health checks that must reach a service
/// even while its breaker is open.
///
/// The bypass follows the future, not spawned tasks: a `tokio::spawn` inside does not
/// inherit it.
///
/// ```
/// # async fn ping() -> Result<(), infuse::BreakerError> { Ok(()) }
/// # async fn demo() {
/// let healthy = infuse::skip_breaker(ping()).await.is_ok();
/// # }
/// ```
pub async fn skip_breaker<F: Future>(future: F) -> F::Output {
    SKIP.scope((), future).await
}

/// Whether the current task is inside [`skip_breaker`].
#[inline]
pub fn is_skipping() -> bool {
    SKIP.try_with(|_| ()).is_ok()
}
