//! The state machine: every rule of when a breaker trips, closes and re-opens, as one
//! function over a [`Command`].
//!
//! This is the only place the rules are written in Rust. The in-memory store applies
//! [`apply`] under a lock; the Redis store runs one Lua script per command
//! (`infuse/scripts/*.lua`), each mirroring its arm here and sharing the `trip` and
//! `close` helpers of `prelude.lua`. A property test applies random command sequences to
//! both stores and compares the snapshots.
//!
//! | command | applies when | effect |
//! |---|---|---|
//! | `Register { seed }` | no record, or `seed` shows the store lost history ([`Seed::shows_lost_history`]) | record = seed (or closed), new incarnation |
//! | `RecordFailure { gen, count, instance }` | closed or disabled, at `gen`, `count` > 0 | count += `count`, `instance` joins the streak; closed + policy says so: **trip** |
//! | `RecordSuccess { gen }` | closed or disabled, at `gen`, count > 0 | count = 0 |
//! | `RecordCalls { gen, counts }` | closed or disabled, at `gen`, counts not empty | count, window += counts; closed + policy says so: **trip** |
//! | `AcquireTrial { token }` | open and its time passed, or half-open; slot free (or ours) | half-open, slot = token |
//! | `RecordTrial { token, ok }` | half-open, slot = token | ok: count successes, **close** at threshold; else **trip** (backing off) |
//! | `ReleaseTrial { token }` | slot = token | slot freed |
//! | `Force(target)` | always | new generation, in `target` |
//!
//! A command about a breaker with no record changes nothing and answers "absent", except
//! `Register` and `Force`, which create it.

use tokio::time::Instant;

use crate::core::window::{bucket_ms, Window};
use crate::core::{
    store_millis, Command, Counts, Outcome, Seed, Settings, Snapshot, State, Target, TrialToken,
    TripPolicy, Version,
};

/// One breaker's record, as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Identifies this record; a recreated one gets a new incarnation.
    pub incarnation: u64,
    /// Bumped by every state transition.
    pub generation: u64,
    /// Bumped by every write.
    pub seq: u64,
    /// The recorded state (open → half-open is lazy: see [`Snapshot::state`]).
    pub state: State,
    /// Consecutive failures.
    pub fail: u32,
    /// Successful trials in this half-open period.
    pub success: u32,
    /// While open: when a trial becomes allowed.
    pub open_until: Option<Instant>,
    /// The trial call holding the slot, and when its lease ends.
    pub trial: Option<(TrialToken, Instant)>,
    /// Consecutive re-opens after failed trials (the backoff exponent).
    pub reopens: u32,
    /// The calls of the current closed period, by bucket (rate rules only).
    pub window: Window,
    /// The distinct processes that reported failures since the fail counter was last
    /// zero, kept up to `min_instances` (only when it is above 1): the consecutive rule's
    /// quorum.
    pub streak: Vec<u64>,
}

impl Record {
    /// A closed record.
    pub fn closed(incarnation: u64) -> Record {
        Record {
            incarnation,
            generation: 1,
            seq: 0,
            state: State::Closed,
            fail: 0,
            success: 0,
            open_until: None,
            trial: None,
            reopens: 0,
            window: Window::default(),
            streak: Vec::new(),
        }
    }

    /// A record recreated from what a process knew.
    pub fn seeded(incarnation: u64, seed: &Seed, now: Instant) -> Record {
        let mut record = Record::closed(incarnation);
        record.state = seed.state;
        record.generation = seed.generation.max(1);
        record.fail = seed.fail_counter;
        match seed.state {
            State::Open => record.open_until = Some(now + seed.open_remaining.unwrap_or_default()),
            State::HalfOpen => {
                record.trial = seed
                    .trial_remaining
                    .filter(|lease| !lease.is_zero())
                    .map(|lease| (TrialToken::UNKNOWN, now + lease));
            }
            _ => {}
        }
        record
    }

    /// Where the record stands in its history.
    pub fn version(&self) -> Version {
        Version {
            incarnation: self.incarnation,
            seq: self.seq,
        }
    }

