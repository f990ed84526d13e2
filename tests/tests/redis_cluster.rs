//! Fleet mode on a Redis Cluster (three masters, three replicas, started by the harness
//! and shared by the tests of this binary, each in its own namespace): the conformance
//! suite through the fleet layer, trips seen by other registries (pub/sub is broadcast
//! over the cluster bus), breakers on different slots, and a master failover under load.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use infuse::{BreakerError, Config, Registry, ServiceOverride, State};
use infuse_tests::support::topology::RedisCluster;
use infuse_tests::support::{self, calls};
use infuse_tests::{budget_conformance_tests, conformance, conformance_tests};

/// The cluster shared by the tests that do not break it.
fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(RedisCluster::start)
}

fn config(cluster: &RedisCluster, namespace: &str) -> Config {
    support::topology_config(Config::redis_cluster(cluster.urls()), namespace)
        .redis_admin_timeout(Duration::from_secs(2))
        .allow_undeclared_overrides(true)
}

conformance_tests!(
    store = config(cluster(), &support::unique_namespace("conf"))
        .redis_call_timeout(Duration::from_secs(1))
        .fleet_store()
        .await
        .expect("fleet store on the cluster"),
    prefix = "cluster:",
);

/// The budget cases on a Redis store over the connection the fleet makes (the fleet store
/// keeps no budgets of its own, see `conformance::budget_store`).
async fn budget_store() -> infuse::store::redis::RedisStore {
    let namespace = support::unique_namespace("budgets");
    conformance::budget_store(&config(cluster(), &namespace), &namespace).await
}

budget_conformance_tests!(store = budget_store().await, prefix = "cluster:");

#[tokio::test]
async fn run_all_in_sequence() {
    let store = config(cluster(), &support::unique_namespace("conf-all"))
        .redis_call_timeout(Duration::from_secs(1))
        .fleet_store()
        .await
        .unwrap();
    conformance::run_all(&store, &conformance::unique_prefix("cluster-all")).await;
    assert!(store.is_healthy(), "the fleet store degraded meanwhile");
    let budgets = budget_store().await;
    conformance::run_budgets(&budgets, &conformance::unique_prefix("cluster-all")).await;
}

async fn registries(cluster: &RedisCluster, namespace: &str, n: usize) -> Vec<Registry> {
    let mut registries = Vec::new();
    for _ in 0..n {
        let config = config(cluster, namespace).redis_call_timeout(Duration::from_millis(500));
        registries.push(Registry::new(config).await.expect("registry"));
    }
    registries
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
async fn trips_on_different_slots_reach_every_registry() {
    let cluster = cluster();
    let namespace = support::unique_namespace("trips");
    let fleet = registries(cluster, &namespace, 2).await;
    // Services whose breakers live on different masters.
    let mut services = Vec::new();
    let mut masters = Vec::new();
    for i in 0..64 {
        let service: &'static str = Box::leak(format!("svc{i}").into_boxed_str());
        let master = cluster.master_of(&format!("infuse:{{{namespace}/{service}}}:state"));
        if !masters.contains(&master) {
            masters.push(master);
            services.push(service);
        }
        if masters.len() == 3 {
            break;
        }
    }
    assert_eq!(masters.len(), 3, "services on three masters");
    for service in &services {
        for registry in &fleet {
            registry.breaker(service); // bound, so events reach it
        }
    }
    for service in &services {
        let breaker = fleet[0].breaker(service);
        for _ in 0..5 {
            let _ = calls::fail(&breaker).await;
        }
        assert_eq!(breaker.state().await.unwrap(), State::Open);
        // The other registry rejects without asking Redis: its view was told.
        assert!(
            eventually(async || rejects(&fleet[1], service).await).await,
            "{service}: the trip did not reach the second registry"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cluster_is_a_clear_init_error() {
    let error = Config::redis_cluster(["redis://:hunter2@127.0.0.1:1"])
        .env_overrides(false)
        .redis_connect_timeout(Duration::from_millis(500))
        .fleet_store()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("cannot reach Redis at cluster 127.0.0.1:1"),
        "{error}"
    );
    assert!(!error.contains("hunter2"), "{error}");
    let error = Config::redis_cluster(Vec::<String>::new())
        .env_overrides(false)
        .fleet_store()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("Config::redis_cluster([])"), "{error}");
    assert!(error.contains("empty"), "{error}");
}

/// A master dies under load: calls go on (under the policy while the slot has no
/// master), the replica is promoted, and the breakers work through it again, their open
/// state intact (replicated, or recreated from the processes' views).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_failover_under_load() {
    let mut cluster = RedisCluster::start();
    let namespace = "failover";
    let service: &'static str = "payments";
    let other: &'static str = "ledger";
    let overrides = ServiceOverride::new()
        .fail_max(3)
        .reset_timeout(Duration::from_secs(120));
    let make = |cluster: &RedisCluster| {
        config(cluster, namespace)
            .redis_call_timeout(Duration::from_millis(200))
            .resync_interval(Duration::from_millis(200))
            .service(service, overrides)
            .service(other, overrides)
    };
    let a = Registry::new(make(&cluster)).await.unwrap();
    let b = Registry::new(make(&cluster)).await.unwrap();
    for _ in 0..3 {
        let _ = calls::fail(&a.breaker(service)).await;
    }
    assert_eq!(a.breaker(service).state().await.unwrap(), State::Open);
    let key = format!("infuse:{{{namespace}/{service}}}:state");
    let master = cluster.master_of(&key);
    // Let the replica catch up, then kill the master.
    std::thread::sleep(Duration::from_millis(200));
    let load = {
        let b = b.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut worst = Duration::ZERO;
            let mut calls_made = 0u32;
            while start.elapsed() < Duration::from_secs(8) {
                let t = Instant::now();
                let _ = calls::succeed(&b.breaker(other)).await;
                let _ = calls::succeed(&b.breaker(service)).await;
                worst = worst.max(t.elapsed());
                calls_made += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (worst, calls_made)
        })
    };
    cluster.node(master).kill();
    assert!(
        cluster.wait_ok(Duration::from_secs(20)),
        "no failover; a node's log:\n{}",
        cluster.nodes[0].log()
    );
    let (worst, calls_made) = load.await.unwrap();
    assert!(calls_made > 100, "calls stalled: {calls_made}");
    // Each call waits at most the call deadline per Redis operation.
    assert!(worst < Duration::from_secs(2), "a call took {worst:?}");
    // Back on the fleet state: the breaker is still open for both, through Redis.
    assert!(
        eventually(async || b.breaker(service).state().await.ok() == Some(State::Open)).await,
        "the open state did not survive the failover"
    );
    assert!(eventually(async || rejects(&b, service).await).await);
    // The other breaker works through the promoted master: it trips fleet-wide.
    assert!(
        eventually(async || {
            let _ = calls::fail(&a.breaker(other)).await;
            a.breaker(other).state().await.ok() == Some(State::Open)
        })
        .await,
        "no trip after the failover"
    );
    assert!(eventually(async || rejects(&b, other).await).await);
}

