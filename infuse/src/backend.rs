//! Static dispatch over the built-in stores, so a breaker's store needs no boxing per
//! call. There is no third arm for a user's store: the fleet's guarantees (views kept
//! in step by events and resyncs, the health gate, the fallback) come with Redis only,
//! so the `Store` trait stays internal.

use std::sync::Arc;

use crate::core::{Command, Outcome, Settings, Snapshot, StorageError, Target};
use crate::fleet::Fleet;
use crate::local::Cell;
use crate::store::memory::MemoryStore;
use crate::store::redis::keys::Audit;

/// The store a registry's breakers use.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Memory(Arc<MemoryStore>),
    Fleet(Arc<Fleet>),
}

impl Backend {
    /// Applies one command (the in-memory store answers without waiting).
    pub(crate) async fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        match self {
            Backend::Memory(store) => Ok(store.apply_now(service, &settings.alone(), command)),
            Backend::Fleet(fleet) => fleet.apply_command(service, settings, command).await,
        }
    }

    /// Forces a breaker's record to `target`; with Redis, `audit` goes to its history
    /// (the in-memory store keeps none).
    pub(crate) async fn force(
        &self,
        service: &'static str,
        settings: &Settings,
        target: Target,
        audit: &Audit,
    ) -> Result<Outcome, StorageError> {
        match self {
            Backend::Memory(store) => {
                Ok(store.apply_now(service, &settings.alone(), Command::Force(target)))
            }
            Backend::Fleet(fleet) => fleet.force(service, settings, target, audit).await,
        }
    }

    /// Gives `cell`'s breaker its permits of the concurrency cap: the whole cap in
    /// memory; with Redis, a lease kept in the background (started here).
    pub(crate) fn bind_permits(&self, cell: &Arc<Cell>) {
        let Some(cap) = cell.settings().max_concurrent else {
            return;
        };
        match self {
            Backend::Memory(_) => cell.permits.grant(cap),
            Backend::Fleet(fleet) => fleet.keep_lease(cell),
        }
    }

    /// Whether a lease of the fleet's concurrency permits can grow now: with Redis while
    /// it answers (never in memory, where a process holds the whole cap).
    pub(crate) fn lease_can_grow(&self) -> bool {
        match self {
            Backend::Memory(_) => false,
            Backend::Fleet(fleet) => fleet.is_healthy(),
        }
    }

    /// A call found no free permit of `cell`'s concurrency cap: with Redis, the lease's
    /// keeper asks for more (restarted if it had stopped).
    pub(crate) fn permits_wanted(&self, cell: &Arc<Cell>) {
        if let Backend::Fleet(fleet) = self {
            fleet.keep_lease(cell);
        }
    }

    /// Counts the first attempt of a call that may be retried, in the budget that decides
    /// its retries: this process's, or the fleet's (reported with the next request).
    pub(crate) fn first_attempt(&self, cell: &Cell) {
        match self {
            Backend::Memory(_) => cell.retries.first_attempt(),
            Backend::Fleet(_) => cell.retries.first_attempt_of_fleet(),
        }
    }

    /// Whether the retry budget allows a retry of `cell`'s breaker now (and takes it).
    pub(crate) async fn take_retry(&self, cell: &Cell, settings: &Settings) -> bool {
        match self {
            Backend::Memory(_) => cell.retries.take(settings),
            Backend::Fleet(fleet) => fleet.take_retry(cell, settings).await,
        }
    }

    /// Counts a first attempt as [`first_attempt`](Backend::first_attempt); with Redis,
    /// also asks the fleet's budget for tokens ahead of need (in the background) when
    /// this process holds none: for [`try_take_retry`](Backend::try_take_retry), which
    /// cannot wait for an answer.
    pub(crate) fn first_attempt_prefetching(&self, cell: &Arc<Cell>) {
        match self {
            Backend::Memory(_) => cell.retries.first_attempt(),
            Backend::Fleet(fleet) => fleet.first_attempt_prefetching(cell),
        }
    }

    /// Like [`take_retry`](Backend::take_retry), without waiting: with Redis, a token
    /// this process holds (else no retry while a batch is asked for in the background).
    pub(crate) fn try_take_retry(&self, cell: &Arc<Cell>, settings: &Settings) -> bool {
        match self {
            Backend::Memory(_) => cell.retries.take(settings),
            Backend::Fleet(fleet) => fleet.try_take_retry(cell, settings),
        }
    }

    /// Applies a command without waiting for it (what a `Drop` can do): at once in
    /// memory, in the background with Redis.
    pub(crate) fn apply_detached(
        &self,
        service: &'static str,
        settings: Settings,
        command: Command,
    ) {
        match self {
            Backend::Memory(store) => {
                store.apply_now(service, &settings.alone(), command);
            }
            Backend::Fleet(fleet) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return; // no runtime: a trial lease expires on its own
                };
                let fleet = fleet.clone();
                runtime.spawn(async move {
                    let _ = fleet.apply_command(service, &settings, command).await;
                });
            }
        }
    }

    /// Binds an existing breaker's cell to this store (at `init`): the fleet keeps it up
    /// to date from now on.
    pub(crate) fn track(&self, cell: &Arc<Cell>) {
        if let Backend::Fleet(fleet) = self {
            fleet.track(cell);
        }
    }

    /// How long a call waits on the store at most (zero in memory).
    pub(crate) fn call_deadline(&self) -> std::time::Duration {
        match self {
            Backend::Memory(_) => std::time::Duration::ZERO,
            Backend::Fleet(fleet) => fleet.call_deadline(),
        }
    }

    /// Whether commands leave the process (and are worth not waiting for).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(self, Backend::Fleet(_))
    }

    /// The shared state for a call that needs it now (never failing, never waiting longer
    /// than the call deadline: the policy answers instead).
    pub(crate) async fn load(&self, service: &'static str, settings: &Settings) -> Snapshot {
        match self {
            Backend::Memory(store) => {
                store
                    .apply_now(service, settings, Command::Register { seed: None })
                    .snapshot
            }
            Backend::Fleet(fleet) => fleet.load(service, settings).await,
        }
    }

    /// Loads the stored state of a breaker created after `init`.
    pub(crate) fn attach(&self, cell: &Arc<Cell>) {
        let settings = cell.settings();
        match self {
            Backend::Memory(store) => {
                let register = Command::Register { seed: None };
                cell.observe(&store.apply_now(cell.service, &settings, register).snapshot);
            }
            Backend::Fleet(fleet) => {
                fleet.track(cell);
                // Created on first use: its first call loads the shared state (it must
                // not assume closed while the fleet has it open); load it eagerly too.
                cell.view.mark_unsynced();
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let (fleet, cell) = (fleet.clone(), cell.clone());
                    runtime.spawn(async move {
                        let register = Command::Register { seed: None };
                        if let Ok(outcome) =
                            fleet.apply_command(cell.service, &settings, register).await
                        {
                            cell.observe(&outcome.snapshot);
                        }
                    });
                }
            }
        }
    }
}
