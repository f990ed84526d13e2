//! Breaker-level behaviour, pybreaker's rules first (see
//! `pybreaker-and-infuse.md` §1.2–1.6), through the public API of a [`Registry`].
//!
//! Every test has its own registry and a paused tokio clock: time moves only with
//! `tokio::time::advance`, so durations are exact.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use infuse::{BreakerError, CallOptions, Config, Registry, ServiceOverride, State, Verdict};

use infuse_tests::support;

use support::calls::{breaker_with, not_found, TestError, R};

const RESET: Duration = Duration::from_secs(10);

/// `fail_max` and the test reset timeout.
async fn breaker(service: &'static str, fail_max: u32) -> infuse::Breaker {
    breaker_with(
        service,
        ServiceOverride::new()
            .fail_max(fail_max)
            .reset_timeout(RESET),
    )
    .await
}

/// Counts how many guarded bodies ran.
#[derive(Clone, Default)]
struct Runs(Arc<AtomicUsize>);

impl Runs {
    fn ok(&self, value: u32) -> impl Future<Output = R> {
        let runs = self.0.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok(value)
        }
    }

    fn err(&self, error: TestError) -> impl Future<Output = R> {
        let runs = self.0.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(error)
        }
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

fn open_error(result: R) -> BreakerError {
    match result {
        Err(TestError::Breaker(e @ BreakerError::Open { .. })) => e,
        other => panic!("expected BreakerError::Open, got {other:?}"),
    }
}

async fn trip(b: &infuse::Breaker, runs: &Runs) {
    let fail_max = b.settings().fail_max;
    for _ in 0..fail_max {
        assert_eq!(
            b.call(runs.err(TestError::Boom)).await,
            Err(TestError::Boom)
        );
    }
    assert_eq!(b.state().await.unwrap(), State::Open);
}

// ---------------------------------------------------------------------------------------
// Closed

#[tokio::test(start_paused = true)]
async fn settings_come_from_config_overrides() {
    let b = breaker_with(
        "sem-settings",
        ServiceOverride::new()
            .fail_max(7)
            .reset_timeout(Duration::from_millis(1500))
            .success_threshold(2),
    )
    .await;
    let s = b.settings();
    assert_eq!(
        (s.fail_max, s.reset_timeout, s.success_threshold),
        (7, Duration::from_millis(1500), 2)
    );
    assert_eq!(b.service(), "sem-settings");
    // Without overrides: pybreaker's defaults.
    let d = Registry::new(Config::in_memory().env_overrides(false))
        .await
        .unwrap()
        .breaker("sem-defaults")
        .settings();
    assert_eq!(
        (d.fail_max, d.reset_timeout, d.success_threshold),
        (5, Duration::from_secs(60), 1)
    );
}

#[tokio::test(start_paused = true)]
async fn closed_counts_consecutive_failures() {
    let b = breaker("sem-closed-count", 3).await;
    let runs = Runs::default();
    assert_eq!(b.state().await.unwrap(), State::Closed);
    assert_eq!(b.fail_counter().await.unwrap(), 0);
    assert_eq!(b.call(runs.ok(1)).await, Ok(1));
    for n in 1..=2 {
        assert_eq!(
            b.call(runs.err(TestError::Boom)).await,
            Err(TestError::Boom)
        );
        assert_eq!(b.fail_counter().await.unwrap(), n);
        assert_eq!(b.state().await.unwrap(), State::Closed);
    }
    // A success resets the count: it is consecutive failures, not a total.
    assert_eq!(b.call(runs.ok(2)).await, Ok(2));
    assert_eq!(b.fail_counter().await.unwrap(), 0);
    for _ in 0..2 {
        let _ = b.call(runs.err(TestError::Boom)).await;
    }
    assert_eq!(b.state().await.unwrap(), State::Closed);
    assert_eq!(runs.count(), 6);
}

