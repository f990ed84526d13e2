//! Every Redis key has a bound (the guide's key table says which): the namespace's change
//! log forgets a breaker once its record expired and no process uses it, while a breaker
//! in use stays listed although nothing is noted about it; the log's own keys expire
//! when the namespace goes unused; the index of processes and their announcements shrink
//! when processes stop; an announcement lists at most 1,000 breakers. Against real
//! `redis-server` processes.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use infuse::store::redis::keys::{self, BreakerKey, HistoryEntry, StateHash};
use infuse::store::redis::{Announcement, Changes, Deadlines, RedisStore, PRUNE_EVERY};
use infuse::store::{Command, Counts, Store, Target, TrialToken};
use infuse::{Registry, RegistryError, ServiceOverride, Settings, State};
use infuse_tests::support::calls::{self, eventually};
use infuse_tests::support::redis_config;
use infuse_tests::support::redis_server::RedisServer;
use redis::aio::MultiplexedConnection;

/// A short open time, so that records can live as little as `key_ttl`.
fn quick() -> ServiceOverride {
    ServiceOverride::new()
        .fail_max(1000)
        .reset_timeout(Duration::from_millis(100))
}

async fn connection(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Runs one command.
async fn query<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, args: &[&str]) -> T {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    command.query_async(conn).await.unwrap()
}

/// Whether `service` is in both of the log's sorted sets (or, `false`, in neither; a
/// service in one only fails the test).
async fn listed(conn: &mut MultiplexedConnection, ns: &str, service: &str) -> bool {
    // In one MULTI: a note between two reads would show it in one set only.
    let (changes, listed): (Option<f64>, Option<f64>) = redis::pipe()
        .atomic()
        .zscore(format!("infuse:{{{ns}}}:changes"), service)
        .zscore(format!("infuse:{{{ns}}}:listed"), service)
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(
        changes.is_some(),
        listed.is_some(),
        "{service} in one of the log's sets only: changes {changes:?}, listed {listed:?}"
    );
    changes.is_some()
}

/// Whether the log's version key `version` comes to satisfy `want` within 5 s (read every
/// 20 ms; `None` while the key is missing).
async fn version_comes_to(
    conn: &mut MultiplexedConnection,
    version: &str,
    want: impl Fn(Option<&str>) -> bool,
) -> bool {
    eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        async || {
            want(
                query::<Option<String>>(conn, &["GET", version])
                    .await
                    .as_deref(),
            )
        },
    )
    .await
}

async fn store(server: &RedisServer, ns: &str, key_ttl: Duration) -> RedisStore {
    let conn = redis::aio::ConnectionManager::new(redis::Client::open(server.url()).unwrap())
        .await
        .unwrap();
    let deadlines = Deadlines {
        call: Duration::from_secs(2),
        admin: Duration::from_secs(2),
    };
    let store = RedisStore::new(conn, ns, key_ttl, deadlines);
    store.load_scripts().await.unwrap();
    store
}

