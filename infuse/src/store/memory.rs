//! The in-process store: [`machine::apply`] under a lock. The reference implementation
//! of [`Store`], and the default.
//!
//! Each breaker's record has a mutex of its own, so breakers never wait on each other:
//! the map from service to record is read-locked to find a record (write-locked only
//! the first time a service is seen). A record's lock is held only for the transition
//! (never across a guarded call, never across an `.await`).

use std::collections::HashMap;
use std::future::{ready, Future};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::time::Instant;

use super::machine::{self, Record};
use super::{Command, Outcome, Seed, Store};
use crate::core::{fresh_incarnation, Settings, StorageError};

type Slot = Arc<Mutex<Option<Record>>>;

/// Breaker state kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: RwLock<HashMap<&'static str, Slot>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The record slot of `service`, created empty on first use.
    fn slot(&self, service: &'static str) -> Slot {
        // Nothing panics while a lock is held, but never let a poisoned lock wedge
        // every breaker.
        if let Some(slot) = self
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)
        {
            return Arc::clone(slot);
        }
        let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(records.entry(service).or_default())
    }

    /// The synchronous form of [`Store::apply`], answering a command that cannot be
    /// applied (a generation at [`MAX_GENERATION`](crate::store::MAX_GENERATION)) as not
    /// applied (see [`machine::apply`]): the in-memory store never waits.
    pub fn apply_now(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Outcome {
        self.apply_seeded(service, settings, None, command)
    }

    /// [`apply_now`](MemoryStore::apply_now), registering `seed` first (when given) under
    /// the same lock: how the fleet's local fallback takes in a process's view of a
    /// breaker the first time it answers for it.
    pub(crate) fn apply_seeded(
        &self,
        service: &'static str,
        settings: &Settings,
        seed: Option<Seed>,
        command: Command,
    ) -> Outcome {
        let slot = self.slot(service);
        let now = Instant::now();
        let mut record = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if seed.is_some() {
            let register = Command::Register { seed };
            machine::apply(&mut record, &register, settings, now, fresh_incarnation);
        }
        machine::apply(&mut record, &command, settings, now, fresh_incarnation)
    }

    /// The synchronous form of [`Store::apply`] (see [`machine::try_apply`]).
    pub fn try_apply_now(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        let slot = self.slot(service);
        let now = Instant::now();
        let mut record = slot.lock().unwrap_or_else(PoisonError::into_inner);
        machine::try_apply(&mut record, &command, settings, now, fresh_incarnation)
    }
}

impl Store for MemoryStore {
    fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send {
        ready(self.try_apply_now(service, settings, command))
    }
}
