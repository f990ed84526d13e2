//! Backpressure rules against real HTTP downstreams on loopback: call timeouts that
//! really cancel, slow calls, failure rates over a window with a minimum volume,
//! ignored errors, and the backoff of the open time.

use std::time::Duration;

use infuse::{Breaker, BreakerError, CallOptions, ServiceOverride, State};
use infuse_tests::support::calls::{breaker_with, eventually};
use infuse_tests::support::http::{get, Downstream};

/// An HTTP client's error: a 5xx status, an I/O error, or the breaker's.
#[derive(Debug, Clone, PartialEq)]
enum HttpError {
    Status(u16),
    Io(std::io::ErrorKind),
    Breaker(BreakerError),
}

impl From<BreakerError> for HttpError {
    fn from(error: BreakerError) -> Self {
        HttpError::Breaker(error)
    }
}

/// `GET path` through the breaker: 5xx statuses and I/O errors fail.
async fn call(breaker: &Breaker, target: &Downstream, path: &str) -> Result<u16, HttpError> {
    call_with(breaker, CallOptions::new(), target, path).await
}

async fn call_with(
    breaker: &Breaker,
    options: CallOptions<HttpError>,
    target: &Downstream,
    path: &str,
) -> Result<u16, HttpError> {
    let addr = target.addr();
    breaker
        .call_with(options, async move {
            match get(addr, path).await {
                Ok(status) if status >= 500 => Err(HttpError::Status(status)),
                Ok(status) => Ok(status),
                Err(error) => Err(HttpError::Io(error.kind())),
            }
        })
        .await
}

/// A 50 % failure-rate rule over at least `min_calls` calls, with the consecutive rule
/// out of the way.
fn half_failing_trips(min_calls: u32) -> ServiceOverride {
    ServiceOverride::new()
        .fail_max(1000)
        .failure_rate(50)
        .min_calls(min_calls)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Waits (real time) until the breaker's store says `state`.
async fn reaches(breaker: &Breaker, state: State) -> bool {
    eventually(Duration::from_secs(3), ms(10), async || {
        breaker.state().await.unwrap() == state
    })
    .await
}

#[tokio::test]
async fn a_timed_out_call_is_cancelled_and_counts_as_a_failure() {
    let target = Downstream::start().await;
    let breaker = breaker_with(
        "bp-timeout",
        ServiceOverride::new().fail_max(3).timeout(ms(100)),
    )
    .await;
    for n in 1..=3 {
        let started = tokio::time::Instant::now();
        let outcome = call(&breaker, &target, "/hang").await;
        assert_eq!(
            outcome,
            Err(HttpError::Breaker(BreakerError::Timeout {
                service: "bp-timeout",
                after: ms(100)
            })),
            "call {n}"
        );
        assert!(started.elapsed() >= ms(100));
    }
    // The downstream saw every connection dropped: the calls were really cancelled.
    assert!(
        eventually(Duration::from_secs(2), ms(10), async || target.dropped()
            == 3)
        .await,
        "dropped connections: {}",
        target.dropped()
    );
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    let rejected = call(&breaker, &target, "/hang").await;
    assert!(matches!(
        rejected,
        Err(HttpError::Breaker(BreakerError::Open { .. }))
    ));
    assert_eq!(
        target.requests(),
        3,
        "a rejected call never reaches the target"
    );
}

#[tokio::test]
async fn timeouts_stop_a_slow_target_long_before_it_answers() {
    // The scenario: a target answering in 2 s. Without a timeout nothing trips;
    // with one, `fail_max` timeouts open the breaker.
    let target = Downstream::start().await;
    let breaker = breaker_with(
        "bp-slow-target",
        ServiceOverride::new().fail_max(5).timeout(ms(200)),
    )
    .await;
    let mut calls = Vec::new();
    for _ in 0..50 {
        calls.push(call(&breaker, &target, "/slow/2000"));
    }
    // Every call ends with `Timeout`: none waited for the 2 s answer.
    let outcomes = futures::future::join_all(calls).await;
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, Err(HttpError::Breaker(BreakerError::Timeout { .. })))));
    assert!(reaches(&breaker, State::Open).await);
    let before = target.requests();
    for _ in 0..20 {
        let rejected = call(&breaker, &target, "/slow/2000").await;
        assert!(matches!(
            rejected,
            Err(HttpError::Breaker(BreakerError::Open { .. }))
        ));
    }
    assert_eq!(target.requests(), before);
}

