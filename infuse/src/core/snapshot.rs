//! What a store answers: a breaker's state as stored, and the result of a command.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::core::random::random_u64;
use crate::core::{State, Totals};

/// A breaker's shared state as a store sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The recorded state. As in pybreaker, open → half-open is lazy: once the open time
    /// has passed the state stays `Open`, with `open_remaining` zero, until a call takes
    /// the trial slot.
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
    /// While closed: the time since the close that began this closed period (a trial
    /// that succeeded, or an operator's `close`), on the store's clock (Redis's `TIME`
    /// in a fleet), so every process times slow start from the same moment. `None` for
    /// a record that never tripped, one written before infuse recorded closes, and any
    /// state but closed. See [`Settings::slow_start_share`](crate::Settings::slow_start_share).
    pub since_close: Option<Duration>,
    /// Orders snapshots of one breaker (identity of the stored record, then a counter
    /// bumped by every write), so a late answer never overwrites a newer one.
    pub version: Version,
    /// An operator's shadow switch for the breaker, kept in its record
    /// ([`Breaker::set_shadow`](crate::Breaker::set_shadow)): `Some(on)` overrides the
    /// `shadow` setting of every process; `None` (never switched): each process follows
    /// its setting.
    pub shadow: Option<bool>,
}

/// The largest generation a breaker's record holds: 2^53 - 2, so that every generation
/// and the one after it are integers a Lua double (Redis's scripts) holds exactly.
///
/// A record at this generation cannot make a transition: a command that would bump the
/// generation past it changes nothing and fails with [`StorageError::Corrupt`] (both
/// stores; [`machine::apply`] answers it as not applied), and a
/// [`Force`](crate::store::Command::Force) (`close()`, `open()`, …) recreates the record
/// (new incarnation, generation 1) before applying. A seed above it is taken as this
/// generation. Only a seed or garbage written into Redis gets a record near it: at a
/// transition per millisecond, counting up to it would take 285,000 years.
///
/// [`StorageError::Corrupt`]: crate::StorageError::Corrupt
/// [`machine::apply`]: crate::store::machine::apply
pub const MAX_GENERATION: u64 = (1 << 53) - 2;

/// The position of a [`Snapshot`] in its breaker's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Version {
    /// Identifies the stored record; changes when it is recreated (e.g. Redis restarted
    /// empty). Zero means "no record".
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
            since_close: None,
            version,
            shadow: None,
        }
    }

    /// The answer about a breaker that has no record in the store.
    pub fn absent() -> Snapshot {
        Snapshot::closed(Version::default())
    }

    /// Whether the store holds a record for the breaker (see [`Snapshot::absent`]).
    pub fn exists(&self) -> bool {
        self.version.incarnation != 0
    }
}

/// The answer to a [`Command`](crate::store::Command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// Whether the command took effect. `false` for a stale generation or token, for a
    /// trial request that was not granted, for a success with nothing to reset, or for a
    /// command about a breaker with no record.
    pub applied: bool,
    /// The state before the command.
    pub from: State,
    /// The state after it.
    pub snapshot: Snapshot,
    /// The answer to a [`RecordCalls`](crate::store::Command::RecordCalls) that was
    /// applied to a breaker with a rate rule that still lets calls through: the window's
    /// totals after the batch (with Redis, the whole fleet's). `None` otherwise.
    pub window: Option<Totals>,
}

impl Outcome {
    /// Whether this command moved the breaker to another state.
    pub fn changed_state(&self) -> bool {
        self.applied && self.from != self.snapshot.state
    }

    /// The answer to a command that found no record (and created none).
    pub fn absent() -> Outcome {
        Outcome {
            applied: false,
            from: State::Closed,
            snapshot: Snapshot::absent(),
            window: None,
        }
    }
}

/// Identifies one trial call across the fleet, so that only its holder can report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrialToken(pub u128);

impl TrialToken {
    /// A token unique across processes: a per-process random seed and a counter.
    pub fn new() -> TrialToken {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = process_instance();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        TrialToken(((seed as u128) << 64) | random_u64(n) as u128)
    }
}

impl TrialToken {
    /// The holder of a trial slot recreated from a process's view of a half-open breaker
    /// (see [`Seed::trial_remaining`](crate::store::Seed::trial_remaining)): no real token
    /// is zero (its high half is the process's non-zero id), so no result matches it.
    pub const UNKNOWN: TrialToken = TrialToken(0);

    /// The jitter (‰, below 1000) of the open time when this trial fails and the breaker
    /// backs off (see [`Settings::open_ms`](crate::Settings::open_ms)): derived from the
    /// token, so both stores compute the same open time.
    pub fn jitter(&self) -> u32 {
        (self.0 % 1000) as u32
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

/// This process's identity in the fleet: random, drawn once (it reports its calls under
/// it, see [`Settings::min_instances`](crate::Settings::min_instances)).
pub(crate) fn process_instance() -> u64 {
    // A seeded simulation replays exactly: not even this may differ between runs.
    #[cfg(test)]
    if crate::core::random::seeded::active() {
        return 0x5eed;
    }
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        // 53 bits: Lua (doubles) keeps it exact.
        (h.finish() & ((1 << 53) - 1)).max(1)
    })
}

/// A random identity for a record a store creates: 53 bits, so Lua (doubles) never
/// rounds it, and never zero (which means "no record").
pub(crate) fn fresh_incarnation() -> u64 {
    ((TrialToken::new().0 as u64) & ((1 << 53) - 1)).max(1)
}