/// Process B creates `gone` and stops; process A keeps using `live`, whose record only
/// counter writes renew (failures below `fail_max`: never noted). With `key_ttl` = 1 s,
/// `gone`'s record expires and the log forgets it (within `key_ttl`, or three of B's
/// full-pass periods if B touched it, plus `PRUNE_EVERY` of A's reads); `live` stays
/// listed all along (A's full resyncs touch it), though nothing is noted in the log
/// meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_breaker_leaves_the_change_log_while_a_live_one_stays_listed() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let ns = "expiry";
    let key_ttl = Duration::from_secs(1);
    let config = |service: &str| {
        redis_config(&server, ns)
            .key_ttl(key_ttl)
            .resync_interval(Duration::from_millis(100))
            // Never degraded on a busy machine: a degraded process does not resync.
            .redis_call_timeout(Duration::from_secs(2))
            .redis_admin_timeout(Duration::from_secs(2))
            .service(service, quick())
    };
    let version = format!("infuse:{{{ns}}}:version");
    let b = Registry::new(config("gone")).await.unwrap();
    assert_eq!(b.breaker("gone").state().await.unwrap(), State::Closed);
    // The creation is noted (the note is sent after the script, without waiting). `gone`
    // is checked while B lives: by the time A has started on a slow machine, `gone`'s
    // record may already have expired, and the log may rightly have forgotten it.
    assert!(
        version_comes_to(&mut conn, &version, |v| v == Some("1")).await,
        "`gone`'s creation was not noted"
    );
    assert!(listed(&mut conn, ns, "gone").await);
    drop(b);
    let a = Registry::new(config("live")).await.unwrap();
    let live = a.breaker("live");
    assert_eq!(live.state().await.unwrap(), State::Closed);
    assert!(
        version_comes_to(&mut conn, &version, |v| v == Some("2")).await,
        "`live`'s creation was not noted"
    );
    assert!(listed(&mut conn, ns, "live").await);

    let start = tokio::time::Instant::now();
    let mut gone_at = None;
    while gone_at.is_none() || start.elapsed() < key_ttl * 4 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "`gone` is still listed {:?} after its record's last write (key_ttl {key_ttl:?})",
            start.elapsed()
        );
        let _ = calls::fail(&live).await; // a counter write: renews the record, not noted
        assert!(
            listed(&mut conn, ns, "live").await,
            "`live` left the log after {:?}",
            start.elapsed()
        );
        if gone_at.is_none() && !listed(&mut conn, ns, "gone").await {
            // Forgotten only once its record is gone.
            let exists: u64 = query(&mut conn, &["EXISTS", "infuse:{expiry/gone}:state"]).await;
            assert_eq!(exists, 0, "the log forgot `gone` while its record lives");
            gone_at = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exists: u64 = query(&mut conn, &["EXISTS", "infuse:{expiry/live}:state"]).await;
    assert_eq!(exists, 1, "`live`'s record lives");
    let now: Option<String> = query(&mut conn, &["GET", &version]).await;
    assert_eq!(
        now.as_deref(),
        Some("2"),
        "something was noted: `live` must have stayed listed by touches alone"
    );
    println!("`gone` left the change log {gone_at:?} after the watch began");
}

/// A forced state never expires, so its breaker stays listed (`+inf`) and the log's keys
/// with it; once closed, the entry and the keys are bounded again.
#[tokio::test]
async fn a_forced_breaker_stays_listed_until_closed() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let ns = "forced";
    let store = store(&server, ns, Duration::from_secs(60)).await;
    // Records live key_ttl (60 s): at least twice the open time, 2 s here.
    let settings = Settings::DEFAULT.reset_timeout(Duration::from_secs(1));
    let keys = ["version", "changes", "listed"].map(|k| format!("infuse:{{{ns}}}:{k}"));
    let pttls = async |conn: &mut MultiplexedConnection| {
        let mut ttls = Vec::new();
        for key in &keys {
            ttls.push(query::<i64>(conn, &["PTTL", key]).await);
        }
        ttls
    };
    let score = async |conn: &mut MultiplexedConnection| {
        query::<Option<String>>(conn, &["ZSCORE", &keys[2], "held"]).await
    };

    store
        .apply("held", &settings, Command::Register { seed: None })
        .await
        .unwrap();
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            async || { score(&mut conn).await.is_some() }
        )
        .await
    );
    for ttl in pttls(&mut conn).await {
        assert!(
            (1..=60_000).contains(&ttl),
            "the log's keys live key_ttl: {ttl}"
        );
    }

    store
        .apply("held", &settings, Command::Force(Target::ForcedOpen))
        .await
        .unwrap();
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            async || { score(&mut conn).await.as_deref() == Some("inf") }
        )
        .await,
        "a forced breaker is listed for good: {:?}",
        score(&mut conn).await
    );
    assert_eq!(
        pttls(&mut conn).await,
        [-1, -1, -1],
        "the log's keys persist"
    );

    store
        .apply("held", &settings, Command::Force(Target::Closed))
        .await
        .unwrap();
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            async || { score(&mut conn).await.is_some_and(|s| s != "inf") }
        )
        .await,
        "closed: listed for key_ttl again"
    );
    for ttl in pttls(&mut conn).await {
        assert!((1..=60_000).contains(&ttl), "bounded again: {ttl}");
    }
}

