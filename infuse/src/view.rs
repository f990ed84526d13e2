//! A process's local view of one breaker: what the fast path reads.
//!
//! The view caches the store's answers in atomics, so a call in the closed state with no
//! pending failures costs two atomic loads and no store round trip, and a rejection while
//! open costs one clock read.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::{Snapshot, Version};
use crate::State;

const STATE_SHIFT: u32 = 62;
const DIRTY_BIT: u64 = 1 << 61;
const GEN_MASK: u64 = DIRTY_BIT - 1;

/// What the fast path decided.
pub(crate) enum Admit {
    /// Closed: run the call under this generation.
    Pass(u64),
    /// Open: reject; a trial is allowed after this long (if known).
    Reject(Option<Duration>),
    /// The open timeout has passed (or half-open): ask the store for the trial slot.
    Trial,
    /// The view has not loaded the shared state yet: load it first.
    Sync,
}

/// The state bits of a view that has not loaded the shared state yet.
const UNSYNCED: u64 = 3;

pub(crate) struct View {
    /// state (2 bits) | dirty: fleet fail counter > 0 (1 bit) | generation (61 bits).
    word: AtomicU64,
    /// While open: the local monotonic deadline, in nanoseconds since [`epoch`].
    open_until: AtomicU64,
    /// A trial from this process is being acquired or is running.
    pub(crate) probing: AtomicBool,
    /// Do not ask the store for a trial before this time (another process holds it).
    pub(crate) next_trial_check: AtomicU64,
    /// A reset of the fail counter is in flight (sent once, not per success).
    pub(crate) resetting: AtomicBool,
    /// Serialises updates so that an older snapshot never overwrites a newer one.
    applied: Mutex<Option<Version>>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Monotonic nanoseconds on tokio's clock (so tests can pause it), counted from the
/// process epoch plus 2^63: an instant before the epoch (a paused clock of a runtime
/// behind the one that set it) must not saturate to one value, or time stops there.
#[inline]
pub(crate) fn now_nanos() -> u64 {
    const EPOCH_NANOS: u64 = 1 << 63;
    let (now, epoch) = (Instant::now(), epoch());
    if now >= epoch {
        EPOCH_NANOS.saturating_add((now - epoch).as_nanos() as u64)
    } else {
        EPOCH_NANOS.saturating_sub((epoch - now).as_nanos() as u64)
    }
}

fn pack(state: State, dirty: bool, generation: u64) -> u64 {
    (state.to_bits() << STATE_SHIFT) | if dirty { DIRTY_BIT } else { 0 } | (generation & GEN_MASK)
}

impl View {
    pub(crate) fn new() -> View {
        View {
            word: AtomicU64::new(pack(State::Closed, false, 1)),
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            next_trial_check: AtomicU64::new(0),
            resetting: AtomicBool::new(false),
            applied: Mutex::new(None),
        }
    }

    #[inline]
    pub(crate) fn admit(&self) -> Admit {
        let word = self.word.load(Ordering::Acquire);
        match word >> STATE_SHIFT {
            0 => Admit::Pass(word & GEN_MASK),
            1 => self.admit_open(),
            2 => Admit::Trial,
            _ => Admit::Sync,
        }
    }

    #[inline]
    fn admit_open(&self) -> Admit {
        let until = self.open_until.load(Ordering::Acquire);
        let now = now_nanos();
        if now < until {
            Admit::Reject(Some(Duration::from_nanos(until - now)))
        } else {
            Admit::Trial
        }
    }

    /// This process's view as a snapshot (to seed a local fallback).
    pub(crate) fn local_snapshot(&self) -> Snapshot {
        let word = self.word.load(Ordering::Acquire);
        let state = self.state();
        let until = self.open_until.load(Ordering::Acquire);
        let mut snapshot = Snapshot::closed(Version::default());
        snapshot.state = state;
        snapshot.generation = word & GEN_MASK;
        snapshot.fail_counter = u32::from(word & DIRTY_BIT != 0);
        snapshot.open_remaining =
            (state == State::Open).then(|| Duration::from_nanos(until.saturating_sub(now_nanos())));
        snapshot
    }

    /// Whether asking the store for the trial slot is pointless right now: a call of this
    /// process is already asking or holds it, or another process's trial holds it.
    #[inline]
    pub(crate) fn trial_blocked(&self) -> bool {
        self.probing.load(Ordering::Acquire)
            || now_nanos() < self.next_trial_check.load(Ordering::Acquire)
    }

    /// Marks the view as not knowing the shared state (a breaker created after `init`
    /// in fleet mode), so its first call loads it instead of assuming closed.
    pub(crate) fn mark_unsynced(&self) {
        let word = self.word.load(Ordering::Acquire);
        let _ = self.word.compare_exchange(
            word,
            (UNSYNCED << STATE_SHIFT) | (word & GEN_MASK),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The cached state (closed while not yet loaded).
    pub(crate) fn state(&self) -> State {
        match self.word.load(Ordering::Acquire) >> STATE_SHIFT {
            UNSYNCED => State::Closed,
            bits => State::from_bits(bits),
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.word.load(Ordering::Acquire) & GEN_MASK
    }

    /// Whether a success under `generation` must reset the fleet's fail counter.
    #[inline]
    pub(crate) fn needs_reset(&self, generation: u64) -> bool {
        let word = self.word.load(Ordering::Relaxed);
        word & DIRTY_BIT != 0 && word & GEN_MASK == generation & GEN_MASK
    }

    /// Takes in a store answer unless a newer one was already applied. Returns the
    /// state change it caused in this view, if any.
    pub(crate) fn apply(&self, snapshot: &Snapshot) -> Option<(State, State)> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = *applied {
            if seen.incarnation == snapshot.version.incarnation && seen.seq > snapshot.version.seq {
                return None;
            }
        }
        *applied = Some(snapshot.version);
        self.store_snapshot(snapshot)
    }

    /// Overwrites the view regardless of versions (e.g. a fallback taking over).
    pub(crate) fn force(&self, snapshot: &Snapshot) -> Option<(State, State)> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        *applied = None;
        self.store_snapshot(snapshot)
    }

    fn store_snapshot(&self, snapshot: &Snapshot) -> Option<(State, State)> {
        let now = now_nanos();
        if let Some(remaining) = snapshot.open_remaining {
            let until = now.saturating_add(remaining.as_nanos() as u64);
            self.open_until.store(until, Ordering::Release);
        }
        if snapshot.state == State::HalfOpen && !self.probing.load(Ordering::Acquire) {
            // Someone else's trial is in flight: do not ask for the slot before its lease
            // ends (nor more often than every 50 ms).
            if let Some(lease) = snapshot.trial_remaining {
                let wait = lease.min(Duration::from_millis(50)).as_nanos() as u64;
                self.next_trial_check
                    .store(now.saturating_add(wait), Ordering::Release);
            }
        }
        let previous_word = self.word.swap(
            pack(
                snapshot.state,
                snapshot.fail_counter > 0,
                snapshot.generation,
            ),
            Ordering::AcqRel,
        );
        if previous_word >> STATE_SHIFT == UNSYNCED {
            return None; // first load: nothing changed from this process's point of view
        }
        let previous = State::from_bits(previous_word >> STATE_SHIFT);
        (previous != snapshot.state).then_some((previous, snapshot.state))
    }
}
