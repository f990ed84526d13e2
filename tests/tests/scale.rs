//! Fleet mode at scale: what a process sends to Redis does not grow with the number of
//! breakers (resync), with the number of processes (events), or with the number of
//! concurrent failing calls (coalesced reports); the in-memory store does not serialise
//! its breakers.

use infuse_tests::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use infuse::store::memory::MemoryStore;
use infuse::store::{Command, Target};
use infuse::{Registry, ServiceOverride, Settings, State, Verdict};
use support::calls;
use support::redis_server::RedisServer;

const INTERVAL: Duration = Duration::from_millis(100);

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("svc-{i}")).collect()
}

/// A registry (as a process has) with `breakers` breakers, each loaded from Redis.
async fn registry_with(server: &RedisServer, namespace: &str, breakers: &[String]) -> Registry {
    let config = support::redis_config(server, namespace)
        .resync_interval(INTERVAL)
        .redis_admin_timeout(Duration::from_secs(2));
    let registry = Registry::new(config).await.unwrap();
    for name in breakers {
        assert_eq!(registry.breaker(name).state().await.unwrap(), State::Closed);
    }
    registry
}

/// The commands clients sent: `INFO commandstats` also counts the commands scripts run,
/// and infuse sends only scripts (besides `PING`, `SCRIPT LOAD` and `SUBSCRIBE`).
fn sent_by_clients(server: &RedisServer) -> u64 {
    let stats = server.command_stats();
    ["evalsha", "eval", "ping", "script|load"]
        .iter()
        .filter_map(|command| stats.get(*command))
        .sum()
}

/// With B breakers and nothing changing, a process sends one command per resync
/// interval (the change log's read), plus B every `max(`[`FULL_RESYNC_EVERY`]`, B)`
/// intervals (none within this test's 30 intervals after the first).
///
/// [`FULL_RESYNC_EVERY`]: infuse::store::redis::FULL_RESYNC_EVERY
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_resync_costs_one_command_per_interval() {
    use infuse::store::redis::FULL_RESYNC_EVERY;

    const B: usize = 300;
    let server = RedisServer::start();
    let names = names(B);
    let registry = registry_with(&server, "idle", &names).await;
    tokio::time::sleep(INTERVAL * 3).await; // the first (full) resync is behind us
    let before = sent_by_clients(&server);
    let start = Instant::now();
    tokio::time::sleep(INTERVAL * 30).await;
    let sent = sent_by_clients(&server) - before;
    let elapsed = start.elapsed();
    // Intervals are jittered ±20%: at most elapsed / (0.8 × interval) + 1 of them.
    let intervals = (elapsed.as_secs_f64() / (0.8 * INTERVAL.as_secs_f64())) as u64 + 1;
    let full = sent / B as u64;
    let reads = sent % B as u64;
    assert!(
        reads <= intervals,
        "{sent} commands in {elapsed:?}: {reads} outside full resyncs, for at most {intervals} intervals"
    );
    assert!(
        full <= intervals / FULL_RESYNC_EVERY.max(B as u64) + 1,
        "{sent} commands in {elapsed:?}: {full} full resyncs"
    );
    assert!(
        sent < intervals * B as u64 / 5,
        "{sent} commands in {elapsed:?} (one resync per breaker per interval would be {})",
        intervals * B as u64
    );
    drop(registry);
}

/// A change made by another process reaches this one through the change log when its
/// event is lost, and a flushed Redis is still repaired from the processes' views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resync_picks_up_lost_changes_and_repairs_a_flush() {
    const B: usize = 50;
    let server = RedisServer::start();
    let names = names(B);
    let a = registry_with(&server, "lost", &names).await;
    let b = registry_with(&server, "lost", &names).await;
    // Drop every subscription: the event of b's command below is lost for a.
    server.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
    b.breaker("svc-7").force_open().await.unwrap();
    let a7 = a.breaker("svc-7");
    assert!(
        calls::eventually(
            Duration::from_secs(3),
            Duration::from_millis(10),
            async || {
                a7.state().await.ok() == Some(State::ForcedOpen)
                    && calls::succeed(&a7).await.is_err()
            }
        )
        .await,
        "a never learned of b's change"
    );
    assert!(calls::succeed(&a.breaker("svc-8")).await.is_ok());

    // Flushed: every record is recreated from the views (the forced-open one too).
    server.flushall();
    assert!(
        calls::eventually(
            Duration::from_secs(5),
            Duration::from_millis(20),
            async || {
                server
                    .cli(&[
                        "EVAL",
                        "return #redis.call('KEYS', 'infuse:{lost/*}:state')",
                        "0",
                    ])
                    .is_some_and(|n| n.trim() == B.to_string())
            }
        )
        .await,
        "the records were not recreated"
    );
    assert_eq!(a7.state().await.unwrap(), State::ForcedOpen);
}

/// N failures below `fail_max` publish one event: the fail counter's 0 → non-zero edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_below_fail_max_publish_one_event() {
    let server = RedisServer::start();
    let config = support::redis_config(&server, "edges")
        .service("users", ServiceOverride::new().fail_max(100));
    let registry = Registry::new(config).await.unwrap();
    let users = registry.breaker("users");
    assert_eq!(users.state().await.unwrap(), State::Closed);
    let client = redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("infuse:events:edges").await.unwrap();
    let mut messages = pubsub.into_on_message();
    for _ in 0..20 {
        let _ = calls::fail(&users).await;
    }
    assert_eq!(users.fail_counter().await.unwrap(), 20);
    let mut events = 0;
    while tokio::time::timeout(Duration::from_millis(300), messages.next())
        .await
        .is_ok()
    {
        events += 1;
    }
    assert_eq!(
        events, 1,
        "20 failures below fail_max published {events} events"
    );
}

