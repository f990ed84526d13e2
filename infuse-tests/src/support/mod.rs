//! Test support shared by the integration tests (each test binary includes it with
//! `mod support;`).

pub mod calls;
pub mod redis_server;

use std::time::Duration;

use infuse::store::redis::{Deadlines, RedisStore};
use infuse::store::{Outcome, Snapshot, Store, TrialToken};
use infuse::{Settings, State, StorageError};

use redis_server::RedisServer;

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
    async fn register(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> Result<Snapshot, StorageError> {
        self.store.register(service, settings).await
    }
    async fn snapshot(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> Result<Snapshot, StorageError> {
        self.store.snapshot(service, settings).await
    }
    async fn record_failure(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> Result<Outcome, StorageError> {
        self.store
            .record_failure(service, settings, generation)
            .await
    }
    async fn record_success(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> Result<Outcome, StorageError> {
        self.store
            .record_success(service, settings, generation)
            .await
    }
    async fn acquire_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        lease: Duration,
    ) -> Result<Outcome, StorageError> {
        self.store
            .acquire_trial(service, settings, token, lease)
            .await
    }
    async fn record_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        success: bool,
    ) -> Result<Outcome, StorageError> {
        self.store
            .record_trial(service, settings, token, success)
            .await
    }
    fn release_trial(&self, service: &'static str, token: TrialToken) {
        self.store.release_trial(service, token)
    }
    async fn force(
        &self,
        service: &'static str,
        settings: &Settings,
        to: State,
    ) -> Result<Outcome, StorageError> {
        self.store.force(service, settings, to).await
    }
}
