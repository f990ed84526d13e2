//! The `infuse` command against each deployment the library supports besides one plain
//! server: a Redis Cluster, a Sentinel-managed master, and a TLS-only server with mutual
//! TLS (all started by the harness). The same options as `infuse::Config`, and the
//! same answers.

use std::process::Output;
use std::time::Duration;

use infuse::{Config, Registry, ServiceOverride, State};
use infuse_tests::support::calls::{eventually, fail, succeed};
use infuse_tests::support::tls::{pki, tls_server};
use infuse_tests::support::topology::{RedisCluster, SentinelSet, MASTER_NAME};
use infuse_tests::support::topology_config;
use serde_json::Value;

mod common;

use common::{failure, stdout};

/// Runs `infuse <connection…> args…` to completion.
fn infuse(connection: &[String], args: &[&str]) -> Output {
    common::infuse(
        connection
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied()),
    )
}

/// `status --json`, parsed.
fn status(connection: &[String]) -> Vec<Value> {
    common::json_array(&infuse(connection, &["status", "--json"]))
}

/// `users` (fail_max 2, open 60 s) and `payments`, in `config`'s namespace.
fn fleet_config(base: Config, namespace: &str) -> Config {
    let overrides = ServiceOverride::new()
        .fail_max(2)
        .reset_timeout(Duration::from_secs(60));
    topology_config(base, namespace)
        .service("users", overrides)
        .service("payments", overrides)
        .resync_interval(Duration::from_millis(300))
        .redis_admin_timeout(Duration::from_secs(2))
}

/// Trips `users` and uses `payments` from `registry`; then `status`, through
/// `connection`, shows both, the processes that see them, and `force-open payments`
/// reaches the registry.
async fn status_and_control(registry: &Registry, connection: &[String]) {
    let (users, payments) = (registry.breaker("users"), registry.breaker("payments"));
    assert!(succeed(&payments).await.is_ok());
    for _ in 0..2 {
        let _ = fail(&users).await;
    }
    assert_eq!(users.state().await.unwrap(), State::Open);

    let shown = eventually(
        Duration::from_secs(10),
        Duration::from_millis(100),
        async || {
            let all = status(connection);
            all.len() == 2
                && all[1]["service"] == "users"
                && all[1]["state"] == "open"
                && all[1]["processes"].as_array().is_some_and(|p| p.len() == 1)
        },
    )
    .await;
    let all = status(connection);
    assert!(shown, "{all:?}");
    assert_eq!(all[0]["service"], "payments");
    assert_eq!(all[0]["state"], "closed");
    assert_eq!(all[1]["fail_counter"], 2);
    let left = all[1]["open_remaining_ms"].as_u64().expect("time left");
    assert!(left > 40_000 && left <= 60_000, "{left}");
    assert_eq!(all[1]["processes"][0]["pid"], std::process::id());

    let said = stdout(&infuse(connection, &["force-open", "payments"]));
    assert!(
        said.starts_with("payments: closed -> forced-open"),
        "{said}"
    );
    let seen = eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        async || payments.state().await.ok() == Some(State::ForcedOpen),
    )
    .await;
    assert!(seen, "the registry sees the forced state");
    stdout(&infuse(connection, &["close", "payments"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster() {
    let cluster = RedisCluster::start();
    // A namespace in which the two breakers' records live on different masters.
    let namespace = (0..)
        .map(|n| format!("cli-cluster-{n}"))
        .find(|ns| {
            cluster.master_of(&format!("infuse:{{{ns}/users}}:state"))
                != cluster.master_of(&format!("infuse:{{{ns}/payments}}:state"))
        })
        .unwrap();
    let registry = Registry::new(fleet_config(
        Config::redis_cluster(cluster.urls()),
        &namespace,
    ))
    .await
    .unwrap();
    let connection = vec![
        "--redis-cluster".to_owned(),
        cluster.urls().join(","),
        "--namespace".to_owned(),
        namespace,
    ];
    status_and_control(&registry, &connection).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_sentinels() {
    let sentinels = SentinelSet::start();
    let registry = Registry::new(fleet_config(
        Config::redis_sentinel(sentinels.urls(), MASTER_NAME),
        "cli-sentinel",
    ))
    .await
    .unwrap();
    let mut connection = vec!["--namespace".to_owned(), "cli-sentinel".to_owned()];
    for url in sentinels.urls() {
        connection.extend(["--redis-sentinel".to_owned(), url]);
    }
    connection.extend(["--sentinel-master".to_owned(), MASTER_NAME.to_owned()]);
    status_and_control(&registry, &connection).await;

    // The master's name is required, and named.
    let without_master = &connection[..connection.len() - 2];
    let said = failure(&infuse(without_master, &["status"]));
    assert!(said.contains("--sentinel-master"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls() {
    let server = tls_server(true);
    let pki = pki();
    let registry = Registry::new(
        fleet_config(Config::redis(server.url()), "cli-tls")
            .tls_root_cert(&pki.ca_pem)
            .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem),
    )
    .await
    .unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let base = vec![
        "--redis".to_owned(),
        server.url(),
        "--namespace".to_owned(),
        "cli-tls".to_owned(),
    ];
    let mut connection = base.clone();
    connection.extend([
        "--tls-ca-cert".to_owned(),
        path(&pki.files.ca),
        "--tls-client-cert".to_owned(),
        path(&pki.files.client_cert),
        "--tls-client-key".to_owned(),
        path(&pki.files.client_key),
    ]);
    status_and_control(&registry, &connection).await;

    // Without the private CA the server's certificate is not trusted: a clear error.
    let said = failure(&infuse(&base, &["status"]));
    assert!(said.to_lowercase().contains("certificate"), "{said}");
    // A key without its certificate, a file that is not there.
    let mut half = base.clone();
    half.extend(["--tls-client-key".to_owned(), path(&pki.files.client_key)]);
    let said = failure(&infuse(&half, &["status"]));
    assert!(said.contains("--tls-client-cert"), "{said}");
    let mut missing = base.clone();
    missing.extend(["--tls-ca-cert".to_owned(), "/nonexistent/ca.pem".to_owned()]);
    let said = failure(&infuse(&missing, &["status"]));
    assert!(said.contains("/nonexistent/ca.pem"), "{said}");
}

#[test]
fn one_deployment_at_a_time() {
    let both = [
        "--redis".to_owned(),
        "redis://127.0.0.1:1".to_owned(),
        "--redis-cluster".to_owned(),
        "redis://127.0.0.1:2".to_owned(),
    ];
    let said = failure(&infuse(&both, &["status"]));
    assert!(said.contains("one of --redis"), "{said}");
    let orphan = [
        "--sentinel-master".to_owned(),
        "mymaster".to_owned(),
        "--redis".to_owned(),
        "redis://127.0.0.1:1".to_owned(),
    ];
    let said = failure(&infuse(&orphan, &["status"]));
    assert!(said.contains("--redis-sentinel"), "{said}");
}
