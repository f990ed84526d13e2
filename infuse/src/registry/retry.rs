//! The retry hint an HTTP or gRPC answer carries, for every error a breaker returns.

use std::time::Duration;

use crate::core::BreakerError;
use crate::registry::global;

impl BreakerError {
    /// How long a caller should wait before trying again, in whole seconds rounded up and
    /// never 0: what `Retry-After` (HTTP) and `retry-after` (gRPC metadata) carry.
    ///
    /// `Some` for every error that means "the breaker is open now": a rejection
    /// (the open time left, a trial's lease, or slow start's hint) and a call that tripped the breaker or
    /// failed its trial (the breaker's `reset_timeout`, read from the process-wide
    /// registry, or the default one). A breaker held open by an operator has no end: its hint is its
    /// `reset_timeout` too, the time after which asking again is reasonable. A call
    /// turned away by the concurrency cap ([`BreakerError::Saturated`]) gets 1 s: a
    /// permit comes back as soon as a call in flight ends, and the breaker may well be
    /// closed. `None` for [`BreakerError::Timeout`], which says nothing about the
    /// breaker's state.
    ///
    /// ```
    /// use std::time::Duration;
    /// use infuse::{BreakerError, RetryAt};
    ///
    /// let open = BreakerError::Open { service: "users", retry_at: RetryAt::after(Duration::from_millis(1_200)) };
    /// assert_eq!(open.retry_after_secs(), Some(2)); // rounded up
    /// let elapsed = BreakerError::Open { service: "users", retry_at: RetryAt::after(Duration::ZERO) };
    /// assert_eq!(elapsed.retry_after_secs(), Some(1)); // never 0
    /// let saturated = BreakerError::Saturated { service: "users" };
    /// assert_eq!(saturated.retry_after_secs(), Some(1)); // a permit frees when a call ends
    /// ```
    pub fn retry_after_secs(&self) -> Option<u64> {
        let wait = match self {
            BreakerError::Timeout { .. } => return None,
            BreakerError::Open { retry_at, .. }
            | BreakerError::TrialInFlight { retry_at, .. }
            | BreakerError::Recovering { retry_at, .. } => retry_at.remaining(),
            BreakerError::Saturated { .. } => Duration::from_secs(1),
            other => reset_timeout_of(other.service()),
        };
        Some(whole_seconds(wait))
    }
}

/// The `reset_timeout` in force for `service` in the process-wide registry (the default
/// when it has no such breaker: a hint is no reason to create one).
fn reset_timeout_of(service: &str) -> Duration {
    match global().existing(service) {
        Some(breaker) => breaker.settings().reset_timeout,
        None => crate::core::Settings::default().reset_timeout,
    }
}

/// Whole seconds, rounded up, at least 1.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_nanos()
        .div_ceil(1_000_000_000)
        .clamp(1, u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_round_up_and_never_reach_zero() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_nanos(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(whole_seconds(Duration::MAX), u64::MAX);
    }

    #[test]
    fn every_error_but_a_timeout_has_a_hint() {
        let service = "retry-hint-test";
        let forced = BreakerError::ForcedOpen { service };
        assert_eq!(forced.retry_after_secs(), Some(60));
        assert_eq!(
            BreakerError::Tripped { service }.retry_after_secs(),
            Some(60)
        );
        assert_eq!(
            BreakerError::TrialFailed { service }.retry_after_secs(),
            Some(60)
        );
        let timeout = BreakerError::Timeout {
            service,
            after: Duration::from_secs(1),
        };
        assert_eq!(timeout.retry_after_secs(), None);
        let recovering = BreakerError::Recovering {
            service,
            retry_at: crate::core::RetryAt::after(Duration::from_millis(300)),
        };
        assert_eq!(recovering.retry_after_secs(), Some(1));
    }
}
