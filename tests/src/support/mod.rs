//! Test support shared by the integration tests: Redis servers, the test configurations
//! of a Redis-backed registry, and stores on their own server for the conformance suite.

pub mod calls;
pub mod http;
pub mod proxy;
pub mod redis_server;
pub mod tls;
pub mod topology;

use std::time::Duration;

use infuse::store::redis::{Deadlines, RedisStore};
use infuse::store::{Command, Outcome, Store};
use infuse::{Config, FleetStore, ServiceOverride, Settings, StorageError};

use redis_server::RedisServer;

/// A current-thread runtime and a connection to `server`: for tests that drive Redis from
/// synchronous code (a property-test runner).
pub fn blocking_connection(
    server: &RedisServer,
) -> (tokio::runtime::Runtime, redis::aio::MultiplexedConnection) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let client = redis::Client::open(server.url()).expect("a client");
    let conn = runtime
        .block_on(client.get_multiplexed_async_connection())
        .expect("a connection");
    (runtime, conn)
}

/// A Redis configuration for tests: `server`, its own `namespace`, and no environment
/// overrides (tests must not depend on the environment they run in).
pub fn redis_config(server: &RedisServer, namespace: &str) -> Config {
    Config::redis(server.url())
        .namespace(namespace)
        .env_overrides(false)
}

/// [`redis_config`] with one service's `fail_max` and reset timeout.
pub fn redis_service_config(
    server: &RedisServer,
    namespace: &str,
    service: &str,
    fail_max: u32,
    reset: Duration,
) -> Config {
    redis_config(server, namespace).service(
        service,
        ServiceOverride::new()
            .fail_max(fail_max)
            .reset_timeout(reset),
    )
}

/// A raw Redis store on its own server, for the conformance suite.
pub struct ServerStore {
    pub store: RedisStore,
    pub server: RedisServer,
}

impl ServerStore {
    pub async fn start() -> ServerStore {
        let server = RedisServer::start();
        let client = redis::Client::open(server.url()).unwrap();
        let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
        let deadlines = Deadlines {
            call: Duration::from_secs(1),
            admin: Duration::from_secs(1),
        };
        let store = RedisStore::new(conn, "conformance", Duration::from_secs(60), deadlines);
        store.load_scripts().await.unwrap();
        ServerStore { store, server }
    }
}

impl Store for ServerStore {
    async fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        self.store.apply(service, settings, command).await
    }
}

/// The fleet layer (`FleetStore`) on its own server, for the conformance suite. The store
/// is declared first so that it is dropped before the server; the server's drop resumes
/// (SIGCONT) and kills it, so a paused server never outlives the test.
pub struct FleetServerStore {
    pub store: FleetStore,
    pub server: RedisServer,
}

impl FleetServerStore {
    /// A fleet store on a healthy server of its own.
    pub async fn start() -> FleetServerStore {
        FleetServerStore::connect(Duration::from_secs(1)).await
    }

    /// A fleet store whose server is paused (SIGSTOP) and which has already degraded, so
    /// that its local fallback answers every command.
    pub async fn degraded() -> FleetServerStore {
        let fleet = FleetServerStore::connect(Duration::from_millis(25)).await;
        fleet.server.pause();
        // A call-path command times out on the paused server and degrades the store.
        let failure = Command::RecordFailure {
            generation: 1,
            count: 1,
            instance: 1,
        };
        fleet
            .store
            .apply("fallback-degrade", &Settings::DEFAULT, failure)
            .await
            .expect("a call-path command is answered by the policy");
        let degraded = calls::eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            async || !fleet.store.is_healthy(),
        )
        .await;
        assert!(
            degraded,
            "the fleet store did not degrade on a paused server"
        );
        fleet
    }

    /// A healthy fleet store on a new server, with this call deadline.
    async fn connect(call_timeout: Duration) -> FleetServerStore {
        let server = RedisServer::start();
        let store = redis_config(&server, "conformance")
            .redis_call_timeout(call_timeout)
            .redis_admin_timeout(Duration::from_secs(1))
            .fleet_store()
            .await
            .expect("fleet store");
        assert!(store.is_healthy(), "a fresh fleet store is healthy");
        FleetServerStore { store, server }
    }
}

impl Store for FleetServerStore {
    async fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        self.store.apply(service, settings, command).await
    }
}

/// A registry configuration on a shared topology (`base`, from `Config::redis_sentinel` or
/// `Config::redis_cluster`), with its own namespace and no environment overrides.
pub fn topology_config(base: Config, namespace: &str) -> Config {
    base.namespace(namespace).env_overrides(false)
}

/// A unique namespace for one test on a shared topology.
pub fn unique_namespace(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{what}-{}-{n}", std::process::id())
}
