//! The storage interface: one atomic *transition* per method, never get/set primitives.
//!
//! A [`Store`] keeps the authoritative state of every breaker (in process memory, or in
//! Redis for the fleet). Each process keeps a local view on top of it for the fast path;
//! the view only talks to the store when something changes. Every method answers with
//! the breaker's state *after* the transition, so any answer can refresh the view.

pub mod memory;
pub mod redis;

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{Settings, State, StorageError};

/// A breaker's shared state as a store sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The recorded state. As in pybreaker, open → half-open is lazy: once
    /// `reset_timeout` has passed the state stays `Open`, with `open_remaining` zero,
    /// until a call takes the trial slot.
    pub state: State,
    /// Incremented on every state transition: results of calls admitted under an older
    /// generation are stale and ignored.
    pub generation: u64,
    /// Consecutive failures (fleet-wide with Redis).
    pub fail_counter: u32,
    /// Successful trial calls in the current half-open period.
    pub success_counter: u32,
    /// While open: the time left until a trial call is allowed (zero once allowed).
    pub open_remaining: Option<Duration>,
    /// While half-open: the time left on the lease of the trial call in flight, if any.
    pub trial_remaining: Option<Duration>,
    /// Orders snapshots of one breaker (identity of the stored record, then a counter
    /// bumped by every write), so a late answer never overwrites a newer one.
    pub version: Version,
}

/// The position of a [`Snapshot`] in its breaker's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version {
    /// Identifies the stored record; changes when it is recreated (e.g. Redis flushed).
    pub incarnation: u64,
    /// Bumped by every write to the record.
    pub seq: u64,
}

impl Snapshot {
    /// A fresh closed breaker.
    pub fn closed(version: Version) -> Snapshot {
        Snapshot {
            state: State::Closed,
            generation: 1,
            fail_counter: 0,
            success_counter: 0,
            open_remaining: None,
            trial_remaining: None,
            version,
        }
    }
}

/// The answer to a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// Whether the request took effect. `false` for a stale generation or token, for a
    /// trial request that was not granted, or for a success with nothing to reset.
    pub applied: bool,
    /// The state before the request.
    pub from: State,
    /// The state after it.
    pub snapshot: Snapshot,
}

impl Outcome {
    /// Whether this request moved the breaker to another state.
    pub fn changed_state(&self) -> bool {
        self.applied && self.from != self.snapshot.state
    }
}

/// Identifies one trial call across the fleet, so that only its holder can report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrialToken(pub u128);

impl TrialToken {
    /// A token unique across processes: a per-process random seed and a counter.
    pub fn new() -> TrialToken {
        static SEED: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = *SEED.get_or_init(|| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish()
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        TrialToken(((seed as u128) << 64) | (h.finish() ^ n) as u128)
    }
}

impl Default for TrialToken {
    fn default() -> Self {
        TrialToken::new()
    }
}

impl std::fmt::Display for TrialToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// Where breaker state lives. Each method is one atomic transition of one breaker; the
/// Redis backend runs each as one Lua script.
///
/// Every backend must pass the conformance suite in `tests/conformance/`.
pub trait Store: Send + Sync + 'static {
    /// Creates the breaker's record if it is absent (never overwriting what exists) and
    /// answers its state.
    fn register(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> impl Future<Output = Result<Snapshot, StorageError>> + Send;

    /// Reads the breaker's state.
    fn snapshot(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> impl Future<Output = Result<Snapshot, StorageError>> + Send;

    /// Counts a failure of a call admitted while closed at `generation`; trips the
    /// breaker when the consecutive count reaches `fail_max`. Stale generations are not
    /// counted.
    fn record_failure(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send;

    /// Resets the consecutive-failure counter after a success of a call admitted while
    /// closed at `generation`.
    fn record_success(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send;

    /// Takes the single trial slot with `token` for `lease`, when the breaker is open
    /// and its timeout has passed (or half-open with the slot free). `applied` tells
    /// whether it was granted. Asking again with the same token while holding it grants
    /// again (safe retry).
    fn acquire_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        lease: Duration,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send;

    /// Applies the result of the trial call holding `token`: a success counts towards
    /// `success_threshold` and closes at it; a failure re-opens. Ignored when the token
    /// no longer holds the slot.
    fn record_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        success: bool,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send;

    /// Gives the trial slot back without a verdict (the trial was cancelled or
    /// panicked). Best effort and non-blocking: a lost release only means waiting for
    /// the lease to expire.
    fn release_trial(&self, service: &'static str, token: TrialToken);

    /// Forces a state, as the manual `open()`, `half_open()` and `close()` do.
    fn force(
        &self,
        service: &'static str,
        settings: &Settings,
        to: State,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send;
}
