//! The commands a store applies: one atomic transition of one breaker each.

use std::time::Duration;

use crate::core::{Counts, Snapshot, State, TrialToken, Version};

/// One atomic transition of one breaker's stored state. [`machine::apply`] gives every
/// command's rules; each store applies a command as one step (under a lock in memory,
/// as one Lua script in Redis).
///
/// [`machine::apply`]: crate::store::machine::apply
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Creates the record if it is absent — from `seed` when given, else closed — and
    /// replaces an existing record with `seed` only when the store demonstrably lost
    /// history ([`Seed::shows_lost_history`]): the record is older than the one this
    /// process last read from the store itself (same incarnation, lower `seq`), as after
    /// a restart from an old snapshot or a failover to a lagging replica; or the record
    /// this process read is gone and a blank one stands in its place (a new incarnation
    /// that never left its first generation, made by a process that knew nothing, e.g.
    /// after Redis restarted empty) while the seed knows of a transition. The replacement
    /// gets a new incarnation, so the first process to notice re-seeds the record and
    /// the others adopt it. Never otherwise overwrites what the fleet knows: a process
    /// that was merely cut off from the store, whatever it decided meanwhile, finds the
    /// record at or ahead of what it read, and takes the record in.
    Register {
        /// This process's view, when it has one worth keeping.
        seed: Option<Seed>,
    },
    /// Reads the record; writes nothing.
    Snapshot,
    /// Counts `count` failures of calls admitted at `generation` while calls ran (closed
    /// or disabled); trips a closed breaker when the trip policy says so. A process sends
    /// at most one per breaker at a time: failures that happen meanwhile are coalesced
    /// into the next one's `count` (the same as `count` single failures in a row, except
    /// that those after a trip would have been refused as stale anyway). A `count` of 0
    /// is refused. With [`Settings::min_instances`](crate::Settings) above 1, the streak
    /// must also hold failures of that many distinct processes to trip.
    RecordFailure {
        /// The generation the calls were admitted under.
        generation: u64,
        /// How many failures (at least 1).
        count: u32,
        /// The reporting process (see [`Settings::min_instances`](crate::Settings)).
        instance: u64,
    },
    /// Resets the consecutive-failure count after a success of a call admitted at
    /// `generation` (sent once after failures, not per call).
    RecordSuccess {
        /// The generation the call was admitted under.
        generation: u64,
    },
    /// Adds one process's batch of call outcomes (those since its last report) to the
    /// breaker, when it is closed or disabled at `generation`: the batch's failures after
    /// its last success continue the consecutive-failure count (any success resets it
    /// first), and the counts go into the window's current bucket. A closed breaker then
    /// trips when its [`TripPolicy`](crate::store::TripPolicy) says so. Used instead of
    /// `RecordFailure`/`RecordSuccess` when a rate rule is set, or `min_instances` (which
    /// needs every process's successes too).
    RecordCalls {
        /// The generation the calls were admitted under.
        generation: u64,
        /// The batch.
        counts: Counts,
        /// The reporting process (see [`Settings::min_instances`](crate::Settings)).
        instance: u64,
    },
    /// Takes the single trial slot for `lease`, when the breaker is open and its time has
    /// passed (or half-open with the slot free). The holder asking again is granted again.
    AcquireTrial {
        /// Identifies the caller across the fleet.
        token: TrialToken,
        /// How long the slot is held unless the result or a release comes first.
        lease: Duration,
    },
    /// Applies the result of the trial holding `token`: a success counts towards
    /// `success_threshold` and closes at it; a failure re-opens. Ignored when the token
    /// no longer holds the slot.
    RecordTrial {
        /// The trial's token.
        token: TrialToken,
        /// Whether the trial call succeeded.
        success: bool,
    },
    /// Gives the trial slot back without a verdict (the trial was cancelled or panicked).
    ReleaseTrial {
        /// The trial's token.
        token: TrialToken,
    },
    /// Puts the breaker in a state by hand (an operator's command); always applied, and
    /// repairs a record holding garbage.
    Force(Target),
    /// Switches the breaker in or out of shadow mode for every process (an operator's
    /// command), overriding each process's `shadow` setting: kept in the record (creating
    /// it closed if absent), it changes neither the state nor the generation. Always
    /// applied; a write (and a history entry with Redis) only when it changes the switch.
    SetShadow {
        /// Shadow mode on (calls are never rejected) or off.
        on: bool,
    },
}

