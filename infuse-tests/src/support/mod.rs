//! Test support shared by the integration tests.

pub mod calls;
pub mod redis_server;

use std::time::Duration;

use infuse::store::redis::{Deadlines, RedisStore};
use infuse::store::{Command, Outcome, Store};
use infuse::{Settings, StorageError};

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
    async fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        self.store.apply(service, settings, command).await
    }
}