#[tokio::test(start_paused = true)]
async fn trips_at_fail_max_and_the_tripping_call_ran() {
    let b = breaker("sem-trip", 3).await;
    let runs = Runs::default();
    for _ in 0..2 {
        let _ = b.call(runs.err(TestError::Boom)).await;
    }
    assert_eq!(runs.count(), 2);
    // The third failure is the tripping call: it ran and, by default, returns its own error.
    assert_eq!(
        b.call(runs.err(TestError::Boom)).await,
        Err(TestError::Boom)
    );
    assert_eq!(runs.count(), 3);
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.fail_counter, 3);
    assert_eq!(snapshot.success_counter, 0);
    assert_eq!(snapshot.open_remaining, Some(RESET));
}

#[tokio::test(start_paused = true)]
async fn fail_max_one_trips_on_the_first_failure() {
    let b = breaker("sem-fail-max-1", 1).await;
    let runs = Runs::default();
    assert_eq!(
        b.call(runs.err(TestError::Boom)).await,
        Err(TestError::Boom)
    );
    assert_eq!(b.state().await.unwrap(), State::Open);
}

// ---------------------------------------------------------------------------------------
// Open

#[tokio::test(start_paused = true)]
async fn open_rejects_without_running_or_counting() {
    let b = breaker("sem-open-rejects", 2).await;
    let runs = Runs::default();
    trip(&b, &runs).await;
    assert_eq!(runs.count(), 2);
    for _ in 0..5 {
        let err = open_error(b.call(runs.ok(1)).await);
        assert_eq!(err.service(), "sem-open-rejects");
        let err = open_error(b.call(runs.err(TestError::Boom)).await);
        assert_eq!(err.status_code(), 503);
    }
    assert_eq!(runs.count(), 2, "a rejected call must not run");
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.fail_counter, 2, "a rejected call is not counted");
    assert_eq!(snapshot.success_counter, 0);
    assert_eq!(snapshot.state, State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_future_is_never_polled() {
    let b = breaker("sem-never-polled", 1).await;
    b.open().await.unwrap();
    let r: R = b
        .call(async { panic!("the body of a rejected call must not run") })
        .await;
    open_error(r);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_the_time_left() {
    let b = breaker("sem-retry-after", 1).await;
    let runs = Runs::default();
    trip(&b, &runs).await;
    let err = open_error(b.call(runs.ok(1)).await);
    assert_eq!(err.retry_after(), Some(RESET));
    tokio::time::advance(Duration::from_secs(3)).await;
    let err = open_error(b.call(runs.ok(1)).await);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(
        matches!(
            err,
            BreakerError::Open {
                service: "sem-retry-after",
                ..
            }
        ),
        "{err:?}"
    );
    tokio::time::advance(Duration::from_millis(6_500)).await;
    let err = open_error(b.call(runs.ok(1)).await);
    assert_eq!(err.retry_after(), Some(Duration::from_millis(500)));
    assert_eq!(
        err.to_string(),
        "sem-retry-after: Timeout not elapsed yet, circuit breaker still open (retry in 500 ms)"
    );
    assert_eq!(
        b.snapshot().await.unwrap().open_remaining,
        Some(Duration::from_millis(500))
    );
    assert_eq!(runs.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn half_open_is_lazy() {
    let b = breaker("sem-lazy", 1).await;
    let runs = Runs::default();
    trip(&b, &runs).await;
    tokio::time::advance(RESET).await;
    // No timer: without a call the breaker still reads open, with no time left.
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.open_remaining, Some(Duration::ZERO));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(b.state().await.unwrap(), State::Open);
    // The first call after the timeout runs, as the trial.
    let permit = b.acquire().await.expect("trial admitted");
    assert!(permit.is_trial());
    assert_eq!(b.state().await.unwrap(), State::HalfOpen);
    permit.success().await;
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn open_until_exactly_reset_timeout() {
    let b = breaker("sem-exact-timeout", 1).await;
    let runs = Runs::default();
    trip(&b, &runs).await;
    tokio::time::advance(RESET - Duration::from_nanos(1)).await;
    open_error(b.call(runs.ok(1)).await);
    tokio::time::advance(Duration::from_nanos(1)).await;
    assert_eq!(b.call(runs.ok(2)).await, Ok(2));
    assert_eq!(runs.count(), 2);
}

// ---------------------------------------------------------------------------------------
// Half-open

#[tokio::test(start_paused = true)]
async fn trial_success_closes_and_resets_counters() {
    let b = breaker("sem-trial-ok", 3).await;
    let runs = Runs::default();
    trip(&b, &runs).await;
    tokio::time::advance(RESET).await;
    assert_eq!(b.call(runs.ok(7)).await, Ok(7));
    assert_eq!(runs.count(), 4);
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.fail_counter, 0);
    assert_eq!(snapshot.success_counter, 0);
    // Counting starts afresh: fail_max failures are needed again.
    for _ in 0..2 {
        let _ = b.call(runs.err(TestError::Boom)).await;
    }
    assert_eq!(b.state().await.unwrap(), State::Closed);
    let _ = b.call(runs.err(TestError::Boom)).await;
    assert_eq!(b.state().await.unwrap(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn trial_failure_reopens_for_a_full_timeout() {
    let b = breaker("sem-trial-fail", 3).await;
    let runs = Runs::default();
    trip(&b, &runs).await;
    tokio::time::advance(RESET + Duration::from_secs(5)).await;
    assert_eq!(
        b.call(runs.err(TestError::Boom)).await,
        Err(TestError::Boom)
    );
    assert_eq!(runs.count(), 4, "the trial ran");
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Open);
    // As pybreaker: the fail counter keeps counting through half-open (fail_max + 1).
    assert_eq!(snapshot.fail_counter, 4);
    assert_eq!(snapshot.open_remaining, Some(RESET));
    let err = open_error(b.call(runs.ok(1)).await);
    assert_eq!(err.retry_after(), Some(RESET), "a fresh timeout");
    assert_eq!(runs.count(), 4);
    tokio::time::advance(RESET).await;
    assert_eq!(b.call(runs.ok(1)).await, Ok(1));
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn success_threshold_needs_that_many_trials() {
    let b = breaker_with(
        "sem-threshold",
        ServiceOverride::new()
            .fail_max(2)
            .reset_timeout(RESET)
            .success_threshold(3),
    )
    .await;
    let runs = Runs::default();
    trip(&b, &runs).await;
    tokio::time::advance(RESET).await;
    for n in 1..=2 {
        assert_eq!(b.call(runs.ok(n)).await, Ok(n));
        let snapshot = b.snapshot().await.unwrap();
        assert_eq!(snapshot.state, State::HalfOpen);
        assert_eq!(snapshot.success_counter, n);
        assert_eq!(
            snapshot.fail_counter, 0,
            "a success resets the fail counter"
        );
    }
    assert_eq!(b.call(runs.ok(3)).await, Ok(3));
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.success_counter, 0);

    // A failure on the way re-opens and the count starts over.
    trip(&b, &runs).await;
    tokio::time::advance(RESET).await;
    assert_eq!(b.call(runs.ok(1)).await, Ok(1));
    assert_eq!(b.success_counter().await.unwrap(), 1);
    assert_eq!(
        b.call(runs.err(TestError::Boom)).await,
        Err(TestError::Boom)
    );
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.success_counter, 0);
    assert_eq!(snapshot.fail_counter, 1);
    tokio::time::advance(RESET).await;
    for n in 1..=2 {
        assert_eq!(b.call(runs.ok(n)).await, Ok(n));
        assert_eq!(b.success_counter().await.unwrap(), n);
    }
    assert_eq!(b.call(runs.ok(3)).await, Ok(3));
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

// ---------------------------------------------------------------------------------------
// Manual transitions

#[tokio::test(start_paused = true)]
async fn manual_open_rejects_for_reset_timeout() {
    let b = breaker("sem-manual-open", 5).await;
    let runs = Runs::default();
    let _ = b.call(runs.err(TestError::Boom)).await;
    b.open().await.unwrap();
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(
        snapshot.fail_counter, 1,
        "entering open keeps the fail counter"
    );
    assert_eq!(snapshot.open_remaining, Some(RESET));
    let err = open_error(b.call(runs.ok(1)).await);
    assert_eq!(err.retry_after(), Some(RESET));
    // Opening an open breaker restarts its timeout.
    tokio::time::advance(Duration::from_secs(4)).await;
    b.open().await.unwrap();
    let err = open_error(b.call(runs.ok(1)).await);
    assert_eq!(err.retry_after(), Some(RESET));
    assert_eq!(runs.count(), 1);
    tokio::time::advance(RESET).await;
    assert_eq!(b.call(runs.ok(1)).await, Ok(1));
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn manual_half_open_makes_the_next_call_a_trial() {
    let b = breaker("sem-manual-half-open", 5).await;
    let runs = Runs::default();
    for _ in 0..2 {
        let _ = b.call(runs.err(TestError::Boom)).await;
    }
    b.half_open().await.unwrap();
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::HalfOpen);
    assert_eq!(
        snapshot.fail_counter, 2,
        "entering half-open keeps the fail counter"
    );
    let permit = b.acquire().await.unwrap();
    assert!(permit.is_trial());
    assert_eq!(permit.failure(&TestError::Boom).await, Verdict::TrialFailed);
    assert_eq!(b.state().await.unwrap(), State::Open);
    assert_eq!(b.fail_counter().await.unwrap(), 3);

    // From open, without waiting.
    b.half_open().await.unwrap();
    assert_eq!(b.call(runs.ok(1)).await, Ok(1));
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn manual_close_resets_counters() {
    let b = breaker_with(
        "sem-manual-close",
        ServiceOverride::new()
            .fail_max(2)
            .reset_timeout(RESET)
            .success_threshold(2),
    )
    .await;
    let runs = Runs::default();
    // From closed with failures.
    let _ = b.call(runs.err(TestError::Boom)).await;
    b.close().await.unwrap();
    assert_eq!(b.fail_counter().await.unwrap(), 0);
    // From open.
    trip(&b, &runs).await;
    b.close().await.unwrap();
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!((snapshot.state, snapshot.fail_counter), (State::Closed, 0));
    assert_eq!(b.call(runs.ok(1)).await, Ok(1));
    // From half-open with a success counted.
    trip(&b, &runs).await;
    b.half_open().await.unwrap();
    assert_eq!(b.call(runs.ok(1)).await, Ok(1));
    assert_eq!(b.success_counter().await.unwrap(), 1);
    b.close().await.unwrap();
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(
        (
            snapshot.state,
            snapshot.fail_counter,
            snapshot.success_counter
        ),
        (State::Closed, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn manual_open_and_half_open_reset_the_success_counter() {
    let b = breaker_with(
        "sem-manual-success-counter",
        ServiceOverride::new()
            .fail_max(1)
            .reset_timeout(RESET)
            .success_threshold(3),
    )
    .await;
    let runs = Runs::default();
    for to in [State::HalfOpen, State::Open] {
        b.half_open().await.unwrap();
        assert_eq!(b.call(runs.ok(1)).await, Ok(1));
        assert_eq!(b.success_counter().await.unwrap(), 1);
        match to {
            State::Open => b.open().await.unwrap(),
            _ => b.half_open().await.unwrap(),
        }
        let snapshot = b.snapshot().await.unwrap();
        assert_eq!(snapshot.state, to);
        assert_eq!(snapshot.success_counter, 0, "entering {to} resets it");
    }
}

#[tokio::test(start_paused = true)]
async fn handles_of_one_service_share_state_and_registries_do_not() {
    let registry = Registry::new(Config::in_memory().env_overrides(false))
        .await
        .unwrap();
    let a = registry.breaker("sem-shared");
    let b = registry.breaker("sem-shared");
    let clone = a.clone();
    a.open().await.unwrap();
    assert_eq!(b.state().await.unwrap(), State::Open);
    assert_eq!(clone.state().await.unwrap(), State::Open);
    let r: R = b.call(async { Ok(1) }).await;
    open_error(r);

    let other = Registry::new(Config::in_memory()).await.unwrap();
    assert_eq!(
        other.breaker("sem-shared").state().await.unwrap(),
        State::Closed
    );
    assert!(registry
        .breakers()
        .iter()
        .any(|b| b.service() == "sem-shared"));
}

// ---------------------------------------------------------------------------------------
// error_on_trip

#[tokio::test(start_paused = true)]
async fn error_on_trip_false_returns_the_original_errors() {
    let b = breaker("sem-eot-false", 2).await;
    let runs = Runs::default();
    let options = CallOptions::new().error_on_trip(false);
    for _ in 0..2 {
        let r = b.call_with(options, runs.err(TestError::Boom)).await;
        assert_eq!(r, Err(TestError::Boom));
    }
    assert_eq!(b.state().await.unwrap(), State::Open);
    tokio::time::advance(RESET).await;
    let r = b.call_with(options, runs.err(TestError::Boom)).await;
    assert_eq!(
        r,
        Err(TestError::Boom),
        "a failed trial returns its own error"
    );
    assert_eq!(b.state().await.unwrap(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn error_on_trip_true_replaces_the_tripping_and_trial_errors() {
    let b = breaker("sem-eot-true", 2).await;
    let runs = Runs::default();
    let options = CallOptions::new().error_on_trip(true);
    let r = b.call_with(options, runs.err(TestError::Boom)).await;
    assert_eq!(
        r,
        Err(TestError::Boom),
        "a failure that does not trip is returned as is"
    );
    let r = b.call_with(options, runs.err(TestError::Boom)).await;
    let tripped = BreakerError::Tripped {
        service: "sem-eot-true",
    };
    assert_eq!(r, Err(TestError::Breaker(tripped.clone())));
    assert_eq!(
        tripped.to_string(),
        "sem-eot-true: Failures threshold reached, circuit breaker opened"
    );
    assert_eq!(runs.count(), 2, "the tripping call ran");
    // Rejections are `Open` either way.
    open_error(b.call_with(options, runs.ok(1)).await);

    tokio::time::advance(RESET).await;
    let r = b.call_with(options, runs.err(TestError::Boom)).await;
    let failed = BreakerError::TrialFailed {
        service: "sem-eot-true",
    };
    assert_eq!(r, Err(TestError::Breaker(failed.clone())));
    assert_eq!(
        failed.to_string(),
        "sem-eot-true: Trial call failed, circuit breaker opened"
    );
    assert_eq!(runs.count(), 3);
    // A successful trial is unaffected.
    tokio::time::advance(RESET).await;
    assert_eq!(b.call_with(options, runs.ok(9)).await, Ok(9));
}

// ---------------------------------------------------------------------------------------
// Exclusion

#[tokio::test(start_paused = true)]
async fn excluded_errors_are_returned_unchanged_and_count_as_success() {
    let b = breaker("sem-exclude", 3).await;
    let runs = Runs::default();
    let options = CallOptions::new().exclude(not_found);
    for _ in 0..2 {
        let r = b.call_with(options, runs.err(TestError::Boom)).await;
        assert_eq!(r, Err(TestError::Boom));
    }
    assert_eq!(b.fail_counter().await.unwrap(), 2);
    let r = b.call_with(options, runs.err(TestError::NotFound)).await;
    assert_eq!(r, Err(TestError::NotFound));
    assert_eq!(
        b.fail_counter().await.unwrap(),
        0,
        "an excluded error resets the counter"
    );
    for _ in 0..10 {
        let r = b.call_with(options, runs.err(TestError::NotFound)).await;
        assert_eq!(r, Err(TestError::NotFound));
    }
    assert_eq!(b.state().await.unwrap(), State::Closed);
    // The exclusion belongs to the call site: elsewhere the same error counts.
    let _ = b.call(runs.err(TestError::NotFound)).await;
    assert_eq!(b.fail_counter().await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_excluded_error_closes_half_open() {
    let b = breaker("sem-exclude-trial", 1).await;
    let runs = Runs::default();
    trip(&b, &runs).await;
    tokio::time::advance(RESET).await;
    let options = CallOptions::new().exclude(not_found).error_on_trip(true);
    let r = b.call_with(options, runs.err(TestError::NotFound)).await;
    assert_eq!(r, Err(TestError::NotFound));
    assert_eq!(b.state().await.unwrap(), State::Closed);
    // And an excluded error never trips, even at fail_max = 1 with error_on_trip.
    let r = b.call_with(options, runs.err(TestError::NotFound)).await;
    assert_eq!(r, Err(TestError::NotFound));
    assert_eq!(b.state().await.unwrap(), State::Closed);
    // While open, an excluded-error call is rejected like any other.
    b.open().await.unwrap();
    open_error(b.call_with(options, runs.err(TestError::NotFound)).await);
}

// ---------------------------------------------------------------------------------------
// skip_breaker

#[tokio::test(start_paused = true)]
async fn skip_breaker_runs_when_open_and_counts_nothing() {
    let b = breaker("sem-skip", 2).await;
    let runs = Runs::default();
    let r = infuse::skip_breaker(b.call(runs.err(TestError::Boom))).await;
    assert_eq!(r, Err(TestError::Boom));
    let r = infuse::skip_breaker(b.call(runs.err(TestError::Boom))).await;
    assert_eq!(r, Err(TestError::Boom));
    assert_eq!(
        b.fail_counter().await.unwrap(),
        0,
        "skipped calls are not counted"
    );
    assert_eq!(b.state().await.unwrap(), State::Closed);

    trip(&b, &runs).await;
    let before = runs.count();
    let r = infuse::skip_breaker(async {
        assert!(infuse::is_skipping());
        b.call(runs.ok(5)).await
    })
    .await;
    assert_eq!(r, Ok(5));
    assert_eq!(
        runs.count(),
        before + 1,
        "a skipped call runs even when open"
    );
    assert_eq!(b.state().await.unwrap(), State::Open);
    assert!(!infuse::is_skipping());
    // Outside the scope the breaker applies again.
    open_error(b.call(runs.ok(1)).await);

    // Skipped successes do not close a half-open breaker either.
    tokio::time::advance(RESET).await;
    let r = infuse::skip_breaker(b.call(runs.ok(6))).await;
    assert_eq!(r, Ok(6));
    assert_eq!(b.state().await.unwrap(), State::Open);
    assert_eq!(b.fail_counter().await.unwrap(), 2);
}

// ---------------------------------------------------------------------------------------
// The Permit API and verdicts

#[tokio::test(start_paused = true)]
async fn permit_api_and_verdicts() {
    let b = breaker("sem-permit", 2).await;
    let permit = b.acquire().await.unwrap();
    assert!(!permit.is_trial());
    permit.success().await;

    let permit = b.acquire().await.unwrap();
    assert_eq!(permit.failure(&TestError::Boom).await, Verdict::Counted);
    assert_eq!(b.fail_counter().await.unwrap(), 1);
    let permit = b.acquire().await.unwrap();
    assert_eq!(permit.failure(&"any Debug error").await, Verdict::Tripped);
    assert_eq!(b.state().await.unwrap(), State::Open);

    let err = b.acquire().await.expect_err("rejected while open");
    assert!(
        matches!(
            err,
            BreakerError::Open {
                service: "sem-permit",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.retry_after(), Some(RESET));

    tokio::time::advance(RESET).await;
    let trial = b.acquire().await.unwrap();
    assert!(trial.is_trial());
    assert_eq!(trial.failure(&TestError::Boom).await, Verdict::TrialFailed);
    assert_eq!(b.state().await.unwrap(), State::Open);

    tokio::time::advance(RESET).await;
    let trial = b.acquire().await.unwrap();
    assert!(trial.is_trial());
    // While the trial is out, nobody else gets in, and the error says why.
    let busy = b
        .acquire()
        .await
        .expect_err("rejected while the trial is out");
    assert!(
        matches!(
            busy,
            BreakerError::TrialInFlight {
                service: "sem-permit",
                ..
            }
        ),
        "{busy:?}"
    );
    assert!(
        busy.to_string().contains("a trial call is in flight"),
        "{busy}"
    );
    let hint = busy.retry_after().expect("a retry hint");
    assert!(
        hint > Duration::ZERO && hint <= Duration::from_secs(30),
        "{hint:?}"
    );
    trial.success().await;
    assert_eq!(b.state().await.unwrap(), State::Closed);
    assert_eq!(b.fail_counter().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_unreported_permit_counts_nothing() {
    let b = breaker("sem-permit-drop", 1).await;
    drop(b.acquire().await.unwrap());
    assert_eq!(b.fail_counter().await.unwrap(), 0);
    assert_eq!(b.state().await.unwrap(), State::Closed);

    b.half_open().await.unwrap();
    let trial = b.acquire().await.unwrap();
    assert!(trial.is_trial());
    drop(trial); // cancelled: no verdict, the slot is given back
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::HalfOpen);
    assert_eq!(snapshot.trial_remaining, None);
    assert_eq!(snapshot.success_counter, 0);
    let next = b.acquire().await.unwrap();
    assert!(next.is_trial(), "the next call becomes the trial");
    next.success().await;
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_trial_verdict_dropped_unawaited_frees_the_slot() {
    let b = breaker_with(
        "sem-verdict-dropped",
        ServiceOverride::new().fail_max(1).reset_timeout(RESET),
    )
    .await;
    b.half_open().await.unwrap();
    let trial = b.acquire().await.unwrap();
    assert!(trial.is_trial());
    // Cancelled before the verdict reached the store (as a timeout around a slow store
    // round trip would): no verdict, but the slot must not stay taken.
    drop(trial.failure(&TestError::Boom));
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::HalfOpen);
    assert_eq!(
        snapshot.trial_remaining, None,
        "the slot was not given back"
    );
    let next = b.acquire().await.expect("the next call becomes the trial");
    assert!(next.is_trial());
    drop(next.success());
    let next = b.acquire().await.expect("the next call becomes the trial");
    assert!(next.is_trial());
    next.success().await;
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn guarded_calls_are_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let b = breaker("sem-send", 1).await;
    let runs = Runs::default();
    // The futures of `call`, `call_with`, `acquire` and the verdicts can be spawned.
    let r = tokio::spawn({
        let b = b.clone();
        let runs = runs.clone();
        async move { assert_send(b.call(runs.err(TestError::Boom))).await }
    })
    .await
    .unwrap();
    assert_eq!(r, Err(TestError::Boom));
    let permit = assert_send(b.acquire()).await;
    open_error(permit.map(|_| 0).map_err(TestError::from));
    b.half_open().await.unwrap();
    let trial = b.acquire().await.unwrap();
    assert_eq!(
        assert_send(trial.failure(&TestError::Boom)).await,
        Verdict::TrialFailed
    );
    b.half_open().await.unwrap();
    assert_send(b.acquire().await.unwrap().success()).await;
    let options = CallOptions::new().exclude(not_found);
    assert_eq!(assert_send(b.call_with(options, runs.ok(1))).await, Ok(1));
}

// ---------------------------------------------------------------------------------------
// Stale results

#[tokio::test(start_paused = true)]
async fn a_stale_failure_is_ignored_and_does_not_retrip() {
    let b = breaker("sem-stale-failure", 2).await;
    let runs = Runs::default();
    let slow = b.acquire().await.unwrap(); // admitted while closed
    trip(&b, &runs).await;
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(slow.failure(&TestError::Boom).await, Verdict::Ignored);
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.fail_counter, 2, "not counted");
    assert_eq!(
        snapshot.open_remaining,
        Some(RESET - Duration::from_secs(4)),
        "the timeout was not restarted"
    );

    // Through `call`: a call admitted while closed, failing once others tripped it.
    b.close().await.unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let slow = tokio::spawn({
        let b = b.clone();
        let options = CallOptions::new().error_on_trip(true);
        async move {
            b.call_with(options, async move {
                released.await.unwrap();
                Err::<u32, _>(TestError::Boom)
            })
            .await
        }
    });
    tokio::task::yield_now().await; // the slow call is admitted and waits
    trip(&b, &runs).await;
    release.send(()).unwrap();
    let r = slow.await.unwrap();
    assert_eq!(r, Err(TestError::Boom), "a stale failure is not a trip");
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.fail_counter, 2);
    assert_eq!(snapshot.open_remaining, Some(RESET));
}

#[tokio::test(start_paused = true)]
async fn a_stale_failure_does_not_count_in_the_next_closed_period() {
    let b = breaker("sem-stale-next-period", 2).await;
    let runs = Runs::default();
    let slow = b.acquire().await.unwrap();
    trip(&b, &runs).await;
    tokio::time::advance(RESET).await;
    assert_eq!(b.call(runs.ok(1)).await, Ok(1)); // the trial closes it again
    assert_eq!(slow.failure(&TestError::Boom).await, Verdict::Ignored);
    assert_eq!(b.fail_counter().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_success_admitted_before_a_trip_does_not_close() {
    let b = breaker("sem-stale-success", 2).await;
    let runs = Runs::default();
    let first = b.acquire().await.unwrap();
    let second = b.acquire().await.unwrap();
    trip(&b, &runs).await;
    first.success().await;
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.fail_counter, 2);
    // Nor once half-open with a trial out.
    tokio::time::advance(RESET).await;
    let trial = b.acquire().await.unwrap();
    assert!(trial.is_trial());
    second.success().await;
    assert_eq!(b.state().await.unwrap(), State::HalfOpen);
    trial.success().await;
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_trial_overtaken_by_a_manual_transition_is_ignored() {
    let b = breaker("sem-stale-trial", 1).await;
    b.half_open().await.unwrap();
    let trial = b.acquire().await.unwrap();
    assert!(trial.is_trial());
    b.open().await.unwrap();
    trial.success().await;
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(
        snapshot.state,
        State::Open,
        "a stale trial success must not close"
    );
    assert_eq!(snapshot.open_remaining, Some(RESET));

    b.half_open().await.unwrap();
    let trial = b.acquire().await.unwrap();
    b.close().await.unwrap();
    assert_eq!(trial.failure(&TestError::Boom).await, Verdict::Ignored);
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!((snapshot.state, snapshot.fail_counter), (State::Closed, 0));
}

// ---------------------------------------------------------------------------------------
// Error types

#[tokio::test(start_paused = true)]
async fn io_errors_carry_the_breaker_error() {
    let b = breaker("sem-io", 1).await;
    b.open().await.unwrap();
    let r: std::io::Result<()> = b.call(async { Ok(()) }).await;
    let err = r.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Other);
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<BreakerError>())
        .expect("a BreakerError inside");
    assert_eq!(inner.service(), "sem-io");
    assert_eq!(inner.retry_after(), Some(RESET));
}
