//! Many tasks through one breaker on a multi-threaded runtime: consistent counters, one
//! trial at a time, cancelled or panicking trials freeing the slot, and no lock held
//! across the guarded call. Nothing here asserts on timing; the waits are coordination
//! (barriers, `Notify`), bounded by generous timeouts so a bug fails instead of hanging.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use infuse::{BreakerError, CallOptions, Listener, ServiceOverride, State, Verdict};
use infuse_tests::support::calls::{breaker_with as breaker, TestError, R};
use tokio::sync::{Barrier, Notify};

/// Bounds every wait on coordination, so that a deadlock fails the test.
const PATIENCE: Duration = Duration::from_secs(10);

/// Rejected without running: open, or half-open with the trial taken.
fn is_open(r: &R) -> bool {
    matches!(r, Err(TestError::Breaker(e)) if e.is_rejection())
}

async fn patiently<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {PATIENCE:?}"))
}

/// Counts state changes to open.
#[derive(Default)]
struct Trips(AtomicUsize);

impl Listener for Trips {
    fn on_state_change(&self, _: &str, _: State, to: State) {
        if to == State::Open {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_failures_and_successes_keep_counters_consistent() {
    let b = breaker("cc-counters", ServiceOverride::new().fail_max(1000)).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (b, runs) = (b.clone(), runs.clone());
            tokio::spawn(async move {
                b.call(async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Err::<u32, _>(TestError::Boom)
                })
                .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Err(TestError::Boom));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 200);
    assert_eq!(
        b.fail_counter().await.unwrap(),
        200,
        "every failure counted once"
    );
    assert_eq!(b.state().await.unwrap(), State::Closed);

    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.call(async move { Ok::<u32, TestError>(i) }).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), Ok(i as u32));
    }
    assert_eq!(b.fail_counter().await.unwrap(), 0);
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_failures_trip_exactly_once() {
    let b = breaker("cc-trip-once", ServiceOverride::new().fail_max(50)).await;
    let trips = Arc::new(Trips::default());
    b.add_listener(trips.clone());
    // All 200 are admitted while closed, then all fail: 50 count, the 50th trips, the
    // other 150 are stale.
    let barrier = Arc::new(Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (b, barrier) = (b.clone(), barrier.clone());
            tokio::spawn(async move {
                let permit = b.acquire().await.expect("admitted while closed");
                barrier.wait().await;
                permit.failure(&TestError::Boom).await
            })
        })
        .collect();
    let mut verdicts = Vec::new();
    for task in tasks {
        verdicts.push(patiently("verdicts", task).await.unwrap());
    }
    let count = |v: Verdict| verdicts.iter().filter(|&&x| x == v).count();
    assert_eq!(count(Verdict::Tripped), 1, "{verdicts:?}");
    assert_eq!(count(Verdict::Counted), 49, "{verdicts:?}");
    assert_eq!(count(Verdict::Ignored), 150, "{verdicts:?}");
    assert_eq!(trips.0.load(Ordering::SeqCst), 1);
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Open);
    assert_eq!(snapshot.fail_counter, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_tripping_call_gets_the_trip_error() {
    let b = breaker("cc-trip-error", ServiceOverride::new().fail_max(10)).await;
    let barrier = Arc::new(Barrier::new(100));
    let options = CallOptions::new().error_on_trip(true);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (b, barrier) = (b.clone(), barrier.clone());
            tokio::spawn(async move {
                b.call_with(options, async {
                    barrier.wait().await;
                    Err::<u32, _>(TestError::Boom)
                })
                .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(patiently("results", task).await.unwrap());
    }
    let tripped = results
        .iter()
        .filter(|r| matches!(r, Err(TestError::Breaker(BreakerError::Tripped { .. }))))
        .count();
    let own = results
        .iter()
        .filter(|r| **r == Err(TestError::Boom))
        .count();
    assert_eq!((tripped, own), (1, 99), "{results:?}");
    assert_eq!(b.fail_counter().await.unwrap(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trial_at_a_time_in_half_open() {
    for via_timeout in [false, true] {
        let service = if via_timeout {
            "cc-one-trial-timeout"
        } else {
            "cc-one-trial-manual"
        };
        let b = breaker(
            service,
            ServiceOverride::new()
                .fail_max(1)
                .reset_timeout(Duration::from_millis(100)),
        )
        .await;
        let _ = b.call(async { Err::<u32, _>(TestError::Boom) }).await;
        assert_eq!(b.state().await.unwrap(), State::Open);
        if via_timeout {
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            b.half_open().await.unwrap();
        }

        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let trial = tokio::spawn({
            let (b, started, release) = (b.clone(), started.clone(), release.clone());
            async move {
                b.call(async move {
                    started.notify_one();
                    release.notified().await;
                    Ok::<u32, TestError>(1)
                })
                .await
            }
        });
        patiently("trial start", started.notified()).await;

        let bodies = Arc::new(AtomicUsize::new(0));
        let others: Vec<_> = (0..50)
            .map(|_| {
                let (b, bodies) = (b.clone(), bodies.clone());
                tokio::spawn(async move {
                    b.call(async {
                        bodies.fetch_add(1, Ordering::SeqCst);
                        Ok::<u32, TestError>(2)
                    })
                    .await
                })
            })
            .collect();
        for other in others {
            let r = patiently("others", other).await.unwrap();
            assert!(is_open(&r), "{service}: {r:?}");
        }
        assert_eq!(
            bodies.load(Ordering::SeqCst),
            0,
            "{service}: only the trial runs"
        );
        assert_eq!(b.state().await.unwrap(), State::HalfOpen);

        release.notify_one();
        assert_eq!(patiently("trial", trial).await.unwrap(), Ok(1));
        assert_eq!(b.state().await.unwrap(), State::Closed);
        assert_eq!(b.call(async { Ok::<u32, TestError>(3) }).await, Ok(3));
    }
}

/// Opens `b` and forces half-open, then checks that the next call is the trial and
/// that nothing was counted by the abandoned one.
async fn next_call_is_the_trial(b: &infuse::Breaker, what: &str) {
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::HalfOpen, "{what}: {snapshot:?}");
    assert_eq!(snapshot.trial_remaining, None, "{what}: slot still taken");
    assert_eq!(
        snapshot.fail_counter, 1,
        "{what}: the abandoned trial counted"
    );
    assert_eq!(
        snapshot.success_counter, 0,
        "{what}: the abandoned trial counted"
    );
    let permit = b.acquire().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(permit.is_trial(), "{what}");
    permit.success().await;
    assert_eq!(b.state().await.unwrap(), State::Closed, "{what}");
}

async fn half_open(service: &'static str) -> infuse::Breaker {
    // The default trial lease (30 s) is far longer than the test: only a release frees it.
    let b = breaker(service, ServiceOverride::new().fail_max(1)).await;
    let _ = b.call(async { Err::<u32, _>(TestError::Boom) }).await;
    b.half_open().await.unwrap();
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_trial_frees_the_slot() {
    let b = half_open("cc-abort").await;
    let started = Arc::new(Notify::new());
    let trial = tokio::spawn({
        let (b, started) = (b.clone(), started.clone());
        async move {
            b.call(async move {
                started.notify_one();
                std::future::pending::<R>().await
            })
            .await
        }
    });
    patiently("trial start", started.notified()).await;
    assert!(is_open(&b.call(async { Ok::<u32, TestError>(0) }).await));
    trial.abort();
    assert!(trial.await.unwrap_err().is_cancelled());
    next_call_is_the_trial(&b, "abort").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_trial_frees_the_slot() {
    let b = half_open("cc-timeout").await;
    let r = tokio::time::timeout(
        Duration::from_millis(50),
        b.call(std::future::pending::<R>()),
    )
    .await;
    assert!(r.is_err(), "the trial must still be pending");
    next_call_is_the_trial(&b, "timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_trial_future_frees_the_slot() {
    let b = half_open("cc-drop").await;
    // Polled once (the trial is taken and the body starts), then dropped.
    assert!(b.call(std::future::pending::<R>()).now_or_never().is_none());
    next_call_is_the_trial(&b, "drop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_trial_frees_the_slot() {
    let b = half_open("cc-panic").await;
    let trial = tokio::spawn({
        let b = b.clone();
        async move {
            b.call(async {
                tokio::task::yield_now().await;
                if b.service() == "cc-panic" {
                    panic!("the trial panics");
                }
                Ok::<u32, TestError>(0)
            })
            .await
        }
    });
    assert!(trial.await.unwrap_err().is_panic());
    next_call_is_the_trial(&b, "panic").await;

    // A panicking ordinary call is not counted either.
    let b2 = b.clone();
    let call = tokio::spawn(async move {
        b2.call(async { panic!("an ordinary call panics") as R })
            .await
    });
    assert!(call.await.unwrap_err().is_panic());
    assert_eq!(b.fail_counter().await.unwrap(), 0);
    assert_eq!(b.state().await.unwrap(), State::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lock_is_held_across_the_guarded_call() {
    let b = breaker("cc-overlap", ServiceOverride::new().fail_max(3)).await;
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    // Each call waits inside its body for the other one to be inside too: if calls
    // were serialised, the barrier would never open.
    let barrier = Arc::new(Barrier::new(2));
    let calls: Vec<_> = (0..2)
        .map(|i| {
            let (b, inside, most, barrier) =
                (b.clone(), inside.clone(), most.clone(), barrier.clone());
            tokio::spawn(async move {
                b.call(async move {
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    barrier.wait().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    if i == 0 {
                        Ok(i)
                    } else {
                        Err(TestError::Boom)
                    }
                })
                .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(patiently("overlapping calls", call).await.unwrap());
    }
    assert_eq!(results, vec![Ok(0), Err(TestError::Boom)]);
    assert_eq!(most.load(Ordering::SeqCst), 2, "the two calls overlapped");

    // A guarded call may go through its own breaker again (no re-entrancy deadlock),
    // and inspect or control it.
    let nested = patiently(
        "nested call",
        b.call(async {
            let state = b.state().await.unwrap();
            let inner: R = b.call(async { Ok(7) }).await;
            assert_eq!(state, State::Closed);
            inner
        }),
    )
    .await;
    assert_eq!(nested, Ok(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_churn_there_is_never_more_than_one_trial() {
    // `fail_max = 1`: every failure of a closed breaker trips it, so the churn goes through
    // many trips and trials whatever the interleaving (with 3 consecutive failures
    // needed, some schedules interleaved a success between every two failures, never
    // tripped, and so never exercised a trial).
    let b = breaker(
        "cc-churn",
        ServiceOverride::new()
            .fail_max(1)
            .reset_timeout(Duration::from_millis(1)),
    )
    .await;
    let trials_inside = Arc::new(AtomicUsize::new(0));
    let most_trials = Arc::new(AtomicUsize::new(0));
    let trials_run = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8u32)
        .map(|t| {
            let b = b.clone();
            let (inside, most, run) = (
                trials_inside.clone(),
                most_trials.clone(),
                trials_run.clone(),
            );
            tokio::spawn(async move {
                for i in 0..300u32 {
                    let Ok(permit) = b.acquire().await else {
                        // Rejected: let the 1 ms open timeout pass.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    };
                    let trial = permit.is_trial();
                    if trial {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        run.fetch_add(1, Ordering::SeqCst);
                    }
                    tokio::task::yield_now().await;
                    if trial {
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                    if (i + t) % 3 == 0 {
                        let _ = permit.failure(&TestError::Boom).await;
                    } else {
                        permit.success().await;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        patiently("churn", task).await.unwrap();
    }
    assert!(trials_run.load(Ordering::SeqCst) > 0, "no trial ran");
    assert_eq!(most_trials.load(Ordering::SeqCst), 1, "two trials at once");
    // The breaker still works: it recovers with successes.
    b.close().await.unwrap();
    assert_eq!(b.call(async { Ok::<u32, TestError>(1) }).await, Ok(1));
    let snapshot = b.snapshot().await.unwrap();
    assert_eq!((snapshot.state, snapshot.fail_counter), (State::Closed, 0));
}
