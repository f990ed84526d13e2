//! Retrying a failed call: each attempt a guarded call of its own, after an exponential
//! backoff with full jitter, while the retry budget allows.
//!
//! Only failures as the breaker counts them are retried — an error the call returned
//! (not ignored, not excluded) or a timeout — never a rejection: a breaker that turns
//! calls away says the target needs rest, and a retry would not give it any. A retry is
//! not tried once the breaker stopped letting calls through (the failure may have
//! tripped it), nor when `retry_if` declines the error, nor past the budget.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::breaker::options::CallOptions;
use crate::breaker::shared::Breaker;
use crate::core::random::random_u64;
use crate::core::{BreakerError, Settings};
use crate::local::Cell;

/// How far a guarded attempt got: whether the caller's future ran, and finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// Never polled: the breaker rejected the call.
    Rejected,
    /// Polled, not finished: the breaker's timeout cancelled it.
    Started,
    /// Finished with its own result.
    Finished,
}

/// Runs `make()`'s future through `breaker`, and again after a counted failure, up to
/// the breaker's `retries` times (none when unset).
pub(crate) async fn call_retrying<T, E, F, M>(
    breaker: &Breaker,
    options: CallOptions<E>,
    retry_if: Option<fn(&E) -> bool>,
    mut make: M,
) -> Result<T, E>
where
    M: FnMut() -> F,
    F: Future<Output = Result<T, E>>,
    E: From<BreakerError> + Debug,
{
    let settings = breaker.settings();
    let Some(retries) = settings.retries else {
        return breaker.call_with(options, make()).await;
    };
    let cell = &breaker.cell;
    let backend = cell.bound().backend.clone();
    let plain: &Cell = &**cell;
    backend.first_attempt(plain);
    let mut attempt = 0;
    loop {
        let mut reached = Reached::Rejected;
        let future = make();
        let reached_ref = &mut reached;
        let result = breaker
            .call_with(options, async move {
                *reached_ref = Reached::Started;
                let result = future.await;
                *reached_ref = Reached::Finished;
                result
            })
            .await;
        let Err(error) = result else {
            return result;
        };
        let counted = match reached {
            Reached::Rejected => false,
            Reached::Started => true,
            Reached::Finished => !options.is_ignored(&error) && !options.is_excluded(&error),
        };
        let retry = counted
            && attempt < retries
            && retry_if.is_none_or(|wanted| wanted(&error))
            && cell.view.state().lets_calls_through();
        if !retry {
            return Err(error);
        }
        if !backend.take_retry(plain, &settings).await {
            tracing::debug!(
                service = cell.service,
                attempt = attempt + 1,
                "retry budget spent: the failure is returned without a retry"
            );
            cell.listeners.retry_budget_exhausted(cell.service);
            return Err(error);
        }
        tokio::time::sleep(backoff(&settings, attempt)).await;
        attempt += 1;
        cell.listeners.retrying(cell.service, attempt);
    }
}

/// The wait before retry number `attempt + 1`: a random time up to `retry_backoff ×
/// 2^attempt`, capped at `max_retry_backoff` (full jitter, as in AWS's "Exponential
/// Backoff and Jitter": retries of many callers spread out instead of coming in waves).
pub(crate) fn backoff(settings: &Settings, attempt: u32) -> Duration {
    let ceiling = settings
        .retry_backoff
        .saturating_mul(1 << attempt.min(20))
        .min(settings.max_retry_backoff);
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let draw = random_u64(DRAWS.fetch_add(1, Ordering::Relaxed));
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(draw % nanos.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_full_jitter() {
        let settings = Settings::DEFAULT
            .retries(3)
            .retry_backoff(Duration::from_millis(25))
            .max_retry_backoff(Duration::from_millis(150));
        for attempt in 0..40 {
            let cap = Duration::from_millis(25 << attempt.min(3)).min(Duration::from_millis(150));
            let drawn: Vec<Duration> = (0..200).map(|_| backoff(&settings, attempt)).collect();
            assert!(
                drawn.iter().all(|d| *d <= cap),
                "attempt {attempt}: {drawn:?}"
            );
            // Jitter: not all the same, and some in the lower half.
            assert!(drawn.iter().any(|d| *d < cap / 2), "attempt {attempt}");
            assert!(drawn.iter().any(|d| *d > cap / 2), "attempt {attempt}");
        }
    }
}
