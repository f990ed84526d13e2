//! Fleet mode through Redis Sentinel (a master, a replica and three Sentinels started by
//! the harness; one set shared by the tests that do not break it, each in its own
//! namespace): the conformance suite through the fleet layer, trips seen by other
//! registries, clear errors, and a failover under load.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use infuse::{BreakerError, Config, Registry, ServiceOverride, State};
use infuse_tests::support::topology::{SentinelOptions, SentinelSet, MASTER_NAME};
use infuse_tests::support::{self, calls};
use infuse_tests::{budget_conformance_tests, conformance, conformance_tests};

fn sentinels() -> &'static SentinelSet {
    static SET: OnceLock<SentinelSet> = OnceLock::new();
    SET.get_or_init(SentinelSet::start)
}

fn config(set: &SentinelSet, namespace: &str) -> Config {
    support::topology_config(Config::redis_sentinel(set.urls(), MASTER_NAME), namespace)
        .redis_admin_timeout(Duration::from_secs(2))
        .allow_undeclared_overrides(true)
}

conformance_tests!(
    store = config(sentinels(), &support::unique_namespace("conf"))
        .redis_call_timeout(Duration::from_secs(1))
        .fleet_store()
        .await
        .expect("fleet store through the Sentinels"),
    prefix = "sentinel:",
);

/// The budget cases on a Redis store over the connection the fleet makes (the fleet store
/// keeps no budgets of its own, see `conformance::budget_store`).
async fn budget_store() -> infuse::store::redis::RedisStore {
    let namespace = support::unique_namespace("budgets");
    conformance::budget_store(&config(sentinels(), &namespace), &namespace).await
}

budget_conformance_tests!(store = budget_store().await, prefix = "sentinel:");

#[tokio::test]
async fn run_all_in_sequence() {
    let store = config(sentinels(), &support::unique_namespace("conf-all"))
        .redis_call_timeout(Duration::from_secs(1))
        .fleet_store()
        .await
        .unwrap();
    conformance::run_all(&store, &conformance::unique_prefix("sentinel-all")).await;
    assert!(store.is_healthy(), "the fleet store degraded meanwhile");
    let budgets = budget_store().await;
    conformance::run_budgets(&budgets, &conformance::unique_prefix("sentinel-all")).await;
}

/// Polls `f` every 10 ms for up to 5 s.
async fn eventually(f: impl AsyncFnMut() -> bool) -> bool {
    calls::eventually(Duration::from_secs(5), Duration::from_millis(10), f).await
}

