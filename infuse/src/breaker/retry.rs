//! Retrying a failed call: each attempt a guarded call of its own, after an exponential
//! backoff with full jitter, while the retry budget allows.
//!
//! Only failures as the breaker counts them are retried — an error the call returned
//! (not ignored, not excluded) or a timeout — never a rejection: a breaker that turns
//! calls away says the target needs rest, and a retry would not give it any. A retry is
//! not tried once the breaker stopped letting calls through (the failure may have
//! tripped it), nor when `retry_if` declines the error, nor past the budget.
//!
//! [`RetryBudget`] is the same budget for a retry loop that is not infuse's own (tower's
//! `Retry`, through `infuse::tower::RetryPolicy`): it answers without waiting.

use std::fmt;
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
            && may_retry(plain, attempt, retries)
            && retry_if.is_none_or(|wanted| wanted(&error));
        if !retry {
            return Err(error);
        }
        if !backend.take_retry(plain, &settings).await {
            budget_spent(plain, attempt);
            return Err(error);
        }
        tokio::time::sleep(backoff(&settings, attempt)).await;
        attempt += 1;
        cell.listeners.retrying(cell.service, attempt);
    }
}

/// Whether attempt number `attempt + 1` (0 for the first), which failed, may be retried
/// as far as the breaker is concerned: `retries` not used up, and calls let through (the
/// failure may have tripped it).
fn may_retry(cell: &Cell, attempt: u32, retries: u32) -> bool {
    attempt < retries && cell.view.state().lets_calls_through()
}

/// A retry was wanted and the budget had no token for it.
fn budget_spent(cell: &Cell, attempt: u32) {
    tracing::debug!(
        service = cell.service,
        attempt = attempt + 1,
        "retry budget spent: the failure is returned without a retry"
    );
    cell.listeners.retry_budget_exhausted(cell.service);
}

/// A breaker's retry budget (see [`Settings::retry_budget`]), for a retry loop that is
/// not infuse's own, such as tower's `Retry` (with the `tower` feature, this type is a
/// `tower::retry::budget::Budget`, and `infuse::tower::RetryPolicy` uses it): count
/// each request's first attempt with [`deposit`](RetryBudget::deposit), take a token
/// before each retry with [`withdraw`](RetryBudget::withdraw). Get one with
/// [`Breaker::retry_budget`]; clones share the budget.
///
/// `withdraw` answers at once, where [`Breaker::call_retrying`] may wait for Redis. In
/// memory, and with Redis while it cannot answer, the budget is this process's own,
/// decided on the spot. With Redis, a retry takes a token this process holds of the
/// fleet's budget; when it holds none, the batch is asked for in the background and this
/// retry is **not** made. So the fleet never retries more than the budget allows, and
/// the price is a retry refused now and then that the budget had room for. To make that
/// rare, `deposit` asks ahead of need: when this process holds no token and has not
/// asked for 100 ms, a first attempt starts the request, so a failure that comes later
/// usually finds a token. That costs Redis about one script a second per breaker and
/// process that has traffic (tokens last a second), and keeps a token or so of the
/// fleet's budget per process set aside.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), infuse::InitError> {
/// use infuse::{Config, Registry, ServiceOverride};
///
/// // No floor, and 10 % of first attempts: 20 first attempts allow 2 retries.
/// let tight = ServiceOverride::new().retries(3).retry_budget(10).retry_min_per_sec(0);
/// let registry = Registry::new(Config::in_memory().service("doc-budget", tight)).await?;
/// let budget = registry.breaker("doc-budget").retry_budget();
/// for _ in 0..20 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw(), "spent");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    breaker: Breaker,
    /// The breaker's cell, as the store layer takes it (the same allocation).
    cell: Arc<Cell>,
}

impl RetryBudget {
    pub(crate) fn new(breaker: Breaker) -> RetryBudget {
        let cell = breaker.cell();
        RetryBudget { breaker, cell }
    }

    /// The breaker whose budget this is.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Counts the first attempt of a request that may be retried. With Redis, also asks
    /// the fleet's budget for tokens in the background when this process holds none and
    /// has not asked for 100 ms.
    pub fn deposit(&self) {
        let binding = self.breaker.cell.bound();
        binding.backend.first_attempt_prefetching(&self.cell);
    }

    /// Takes a token for one retry, if the budget allows one now; false: do not retry.
    /// Never waits (see the type's docs for what that costs with Redis).
    pub fn withdraw(&self) -> bool {
        let settings = self.breaker.settings();
        let binding = self.breaker.cell.bound();
        binding.backend.try_take_retry(&self.cell, &settings)
    }

    /// After attempt number `attempt + 1` (0 for the first) failed as the breaker counts
    /// failures: the wait before retrying it, with a token of the budget taken, or
    /// `None` (retries unset or used up, calls not let through, the budget spent — which
    /// listeners hear of).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn next_retry(&self, attempt: u32) -> Option<Duration> {
        let settings = self.breaker.settings();
        let retries = settings.retries?;
        if !may_retry(&self.cell, attempt, retries) {
            return None;
        }
        if !self.withdraw() {
            budget_spent(&self.cell, attempt);
            return None;
        }
        Some(backoff(&settings, attempt))
    }

    /// Retry number `retry` starts (after its backoff): listeners hear of it.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn retrying(&self, retry: u32) {
        self.cell.listeners.retrying(self.cell.service, retry);
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("service", &self.breaker.service())
            .finish()
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
