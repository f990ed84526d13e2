//! Redis unavailable — killed, hung (SIGSTOP), restarted empty, flushed, holding garbage:
//! calls never wait on Redis longer than the call deadline, nothing panics or stays
//! stuck; lost records are recreated from the processes' view, and on recovery the
//! newer generation wins.

use infuse_tests::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use infuse::{BreakerError, Config, Registry, State, StorageError, UnavailablePolicy};
use support::calls;
use support::redis_server::RedisServer;

const SERVICE: &str = "users";
const CALL_DEADLINE: Duration = Duration::from_millis(25);
/// Scheduling slack on a loaded 2-core machine; the bound asserted is deadline + this.
const SLACK: Duration = Duration::from_millis(250);

fn config(server: &RedisServer, fail_max: u32, reset: Duration) -> Config {
    support::redis_service_config(server, "faults", SERVICE, fail_max, reset)
        .redis_call_timeout(CALL_DEADLINE)
        .redis_admin_timeout(Duration::from_millis(300))
        .resync_interval(Duration::from_millis(200))
}

/// A registry of its own (as a process has) on `server`.
async fn start_registry(server: &RedisServer, fail_max: u32, reset: Duration) -> Registry {
    Registry::new(config(server, fail_max, reset))
        .await
        .expect("registry")
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let start = Instant::now();
    let value = f.await;
    (value, start.elapsed())
}

async fn fail(registry: &Registry) -> (Result<(), BreakerError>, Duration) {
    timed(calls::fail(&registry.breaker(SERVICE))).await
}

async fn succeed(registry: &Registry) -> (Result<(), BreakerError>, Duration) {
    timed(calls::succeed(&registry.breaker(SERVICE))).await
}

/// Polls `f` every 10 ms for up to 5 s.
async fn eventually(f: impl AsyncFnMut() -> bool) -> bool {
    calls::eventually(Duration::from_secs(5), Duration::from_millis(10), f).await
}

fn assert_bounded(waited: Duration, what: &str) {
    assert!(
        waited <= CALL_DEADLINE + SLACK,
        "{what} waited {waited:?} on Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_redis_costs_at_most_one_deadline_then_nothing() {
    let server = RedisServer::start();
    let registry = start_registry(&server, 3, Duration::from_millis(300)).await;
    succeed(&registry).await.0.unwrap();
    server.pause();
    // Healthy calls in the closed state never touch Redis: no wait at all.
    for _ in 0..100 {
        let (result, waited) = succeed(&registry).await;
        assert!(result.is_ok());
        assert_bounded(waited, "a healthy call");
    }
    // Failures: the first waits at most the deadline, then the local fallback answers.
    let mut worst = Duration::ZERO;
    for _ in 0..3 {
        let (result, waited) = fail(&registry).await;
        assert!(result.is_err());
        worst = worst.max(waited);
    }
    assert_bounded(worst, "a failure");
    // The local fallback, seeded from the shared view, trips on its own.
    let (rejected, waited) = succeed(&registry).await;
    assert!(
        matches!(rejected, Err(BreakerError::Open { .. })),
        "{rejected:?}"
    );
    assert_bounded(waited, "a rejection");
    // Trials after the timeout are local too, and bounded.
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (trial, waited) = succeed(&registry).await;
    assert!(trial.is_ok(), "{trial:?}");
    assert_bounded(waited, "a trial");
    server.resume();
    // Back to the fleet's state: Redis never saw the local trip.
    assert!(
        eventually(async || registry.breaker(SERVICE).state().await.ok() == Some(State::Closed))
            .await
    );
    let _ = fail(&registry).await;
    assert!(
        eventually(async || registry.breaker(SERVICE).fail_counter().await.ok() == Some(1)).await,
        "failures reach Redis again after it resumes"
    );
}

/// The rule on recovery: Redis's record is the fleet's authority. A process that
/// tripped its local fallback while Redis hung (it was merely cut off: Redis lost
/// nothing) keeps that protection for itself until its own open time ends; the fleet's
/// record never takes it in, and the other processes never reject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_on_the_fallback_stays_with_its_process() {
    let server = RedisServer::start();
    let a = start_registry(&server, 2, Duration::from_millis(1500)).await;
    let b = start_registry(&server, 2, Duration::from_millis(1500)).await;
    assert!(succeed(&a).await.0.is_ok() && succeed(&b).await.0.is_ok());
    server.pause();
    // `a` trips its local fallback while Redis hangs…
    let _ = fail(&a).await;
    let _ = fail(&a).await;
    assert!(matches!(
        succeed(&a).await.0,
        Err(BreakerError::Open { .. })
    ));
    server.resume();
    // …and once `a` is back on Redis, the fleet's record is still closed: `b` never
    // rejects, and `a` keeps rejecting on its own until its open time ends.
    let back = tokio::time::Instant::now();
    assert!(
        eventually(async || a.breaker(SERVICE).state().await.ok() == Some(State::Closed)).await,
        "the fleet's record took in a's local trip"
    );
    assert!(
        matches!(succeed(&a).await.0, Err(BreakerError::Open { .. }))
            || back.elapsed() > Duration::from_millis(1000),
        "a forgot its own protection as soon as Redis answered"
    );
    for _ in 0..50 {
        assert!(
            succeed(&b).await.0.is_ok(),
            "b rejected because of a's trip"
        );
    }
    assert_eq!(b.breaker(SERVICE).state().await.unwrap(), State::Closed);
    // After its open time `a` follows the fleet again.
    assert!(
        eventually(async || succeed(&a).await.0.is_ok()).await,
        "a never came back to the fleet's closed breaker"
    );
    let history = server
        .cli(&[
            "LRANGE",
            &format!("infuse:{{faults/{SERVICE}}}:history"),
            "0",
            "-1",
        ])
        .unwrap_or_default();
    assert!(
        !history.contains("open"),
        "the fleet's history shows a trip: {history}"
    );
}