/// The state an operator forces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Target {
    /// Closed, counters reset.
    Closed,
    /// Open for this long, then a trial as usual.
    Open(Duration),
    /// Half-open: the next call is a trial.
    HalfOpen,
    /// Open until closed by hand: no trial is made.
    ForcedOpen,
    /// Calls run and are counted but nothing trips, until closed by hand.
    Disabled,
}

impl Target {
    /// The state the breaker is in right after the command.
    pub fn state(self) -> State {
        match self {
            Target::Closed => State::Closed,
            Target::Open(_) => State::Open,
            Target::HalfOpen => State::HalfOpen,
            Target::ForcedOpen => State::ForcedOpen,
            Target::Disabled => State::Disabled,
        }
    }
}

/// What a process knows of a breaker, offered to recreate its record (see
/// [`Command::Register`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    /// The state to recreate. A half-open breaker with a trial in flight is seeded
    /// half-open with its slot held until the lease ends ([`trial_remaining`]); without
    /// one, open with no time left (a trial may start at once).
    ///
    /// [`trial_remaining`]: Seed::trial_remaining
    pub state: State,
    /// The generation the process has seen.
    pub generation: u64,
    /// The consecutive failures it knows of.
    pub fail_counter: u32,
    /// While open, the time left.
    pub open_remaining: Option<Duration>,
    /// While half-open, the lease left on the trial in flight. The record is recreated
    /// with the slot held by [`TrialToken::UNKNOWN`] until then: no second trial starts
    /// while that one may still run (its verdict is lost with the record; the lease
    /// bounds the wait).
    pub trial_remaining: Option<Duration>,
    /// The newest version of the record this process read from the store itself (never
    /// one its local fallback made): the evidence that the store lost history when the
    /// record it holds now is older. `None`: this process never read the record.
    pub confirmed: Option<Version>,
    /// The operator's shadow switch it knows of ([`Snapshot::shadow`]), kept by the
    /// recreated record so that a fleet stays switched when its store lost the record.
    pub shadow: Option<bool>,
    /// While closed in a recovery ([`Snapshot::since_close`]): the time since it closed,
    /// kept by the recreated record so that a fleet whose store lost the record mid-ramp
    /// goes on with its slow start instead of admitting every call at once.
    pub since_close: Option<Duration>,
}

impl Seed {
    /// The seed of a snapshot.
    pub fn of(snapshot: &Snapshot) -> Seed {
        let trial = snapshot.trial_remaining.filter(|lease| !lease.is_zero());
        let (state, open_remaining, trial_remaining) = match snapshot.state {
            State::HalfOpen if trial.is_some() => (State::HalfOpen, None, trial),
            State::HalfOpen => (State::Open, Some(Duration::ZERO), None),
            State::Open => (
                State::Open,
                Some(snapshot.open_remaining.unwrap_or(Duration::ZERO)),
                None,
            ),
            state => (state, None, None),
        };
        Seed {
            state,
            generation: snapshot.generation,
            fail_counter: snapshot.fail_counter,
            open_remaining,
            trial_remaining,
            confirmed: None,
            shadow: snapshot.shadow,
            since_close: snapshot
                .since_close
                .filter(|_| snapshot.state == State::Closed),
        }
    }

    /// The same seed, with the version this process last read from the store.
    pub fn with_confirmed(mut self, version: Option<Version>) -> Seed {
        self.confirmed = version;
        self
    }

    /// Whether the stored record, at `version` and `generation`, shows that the store
    /// lost history this process had read (see [`Command::Register`]): the record is
    /// older than what it read (same incarnation, lower seq), or another, blank record
    /// (still at generation 1) replaced the one it read while this seed knows of a
    /// transition (generation above 1).
    pub fn shows_lost_history(&self, version: Version, generation: u64) -> bool {
        self.confirmed.is_some_and(|seen| {
            if seen.incarnation == version.incarnation {
                seen.seq > version.seq
            } else {
                generation == 1 && self.generation > 1
            }
        })
    }
}