#[tokio::test]
async fn slow_calls_return_their_result_and_trip_the_slow_call_rate() {
    let target = Downstream::start().await;
    let breaker = breaker_with(
        "bp-slow-rate",
        ServiceOverride::new()
            .slow_call(ms(50))
            .slow_call_rate(50)
            .min_calls(6),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(call(&breaker, &target, "/ok").await, Ok(200));
    }
    for _ in 0..2 {
        assert_eq!(
            call(&breaker, &target, "/slow/80").await,
            Ok(200),
            "a slow call keeps its result"
        );
    }
    tokio::time::sleep(ms(300)).await; // past a flush: 5 calls, below min_calls
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    assert_eq!(call(&breaker, &target, "/slow/80").await, Ok(200));
    // 6 calls, 3 slow: 50 %.
    assert!(reaches(&breaker, State::Open).await);
}

#[tokio::test]
async fn a_half_failing_target_trips_the_failure_rate_where_consecutive_failures_flap() {
    let target = Downstream::start().await;
    // pybreaker's rule alone: failures never come twice in a row, so it never trips.
    let consecutive =
        breaker_with("bp-flaky-consecutive", ServiceOverride::new().fail_max(2)).await;
    for _ in 0..40 {
        let _ = call(&consecutive, &target, "/flaky").await;
    }
    assert_eq!(consecutive.state().await.unwrap(), State::Closed);
    assert_eq!(target.requests(), 40);

    let rate = breaker_with(
        "bp-flaky-rate",
        ServiceOverride::new()
            .fail_max(2)
            .failure_rate(50)
            .min_calls(10),
    )
    .await;
    let mut reached = 0;
    for _ in 0..40 {
        match call(&rate, &target, "/flaky").await {
            Err(HttpError::Breaker(error)) if error.is_rejection() => {}
            _ => reached += 1,
        }
        tokio::time::sleep(ms(5)).await;
    }
    assert_eq!(rate.state().await.unwrap(), State::Open);
    // In memory a failure is reported at once, successes within 100 ms: the breaker
    // opens on the 10th call (5 failures in 10), or on the 11th when the 10th success
    // had not been reported yet.
    assert!(
        (10..=11).contains(&reached),
        "{reached} calls reached the target"
    );
}

#[tokio::test]
async fn no_rate_decision_below_min_calls() {
    let target = Downstream::start().await;
    let breaker = breaker_with("bp-min-calls", half_failing_trips(10)).await;
    for _ in 0..9 {
        assert!(call(&breaker, &target, "/flaky").await.is_err());
        let _ = call(&breaker, &target, "/flaky").await; // 200: the other half
    }
    // 18 calls, 9 failed: 50 % over min_calls — trips at the flush.
    assert!(reaches(&breaker, State::Open).await);

    let quiet = breaker_with("bp-min-calls-quiet", half_failing_trips(10)).await;
    for _ in 0..9 {
        let _ = quiet
            .call(async { Err::<(), _>(HttpError::Status(500)) })
            .await;
    }
    tokio::time::sleep(ms(300)).await; // several flushes
    assert_eq!(
        quiet.state().await.unwrap(),
        State::Closed,
        "9 calls: below min_calls"
    );
    let _ = quiet
        .call(async { Err::<(), _>(HttpError::Status(500)) })
        .await;
    assert!(
        reaches(&quiet, State::Open).await,
        "the 10th call reaches min_calls"
    );
}

#[tokio::test]
async fn ignored_errors_count_as_neither_success_nor_failure() {
    let breaker = breaker_with(
        "bp-ignore",
        ServiceOverride::new()
            .fail_max(3)
            .failure_rate(50)
            .min_calls(4),
    )
    .await;
    let unavailable = || async { Err::<u16, _>(HttpError::Status(503)) };
    let ignoring = CallOptions::new().ignore(|e: &HttpError| matches!(e, HttpError::Status(503)));
    for _ in 0..20 {
        let outcome = breaker.call_with(ignoring, unavailable()).await;
        assert_eq!(
            outcome,
            Err(HttpError::Status(503)),
            "the call's own error comes back"
        );
    }
    tokio::time::sleep(ms(300)).await;
    let snapshot = breaker.snapshot().await.unwrap();
    assert_eq!((snapshot.state, snapshot.fail_counter), (State::Closed, 0));
    // The same errors, not ignored, trip it.
    for _ in 0..4 {
        let _ = breaker.call(unavailable()).await;
    }
    assert!(reaches(&breaker, State::Open).await);
}

#[tokio::test(start_paused = true)]
async fn failures_age_out_of_the_window() {
    let breaker = breaker_with(
        "bp-window",
        half_failing_trips(20).window(Duration::from_secs(10)),
    )
    .await;
    let fail = || breaker.call(async { Err::<(), _>(HttpError::Status(500)) });
    for _ in 0..15 {
        let _ = fail().await;
    }
    tokio::time::sleep(Duration::from_secs(11)).await; // the 15 failures leave the window
    for _ in 0..10 {
        let _ = fail().await;
    }
    tokio::time::sleep(ms(200)).await;
    assert_eq!(
        breaker.state().await.unwrap(),
        State::Closed,
        "10 calls in the window"
    );
    for _ in 0..10 {
        let _ = fail().await;
    }
    tokio::time::sleep(ms(200)).await;
    assert_eq!(
        breaker.state().await.unwrap(),
        State::Open,
        "20 calls, all failed"
    );
}

