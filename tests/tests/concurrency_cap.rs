//! `max_concurrent` in one process (the in-memory store: the cap per process): calls
//! beyond the cap wait up to `max_wait`, then are rejected with `Saturated`; every way a
//! call ends gives its permit back.

use std::sync::Arc;
use std::time::Duration;

use infuse::{Breaker, BreakerError, Config, Registry, ServiceOverride};
use tokio::sync::Notify;

async fn capped(service: &'static str, settings: ServiceOverride) -> Breaker {
    let registry = Registry::new(Config::in_memory().service(service, settings))
        .await
        .unwrap();
    registry.breaker(service)
}

/// A call that runs until `release` is told, through `breaker`.
fn held(
    breaker: &Breaker,
    release: &Arc<Notify>,
) -> tokio::task::JoinHandle<Result<(), BreakerError>> {
    let (breaker, release) = (breaker.clone(), release.clone());
    tokio::spawn(async move {
        breaker
            .call(async move {
                release.notified().await;
                Ok::<_, BreakerError>(())
            })
            .await
    })
}

async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn calls_beyond_the_cap_are_rejected_at_once_by_default() {
    let users = capped("cap-basic", ServiceOverride::new().max_concurrent(2)).await;
    let release = Arc::new(Notify::new());
    let (a, b) = (held(&users, &release), held(&users, &release));
    settle().await;
    let third: Result<(), BreakerError> = users.call(async { Ok(()) }).await;
    let error = third.unwrap_err();
    assert_eq!(
        error,
        BreakerError::Saturated {
            service: "cap-basic"
        }
    );
    assert!(error.is_rejection());
    assert_eq!(error.status_code(), 503);
    release.notify_waiters();
    assert_eq!(a.await.unwrap(), Ok(()));
    assert_eq!(b.await.unwrap(), Ok(()));
    let after: Result<(), BreakerError> = users.call(async { Ok(()) }).await;
    assert_eq!(after, Ok(()), "permits given back");
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_up_to_max_wait_for_a_permit() {
    let settings = ServiceOverride::new()
        .max_concurrent(1)
        .max_wait(Duration::from_millis(100));
    let users = capped("cap-wait", settings).await;
    let release = Arc::new(Notify::new());
    let first = held(&users, &release);
    settle().await;
    let waiting = tokio::spawn({
        let users = users.clone();
        async move { users.call(async { Ok::<_, BreakerError>(7) }).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    release.notify_waiters();
    assert_eq!(first.await.unwrap(), Ok(()));
    assert_eq!(
        waiting.await.unwrap(),
        Ok(7),
        "a permit came back within max_wait"
    );

    let first = held(&users, &release);
    settle().await;
    let started = tokio::time::Instant::now();
    let late: Result<(), BreakerError> = users.call(async { Ok(()) }).await;
    assert!(matches!(late, Err(BreakerError::Saturated { .. })));
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(100),
        "waited max_wait"
    );
    release.notify_waiters();
    first.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropped_timed_out_failed_and_manual_calls_give_their_permit_back() {
    let settings = ServiceOverride::new()
        .max_concurrent(1)
        .fail_max(100)
        .timeout(Duration::from_millis(50));
    let users = capped("cap-ends", settings).await;
    let ok = || async { Ok::<_, BreakerError>(()) };

    // Dropped mid-call.
    let release = Arc::new(Notify::new());
    let dropped = held(&users, &release);
    settle().await;
    dropped.abort();
    let _ = dropped.await;
    assert_eq!(users.call(ok()).await, Ok(()));

    // Timed out.
    let timed_out: Result<(), BreakerError> = users.call(std::future::pending()).await;
    assert!(matches!(timed_out, Err(BreakerError::Timeout { .. })));
    assert_eq!(users.call(ok()).await, Ok(()));

    // Failed.
    let failed: Result<(), std::io::Error> =
        users.call(async { Err(std::io::Error::other("x")) }).await;
    assert!(failed.is_err());
    assert_eq!(users.call(ok()).await, Ok(()));

    // By hand: the permit holds a permit of the cap until it is reported or dropped.
    let permit = users.acquire().await.unwrap();
    assert!(matches!(
        users.acquire().await,
        Err(BreakerError::Saturated { .. })
    ));
    permit.success().await;
    let permit = users.acquire().await.unwrap();
    drop(permit);
    assert_eq!(users.call(ok()).await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_listener_hears_the_rejection_and_the_attribute_takes_the_setting() {
    #[derive(Default)]
    struct Rejections(std::sync::atomic::AtomicU32);
    impl infuse::Listener for Rejections {
        fn on_rejected(&self, _: &str) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[infuse::circuit_breaker(service = "cap-attr", max_concurrent = 1)]
    async fn slow(release: Arc<Notify>) -> Result<(), BreakerError> {
        release.notified().await;
        Ok(())
    }

    let breaker = infuse::breaker("cap-attr");
    let rejections = Arc::new(Rejections::default());
    breaker.add_listener(rejections.clone());
    let release = Arc::new(Notify::new());
    let first = tokio::spawn(slow(release.clone()));
    settle().await;
    assert!(matches!(
        slow(release.clone()).await,
        Err(BreakerError::Saturated {
            service: "cap-attr"
        })
    ));
    assert_eq!(rejections.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    release.notify_waiters();
    first.await.unwrap().unwrap();
    assert_eq!(breaker.settings().max_concurrent, Some(1));
}

#[tokio::test(start_paused = true)]
async fn a_call_that_panics_gives_its_permit_back() {
    let users = capped("cap-panic", ServiceOverride::new().max_concurrent(1)).await;
    let panicking = tokio::spawn({
        let users = users.clone();
        async move {
            let _: Result<(), BreakerError> = users
                .call(async {
                    tokio::task::yield_now().await;
                    panic!("the call panics while it holds the permit")
                })
                .await;
        }
    });
    assert!(panicking.await.unwrap_err().is_panic());
    assert_eq!(users.concurrency().unwrap().in_use, 0);
    assert_eq!(
        users.call(async { Ok::<_, BreakerError>(()) }).await,
        Ok(())
    );
}