/// A log written before `listed` existed (no expiry, no `listed` set) is adopted by the
/// first pruning read: each service listed for `key_ttl`, the keys given that TTL. With
/// nothing touching or noting them, everything is gone `key_ttl` later: an unused
/// namespace leaves no key behind.
#[tokio::test]
async fn an_old_log_is_adopted_and_an_unused_namespace_leaves_nothing() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let ns = "legacy";
    let key_ttl = Duration::from_millis(400);
    let changes_key = format!("infuse:{{{ns}}}:changes");
    let _: () = query(
        &mut conn,
        &["SET", &format!("infuse:{{{ns}}}:version"), "7"],
    )
    .await;
    let _: () = query(
        &mut conn,
        &["ZADD", &changes_key, "3", "a", "5", "b", "7", "c"],
    )
    .await;

    let store = store(&server, ns, key_ttl).await;
    let read = store.changes(0, None).await.unwrap(); // the first read prunes
    assert_eq!(read.changes, Changes::All);
    for service in ["a", "b", "c"] {
        assert!(listed(&mut conn, ns, service).await, "{service} adopted");
    }
    for key in ["version", "changes", "listed"] {
        let ttl: i64 = query(&mut conn, &["PTTL", &format!("infuse:{{{ns}}}:{key}")]).await;
        assert!((1..=400).contains(&ttl), "{key}: {ttl} ms");
    }
    tokio::time::sleep(key_ttl + Duration::from_millis(100)).await;
    let left: Vec<String> = query(&mut conn, &["KEYS", &format!("infuse:{{{ns}}}*")]).await;
    assert!(left.is_empty(), "{left:?}");
}

/// The log prunes services whose time is up on every `PRUNE_EVERY`-th read, and a read of
/// a log holding what infuse did not write deletes it (readers re-read everything, as
/// after a flush) instead of failing every resync.
#[tokio::test]
async fn reads_prune_the_log_and_repair_garbage() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let ns = "prune";
    let store = store(&server, ns, Duration::from_secs(60)).await;
    let settings = Settings::DEFAULT;
    for service in ["old", "new"] {
        store
            .apply(service, &settings, Command::Register { seed: None })
            .await
            .unwrap();
    }
    let listed_key = format!("infuse:{{{ns}}}:listed");
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            async || { query::<u64>(&mut conn, &["ZCARD", &listed_key]).await == 2 }
        )
        .await
    );
    // `old`'s time is up (as if its record expired long ago).
    let _: () = query(&mut conn, &["ZADD", &listed_key, "1", "old"]).await;
    for _ in 0..PRUNE_EVERY {
        store.changes(0, None).await.unwrap();
    }
    assert!(!listed(&mut conn, ns, "old").await, "pruned");
    assert!(listed(&mut conn, ns, "new").await, "kept");

    for (key, garbage) in [
        ("version", &["SET", "", "not a number"][..]),
        ("changes", &["SET", "", "x"][..]),
        ("listed", &["LPUSH", "", "x"][..]),
    ] {
        let key = format!("infuse:{{{ns}}}:{key}");
        let mut command = garbage.to_vec();
        command[1] = &key;
        let _: () = query(&mut conn, &["DEL", &key]).await;
        let _: () = query(&mut conn, &command).await;
        for _ in 0..PRUNE_EVERY {
            let read = store.changes(0, None).await;
            assert!(read.is_ok(), "{key}: {read:?}");
        }
        let left: Vec<String> = query(&mut conn, &["KEYS", &format!("infuse:{{{ns}}}*")]).await;
        assert!(
            left.is_empty(),
            "{key}: the log was not started over: {left:?}"
        );
        // A note starts it again.
        store
            .apply("new", &settings, Command::Force(Target::Closed))
            .await
            .unwrap();
        assert!(
            eventually(
                Duration::from_secs(5),
                Duration::from_millis(10),
                async || { listed(&mut conn, ns, "new").await }
            )
            .await
        );
    }
}

