//! Fleet semantics through Redis: several registries (each with its own connections and
//! subscription, as separate processes have) share one breaker per service.

use infuse_tests::support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use infuse::{BreakerError, Config, Registry, ServiceOverride, State};
use support::calls;
use support::redis_server::RedisServer;

const SERVICE: &str = "users";

fn config(server: &RedisServer, fail_max: u32, reset: Duration) -> Config {
    support::redis_service_config(server, "fleet-test", SERVICE, fail_max, reset)
}

async fn fleet(server: &RedisServer, n: usize, fail_max: u32, reset: Duration) -> Vec<Registry> {
    let mut registries = Vec::new();
    for _ in 0..n {
        registries.push(
            Registry::new(config(server, fail_max, reset))
                .await
                .unwrap(),
        );
    }
    registries
}

async fn fail(registry: &Registry) -> Result<(), BreakerError> {
    calls::fail(&registry.breaker(SERVICE)).await
}

async fn succeed(registry: &Registry) -> Result<(), BreakerError> {
    calls::succeed(&registry.breaker(SERVICE)).await
}

/// Polls `f` every 5 ms for up to 2 s.
async fn eventually(f: impl AsyncFnMut() -> bool) -> bool {
    calls::eventually(Duration::from_secs(2), Duration::from_millis(5), f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_anywhere_count_towards_one_fleet_counter() {
    let server = RedisServer::start();
    let fleet = fleet(&server, 3, 3, Duration::from_secs(60)).await;
    let _ = fail(&fleet[0]).await;
    let _ = fail(&fleet[1]).await;
    assert_eq!(fleet[2].breaker(SERVICE).fail_counter().await.unwrap(), 2);
    let _ = fail(&fleet[2]).await; // the third failure, in a third process, trips
    for registry in &fleet {
        assert_eq!(
            registry.breaker(SERVICE).state().await.unwrap(),
            State::Open
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_anywhere_resets_the_fleet_counter() {
    let server = RedisServer::start();
    let fleet = fleet(&server, 2, 3, Duration::from_secs(60)).await;
    let _ = fail(&fleet[0]).await;
    let _ = fail(&fleet[0]).await;
    // fleet[1] learns through pub/sub that the counter is not zero, and resets it once.
    assert!(
        eventually(async || {
            succeed(&fleet[1]).await.unwrap();
            fleet[1].breaker(SERVICE).fail_counter().await.unwrap() == 0
        })
        .await
    );
    let _ = fail(&fleet[0]).await;
    let _ = fail(&fleet[0]).await;
    assert_eq!(
        fleet[0].breaker(SERVICE).state().await.unwrap(),
        State::Closed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_reaches_every_process_without_them_asking() {
    let server = RedisServer::start();
    let fleet = fleet(&server, 4, 2, Duration::from_secs(60)).await;
    let _ = fail(&fleet[0]).await;
    let _ = fail(&fleet[0]).await;
    let ran = Arc::new(AtomicUsize::new(0));
    for registry in &fleet[1..] {
        let ran = ran.clone();
        let rejected = eventually(async || {
            let ran = ran.clone();
            let r: Result<(), BreakerError> = registry
                .breaker(SERVICE)
                .call(async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .await;
            matches!(r, Err(BreakerError::Open { .. }))
        })
        .await;
        assert!(rejected, "a process never learned of the trip");
    }
    let before = server.total_calls();
    for registry in &fleet[1..] {
        for _ in 0..100 {
            assert!(succeed(registry).await.is_err());
        }
    }
    assert_eq!(
        server.total_calls(),
        before,
        "rejections must not touch Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_trial_for_the_whole_fleet() {
    let server = RedisServer::start();
    let reset = Duration::from_millis(200);
    let fleet = fleet(&server, 4, 1, reset).await;
    let _ = fail(&fleet[0]).await;
    tokio::time::sleep(reset + Duration::from_millis(50)).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Notify::new());
    let mut calls = Vec::new();
    for registry in &fleet {
        for _ in 0..10 {
            let (breaker, ran, release) = (registry.breaker(SERVICE), ran.clone(), release.clone());
            calls.push(tokio::spawn(async move {
                breaker
                    .call(async move {
                        ran.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        Ok::<_, BreakerError>(())
                    })
                    .await
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "one trial for 40 callers in 4 processes"
    );
    release.notify_waiters();
    let mut admitted = 0;
    for call in calls {
        if call.await.unwrap().is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 1);
    for registry in &fleet {
        let closed = eventually(async || succeed(registry).await.is_ok()).await;
        assert!(
            closed,
            "every process recovers after the trial closed the breaker"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booting_a_process_never_overwrites_the_fleet_state() {
    let server = RedisServer::start();
    let first = Registry::new(config(&server, 1, Duration::from_secs(60)))
        .await
        .unwrap();
    let _ = fail(&first).await;
    let late = Registry::new(config(&server, 1, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(late.breaker(SERVICE).state().await.unwrap(), State::Open);
    assert!(
        succeed(&late).await.is_err(),
        "a booting process respects the open breaker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_never_meet() {
    let server = RedisServer::start();
    let prod = Registry::new(config(&server, 1, Duration::from_secs(60)).namespace("prod"))
        .await
        .unwrap();
    let staging = Registry::new(config(&server, 1, Duration::from_secs(60)).namespace("staging"))
        .await
        .unwrap();
    let _ = fail(&prod).await;
    assert_eq!(prod.breaker(SERVICE).state().await.unwrap(), State::Open);
    assert_eq!(
        staging.breaker(SERVICE).state().await.unwrap(),
        State::Closed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_calls_send_no_redis_commands() {
    let server = RedisServer::start();
    let registry = Registry::new(
        config(&server, 5, Duration::from_secs(60)).resync_interval(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let breaker = registry.breaker(SERVICE);
    succeed(&registry).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // let boot-time traffic settle
    let mut deltas = Vec::new();
    for calls in [100, 1_000, 10_000] {
        let before = server.total_calls();
        for _ in 0..calls {
            breaker
                .call(async { Ok::<_, BreakerError>(()) })
                .await
                .unwrap();
        }
        deltas.push(server.total_calls() - before);
    }
    assert_eq!(
        deltas,
        [0, 0, 0],
        "Redis commands per batch of 100 / 1,000 / 10,000 healthy calls"
    );
    // After failures, the first success resets the fleet counter once, not per call.
    let _ = fail(&registry).await;
    let before = server.command_calls("evalsha");
    for _ in 0..1_000 {
        succeed(&registry).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.command_calls("evalsha") - before, 1);
    assert_eq!(breaker.fail_counter().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_errors_name_the_address_never_the_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }; // nothing listens there now
    let url = format!("redis://:hunter2@127.0.0.1:{port}/3");
    let error =
        Registry::new(Config::redis(&url).redis_connect_timeout(Duration::from_millis(300)))
            .await
            .err()
            .expect("unreachable Redis must fail init");
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let debug = format!("{:?}", Config::redis(&url));
    assert!(!debug.contains("hunter2"), "{debug}");

    // Opting in to start degraded: init succeeds and calls work under the policy.
    let registry = Registry::new(
        Config::redis(&url)
            .redis_connect_timeout(Duration::from_millis(300))
            .start_degraded(true),
    )
    .await
    .unwrap();
    assert!(succeed(&registry).await.is_ok());
}

#[tokio::test]
async fn invalid_urls_and_namespaces_are_init_errors() {
    let error = Registry::new(Config::redis("postgres://nope"))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("redis://"), "{error}");
    let error = Registry::new(Config::redis("redis://127.0.0.1:1/0").namespace("a{b}"))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("namespace"), "{error}");
}

/// The minimal ACL documented in the guide (fleet chapter) is enough for everything infuse does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_minimal_acl_is_enough() {
    let server = RedisServer::start();
    let guide = include_str!("../../infuse/src/guide/fleet.md");
    let acl = guide
        .lines()
        .find(|l| l.trim_start().starts_with("ACL SETUSER infuse "))
        .expect("the guide documents the ACL");
    let mut args: Vec<String> = acl.split_whitespace().map(str::to_owned).collect();
    for arg in &mut args {
        if arg == ">CHANGE-ME" {
            *arg = ">s3cret".to_owned();
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    server.cli(&args).expect("ACL SETUSER");
    let url = format!("redis://infuse:s3cret@127.0.0.1:{}/0", server.port());
    let make = || {
        Config::redis(&url)
            .namespace("acl")
            .service(
                SERVICE,
                ServiceOverride::new()
                    .fail_max(1)
                    .reset_timeout(Duration::from_millis(200)),
            )
            .env_overrides(false)
    };
    let a = Registry::new(make()).await.unwrap();
    let b = Registry::new(make()).await.unwrap();
    let _ = fail(&a).await;
    assert!(
        eventually(async || succeed(&b).await.is_err()).await,
        "pub/sub under the ACL"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        eventually(async || succeed(&b).await.is_ok()).await,
        "trial under the ACL"
    );
    let breaker = a.breaker(SERVICE);
    breaker.open().await.unwrap();
    breaker.close().await.unwrap();
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    let denied = server.cli(&["ACL", "LOG"]).unwrap();
    assert!(
        !denied.contains("infuse"),
        "commands were denied:\n{denied}"
    );
}

/// With a rate rule, a failing call whose process's counts alone reach the rule reports
/// them itself, so with `error_on_trip` it learns that it opened the fleet's breaker, and
/// a second process sees the breaker open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_trip_in_redis_is_reported_by_the_call_that_caused_it() {
    let server = RedisServer::start();
    let rates = ServiceOverride::new()
        .fail_max(1000)
        .failure_rate(50)
        .min_calls(4);
    let config = || support::redis_config(&server, "rate-trip").service("users", rates);
    let a = Registry::new(config()).await.unwrap();
    let b = Registry::new(config()).await.unwrap();
    let options = infuse::CallOptions::new().error_on_trip(true);
    let users = a.breaker("users");
    let failing = || async {
        Err::<(), _>(BreakerError::Tripped {
            service: calls::DOWNSTREAM,
        })
    };
    for _ in 0..3 {
        let own = users.call_with(options, failing()).await.unwrap_err();
        assert_eq!(own.service(), calls::DOWNSTREAM);
    }
    let tripping = users.call_with(options, failing()).await.unwrap_err();
    assert_eq!(tripping, BreakerError::Tripped { service: "users" });
    let other = b.breaker("users");
    assert!(
        calls::eventually(
            Duration::from_secs(3),
            Duration::from_millis(10),
            async || { matches!(calls::succeed(&other).await, Err(BreakerError::Open { .. })) }
        )
        .await,
        "the other process never saw the trip"
    );
}

/// Rate-rule reports are not broadcast: other processes need to learn of a trip (and of
/// the fail counter's 0 → non-zero edge), not of every batch of counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_rate_reports_publish_nothing() {
    use futures::StreamExt;

    let server = RedisServer::start();
    let rates = ServiceOverride::new().failure_rate(50).min_calls(1000);
    let config = support::redis_config(&server, "quiet-reports").service("users", rates);
    let registry = Registry::new(config).await.unwrap();
    let users = registry.breaker("users");
    assert_eq!(users.state().await.unwrap(), State::Closed); // its record exists
    let client = redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe("infuse:events:quiet-reports")
        .await
        .unwrap();
    let mut messages = pubsub.into_on_message();

    let reports_before = server.command_calls("evalsha");
    for _ in 0..5 {
        for _ in 0..100 {
            assert_eq!(calls::succeed(&users).await, Ok(()));
        }
        tokio::time::sleep(Duration::from_millis(120)).await; // one report each
    }
    let reports = server.command_calls("evalsha") - reports_before;
    assert!(
        reports >= 4,
        "{reports} scripts: the calls were not reported"
    );
    let quiet = tokio::time::timeout(Duration::from_millis(50), messages.next()).await;
    assert!(quiet.is_err(), "a healthy report was published: {quiet:?}");

    // The first failure makes the fail counter non-zero: that edge is published.
    let _ = calls::fail(&users).await;
    let edge = tokio::time::timeout(Duration::from_secs(2), messages.next()).await;
    assert!(
        matches!(edge, Ok(Some(_))),
        "the 0 → 1 edge was not published"
    );
}

/// The commands of the scripts the test above does not reach (the rate rules' window:
/// `TIME`, `HGETALL`, `HDEL`; a backed-off re-open) are in the documented ACL too.
#[tokio::test]
async fn the_documented_minimal_acl_covers_rates_and_backoff() {
    use infuse::store::redis::{Deadlines, RedisStore};
    use infuse::store::{Command, Counts, Store, Target, TrialToken};
    use infuse::Settings;

    let server = RedisServer::start();
    let acl = include_str!("../../infuse/src/guide/fleet.md")
        .lines()
        .find(|l| l.trim_start().starts_with("ACL SETUSER infuse "))
        .expect("the guide documents the ACL")
        .replace(">CHANGE-ME", ">s3cret");
    server
        .cli(&acl.split_whitespace().collect::<Vec<_>>())
        .expect("ACL SETUSER");
    let url = format!("redis://infuse:s3cret@127.0.0.1:{}/0", server.port());
    let conn = redis::aio::ConnectionManager::new(redis::Client::open(url).unwrap())
        .await
        .unwrap();
    let deadlines = Deadlines {
        call: Duration::from_secs(1),
        admin: Duration::from_secs(1),
    };
    let store = RedisStore::new(conn, "acl", Duration::from_secs(60), deadlines);
    store.load_scripts().await.unwrap();
    let s = Settings::DEFAULT
        .reset_timeout(Duration::from_millis(100))
        .max_reset_timeout(Duration::from_millis(400))
        .failure_rate(50)
        .min_calls(100)
        .window(Settings::MIN_WINDOW);
    let apply = async |command| store.apply(SERVICE, &s, command).await.unwrap();
    let generation = apply(Command::Register { seed: None })
        .await
        .snapshot
        .generation;
    let report = |instance| Command::RecordCalls {
        generation,
        counts: Counts {
            calls: 1,
            failures: 1,
            slow: 0,
            tail: 1,
        },
        instance,
    };
    assert!(apply(report(1)).await.applied);
    // Instance 1 leaves the window: the next report deletes its field.
    tokio::time::sleep(Settings::MIN_WINDOW + Duration::from_millis(200)).await;
    assert!(apply(report(2)).await.applied);
    apply(Command::Force(Target::HalfOpen)).await;
    let token = TrialToken::new();
    let lease = Duration::from_secs(30);
    assert!(apply(Command::AcquireTrial { token, lease }).await.applied);
    let reopened = apply(Command::RecordTrial {
        token,
        success: false,
    })
    .await;
    assert_eq!(reopened.snapshot.state, State::Open, "{reopened:?}");
    // The change log: a touch, and a pruning read that forgets a service whose time is
    // up (the store's first read prunes).
    store
        .touch(&[SERVICE], Duration::from_secs(1))
        .await
        .unwrap();
    server
        .cli(&["ZADD", "infuse:{acl}:listed", "1", SERVICE])
        .unwrap();
    store.changes(1, None).await.unwrap();
    let left = server
        .cli(&["ZSCORE", "infuse:{acl}:changes", SERVICE])
        .unwrap();
    assert!(left.trim().is_empty(), "not pruned: {left:?}");
    let denied = server.cli(&["ACL", "LOG"]).unwrap();
    assert!(
        !denied.contains("infuse"),
        "commands were denied:\n{denied}"
    );
}

/// Each transition is appended to the breaker's history by the script that made it, with
/// its reason and the process (as it announces itself): what `infuse explain` shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_write_each_transition_to_the_history() {
    let server = RedisServer::start();
    let registry = Registry::new(
        support::redis_service_config(&server, "history", SERVICE, 1, Duration::from_millis(100))
            .resync_interval(Duration::from_millis(200)),
    )
    .await
    .unwrap();
    let breaker = registry.breaker(SERVICE);
    let _ = calls::fail(&breaker).await; // closed -> open
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _ = calls::fail(&breaker).await; // the trial: open -> half-open -> open
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(calls::succeed(&breaker).await.is_ok()); // open -> half-open -> closed
    breaker.force_open().await.unwrap(); // closed -> forced-open
    breaker.force_open().await.unwrap(); // no change: nothing written

    let entries = server
        .cli(&["LRANGE", "infuse:{history/users}:history", "0", "-1"])
        .unwrap();
    let entries: Vec<Vec<&str>> = entries
        .lines()
        .map(|line| line.split(' ').collect())
        .collect();
    let changes: Vec<(&str, &str, &str)> = entries.iter().map(|e| (e[1], e[2], e[4])).collect();
    assert_eq!(
        changes,
        [
            ("closed", "forced-open", "manual"),
            ("half-open", "closed", "trial_succeeded"),
            ("open", "half-open", "open_elapsed"),
            ("half-open", "open", "trial_failed"),
            ("open", "half-open", "open_elapsed"),
            ("closed", "open", "consecutive_failures"),
        ]
    );
    // Newest first, on Redis's clock; the generation after each change (taking the
    // trial slot keeps it).
    let times: Vec<u64> = entries.iter().map(|e| e[0].parse().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let generations: Vec<u64> = entries.iter().map(|e| e[3].parse().unwrap()).collect();
    assert_eq!(generations, [5, 4, 3, 3, 2, 2]);
    // The process is the one the namespace's index of processes lists.
    let announced = calls::eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        async || {
            server
                .cli(&["ZRANGE", "infuse:{history}:processes", "0", "-1"])
                .is_some_and(|ids| ids.trim() == entries[0][5])
        },
    )
    .await;
    assert!(announced, "history names {}", entries[0][5]);
    assert!(entries.iter().all(|e| e[5] == entries[0][5]));
}

/// A process announces itself with its resync's read of the change log: written whole
/// when what it says changes, renewed every few reads otherwise, and rewritten if the
/// key is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_announcement_rides_on_the_resync_and_is_rewritten_only_on_change() {
    let server = RedisServer::start();
    let interval = Duration::from_millis(100);
    let registry = Registry::new(
        support::redis_service_config(&server, "announce", SERVICE, 1, Duration::from_secs(60))
            .resync_interval(interval),
    )
    .await
    .unwrap();
    let breaker = registry.breaker(SERVICE);
    assert!(calls::succeed(&breaker).await.is_ok());
    let key = || -> Option<String> {
        let id = server.cli(&["ZRANGE", "infuse:{announce}:processes", "0", "-1"])?;
        let id = id.trim();
        (!id.is_empty()).then(|| format!("infuse:{{announce}}:process:{id}"))
    };
    let announcement = |key: &str| -> Option<serde_like::Announcement> {
        serde_like::parse(&server.cli(&["GET", key])?)
    };
    let written = calls::eventually(Duration::from_secs(5), interval / 2, async || {
        key().and_then(|k| announcement(&k)).is_some()
    })
    .await;
    assert!(written, "the process announced itself");
    let key = key().unwrap();
    let first = announcement(&key).unwrap();
    assert!(
        first.text.contains("\"users\":\"closed\""),
        "{}",
        first.text
    );

    // Nothing changes: renewed (its TTL keeps up), never rewritten (same time).
    tokio::time::sleep(interval * 6).await;
    let renewed = announcement(&key).unwrap();
    assert_eq!(renewed.at_ms, first.at_ms, "not rewritten");
    let ttl: u64 = server.cli(&["PTTL", &key]).unwrap().trim().parse().unwrap();
    // Lives 10 intervals, renewed every 5th read.
    assert!(ttl > 350, "renewed: {ttl} ms left of 1000");

    // The breaker trips: rewritten, saying so.
    let _ = calls::fail(&breaker).await;
    let rewritten = calls::eventually(Duration::from_secs(5), interval / 2, async || {
        announcement(&key).is_some_and(|a| a.text.contains("\"users\":\"open\""))
    })
    .await;
    assert!(rewritten, "{:?}", announcement(&key).map(|a| a.text));

    // Lost (deleted): written whole again.
    server.cli(&["DEL", &key]).unwrap();
    let back = calls::eventually(Duration::from_secs(5), interval / 2, async || {
        announcement(&key).is_some()
    })
    .await;
    assert!(back, "the announcement came back");
}

/// Just enough JSON reading for the announcement's `at_ms` (the tests crate has no JSON
/// dependency).
mod serde_like {
    pub struct Announcement {
        pub at_ms: u64,
        pub text: String,
    }

    pub fn parse(text: &str) -> Option<Announcement> {
        let rest = text.trim().strip_prefix("{\"at_ms\":")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        Some(Announcement {
            at_ms: digits.parse().ok()?,
            text: text.trim().to_owned(),
        })
    }
}
