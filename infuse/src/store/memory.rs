//! The in-process store: [`machine::apply`] under a lock. The reference implementation
//! of [`Store`], and the default.
//!
//! Each breaker's record has a mutex of its own, so breakers never wait on each other:
//! the map from service to record is read-locked to find a record (write-locked only
//! the first time a service is seen). A record's lock is held only for the transition
//! (never across a guarded call, never across an `.await`).
//!
//! Its [`Budgets`] are the rules of the fleet's budgets under one lock, on tokio's clock
//! (milliseconds and seconds since the store's first budget request): the reference for
//! the Redis scripts in the conformance suite.

use std::collections::HashMap;
use std::future::{ready, Future};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::lease::{Grant, LeaseTable};
use super::machine::{self, Record};
use super::retry_budget::{BudgetWindow, MAX_COUNT};
use super::{Budgets, Command, Outcome, Seed, Store};
use crate::core::{fresh_incarnation, saturating_millis, store_ms, Settings, StorageError};

type Slot = Arc<Mutex<Option<Record>>>;

/// Breaker state kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: RwLock<HashMap<&'static str, Slot>>,
    /// The budgets of each breaker that asked (see [`Budgets`]).
    budgets: Mutex<HashMap<String, Budget>>,
    /// Where the budgets' clock starts.
    epoch: OnceLock<Instant>,
}

/// A breaker's budgets: its leases of permits and its retry window.
#[derive(Debug, Default)]
struct Budget {
    leases: LeaseTable,
    window: BudgetWindow,
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

    /// Runs `f` on `service`'s budgets with the budgets' time in milliseconds.
    fn with_budget<T>(&self, service: &str, f: impl FnOnce(&mut Budget, u64) -> T) -> T {
        let epoch = *self.epoch.get_or_init(Instant::now);
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let now_ms = saturating_millis(Instant::now().saturating_duration_since(epoch));
        let budget = match budgets.get_mut(service) {
            Some(budget) => budget,
            None => budgets.entry(service.to_owned()).or_default(),
        };
        f(budget, now_ms)
    }
}

impl Budgets for MemoryStore {
    fn lease_permits(
        &self,
        service: &str,
        process: u64,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
    ) -> impl Future<Output = Result<Grant, StorageError>> + Send {
        // As the script: a lease of at least 1 ms.
        let lease_ms = store_ms(lease).max(1);
        ready(Ok(self.with_budget(service, |budget, now_ms| {
            budget
                .leases
                .request(now_ms, process, keep, want, cap, lease_ms)
        })))
    }

    fn retry_tokens(
        &self,
        service: &str,
        settings: &Settings,
        first_attempts: u64,
        wanted: u64,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send {
        let (ratio, floor) = (settings.retry_budget, settings.retry_min_per_sec);
        ready(Ok(self.with_budget(service, |budget, now_ms| {
            let second = now_ms / 1_000;
            let window = &mut budget.window;
            window.first_attempts(second, first_attempts.min(MAX_COUNT));
            window.take(second, wanted.min(MAX_COUNT), ratio, floor)
        })))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The budgets' time is tokio's: on a paused clock, a lease ends when its time is up,
    /// the floor of retry tokens comes back each second, and first attempts leave the
    /// ratio's window ten seconds on.
    #[tokio::test(start_paused = true)]
    async fn the_budgets_follow_tokios_clock() {
        let store = MemoryStore::new();
        let lease = Duration::from_millis(500);
        let ask = |process, want| store.lease_permits("svc", process, 0, want, 4, lease);
        assert_eq!(ask(1, 4).await.unwrap(), Grant { target: 4, held: 4 });
        tokio::time::sleep(lease - Duration::from_millis(1)).await;
        assert_eq!(ask(2, 4).await.unwrap().held, 0, "1's lease lasts");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(ask(2, 4).await.unwrap().held, 4, "1's lease ended");

        // A store of its own: its first request starts its seconds.
        let store = MemoryStore::new();
        let floor = Settings::DEFAULT.retry_budget(20).retry_min_per_sec(5);
        assert_eq!(store.retry_tokens("svc", &floor, 0, 9).await.unwrap(), 5);
        assert_eq!(store.retry_tokens("svc", &floor, 0, 9).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert_eq!(store.retry_tokens("svc", &floor, 0, 9).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(store.retry_tokens("svc", &floor, 0, 9).await.unwrap(), 5);

        let ratio = Settings::DEFAULT.retry_budget(20).retry_min_per_sec(0);
        assert_eq!(store.retry_tokens("r", &ratio, 100, 10).await.unwrap(), 10);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert_eq!(store.retry_tokens("r", &ratio, 0, 100).await.unwrap(), 10);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            store.retry_tokens("r", &ratio, 0, 100).await.unwrap(),
            0,
            "the first attempts left the window"
        );
    }
}
