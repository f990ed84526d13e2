//! The in-process store: [`machine::apply`] under a lock. The reference implementation
//! of [`Store`], and the default.
//!
//! One mutex guards the records; it is held only for the transition (never across a
//! guarded call, never across an `.await`).

use std::collections::HashMap;
use std::future::{ready, Future};
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

use super::machine::{self, Record};
use super::{Command, Outcome, Store};
use crate::core::{fresh_incarnation, Settings, StorageError};

/// Breaker state kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<&'static str, Option<Record>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The synchronous form of [`Store::apply`]: the in-memory store never waits.
    pub fn apply_now(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Outcome {
        let now = Instant::now();
        // Nothing panics while the lock is held, but never let a poisoned lock wedge
        // every breaker.
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let record = records.entry(service).or_default();
        machine::apply(record, &command, settings, now, fresh_incarnation)
    }
}

impl Store for MemoryStore {
    fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send {
        ready(Ok(self.apply_now(service, settings, command)))
    }
}