#[tokio::test(start_paused = true)]
async fn each_failed_trial_doubles_the_open_time_up_to_the_bound() {
    let reset = Duration::from_secs(1);
    let breaker = breaker_with(
        "bp-backoff",
        ServiceOverride::new()
            .fail_max(1)
            .reset_timeout(reset)
            .max_reset_timeout(Duration::from_secs(4)),
    )
    .await;
    let fail = || breaker.call(async { Err::<(), _>(HttpError::Status(500)) });
    let open_for = async || breaker.snapshot().await.unwrap().open_remaining.unwrap();
    let _ = fail().await;
    assert_eq!(
        open_for().await,
        reset,
        "a first trip opens for reset_timeout"
    );
    for expected in [2, 4, 4, 4] {
        tokio::time::sleep(open_for().await).await;
        let trial = fail().await;
        assert_eq!(trial, Err(HttpError::Status(500)));
        let left = open_for().await;
        let expected = Duration::from_secs(expected);
        assert!(
            left <= expected && left >= expected * 4 / 5,
            "open for {left:?}, expected {expected:?} less at most 20 % jitter"
        );
    }
    tokio::time::sleep(open_for().await).await;
    assert_eq!(breaker.call(async { Ok::<_, HttpError>(1) }).await, Ok(1));
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    let _ = fail().await;
    assert_eq!(open_for().await, reset, "a close resets the backoff");
}

#[tokio::test(start_paused = true)]
async fn a_trial_is_bounded_by_trial_timeout() {
    let breaker = breaker_with(
        "bp-trial-timeout",
        ServiceOverride::new()
            .fail_max(1)
            .reset_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .trial_timeout(ms(300)),
    )
    .await;
    breaker.open().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = tokio::time::Instant::now();
    let trial = breaker
        .call(std::future::pending::<Result<(), HttpError>>())
        .await;
    assert_eq!(
        trial,
        Err(HttpError::Breaker(BreakerError::Timeout {
            service: "bp-trial-timeout",
            after: ms(300)
        }))
    );
    assert_eq!(started.elapsed(), ms(300));
    assert_eq!(
        breaker.state().await.unwrap(),
        State::Open,
        "the trial failed"
    );
}

#[test]
fn a_timeout_reads_well_and_maps_to_504() {
    let error = BreakerError::Timeout {
        service: "users",
        after: ms(2000),
    };
    assert_eq!(
        error.to_string(),
        "users: call timed out after 2000 ms and was cancelled"
    );
    assert_eq!(error.status_code(), 504);
    assert!(!error.is_rejection());
    assert_eq!(error.retry_after(), None);
}

#[tokio::test]
async fn with_error_on_trip_the_call_that_reaches_the_rate_says_so() {
    let breaker = breaker_with("bp-error-on-trip", half_failing_trips(4)).await;
    let options = CallOptions::new().error_on_trip(true);
    let failing = || async { Err::<(), _>(HttpError::Status(500)) };
    for _ in 0..3 {
        let outcome = breaker.call_with(options, failing()).await;
        assert_eq!(outcome, Err(HttpError::Status(500)));
    }
    let tripping = breaker.call_with(options, failing()).await;
    assert_eq!(
        tripping,
        Err(HttpError::Breaker(BreakerError::Tripped {
            service: "bp-error-on-trip"
        }))
    );
}

/// Outside any tokio runtime (an executor of another kind), rate rules still apply in
/// memory: failures report the counts at once, successes with them.
#[test]
fn rate_rules_apply_without_a_tokio_runtime() {
    futures::executor::block_on(async {
        let breaker = breaker_with("bp-no-runtime", half_failing_trips(10)).await;
        for _ in 0..1000 {
            let ok = breaker.call(async { Ok::<_, HttpError>(()) }).await;
            assert_eq!(ok, Ok(()));
        }
        for _ in 0..999 {
            let _ = breaker
                .call(async { Err::<(), _>(HttpError::Status(500)) })
                .await;
        }
        assert_eq!(breaker.state().await.unwrap(), State::Closed, "999 of 1999");
        let _ = breaker
            .call(async { Err::<(), _>(HttpError::Status(500)) })
            .await;
        assert_eq!(breaker.state().await.unwrap(), State::Open, "1000 of 2000");
    });
}