    /// The record as a snapshot at `now`.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        Snapshot {
            state: self.state,
            generation: self.generation,
            fail_counter: self.fail,
            success_counter: self.success,
            open_remaining: (self.state == State::Open).then(|| {
                self.open_until.map_or(Default::default(), |until| {
                    until.saturating_duration_since(now)
                })
            }),
            trial_remaining: self
                .trial_holder(now)
                .and(self.trial)
                .map(|(_, until)| until - now),
            version: self.version(),
        }
    }

    /// The token holding the trial slot, if its lease has not ended.
    pub fn trial_holder(&self, now: Instant) -> Option<TrialToken> {
        self.trial
            .filter(|&(_, until)| now < until)
            .map(|(token, _)| token)
    }

    /// Whether a trial call may start: half-open, or open with its time passed.
    fn trial_allowed(&self, now: Instant) -> bool {
        match self.state {
            State::HalfOpen => true,
            State::Open => self.open_until.is_none_or(|until| now >= until),
            _ => false,
        }
    }

    /// Opens the breaker for `open_for` (prelude.lua: `trip`).
    fn trip(&mut self, now: Instant, open_for: std::time::Duration) {
        self.state = State::Open;
        self.generation += 1;
        self.success = 0;
        self.open_until = Some(now + open_for);
        self.trial = None;
        self.window = Window::default();
        self.streak.clear();
    }

    /// Closes the breaker and resets its counters (prelude.lua: `close`).
    fn close(&mut self) {
        self.state = State::Closed;
        self.generation += 1;
        self.success = 0;
        self.fail = 0;
        self.open_until = None;
        self.trial = None;
        self.reopens = 0;
        self.window = Window::default();
        self.streak.clear();
    }

    /// Counts `instance` among the reporters of the current failure streak (after the
    /// fail counter was updated): the streak ends when the counter is zero.
    fn note_streak(&mut self, instance: Option<u64>, policy: &TripPolicy) {
        if self.fail == 0 || policy.min_instances <= 1 {
            self.streak.clear();
            return;
        }
        if let Some(instance) = instance {
            if !self.streak.contains(&instance) && self.streak.len() < policy.min_instances as usize
            {
                self.streak.push(instance);
            }
        }
    }

    /// Whether the consecutive rule trips: `fail_max` failures in a row, reported by at
    /// least `min_instances` processes.
    fn streak_trips(&self, policy: &TripPolicy) -> bool {
        policy.trips(self.fail)
            && (policy.min_instances <= 1 || self.streak.len() >= policy.min_instances as usize)
    }
}

/// Applies `command` to a breaker's record (`None`: no record) at `now`, and answers.
/// `incarnation` is called only when a record is created.
pub fn apply(
    record: &mut Option<Record>,
    command: &Command,
    settings: &Settings,
    now: Instant,
    incarnation: impl FnOnce() -> u64,
) -> Outcome {
    if let Command::Register { seed } = command {
        return register(record, seed.as_ref(), now, incarnation);
    }
    if let Command::Force(target) = command {
        let r = record.get_or_insert_with(|| Record::closed(incarnation()));
        return answer(r, now, |r| force(r, *target, now));
    }
    let Some(r) = record.as_mut() else {
        return Outcome::absent();
    };
    match *command {
        Command::Register { .. } | Command::Force(_) => unreachable!("handled above"),
        Command::Snapshot => answer(r, now, |_| true),
        Command::RecordFailure {
            generation,
            count,
            instance,
        } => answer(r, now, |r| {
            record_failure(r, generation, count, instance, settings, now)
        }),
        Command::RecordSuccess { generation } => answer(r, now, |r| record_success(r, generation)),
        Command::RecordCalls {
            generation,
            counts,
            instance,
        } => {
            let mut outcome = answer(r, now, |r| {
                record_calls(r, generation, &counts, instance, settings, now)
            });
            // The totals, so the reporting process can tell when its counts could trip.
            if outcome.applied && settings.has_rates() && r.state.lets_calls_through() {
                let bucket = store_millis(now) / bucket_ms(settings.window);
                outcome.window = Some(r.window.totals(bucket));
            }
            outcome
        }
        Command::AcquireTrial { token, lease } => {
            answer(r, now, |r| acquire_trial(r, token, lease, now))
        }
        Command::RecordTrial { token, success } => {
            answer(r, now, |r| record_trial(r, token, success, settings, now))
        }
        Command::ReleaseTrial { token } => answer(r, now, |r| release_trial(r, token, now)),
    }
}

/// Runs one arm; a write bumps `seq` (a read-only arm answers `true` without writing).
fn answer(r: &mut Record, now: Instant, arm: impl FnOnce(&mut Record) -> bool) -> Outcome {
    let from = r.state;
    let before = r.clone();
    let applied = arm(r);
    if *r != before {
        r.seq += 1;
    }
    Outcome {
        applied,
        from,
        snapshot: r.snapshot(now),
        window: None,
    }
}

