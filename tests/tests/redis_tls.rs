//! Fleet mode over TLS (`rediss://`) against TLS-only `redis-server`s, with certificates
//! made here by `rcgen`: a private CA (`Config::tls_root_cert`), mutual TLS
//! (`Config::tls_client_cert`), a wrong CA refused with a clear error, PEM arguments
//! that do not parse, and a trip seen by a second registry (pub/sub over TLS).

use std::time::Duration;

use infuse::{BreakerError, Config, InitError, Registry, ServiceOverride, State};
use infuse_tests::support::redis_server::{RedisServer, TlsFiles};
use infuse_tests::support::tls::{ca, pki, tls_server};
use infuse_tests::support::topology::{RedisCluster, SentinelOptions, SentinelSet, MASTER_NAME};
use infuse_tests::support::{self, calls};

fn config(server: &RedisServer) -> Config {
    support::topology_config(Config::redis(server.url()), "tls")
        .redis_connect_timeout(Duration::from_secs(2))
        .allow_undeclared_overrides(true)
}

#[tokio::test]
async fn a_private_ca_is_trusted() {
    let server = tls_server(false);
    assert!(server.url().starts_with("rediss://"));
    let store = config(&server)
        .tls_root_cert(pki().ca_pem.as_str())
        .fleet_store()
        .await
        .expect("TLS with a private CA");
    assert!(store.is_healthy());
    // The same, with the PEM as bytes.
    let store = config(&server)
        .tls_root_cert(pki().ca_pem.as_bytes())
        .fleet_store()
        .await
        .expect("TLS with a private CA given as bytes");
    assert!(store.is_healthy());
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let server = tls_server(true);
    let pki = pki();
    // Every PEM argument shape: `String`, `&str`, `&[u8]`, `Vec<u8>`.
    let key: Vec<u8> = pki.client_key_pem.clone().into_bytes();
    let store = config(&server)
        .tls_root_cert(pki.ca_pem.clone())
        .tls_client_cert(pki.client_cert_pem.clone(), key)
        .fleet_store()
        .await
        .expect("mutual TLS");
    assert!(store.is_healthy());
    // Without a client certificate the server refuses the handshake.
    let error = config(&server)
        .tls_root_cert(&pki.ca_pem)
        .fleet_store()
        .await
        .unwrap_err();
    assert!(matches!(error, InitError::Unreachable { .. }), "{error:?}");
}

#[tokio::test]
async fn a_wrong_ca_is_refused_with_a_clear_error() {
    let server = tls_server(false);
    let other = ca().pem();
    let error = config(&server)
        .tls_root_cert(other)
        .fleet_store()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, InitError::Unreachable { .. }), "{text}");
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("Config::tls_root_cert"), "{text}");
    // No CA at all: the system's roots do not know the test CA (and the crypto provider
    // is there out of the box: no panic).
    let error = config(&server).fleet_store().await.unwrap_err().to_string();
    assert!(error.contains("certificate"), "{error}");
}

#[tokio::test]
async fn pem_that_does_not_parse_names_the_argument() {
    let server = tls_server(false);
    let error = config(&server)
        .tls_root_cert("not a certificate")
        .fleet_store()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("invalid setting Config::tls_root_cert"),
        "{error}"
    );
    let error = config(&server)
        .tls_root_cert(&pki().ca_pem)
        .tls_client_cert(&pki().client_cert_pem, "garbage")
        .fleet_store()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("invalid setting Config::tls_client_cert"),
        "{error}"
    );
    assert!(error.contains("private key (second argument)"), "{error}");
    // Certificates with a plain-TCP URL: a mistake, said so.
    let plain = RedisServer::start();
    let error = support::topology_config(Config::redis(plain.url()), "tls")
        .tls_root_cert(&pki().ca_pem)
        .fleet_store()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("rediss://"), "{error}");
}

/// Two registries of `config` (`users` trips at 2 failures): a trip in one reaches the
/// other through pub/sub.
async fn trip_reaches_another_registry(config: impl Fn() -> Config) {
    let a = Registry::new(config()).await.expect("the first registry");
    let b = Registry::new(config()).await.expect("the second registry");
    b.breaker("users");
    for _ in 0..2 {
        let _ = calls::fail(&a.breaker("users")).await;
    }
    assert_eq!(a.breaker("users").state().await.unwrap(), State::Open);
    let told = calls::eventually(
        Duration::from_secs(5),
        Duration::from_millis(10),
        async || {
            matches!(
                calls::succeed(&b.breaker("users")).await,
                Err(BreakerError::Open { .. })
            )
        },
    )
    .await;
    assert!(told, "the trip did not reach the second registry over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trip_reaches_another_registry_over_tls() {
    let server = tls_server(true);
    let pki = pki();
    let config = || {
        config(&server)
            .tls_root_cert(&pki.ca_pem)
            .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
            .redis_call_timeout(Duration::from_millis(500))
            .service("users", ServiceOverride::new().fail_max(2))
    };
    trip_reaches_another_registry(config).await;
}

/// A Redis Cluster on TLS only (clients, bus, replication) with mutual TLS: the cluster
/// client connects to every node it learns of with the same certificates, and a trip on
/// one registry reaches another through a node's pub/sub over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_mutual_tls() {
    let cluster = RedisCluster::start_with(Some(TlsFiles {
        auth_clients: true,
        ..pki().files.clone()
    }));
    assert!(cluster
        .urls()
        .iter()
        .all(|url| url.starts_with("rediss://")));
    let pki = pki();
    let config = || {
        support::topology_config(Config::redis_cluster(cluster.urls()), "tls-cluster")
            .redis_connect_timeout(Duration::from_secs(2))
            .tls_root_cert(&pki.ca_pem)
            .tls_client_cert(&pki.client_cert_pem, &pki.client_key_pem)
            .redis_call_timeout(Duration::from_millis(500))
            .service("users", ServiceOverride::new().fail_max(2))
    };
    trip_reaches_another_registry(config).await;
    // Without the client certificate, the cluster refuses the connection: a clear error.
    let error = support::topology_config(Config::redis_cluster(cluster.urls()), "tls-cluster")
        .redis_connect_timeout(Duration::from_secs(2))
        .tls_root_cert(&pki.ca_pem)
        .fleet_store()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot reach Redis"), "{error}");
}

/// Sentinels, master and replica all on TLS only: the Sentinels' `rediss://` URLs put the
/// master on TLS too, with the same certificates; a trip reaches another registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_and_master_over_tls() {
    let set = SentinelSet::start_with(SentinelOptions {
        tls: Some(pki().files.clone()),
        ..SentinelOptions::default()
    });
    assert!(set.urls()[0].starts_with("rediss://"));
    let config = || {
        support::topology_config(
            Config::redis_sentinel(set.urls(), MASTER_NAME),
            "tls-sentinel",
        )
        .tls_root_cert(&pki().ca_pem)
        .redis_call_timeout(Duration::from_millis(500))
        .allow_undeclared_overrides(true)
        .service("users", ServiceOverride::new().fail_max(2))
    };
    trip_reaches_another_registry(config).await;
}