/// 1,024 concurrent failing calls on one breaker: a handful of scripts, no switch to
/// the fallback, and exactly one failure learns it tripped the breaker.
/// `max_breakers` breakers made at once (`try_breaker` in a loop, as a per-host client
/// meeting many hosts), then their first calls all at once: the registry does not take
/// its own backlog for Redis being down, and never stays on its fallback (before, the
/// first calls' loads timed out behind thousands of scripts, the registry switched to its
/// fallback, and its recovery re-sent them all at once and failed on its own backlog, in
/// a loop, for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_breakers_at_once_do_not_degrade_the_registry() {
    const BREAKERS: usize = 10_000;
    let server = RedisServer::start();
    let config = support::redis_config(&server, "many").resync_interval(Duration::from_secs(1));
    let registry = Registry::new(config).await.unwrap();
    let pings = server.command_calls("ping"); // the harness's own, at start
    let started = Instant::now();
    let breakers: Vec<_> = names(BREAKERS)
        .iter()
        .map(|name| registry.try_breaker(name).unwrap())
        .collect();
    let calls = futures::future::join_all(breakers.iter().map(calls::succeed)).await;
    assert!(calls.iter().all(Result::is_ok), "a first call was rejected");
    println!(
        "{BREAKERS} breakers made and called once in {:?}",
        started.elapsed()
    );
    // On Redis, or back on it soon: the health monitor stops pinging, and a breaker's
    // snapshot is Redis's record, not the fallback's. (On a quiet machine the registry
    // never leaves Redis; on a loaded one a call deadline missed for want of CPU may
    // switch it to its fallback for a moment, never for good.)
    let on_redis = calls::eventually(
        Duration::from_secs(20),
        Duration::from_millis(100),
        async || {
            let before = server.command_calls("ping");
            tokio::time::sleep(Duration::from_millis(600)).await;
            let stored = server
                .cli(&["HGET", "infuse:{many/svc-1}:state", "inc"])
                .unwrap_or_default();
            let seen = breakers[1].snapshot().await.map(|s| s.version.incarnation);
            server.command_calls("ping") == before
                && seen.is_ok_and(|inc| inc.to_string() == stored.trim())
        },
    )
    .await;
    assert!(on_redis, "the registry is stuck on its fallback");
    println!(
        "health monitor pings meanwhile: {}",
        server.command_calls("ping") - pings
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_failures_sends_a_few_scripts_and_trips_once() {
    const CALLS: usize = 1_024;
    let server = RedisServer::start();
    let config = support::redis_config(&server, "storm").service(
        "users",
        ServiceOverride::new()
            .fail_max(100)
            .reset_timeout(Duration::from_secs(60)),
    );
    let registry = Registry::new(config).await.unwrap();
    let users = registry.breaker("users");
    assert_eq!(users.state().await.unwrap(), State::Closed);
    let mut permits = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        permits.push(users.acquire().await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = server.command_stats();
    let (scripts, pings) = (stats.get("evalsha"), stats.get("ping"));
    let verdicts =
        futures::future::join_all(permits.into_iter().map(|permit| permit.failure(&"boom"))).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = server.command_stats();
    let sent = after.get("evalsha").copied().unwrap_or(0) - scripts.copied().unwrap_or(0);
    let tripped = verdicts.iter().filter(|v| **v == Verdict::Tripped).count();
    assert_eq!(tripped, 1, "verdicts: {verdicts:?}");
    // Coalesced: a handful of scripts on a quiet machine (at most 16 seen), never one per
    // call. On a loaded one (the whole suite running on 2 cores) the flushes run later
    // and in smaller batches: 29 were seen once. The bound says "far fewer than calls".
    println!("{CALLS} concurrent failures sent {sent} scripts");
    assert!(
        sent <= 64,
        "{CALLS} concurrent failures sent {sent} scripts"
    );
    assert_eq!(
        after.get("ping"),
        pings,
        "the registry switched to its fallback (its health monitor pinged)"
    );
    assert_eq!(users.state().await.unwrap(), State::Open);
    let snapshot = users.snapshot().await.unwrap();
    assert_eq!(snapshot.generation, 2, "tripped once: {snapshot:?}");
    assert!(
        snapshot.fail_counter >= 100,
        "every failure up to the trip counted: {snapshot:?}"
    );
}

/// Many breakers from many threads at once: each breaker's count is exact, and the
/// threads do not wait on one global lock (a smoke test: conformance covers the rules).
#[test]
fn the_memory_store_locks_per_breaker() {
    const THREADS: usize = 8;
    const BREAKERS: usize = 64;
    const FAILURES: u32 = 500;
    let store = Arc::new(MemoryStore::new());
    let names: Vec<&'static str> = names(BREAKERS)
        .into_iter()
        .map(|n| &*Box::leak(n.into_boxed_str()))
        .collect();
    let settings = Settings::DEFAULT; // disabled below: counts, never trips
    for name in &names {
        store.apply_now(name, &settings, Command::Force(Target::Disabled));
    }
    let generation = store
        .apply_now(names[0], &settings, Command::Snapshot)
        .snapshot
        .generation;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (store, names) = (&store, &names);
            scope.spawn(move || {
                for i in 0..FAILURES as usize * BREAKERS / THREADS {
                    let name = names[(i * THREADS + t) % BREAKERS];
                    let command = Command::RecordFailure {
                        generation,
                        count: 1,
                        instance: 1,
                    };
                    assert!(store.apply_now(name, &settings, command).applied);
                }
            });
        }
    });
    for name in &names {
        let snapshot = store.apply_now(name, &settings, Command::Snapshot).snapshot;
        assert_eq!(snapshot.fail_counter, FAILURES, "{name}");
    }
}