/// Three processes announce themselves; two stop. Their announcements expire and the
/// index drops them at the next renewal of the one left; once it stops too, the index
/// itself expires.
#[tokio::test]
async fn the_process_index_and_announcements_shrink_when_processes_stop() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let ns = "procs";
    let store = store(&server, ns, Duration::from_secs(60)).await;
    let ttl = Duration::from_millis(300);
    let announce = |instance: u64, payload: Option<&str>| Announcement {
        instance,
        ttl,
        payload: payload.map(str::to_owned),
    };
    for instance in 1..=3 {
        let read = store
            .changes(0, Some(&announce(instance, Some("{}"))))
            .await
            .unwrap();
        assert!(read.announced);
    }
    let index = format!("infuse:{{{ns}}}:processes");
    assert_eq!(query::<u64>(&mut conn, &["ZCARD", &index]).await, 3);
    // Only process 1 goes on renewing.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let read = store.changes(0, Some(&announce(1, None))).await.unwrap();
        assert!(read.announced, "renewed");
    }
    let ids: Vec<String> = query(&mut conn, &["ZRANGE", &index, "0", "-1"]).await;
    assert_eq!(ids, ["1"]);
    for instance in ["2", "3"] {
        let exists: u64 = query(
            &mut conn,
            &["EXISTS", &format!("infuse:{{{ns}}}:process:{instance}")],
        )
        .await;
        assert_eq!(exists, 0, "process {instance}'s announcement expired");
    }
    let index_ttl: i64 = query(&mut conn, &["PTTL", &index]).await;
    assert!(
        (1..=300).contains(&index_ttl),
        "the index expires: {index_ttl}"
    );
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let left: Vec<String> = query(&mut conn, &["KEYS", &format!("infuse:{{{ns}}}:process*")]).await;
    assert!(left.is_empty(), "{left:?}");
}

/// Reads the announcement of this test process in namespace `ns`.
async fn announcement(conn: &mut MultiplexedConnection, ns: &str) -> Option<String> {
    let ids: Vec<String> = query(
        conn,
        &["ZRANGE", &format!("infuse:{{{ns}}}:processes"), "0", "-1"],
    )
    .await;
    let id = ids.first()?;
    query(conn, &["GET", &format!("infuse:{{{ns}}}:process:{id}")]).await
}