/// The fleet's record says open, Redis hangs, the local fallback's trial closes the
/// breaker for this process. When Redis resumes the record is still the fleet's (a local
/// close does not overwrite it), but its open time has passed: the next call takes the
/// fleet's trial, which closes it for everyone — the healthy breaker does not flap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_local_close_the_fleet_closes_through_its_own_trial() {
    let server = RedisServer::start();
    let registry = start_registry(&server, 1, Duration::from_millis(300)).await;
    let _ = fail(&registry).await; // trips the fleet record (open)
    let breaker = registry.breaker(SERVICE);
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    let stale = breaker.snapshot().await.unwrap().generation;
    server.pause();
    tokio::time::sleep(Duration::from_millis(350)).await;
    // The first trial waits on hung Redis at most the deadline, then runs locally.
    let mut closed = false;
    for _ in 0..20 {
        if succeed(&registry).await.0.is_ok() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "the local fallback never closed the breaker");
    server.resume();
    assert!(
        eventually(async || {
            breaker
                .snapshot()
                .await
                .is_ok_and(|s| s.state == State::Closed && s.generation > stale)
        })
        .await,
        "the fleet record kept its stale open state"
    );
    for _ in 0..50 {
        assert!(
            succeed(&registry).await.0.is_ok(),
            "a healthy breaker flipped after recovery"
        );
    }
}

