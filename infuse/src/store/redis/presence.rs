//! What a fleet's operators read besides the breakers' records: each process's
//! announcement (a key with a TTL) and each breaker's recent transitions (a capped list).
//! Neither is on any call path.

use std::time::Duration;

use crate::core::{saturating_millis, StorageError};
use crate::store::redis::{bounded, RedisStore};

/// How many transitions a breaker's history keeps.
pub const HISTORY_LEN: usize = 50;

impl RedisStore {
    /// The key under which process `instance` announces itself:
    /// `infuse:{<namespace>}:process:<instance in hex>`.
    pub fn process_key(&self, instance: u64) -> String {
        format!("infuse:{{{}}}:process:{instance:x}", self.namespace)
    }

    /// The namespace's index of live processes: `infuse:{<namespace>}:processes`, a
    /// sorted set of process ids (hex) scored by when their announcement expires.
    pub fn processes_key(&self) -> String {
        format!("infuse:{{{}}}:processes", self.namespace)
    }

    /// The list of a breaker's recent transitions, newest first:
    /// `infuse:{<namespace>/<service>}:history` (the breaker's hash tag).
    pub fn history_key(&self, service: &str) -> String {
        format!("infuse:{{{}/{}}}:history", self.namespace, service)
    }

    /// Writes this process's announcement, to expire after `ttl` unless renewed, and
    /// indexes it (see `scripts/announce.lua`).
    pub async fn announce(
        &self,
        instance: u64,
        payload: String,
        ttl: Duration,
    ) -> Result<(), StorageError> {
        let mut invocation = self.scripts.announce.prepare_invoke();
        invocation
            .key(self.process_key(instance))
            .key(self.processes_key())
            .arg(payload)
            .arg(saturating_millis(ttl).max(1))
            .arg(format!("{instance:x}"));
        let mut conn = self.conn.clone();
        bounded("announce", self.deadlines.admin, async move {
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// Prepends `entry` to `service`'s history, keeping the newest [`HISTORY_LEN`]; the
    /// list expires with the record (`key_ttl` after its last write).
    pub async fn append_history(&self, service: &str, entry: String) -> Result<(), StorageError> {
        let key = self.history_key(service);
        let ttl = saturating_millis(self.key_ttl).max(1);
        let mut conn = self.conn.clone();
        bounded("history", self.deadlines.admin, async move {
            redis::pipe()
                .atomic()
                .lpush(&key, entry)
                .ignore()
                .ltrim(&key, 0, HISTORY_LEN as isize - 1)
                .ignore()
                .pexpire(&key, ttl as i64)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }
}