/// The number in `"field":N` of an announcement.
fn field(text: &str, field: &str) -> Option<usize> {
    let rest = text.split(&format!("\"{field}\":")).nth(1)?;
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

/// Creates `names` in `registry`, a batch at a time (each creation loads its record).
async fn create(registry: &Registry, names: &[String]) {
    for batch in names.chunks(100) {
        join_all(batch.iter().map(|name| async move {
            assert_eq!(registry.breaker(name).state().await.unwrap(), State::Closed);
        }))
        .await;
    }
}

/// With 1,200 breakers an announcement lists 1,000, the open one among them although its
/// name sorts last, and says how many it left out; with long names it stops at 64 KiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_lists_at_most_1000_breakers_those_not_closed_first() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let config = |ns: &str| {
        redis_config(&server, ns)
            .resync_interval(Duration::from_millis(100))
            .redis_call_timeout(Duration::from_secs(2))
            .redis_admin_timeout(Duration::from_secs(5))
    };

    let registry = Registry::new(config("many")).await.unwrap();
    let names: Vec<String> = (0..1_200).map(|i| format!("svc-{i:04}")).collect();
    create(&registry, &names).await;
    registry.breaker("zzz-open").open().await.unwrap();
    let mut text = String::new();
    assert!(
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(50),
            async || {
                text = announcement(&mut conn, "many").await.unwrap_or_default();
                text.contains("\"zzz-open\":\"open\"")
            }
        )
        .await,
        "the open breaker is announced: {} bytes",
        text.len()
    );
    assert_eq!(
        field(&text, "breakers_total"),
        Some(1_201),
        "{}",
        &text[..200]
    );
    assert_eq!(field(&text, "breakers_omitted"), Some(201));
    assert_eq!(text.matches("\":\"closed\"").count(), 999);
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    drop(registry);

    let registry = Registry::new(config("long")).await.unwrap();
    let names: Vec<String> = (0..300)
        .map(|i| format!("{i:04}{}", "x".repeat(250)))
        .collect();
    create(&registry, &names).await;
    assert!(
        eventually(
            Duration::from_secs(10),
            Duration::from_millis(50),
            async || {
                text = announcement(&mut conn, "long").await.unwrap_or_default();
                field(&text, "breakers_total") == Some(300)
            }
        )
        .await,
        "{} bytes",
        text.len()
    );
    let listed = text.matches("\":\"closed\"").count();
    assert_eq!(field(&text, "breakers_omitted"), Some(300 - listed));
    assert!(listed < 300 && listed > 200, "{listed} listed");
    assert!(text.len() < 64 * 1024 + 512, "{} bytes", text.len());
}

