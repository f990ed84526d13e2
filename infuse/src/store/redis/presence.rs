//! What a fleet's operators read besides the breakers' records: each process's
//! announcement (a key with a TTL, indexed) and each breaker's recent transitions (a
//! capped list the scripts write). Neither is on any call path.

use crate::store::redis::RedisStore;

/// How many transitions a breaker's history keeps (`HISTORY_LEN` of `scripts/prelude.lua`).
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
}