async fn rejects(registry: &Registry, service: &str) -> bool {
    matches!(
        calls::succeed(&registry.breaker(service)).await,
        Err(BreakerError::Open { .. })
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_reaches_every_registry() {
    let namespace = support::unique_namespace("trip");
    let config = || {
        config(sentinels(), &namespace)
            .service("users", ServiceOverride::new().fail_max(2))
            .redis_call_timeout(Duration::from_millis(500))
    };
    let a = Registry::new(config()).await.unwrap();
    let b = Registry::new(config()).await.unwrap();
    b.breaker("users");
    for _ in 0..2 {
        let _ = calls::fail(&a.breaker("users")).await;
    }
    assert_eq!(a.breaker("users").state().await.unwrap(), State::Open);
    assert!(eventually(async || rejects(&b, "users").await).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_is_a_clear_init_error() {
    let store = |config: Config| async move {
        config
            .env_overrides(false)
            .redis_connect_timeout(Duration::from_millis(500))
            .fleet_store()
            .await
            .unwrap_err()
            .to_string()
    };
    let error = store(Config::redis_sentinel(Vec::<String>::new(), "mymaster")).await;
    assert!(error.contains("Config::redis_sentinel([]"), "{error}");
    assert!(error.contains("empty"), "{error}");
    let error = store(Config::redis_sentinel(["redis://127.0.0.1:1"], "")).await;
    assert!(error.contains("master name is empty"), "{error}");
    // A URL that does not parse, with a password: named, never shown.
    let error = store(Config::redis_sentinel(
        ["redis://:hunter2@127.0.0.1:notaport"],
        "mymaster",
    ))
    .await;
    assert!(error.contains("Config::redis_sentinel"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    // Nothing listens: unreachable, password-free.
    let error = store(Config::redis_sentinel(
        ["redis://:hunter2@127.0.0.1:1"],
        "mymaster",
    ))
    .await;
    assert!(
        error.contains("cannot reach Redis at master \"mymaster\""),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    // A master name the Sentinels do not monitor.
    let error = store(Config::redis_sentinel(sentinels().urls(), "nosuchmaster")).await;
    assert!(error.contains("cannot reach Redis"), "{error}");
    // A wrong master password: the master refuses it.
    let error = store(
        Config::redis_sentinel(sentinels().urls(), MASTER_NAME)
            .sentinel_master_auth("", "wrong-secret"),
    )
    .await;
    assert!(error.contains("cannot reach Redis"), "{error}");
    assert!(!error.contains("wrong-secret"), "{error}");
}

/// The master dies under load: calls go on under the policy, the replica is promoted,
/// the fleet reconnects through the Sentinels, and the open breaker is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load() {
    let mut set = SentinelSet::start();
    let config = |set: &SentinelSet| {
        config(set, "failover")
            .service(
                "payments",
                ServiceOverride::new()
                    .fail_max(3)
                    .reset_timeout(Duration::from_secs(120)),
            )
            .service("ledger", ServiceOverride::new().fail_max(3))
            .redis_call_timeout(Duration::from_millis(200))
            .resync_interval(Duration::from_millis(200))
    };
    let a = Registry::new(config(&set)).await.unwrap();
    let b = Registry::new(config(&set)).await.unwrap();
    for _ in 0..3 {
        let _ = calls::fail(&a.breaker("payments")).await;
    }
    assert_eq!(a.breaker("payments").state().await.unwrap(), State::Open);
    std::thread::sleep(Duration::from_millis(200)); // the replica catches up
    let load = {
        let b = b.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let (mut worst, mut made) = (Duration::ZERO, 0u32);
            while start.elapsed() < Duration::from_secs(6) {
                let t = Instant::now();
                let _ = calls::succeed(&b.breaker("ledger")).await;
                let _ = calls::succeed(&b.breaker("payments")).await;
                worst = worst.max(t.elapsed());
                made += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (worst, made)
        })
    };
    let old = set.kill_master();
    let new = set.wait_failover(old, Duration::from_secs(20));
    assert_ne!(old, new);
    let (worst, made) = load.await.unwrap();
    assert!(made > 100, "calls stalled: {made}");
    assert!(worst < Duration::from_secs(2), "a call took {worst:?}");
    // Through the new master: the open breaker is still open, and trips spread.
    assert!(
        eventually(async || b.breaker("payments").state().await.ok() == Some(State::Open)).await,
        "the open state did not survive the failover"
    );
    assert!(eventually(async || rejects(&b, "payments").await).await);
    assert!(
        eventually(async || {
            let _ = calls::fail(&a.breaker("ledger")).await;
            a.breaker("ledger").state().await.ok() == Some(State::Open)
        })
        .await,
        "no trip through the new master"
    );
    assert!(eventually(async || rejects(&b, "ledger").await).await);
    let master = set.master_port();
    assert!(
        set.server(master)
            .cli(&["EXISTS", "infuse:{failover/ledger}:state"])
            .is_some_and(|o| o.trim() == "1"),
        "the record is not on the new master"
    );
}

/// Healthy calls of a closed breaker send no script to the master (the Sentinels' own
/// `PING`/`INFO`/hello `PUBLISH` traffic aside).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_calls_send_no_scripts() {
    let set = sentinels();
    let namespace = support::unique_namespace("quiet");
    let registry =
        Registry::new(config(set, &namespace).resync_interval(Duration::from_secs(3600)))
            .await
            .unwrap();
    let breaker = registry.breaker("quiet");
    // The first call registers the breaker. Other tests share the master: the check
    // below leaves a margin for their scripts.
    calls::succeed(&breaker).await.unwrap();
    let master = set.master_port();
    let server = set.servers.iter().find(|s| s.port() == master).unwrap();
    let before = server.command_calls("evalsha") + server.command_calls("eval");
    let started = Instant::now();
    for _ in 0..1000 {
        calls::succeed(&breaker).await.unwrap();
    }
    let elapsed = started.elapsed();
    let after = server.command_calls("evalsha") + server.command_calls("eval");
    // Scripts from concurrent tests may land meanwhile; 1000 calls asking Redis would
    // add at least 1000.
    assert!(
        after - before < 100,
        "{} scripts during 1000 healthy calls",
        after - before
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "1000 healthy calls took {elapsed:?}"
    );
}

/// Passwords on the Sentinels (in their URLs) and on the master
/// (`Config::sentinel_master_auth`): both needed, neither shown in errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_and_master_credentials() {
    let set = SentinelSet::start_with(SentinelOptions {
        master_password: Some("m4ster-pw".into()),
        sentinel_password: Some("s3ntinel-pw".into()),
        ..SentinelOptions::default()
    });
    let urls = set.urls();
    assert!(urls[0].contains(":s3ntinel-pw@"), "{urls:?}");
    let store = support::topology_config(Config::redis_sentinel(&urls, MASTER_NAME), "auth")
        .sentinel_master_auth("", "m4ster-pw")
        .fleet_store()
        .await
        .expect("both passwords given");
    assert!(store.is_healthy());
    let fails = |config: Config| async move {
        let error = support::topology_config(config, "auth")
            .redis_connect_timeout(Duration::from_secs(1))
            .fleet_store()
            .await
            .unwrap_err()
            .to_string();
        for secret in ["m4ster-pw", "s3ntinel-pw", "wrong-pw"] {
            assert!(!error.contains(secret), "{error}");
        }
        error
    };
    // Without the master's password, or with a wrong one.
    let error = fails(Config::redis_sentinel(&urls, MASTER_NAME)).await;
    assert!(error.contains("cannot reach Redis"), "{error}");
    let error =
        fails(Config::redis_sentinel(&urls, MASTER_NAME).sentinel_master_auth("", "wrong-pw"))
            .await;
    assert!(error.contains("cannot reach Redis"), "{error}");
    // Without the Sentinels' password.
    let bare: Vec<String> = set
        .sentinels
        .iter()
        .map(|s| format!("redis://127.0.0.1:{}", s.port()))
        .collect();
    let error =
        fails(Config::redis_sentinel(bare, MASTER_NAME).sentinel_master_auth("", "m4ster-pw"))
            .await;
    assert!(error.contains("cannot reach Redis"), "{error}");
}