/// `max_breakers` holds on Redis too: the breaker refused has no record and no entry in
/// the change log.
#[tokio::test]
async fn a_breaker_refused_by_max_breakers_leaves_no_key() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let registry = Registry::new(redis_config(&server, "full").max_breakers(2))
        .await
        .unwrap();
    for name in ["a", "b"] {
        assert_eq!(registry.breaker(name).state().await.unwrap(), State::Closed);
    }
    assert!(matches!(
        registry.try_breaker("c"),
        Err(RegistryError::TooManyBreakers { limit: 2, .. })
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let keys: Vec<String> = query(&mut conn, &["KEYS", "infuse:{full/c}*"]).await;
    assert!(keys.is_empty(), "{keys:?}");
    assert!(listed(&mut conn, "full", "a").await);
    assert!(!listed(&mut conn, "full", "c").await);
}

/// A log that is gone while the records live (deleted by hand, or repaired after garbage)
/// comes back with the next full resync's touch, at version 0, though no change is noted:
/// readers stop finding it gone, which would cost every process a full pass per read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_log_comes_back_with_the_next_full_resync() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let ns = "lost-log";
    let registry = Registry::new(
        redis_config(&server, ns)
            .resync_interval(Duration::from_millis(100))
            .redis_call_timeout(Duration::from_secs(2))
            .redis_admin_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    for name in ["a", "b"] {
        assert_eq!(registry.breaker(name).state().await.unwrap(), State::Closed);
    }
    let keys = ["version", "changes", "listed"].map(|k| format!("infuse:{{{ns}}}:{k}"));
    let version = &keys[0];
    assert!(version_comes_to(&mut conn, version, |v| v.is_some()).await);
    let _: () = query(&mut conn, &["DEL", &keys[0], &keys[1], &keys[2]]).await;
    assert!(
        version_comes_to(&mut conn, version, |v| v == Some("0")).await,
        "the log did not come back"
    );
    for name in ["a", "b"] {
        assert!(listed(&mut conn, ns, name).await, "{name} listed again");
    }
}

/// The key layout (`keys`, which the `infuse` command reads with plain commands) is what
/// the scripts write: a record, its window, its trial and its history read back to what
/// the scripts answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_scripts_write_reads_back_through_the_key_layout() {
    let server = RedisServer::start();
    let mut conn = connection(&server).await;
    let (ns, service) = ("layout", "users");
    let store = store(&server, ns, Duration::from_secs(60)).await;
    let key = |key: BreakerKey| keys::breaker_key(ns, service, key);
    let settings = Settings::DEFAULT
        .fail_max(3)
        .failure_rate(90)
        .min_calls(1000);
    let state_of = async |conn: &mut MultiplexedConnection| -> StateHash {
        let hash: HashMap<String, String> =
            query(conn, &["HGETALL", &key(BreakerKey::State)]).await;
        StateHash::parse(&hash).unwrap()
    };

    let created = store
        .apply(service, &settings, Command::Register { seed: None })
        .await
        .unwrap();
    let generation = created.snapshot.generation;
    let counts = Counts {
        calls: 5,
        failures: 2,
        slow: 1,
        tail: 2,
    };
    let batch = store
        .apply(
            service,
            &settings,
            Command::RecordCalls {
                generation,
                counts,
                instance: 7,
            },
        )
        .await
        .unwrap();
    let read = state_of(&mut conn).await;
    let snapshot = batch.snapshot;
    assert_eq!(
        (read.state, read.generation, read.fail_counter),
        (snapshot.state, snapshot.generation, 2)
    );
    assert_eq!(
        (read.incarnation, read.seq),
        (snapshot.version.incarnation, snapshot.version.seq)
    );
    let window: HashMap<String, String> =
        query(&mut conn, &["HGETALL", &key(BreakerKey::Window)]).await;
    assert!(batch.window.is_some());
    assert_eq!(keys::window_totals(&window), batch.window);

    let failure = Command::RecordFailure {
        generation,
        count: 1,
        instance: 7,
    };
    let tripped = store.apply(service, &settings, failure).await.unwrap();
    assert_eq!(tripped.snapshot.state, State::Open);
    let read = state_of(&mut conn).await;
    assert_eq!(
        (read.state, read.generation, read.seq),
        (
            State::Open,
            tripped.snapshot.generation,
            tripped.snapshot.version.seq
        )
    );

    // Half-open, its trial held by this process's token. (Forcing an open breaker open
    // writes no history: its state does not change.)
    let forced = store
        .apply(
            service,
            &settings,
            Command::Force(Target::Open(Duration::from_millis(1))),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let token = TrialToken::new();
    let lease = Duration::from_secs(30);
    let trial = store
        .apply(service, &settings, Command::AcquireTrial { token, lease })
        .await
        .unwrap();
    assert!(trial.applied);
    assert_eq!(trial.snapshot.generation, forced.snapshot.generation);
    let held: String = query(&mut conn, &["GET", &key(BreakerKey::Trial)]).await;
    let instance = (token.0 >> 64) as u64;
    assert_eq!(keys::trial_holder(&held), Some(instance));
    assert_eq!(state_of(&mut conn).await.state, State::HalfOpen);

    let history: Vec<String> =
        query(&mut conn, &["LRANGE", &key(BreakerKey::History), "0", "-1"]).await;
    let entries: Vec<HistoryEntry> = history
        .iter()
        .filter_map(|e| HistoryEntry::parse(e))
        .collect();
    assert_eq!(entries.len(), history.len(), "{history:?}");
    let steps: Vec<(&str, &str, u64, &str)> = entries
        .iter()
        .map(|e| {
            (
                e.from.as_str(),
                e.to.as_str(),
                e.generation,
                e.reason.as_str(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (
                "open",
                "half-open",
                trial.snapshot.generation,
                "open_elapsed"
            ),
            (
                "closed",
                "open",
                tripped.snapshot.generation,
                "consecutive_failures"
            ),
        ]
    );
    assert!(entries
        .iter()
        .all(|e| e.process == keys::process_id(instance)));
}