/// Redis restarted empty: the record is recreated from the first writer's view, so an
/// open breaker stays open rather than adopting "closed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_then_restarted_empty() {
    let mut server = RedisServer::start();
    let registry = start_registry(&server, 2, Duration::from_secs(60)).await;
    let _ = fail(&registry).await;
    server.kill();
    for _ in 0..20 {
        let (_, waited) = fail(&registry).await;
        assert_bounded(waited, "a call with Redis dead");
    }
    let breaker = registry.breaker(SERVICE);
    // While degraded, inspection answers from this process's local fallback.
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    server.restart();
    // Recovers without user action: scripts reloaded, the record recreated from the
    // view (still open), and the fleet sees it.
    let other = start_registry(&server, 2, Duration::from_secs(60)).await;
    assert!(
        eventually(async || other.breaker(SERVICE).state().await.ok() == Some(State::Open)).await,
        "the restarted Redis adopted closed"
    );
    assert!(matches!(
        succeed(&registry).await.0,
        Err(BreakerError::Open { .. })
    ));
    breaker.close().await.unwrap();
    let _ = fail(&registry).await;
    let _ = fail(&registry).await;
    assert!(
        eventually(async || other.breaker(SERVICE).state().await.ok() == Some(State::Open)).await,
        "the breaker trips through the restarted Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_and_script_flush_recover_without_user_action() {
    let server = RedisServer::start();
    let a = start_registry(&server, 2, Duration::from_secs(60)).await;
    let b = start_registry(&server, 2, Duration::from_secs(60)).await;
    let _ = fail(&a).await;
    let _ = fail(&a).await;
    assert!(eventually(async || succeed(&b).await.0.is_err()).await);
    server.flushall();
    // The resync finds the record gone and recreates it from the processes' view: the
    // breaker stays open, in Redis too.
    assert!(
        eventually(async || server
            .cli(&["EXISTS", "infuse:{faults/users}:state"])
            .is_some_and(|o| o.trim() == "1"))
        .await,
        "the record was not recreated"
    );
    assert_eq!(a.breaker(SERVICE).state().await.unwrap(), State::Open);
    assert!(succeed(&a).await.0.is_err() && succeed(&b).await.0.is_err());
    a.breaker(SERVICE).close().await.unwrap();
    server.cli(&["SCRIPT", "FLUSH"]).unwrap();
    assert!(eventually(async || succeed(&b).await.0.is_ok()).await);
    let _ = fail(&b).await;
    let _ = fail(&a).await;
    assert!(
        eventually(async || a.breaker(SERVICE).state().await.ok() == Some(State::Open)).await,
        "failures after FLUSHALL + SCRIPT FLUSH trip the fleet breaker again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_keys_is_an_error_never_a_panic() {
    let server = RedisServer::start();
    let registry = start_registry(&server, 2, Duration::from_secs(60)).await;
    let breaker = registry.breaker(SERVICE);
    let key = "infuse:{faults/users}:state";
    for garbage in [
        &["SET", key, "garbage"][..],
        &[
            "HSET", key, "inc", "1", "gen", "x", "seq", "1", "state", "0", "fail", "0", "succ", "0",
        ][..],
        &[
            "HSET", key, "inc", "1", "gen", "1", "seq", "1", "state", "7", "fail", "0", "succ", "0",
        ][..],
    ] {
        server.cli(&["DEL", key]).unwrap();
        server.cli(garbage).unwrap();
        // Calls go on under the policy; inspection says what is wrong.
        let (result, waited) = fail(&registry).await;
        assert!(result.is_err());
        assert_bounded(waited, "a call on garbage");
        match breaker.state().await {
            Err(StorageError::Corrupt(detail)) => assert!(detail.contains("infuse"), "{detail}"),
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
        // An operator's close() repairs the record.
        breaker.close().await.unwrap();
        assert_eq!(breaker.state().await.unwrap(), State::Closed);
    }
    // Wrong type on the trial key too.
    server
        .cli(&["HSET", "infuse:{faults/users}:trial", "a", "b"])
        .unwrap();
    breaker.open().await.unwrap();
    breaker.half_open().await.unwrap();
    let (_, waited) = succeed(&registry).await;
    assert_bounded(waited, "a trial on garbage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_rejects_and_fail_open_passes_while_redis_is_down() {
    let mut server = RedisServer::start();
    let closed = Registry::new(
        config(&server, 5, Duration::from_secs(60))
            .on_redis_unavailable(UnavailablePolicy::FailClosed),
    )
    .await
    .unwrap();
    let open = Registry::new(
        config(&server, 1, Duration::from_secs(60))
            .on_redis_unavailable(UnavailablePolicy::FailOpen),
    )
    .await
    .unwrap();
    // Trip the shared breaker, so fail-open has something to ignore.
    let _ = fail(&open).await;
    assert!(eventually(async || succeed(&open).await.0.is_err()).await);
    server.kill();
    // A failure discovers the outage (bounded); then each policy applies at once.
    let _ = fail(&closed).await;
    let ran = Arc::new(AtomicUsize::new(0));
    assert!(
        eventually(async || {
            let ran = ran.clone();
            let breaker = closed.breaker(SERVICE);
            let r = breaker
                .call(async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, BreakerError>(())
                })
                .await;
            matches!(r, Err(BreakerError::Open { .. }))
        })
        .await,
        "fail closed rejects"
    );
    // Fail open: the next trial attempt finds Redis dead, then calls pass.
    assert!(
        eventually(async || succeed(&open).await.0.is_ok()).await,
        "fail open lets calls through"
    );
    for _ in 0..10 {
        let (result, waited) = fail(&open).await;
        assert!(
            matches!(
                result,
                Err(BreakerError::Tripped {
                    service: calls::DOWNSTREAM
                })
            ),
            "not counted, passed through"
        );
        assert_bounded(waited, "a fail-open call");
    }
    server.restart();
}

/// A registry whose breaker trips on a 50 % failure rate over at least 10 calls (the
/// consecutive rule out of the way).
async fn start_rate_registry(server: &RedisServer) -> Registry {
    let rates = infuse::ServiceOverride::new()
        .fail_max(1000)
        .failure_rate(50)
        .min_calls(10);
    Registry::new(config(server, 1000, Duration::from_secs(60)).service(SERVICE, rates))
        .await
        .expect("registry")
}

/// Redis hangs: the local fallback applies the same rate rule to this process's own
/// counts, and trips on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_applies_the_rate_rule_to_local_counts() {
    let server = RedisServer::start();
    let a = start_rate_registry(&server).await;
    server.pause();
    for _ in 0..10 {
        let (_, waited) = fail(&a).await;
        assert_bounded(waited, "a failing call while Redis hangs");
    }
    assert!(
        eventually(async || matches!(succeed(&a).await.0, Err(BreakerError::Open { .. }))).await,
        "10 local failures out of 10 calls did not trip the fallback"
    );
    server.resume();
}

/// Counts made while degraded stay in the fallback: on recovery they are not added to
/// the fleet's window. (A batch sent just before Redis stopped answering may still run
/// when it resumes: Redis executes what its connection queued.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_counts_are_not_pushed_into_the_fleets_window() {
    let server = RedisServer::start();
    let a = start_rate_registry(&server).await;
    for _ in 0..6 {
        assert_eq!(succeed(&a).await.0, Ok(()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // reported to Redis
    server.pause();
    let _ = fail(&a).await; // its report times out: `a` degrades (the report may run later)
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..6 {
        let _ = fail(&a).await; // counted by the fallback only
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.resume();
    let b = start_rate_registry(&server).await;
    // `a` has recovered once it answers from Redis's record, as `b` does (its fallback's
    // record has an incarnation of its own).
    assert!(
        eventually(async || {
            let fleet = b.breaker(SERVICE).snapshot().await.map(|s| s.version);
            let seen = a.breaker(SERVICE).snapshot().await.map(|s| s.version);
            matches!((fleet, seen), (Ok(f), Ok(s)) if f.incarnation == s.incarnation)
        })
        .await,
        "a never recovered"
    );
    for _ in 0..4 {
        let _ = fail(&a).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await; // reported
                                                          // The fleet's window holds at most 6 successes and 5 failures (45 %): closed. Had the
                                                          // fallback's 6 failures been pushed, 11 failures in 17 calls would have tripped it.
    let fleet = b.breaker(SERVICE).snapshot().await.unwrap();
    assert_eq!(fleet.state, State::Closed, "{fleet:?}");
    assert_eq!(a.breaker(SERVICE).state().await.unwrap(), State::Closed);
}

/// After a short outage a process reconciles only the breakers it used on its own
/// meanwhile (and any the change log says changed), not all of them: with a fleet
/// recovering at once, one script per breaker per process would flood the Redis that
/// just came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_a_short_outage_costs_a_few_scripts_not_one_per_breaker() {
    const B: usize = 200;
    let server = RedisServer::start();
    let registry = start_registry(&server, 3, Duration::from_secs(60)).await;
    for i in 0..B {
        let name: &'static str = Box::leak(format!("svc-{i}").into_boxed_str());
        calls::succeed(&registry.breaker(name)).await.unwrap();
    }
    succeed(&registry).await.0.unwrap();
    // The registrations' change-log notes (sent without waiting) are behind us.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.command_calls("evalsha") + server.command_calls("eval");
    server.pause();
    // A failure waits out the deadline: the registry switches to its local fallback.
    let _ = fail(&registry).await;
    server.resume();
    let _ = fail(&registry).await;
    assert!(
        eventually(async || registry.breaker(SERVICE).fail_counter().await.ok() == Some(1)).await,
        "failures reach Redis again after it resumes"
    );
    let sent = server.command_calls("evalsha") + server.command_calls("eval") - before;
    assert!(
        sent < 20,
        "{sent} scripts to recover (one per breaker would be {B})"
    );
}
