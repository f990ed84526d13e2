//! What answers when Redis cannot: under `FailOpen` / `FailClosed` a synthetic state
//! that lets every call through or rejects every call; under `LocalFallback` an in-memory
//! store, seeded once per breaker from this process's view. What the local fallback
//! decides (a trip, a trial's verdict, counts) protects this process only: after the
//! outage its trips become quarantines (see `health.rs`), and it starts afresh.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{lock, UnavailablePolicy};
use crate::core::{
    now_nanos, saturating_nanos, Command, Outcome, Settings, Snapshot, State, TrialToken, Version,
};
use crate::local::Cell;
use crate::store::memory::MemoryStore;

/// The unavailable-policy, with the local fallback's store and what it decided alone.
#[derive(Debug)]
pub(super) struct Fallback {
    policy: UnavailablePolicy,
    /// Replaced by a fresh one at every recovery.
    store: ArcSwap<MemoryStore>,
    /// Services whose record was seeded from the view.
    seeded: Mutex<HashSet<&'static str>>,
    /// Trials it granted: their results and releases go to it, not to Redis.
    trials: Mutex<HashSet<TrialToken>>,
    /// Breakers it opened (a trip, a failed trial), and until when on the fast-path
    /// clock: after recovery that protection stays this process's own.
    trips: Mutex<HashMap<&'static str, u64>>,
}

impl Fallback {
    pub(super) fn new(policy: UnavailablePolicy) -> Fallback {
        Fallback {
            policy,
            store: ArcSwap::from_pointee(MemoryStore::new()),
            seeded: Mutex::default(),
            trials: Mutex::default(),
            trips: Mutex::default(),
        }
    }

    pub(super) fn policy(&self) -> UnavailablePolicy {
        self.policy
    }

    /// Whether commands are applied here (`LocalFallback`), not answered with a state.
    pub(super) fn is_local(&self) -> bool {
        self.policy == UnavailablePolicy::LocalFallback
    }

    /// Whether `command` reports on a trial the local fallback granted (it answers it
    /// then, Redis healthy or not).
    pub(super) fn holds(&self, command: &Command) -> bool {
        match *command {
            Command::RecordTrial { token, .. } | Command::ReleaseTrial { token } => {
                lock(&self.trials).contains(&token)
            }
            _ => false,
        }
    }

    /// Answers `command` without Redis (`cell`: the breaker's, if one is bound): the local
    /// fallback applies it; the other policies answer their state, applying nothing.
    pub(super) fn answer(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
        cell: Option<&Cell>,
    ) -> Outcome {
        if !self.is_local() {
            let snapshot = self.policy_snapshot(cell.map_or(1, |cell| cell.view.generation()));
            return Outcome {
                applied: false,
                from: snapshot.state,
                snapshot,
                window: None,
            };
        }
        let store = self.store.load_full();
        // Seeded once, from the view: the fallback goes on from what this process knew.
        let seed = if lock(&self.seeded).insert(service) {
            cell.map(Cell::seed)
        } else {
            None
        };
        let outcome = store.apply_seeded(service, settings, seed, command);
        if outcome.applied && outcome.from != State::Open && outcome.snapshot.state == State::Open {
            // This process's own decision: it protects this process, never the fleet.
            let open_for = outcome.snapshot.open_remaining.unwrap_or_default();
            let until = now_nanos().saturating_add(saturating_nanos(open_for));
            lock(&self.trips).insert(service, until);
        }
        match command {
            Command::AcquireTrial { token, .. } if outcome.applied => {
                lock(&self.trials).insert(token);
            }
            Command::RecordTrial { token, .. } | Command::ReleaseTrial { token } => {
                lock(&self.trials).remove(&token);
            }
            _ => {}
        }
        outcome
    }

    /// The state a breaker's view follows while its record cannot be used.
    pub(super) fn state_for(&self, cell: &Cell) -> Snapshot {
        let settings = cell.settings();
        let answer = self.answer(cell.service, &settings, Command::Snapshot, Some(cell));
        answer.snapshot
    }

    /// What FailOpen / FailClosed answer: a synthetic state that lets every call through
    /// or rejects every call.
    fn policy_snapshot(&self, generation: u64) -> Snapshot {
        let mut snapshot = Snapshot::closed(Version {
            incarnation: u64::MAX,
            seq: 0,
        });
        snapshot.generation = generation;
        if self.policy == UnavailablePolicy::FailClosed {
            snapshot.state = State::Open;
            snapshot.open_remaining = Some(Duration::from_millis(100));
        }
        snapshot
    }

    /// The services the local fallback answered for (and seeded) since the last
    /// recovery.
    pub(super) fn seeded(&self) -> HashSet<&'static str> {
        lock(&self.seeded).clone()
    }

    /// Starts afresh (Redis is back), answering the trips the local fallback made: until
    /// when each breaker it opened protects this process.
    pub(super) fn reset(&self) -> HashMap<&'static str, u64> {
        self.store.store(Arc::new(MemoryStore::new()));
        lock(&self.seeded).clear();
        lock(&self.trials).clear();
        std::mem::take(&mut *lock(&self.trips))
    }

    /// Whether the local fallback granted the trial `token` (for the simulation's
    /// checks).
    #[cfg(test)]
    pub(super) fn granted(&self, token: &TrialToken) -> bool {
        lock(&self.trials).contains(token)
    }

    /// How many breakers the local fallback opened (for the simulation's report).
    #[cfg(test)]
    pub(super) fn trip_count(&self) -> usize {
        lock(&self.trips).len()
    }

    /// The state the local fallback's store holds for `service`, neither seeding nor
    /// noting anything (for the simulation's checks).
    #[cfg(test)]
    pub(super) fn peek(&self, service: &'static str, settings: &Settings) -> Snapshot {
        let snapshot = Command::Snapshot;
        self.store
            .load()
            .apply_now(service, settings, snapshot)
            .snapshot
    }
}
