//! The in-process store: the reference implementation of [`Store`], and the default.
//!
//! One mutex guards the records; it is held only for the decision (never across a
//! guarded call, never across an `.await`).

use std::collections::HashMap;
use std::future::{ready, Future};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{Outcome, Snapshot, Store, TrialToken, Version};
use crate::{Settings, State, StorageError};

/// Breaker state kept in this process's memory.
#[derive(Debug)]
pub struct MemoryStore {
    records: Mutex<HashMap<&'static str, Record>>,
    /// Distinguishes this store's snapshots from another store's (e.g. after a switch).
    incarnation: u64,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            records: Mutex::default(),
            incarnation: (TrialToken::new().0 as u64) | 1,
        }
    }
}

#[derive(Debug)]
struct Record {
    /// The recorded state. As in pybreaker, open → half-open is lazy: an open breaker
    /// whose timeout passed stays `Open` (with no time left) until a call takes the trial.
    state: State,
    generation: u64,
    seq: u64,
    fail: u32,
    success: u32,
    open_until: Option<Instant>,
    trial: Option<(TrialToken, Instant)>,
}

impl Record {
    fn new() -> Record {
        Record {
            state: State::Closed,
            generation: 1,
            seq: 0,
            fail: 0,
            success: 0,
            open_until: None,
            trial: None,
        }
    }

    /// Whether a trial call may start: half-open, or open with its timeout passed.
    fn trial_allowed(&self, now: Instant) -> bool {
        match self.state {
            State::HalfOpen => true,
            State::Open => self.open_until.is_none_or(|until| now >= until),
            State::Closed => false,
        }
    }

    fn trial_holder(&self, now: Instant) -> Option<TrialToken> {
        self.trial
            .filter(|&(_, until)| now < until)
            .map(|(token, _)| token)
    }

    fn snapshot(&self, now: Instant, incarnation: u64) -> Snapshot {
        let state = self.state;
        Snapshot {
            state,
            generation: self.generation,
            fail_counter: self.fail,
            success_counter: self.success,
            open_remaining: (state == State::Open).then(|| {
                self.open_until
                    .map_or(Duration::ZERO, |u| u.saturating_duration_since(now))
            }),
            trial_remaining: self
                .trial
                .filter(|&(_, until)| now < until)
                .map(|(_, until)| until - now),
            version: Version {
                incarnation,
                seq: self.seq,
            },
        }
    }

    fn open(&mut self, now: Instant, settings: &Settings) {
        self.state = State::Open;
        self.open_until = Some(now + settings.reset_timeout);
        self.generation += 1;
        self.success = 0;
        self.trial = None;
    }

    fn close(&mut self) {
        self.state = State::Closed;
        self.open_until = None;
        self.generation += 1;
        self.success = 0;
        self.fail = 0;
        self.trial = None;
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<&'static str, Record>> {
        // Nothing panics while the lock is held, but never let a poisoned lock wedge
        // every breaker.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one transition on the breaker's record under the lock.
    fn transition(
        &self,
        service: &'static str,
        f: impl FnOnce(&mut Record, Instant) -> bool,
    ) -> Result<Outcome, StorageError> {
        let now = Instant::now();
        let mut records = self.lock();
        let record = records.entry(service).or_insert_with(Record::new);
        let from = record.state;
        let applied = f(record, now);
        if applied {
            record.seq += 1;
        }
        Ok(Outcome {
            applied,
            from,
            snapshot: record.snapshot(now, self.incarnation),
        })
    }

    /// Replaces a breaker's record with `snapshot` (seeding a local fallback from the
    /// last shared view): same state, generation and counters, and the open time left.
    pub fn seed(&self, service: &'static str, snapshot: &Snapshot) {
        let now = Instant::now();
        let mut records = self.lock();
        let record = records.entry(service).or_insert_with(Record::new);
        record.state = match snapshot.state {
            // A trial held elsewhere in the fleet is not ours: start a local trial.
            State::HalfOpen => State::Open,
            state => state,
        };
        record.generation = snapshot.generation;
        record.fail = snapshot.fail_counter;
        record.success = 0;
        record.trial = None;
        record.open_until = (record.state == State::Open)
            .then(|| now + snapshot.open_remaining.unwrap_or(Duration::ZERO));
        record.seq += 1;
    }

    /// The synchronous form of [`Store::snapshot`].
    pub fn snapshot_now(&self, service: &'static str) -> Snapshot {
        let now = Instant::now();
        self.lock()
            .entry(service)
            .or_insert_with(Record::new)
            .snapshot(now, self.incarnation)
    }
}

impl Store for MemoryStore {
    fn register(
        &self,
        service: &'static str,
        _settings: &Settings,
    ) -> impl Future<Output = Result<Snapshot, StorageError>> + Send {
        ready(Ok(self.snapshot_now(service)))
    }

    fn snapshot(
        &self,
        service: &'static str,
        _settings: &Settings,
    ) -> impl Future<Output = Result<Snapshot, StorageError>> + Send {
        ready(Ok(self.snapshot_now(service)))
    }

    fn record_failure(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send {
        ready(self.transition(service, |r, now| {
            if r.generation != generation || r.state != State::Closed {
                return false;
            }
            r.fail = r.fail.saturating_add(1);
            if r.fail >= settings.fail_max {
                r.open(now, settings);
            }
            true
        }))
    }

    fn record_success(
        &self,
        service: &'static str,
        _settings: &Settings,
        generation: u64,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send {
        ready(self.transition(service, |r, _now| {
            if r.generation != generation || r.state != State::Closed || r.fail == 0 {
                return false;
            }
            r.fail = 0;
            true
        }))
    }

    fn acquire_trial(
        &self,
        service: &'static str,
        _settings: &Settings,
        token: TrialToken,
        lease: Duration,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send {
        ready(self.transition(service, |r, now| {
            if !r.trial_allowed(now) {
                return false;
            }
            match r.trial_holder(now) {
                Some(holder) => holder == token,
                None => {
                    if r.state == State::Open {
                        // Open → half-open: entering half-open resets the success counter.
                        r.state = State::HalfOpen;
                        r.open_until = None;
                        r.success = 0;
                    }
                    r.trial = Some((token, now + lease));
                    true
                }
            }
        }))
    }

    fn record_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        success: bool,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send {
        ready(self.transition(service, |r, now| {
            if r.trial_holder(now) != Some(token) {
                return false;
            }
            r.trial = None;
            if success {
                r.fail = 0;
                r.success = r.success.saturating_add(1);
                if r.success >= settings.success_threshold {
                    r.close();
                }
            } else {
                // As pybreaker: the fail counter keeps counting through half-open.
                r.fail = r.fail.saturating_add(1);
                r.open(now, settings);
            }
            true
        }))
    }

    fn release_trial(&self, service: &'static str, token: TrialToken) {
        let _ = self.transition(service, |r, now| {
            if r.trial_holder(now) == Some(token) {
                r.trial = None;
                true
            } else {
                false
            }
        });
    }

    fn force(
        &self,
        service: &'static str,
        settings: &Settings,
        to: State,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send {
        ready(self.transition(service, |r, now| {
            match to {
                State::Open => r.open(now, settings),
                State::Closed => r.close(),
                State::HalfOpen => {
                    r.state = State::HalfOpen;
                    r.open_until = None;
                    r.generation += 1;
                    r.success = 0;
                    r.trial = None;
                }
            }
            true
        }))
    }
}