/// register.lua
fn register(
    record: &mut Option<Record>,
    seed: Option<&Seed>,
    now: Instant,
    incarnation: impl FnOnce() -> u64,
) -> Outcome {
    let replaced = match record {
        None => None,
        Some(r) if seed.is_some_and(|seed| seed.shows_lost_history(r.version(), r.generation)) => {
            Some(r.state)
        }
        Some(r) => return answer(r, now, |_| false),
    };
    // Absent, or older than what the seeding process read from this store: (re)created
    // with a new incarnation, from the seed when one is given.
    let mut created = match seed {
        Some(seed) => Record::seeded(incarnation(), seed, now),
        None => Record::closed(incarnation()),
    };
    created.seq = 1;
    let outcome = Outcome {
        applied: true,
        from: replaced.unwrap_or(created.state),
        snapshot: created.snapshot(now),
        window: None,
    };
    *record = Some(created);
    outcome
}

/// record_failure.lua
fn record_failure(
    r: &mut Record,
    generation: u64,
    count: u32,
    instance: u64,
    settings: &Settings,
    now: Instant,
) -> bool {
    if r.generation != generation || !r.state.lets_calls_through() || count == 0 {
        return false;
    }
    let policy = TripPolicy::of(settings);
    r.fail = r.fail.saturating_add(count);
    r.note_streak(Some(instance), &policy);
    if r.state == State::Closed && r.streak_trips(&policy) {
        r.trip(now, open_time(settings, 0, 0));
    }
    true
}

/// record_calls.lua
fn record_calls(
    r: &mut Record,
    generation: u64,
    counts: &Counts,
    instance: u64,
    settings: &Settings,
    now: Instant,
) -> bool {
    if r.generation != generation || !r.state.lets_calls_through() || counts.is_empty() {
        return false;
    }
    let policy = TripPolicy::of(settings);
    if counts.has_success() {
        r.fail = 0;
        r.note_streak(None, &policy); // a success ends the streak
    }
    r.fail = r.fail.saturating_add(counts.tail);
    r.note_streak((counts.tail > 0).then_some(instance), &policy);
    let mut trips = r.streak_trips(&policy);
    if settings.has_rates() {
        let bucket = store_millis(now) / bucket_ms(settings.window);
        r.window.add(bucket, counts, instance);
        trips = trips
            || policy
                .trips_on(&r.window.totals(bucket), r.window.instances(bucket))
                .is_some();
    }
    if r.state == State::Closed && trips {
        r.trip(now, open_time(settings, 0, 0));
    }
    true
}

/// How long the breaker opens for after `reopens` consecutive failed trials.
fn open_time(settings: &Settings, reopens: u32, jitter: u32) -> std::time::Duration {
    if reopens == 0 || settings.max_reset_timeout.is_none() {
        return settings.reset_timeout;
    }
    std::time::Duration::from_millis(settings.open_ms(reopens, jitter))
}

/// record_success.lua
fn record_success(r: &mut Record, generation: u64) -> bool {
    if r.generation != generation || !r.state.lets_calls_through() || r.fail == 0 {
        return false;
    }
    r.fail = 0;
    r.streak.clear();
    true
}

/// acquire_trial.lua
fn acquire_trial(
    r: &mut Record,
    token: TrialToken,
    lease: std::time::Duration,
    now: Instant,
) -> bool {
    if !r.trial_allowed(now) {
        return false;
    }
    if let Some(holder) = r.trial_holder(now) {
        return holder == token; // the holder asking again is granted again
    }
    if r.state == State::Open {
        r.state = State::HalfOpen;
        r.open_until = None;
        r.success = 0;
    }
    r.trial = Some((token, now + lease));
    true
}

/// record_trial.lua
fn record_trial(
    r: &mut Record,
    token: TrialToken,
    success: bool,
    settings: &Settings,
    now: Instant,
) -> bool {
    if r.state != State::HalfOpen || r.trial_holder(now) != Some(token) {
        return false;
    }
    r.trial = None;
    if success {
        r.fail = 0;
        r.streak.clear();
        r.success = r.success.saturating_add(1);
        if r.success >= settings.success_threshold {
            r.close();
        }
    } else {
        // As pybreaker: the fail counter keeps counting through half-open.
        r.fail = r.fail.saturating_add(1);
        r.reopens = r.reopens.saturating_add(1);
        r.trip(now, open_time(settings, r.reopens, token.jitter()));
    }
    true
}

/// release_trial.lua
fn release_trial(r: &mut Record, token: TrialToken, now: Instant) -> bool {
    if r.trial_holder(now) != Some(token) {
        return false;
    }
    r.trial = None;
    true
}

/// force.lua
fn force(r: &mut Record, target: Target, now: Instant) -> bool {
    r.reopens = 0;
    match target {
        Target::Closed => r.close(),
        Target::Open(open_for) => r.trip(now, open_for),
        Target::HalfOpen | Target::ForcedOpen | Target::Disabled => {
            r.state = target.state();
            r.generation += 1;
            r.success = 0;
            r.open_until = None;
            r.trial = None;
            r.window = Window::default();
            r.streak.clear();
        }
    }
    true
}