/// Healthy calls of a closed breaker send nothing to the cluster (its own cluster, so
/// other tests' commands do not count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_calls_send_no_commands() {
    let cluster = RedisCluster::start();
    let registry =
        Registry::new(config(&cluster, "quiet").resync_interval(Duration::from_secs(3600)))
            .await
            .unwrap();
    let breaker = registry.breaker("quiet");
    calls::succeed(&breaker).await.unwrap(); // registers the breaker
    tokio::time::sleep(Duration::from_millis(200)).await;
    for node in &cluster.nodes {
        node.cli(&["CONFIG", "RESETSTAT"]).unwrap();
    }
    for _ in 0..1000 {
        calls::succeed(&breaker).await.unwrap();
    }
    let sent: Vec<_> = cluster
        .nodes
        .iter()
        .flat_map(|n| n.command_stats())
        .filter(|(name, _)| !name.starts_with("info") && !name.starts_with("config"))
        .collect();
    assert!(sent.is_empty(), "1000 healthy calls sent {sent:?}");
}

/// The change log on a cluster: breakers on different slots are listed in the
/// namespace's slot, a full resync's touch brings a lost log back, and a pruning read
/// forgets a breaker whose time is up (every script of the log stays in one slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_is_listed_touched_and_pruned_on_a_cluster() {
    use redis::AsyncCommands;

    let cluster = cluster();
    let namespace = support::unique_namespace("log");
    let registry = Registry::new(
        config(cluster, &namespace)
            .resync_interval(Duration::from_millis(100))
            .redis_call_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    let services: Vec<String> = (0..8).map(|i| format!("svc{i}")).collect();
    for service in &services {
        assert_eq!(
            registry.breaker(service).state().await.unwrap(),
            State::Closed
        );
    }
    let mut conn = redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    let [version, changes, listed] =
        ["version", "changes", "listed"].map(|k| format!("infuse:{{{namespace}}}:{k}"));
    let all_listed = async |conn: &mut redis::cluster_async::ClusterConnection| {
        let names: Vec<String> = conn.zrange(&listed, 0, -1).await.unwrap();
        services.iter().all(|s| names.contains(s))
    };
    assert!(
        eventually(async || all_listed(&mut conn).await).await,
        "not every breaker is listed"
    );

    // Lost: the next full resync's touch lists them again (the log at version 0).
    let _: () = redis::pipe()
        .atomic()
        .del(&version)
        .del(&changes)
        .del(&listed)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        eventually(async || all_listed(&mut conn).await).await,
        "the touch did not list them again"
    );
    let now: Option<String> = conn.get(&version).await.unwrap();
    assert!(now.is_some(), "the version came back");

    // A breaker no process uses, whose time is up: forgotten by a pruning read.
    let _: () = redis::pipe()
        .atomic()
        .zadd(&changes, "retired", 1)
        .zadd(&listed, "retired", 1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        eventually(async || {
            let score: Option<f64> = conn.zscore(&listed, "retired").await.unwrap();
            let noted: Option<f64> = conn.zscore(&changes, "retired").await.unwrap();
            score.is_none() && noted.is_none()
        })
        .await,
        "not pruned"
    );
    assert!(all_listed(&mut conn).await);
}
