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
//! | `SetShadow { on }` | always (creates a closed record if absent) | shadow = `on`; state and generation unchanged |
//!
//! A **close** that ends a recovery (from open, half-open or forced open) records when
//! (`closed_at`, Lua `cls`), and answers carry the time since ([`Snapshot::since_close`]):
//! slow start is timed from it. With `slow_start` set, a close keeps the backoff
//! (`reopens`), and a trip of the closed breaker within `slow_start` of its close is a
//! failed recovery (`reopens` + 1, the open time backing off); a trip after it opens for
//! `reset_timeout` and starts the backoff over.
//!
//! A command about a breaker with no record changes nothing and answers "absent", except
//! `Register` and `Force`, which create it.
//!
//! Extreme values never panic or wrap: counters saturate (`fail`, `success`, `reopens` at
//! `u32::MAX`, the window at [`MAX_TOTAL`](crate::store::window::MAX_TOTAL)), times are
//! taken as at most 2^53 - 1 ms, a seed's generation as at most [`MAX_GENERATION`], and
//! a command that would bump the generation past [`MAX_GENERATION`] changes nothing
//! ([`try_apply`] reports it as corrupt, as the Redis scripts do); `Force` recreates such
//! a record.

use tokio::time::Instant;

use crate::core::window::{bucket_ms, Window};
use crate::core::{
    later, store_millis, Command, Counts, Outcome, Seed, Settings, Snapshot, State, StorageError,
    Target, TrialToken, TripPolicy, Version, MAX_EXPIRY_MS, MAX_GENERATION,
};

/// One breaker's record, as a store keeps it: start from `None` and [`apply`] commands;
/// read it through the [`Snapshot`] each answer carries (or [`Record::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Identifies this record; a recreated one gets a new incarnation.
    pub(crate) incarnation: u64,
    /// Bumped by every state transition.
    pub(crate) generation: u64,
    /// Bumped by every write.
    pub(crate) seq: u64,
    /// The recorded state (open → half-open is lazy: see [`Snapshot::state`]).
    pub(crate) state: State,
    /// Consecutive failures.
    pub(crate) fail: u32,
    /// Successful trials in this half-open period.
    pub(crate) success: u32,
    /// While open: when a trial becomes allowed.
    pub(crate) open_until: Option<Instant>,
    /// The trial call holding the slot, and when its lease ends.
    pub(crate) trial: Option<(TrialToken, Instant)>,
    /// Consecutive re-opens after failed trials (the backoff exponent).
    pub(crate) reopens: u32,
    /// The calls of the current closed period, by bucket (rate rules only).
    pub(crate) window: Window,
    /// The distinct processes that reported failures since the fail counter was last
    /// zero, kept up to `min_instances` (only when it is above 1): the consecutive rule's
    /// quorum.
    pub(crate) streak: Vec<u64>,
    /// When the current closed period began, if it is a recovery (a trial that
    /// succeeded, or an operator's close of a breaker that was not letting calls
    /// through): slow start is timed from it. `None` for a record that never tripped,
    /// and in every state but closed (prelude.lua: `cls`).
    pub(crate) closed_at: Option<Instant>,
    /// The operator's shadow switch (`None`: never switched; each process follows its
    /// `shadow` setting). Kept across transitions; a recreated record starts without.
    pub(crate) shadow: Option<bool>,
}

impl Record {
    /// A closed record.
    pub(crate) fn closed(incarnation: u64) -> Record {
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
            closed_at: None,
            shadow: None,
        }
    }

    /// A record recreated from what a process knew.
    pub(crate) fn seeded(incarnation: u64, seed: &Seed, now: Instant) -> Record {
        let mut record = Record::closed(incarnation);
        record.state = seed.state;
        record.generation = seed.generation.max(1);
        record.fail = seed.fail_counter;
        record.shadow = seed.shadow;
        match seed.state {
            State::Open => record.open_until = Some(now + seed.open_remaining.unwrap_or_default()),
            State::HalfOpen => {
                record.trial = seed
                    .trial_remaining
                    .filter(|lease| !lease.is_zero())
                    .map(|lease| (TrialToken::UNKNOWN, now + lease));
            }
            // A recovery's close, as long ago as the seed says (register.lua: `cls`).
            State::Closed => {
                record.closed_at = seed.since_close.and_then(|since| now.checked_sub(since));
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
            since_close: self
                .closed_at
                .filter(|_| self.state == State::Closed)
                .map(|at| now.saturating_duration_since(at)),
            version: self.version(),
            shadow: self.shadow,
        }
    }

    /// Bumped by every state transition (what a test compares with the Redis record's).
    #[doc(hidden)]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Consecutive re-opens after failed trials (a test compares it with the Redis
    /// record's; answers do not carry it).
    #[doc(hidden)]
    pub fn reopens(&self) -> u32 {
        self.reopens
    }

    /// Whether the window holds no call (as above).
    #[doc(hidden)]
    pub fn window_is_empty(&self) -> bool {
        self.window == Window::default()
    }

    /// When the current closed period began, if it is a recovery (as above; answers
    /// carry the time since, [`Snapshot::since_close`]).
    #[doc(hidden)]
    pub fn closed_at(&self) -> Option<Instant> {
        self.closed_at
    }

    /// How many processes the current failure streak counts (as above).
    #[doc(hidden)]
    pub fn streak_len(&self) -> usize {
        self.streak.len()
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

    /// Bumps the generation, saturating (a bump past [`MAX_GENERATION`] is undone by
    /// [`try_apply`]).
    fn bump(&mut self) {
        self.generation = self.generation.saturating_add(1);
    }

    /// Opens the breaker for `open_for` (prelude.lua: `trip`).
    fn trip(&mut self, now: Instant, open_for: std::time::Duration) {
        self.state = State::Open;
        self.bump();
        self.success = 0;
        self.open_until = Some(later(now, open_for));
        self.trial = None;
        self.window = Window::default();
        self.streak.clear();
        self.closed_at = None;
    }

    /// Trips a closed breaker (prelude.lua: `trip_closed`). During slow start (the
    /// breaker closed less than `slow_start` ago) the target has not recovered after
    /// all: a failed recovery, backing off as a failed trial does. After it, the backoff
    /// starts over.
    fn trip_closed(&mut self, now: Instant, settings: &Settings) {
        let recovering = match (self.closed_at, settings.slow_start) {
            (Some(at), Some(ramp)) => now < later(at, ramp),
            _ => false,
        };
        self.reopens = if recovering {
            self.reopens.saturating_add(1)
        } else {
            0
        };
        self.trip(now, open_time(settings, self.reopens, 0));
    }

    /// Closes the breaker and resets its counters (prelude.lua: `close`). Closing a
    /// breaker that was not letting calls through is a recovery: slow start is timed
    /// from `now` (closing a closed breaker goes on with its period). With slow start,
    /// the backoff is kept until it ends (see [`Record::trip_closed`]).
    fn close(&mut self, now: Instant, settings: &Settings) {
        if !self.state.lets_calls_through() {
            self.closed_at = Some(now);
        }
        self.state = State::Closed;
        self.bump();
        self.success = 0;
        self.fail = 0;
        self.open_until = None;
        self.trial = None;
        if settings.slow_start.is_none() {
            self.reopens = 0;
        }
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
/// `incarnation` is called only when a record is created. A command that would bump the
/// generation past [`MAX_GENERATION`] changes nothing and is answered as not applied
/// ([`try_apply`] reports it as an error).
pub fn apply(
    record: &mut Option<Record>,
    command: &Command,
    settings: &Settings,
    now: Instant,
    incarnation: impl FnOnce() -> u64,
) -> Outcome {
    match try_apply(record, command, settings, now, incarnation) {
        Ok(outcome) => outcome,
        Err(_) => match record.as_mut() {
            Some(r) => answer(r, now, |_| false),
            None => Outcome::absent(),
        },
    }
}

/// [`apply`], but a command that would bump the generation past [`MAX_GENERATION`] is
/// [`StorageError::Corrupt`] (nothing changed), as in the Redis store: what the memory
/// store answers.
pub fn try_apply(
    record: &mut Option<Record>,
    command: &Command,
    settings: &Settings,
    now: Instant,
    incarnation: impl FnOnce() -> u64,
) -> Result<Outcome, StorageError> {
    let generation = match record {
        Some(r) if r.generation >= MAX_GENERATION => r.generation,
        _ => return Ok(transition(record, command, settings, now, incarnation)),
    };
    let before = record.clone();
    let outcome = transition(record, command, settings, now, incarnation);
    if record
        .as_ref()
        .is_some_and(|r| r.generation > MAX_GENERATION)
    {
        *record = before;
        return Err(StorageError::Corrupt(format!(
            "the record's generation {generation} is at its maximum ({MAX_GENERATION}): it cannot be bumped (close() recreates the record)"
        )));
    }
    Ok(outcome)
}

/// A seed as the stores take it: a generation of at most [`MAX_GENERATION`], an open
/// time of at most 2^53 - 1 ms.
fn bounded(seed: Seed) -> Seed {
    Seed {
        generation: seed.generation.min(MAX_GENERATION),
        open_remaining: seed
            .open_remaining
            .map(|d| d.min(std::time::Duration::from_millis(MAX_EXPIRY_MS))),
        ..seed
    }
}

fn transition(
    record: &mut Option<Record>,
    command: &Command,
    settings: &Settings,
    now: Instant,
    incarnation: impl FnOnce() -> u64,
) -> Outcome {
    if let Command::Register { seed } = command {
        return register(record, seed.map(bounded).as_ref(), now, incarnation);
    }
    if let Command::Force(target) = command {
        // A record that cannot be bumped is recreated (force.lua does the same).
        let from = record.as_ref().map(|r| r.state);
        let r = match record {
            Some(r) if r.generation < MAX_GENERATION => r,
            _ => record.insert(Record::closed(incarnation())),
        };
        let mut outcome = answer(r, now, |r| force(r, *target, settings, now));
        outcome.from = from.unwrap_or(outcome.from);
        return outcome;
    }
    if let Command::SetShadow { on } = *command {
        // An absent record is created closed (set_shadow.lua does the same).
        let r = record.get_or_insert_with(|| Record::closed(incarnation()));
        return answer(r, now, |r| set_shadow(r, on));
    }
    let Some(r) = record.as_mut() else {
        return Outcome::absent();
    };
    match *command {
        Command::Register { .. } | Command::Force(_) | Command::SetShadow { .. } => {
            unreachable!("handled above")
        }
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
        r.seq = r.seq.saturating_add(1);
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
        r.trip_closed(now, settings);
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
        r.trip_closed(now, settings);
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
    r.trial = Some((token, later(now, lease)));
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
            r.close(now, settings);
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
fn force(r: &mut Record, target: Target, settings: &Settings, now: Instant) -> bool {
    r.reopens = 0;
    match target {
        Target::Closed => r.close(now, settings),
        Target::Open(open_for) => r.trip(now, open_for),
        Target::HalfOpen | Target::ForcedOpen | Target::Disabled => {
            r.state = target.state();
            r.bump();
            r.success = 0;
            r.open_until = None;
            r.trial = None;
            r.window = Window::default();
            r.streak.clear();
            r.closed_at = None;
        }
    }
    true
}

/// set_shadow.lua
fn set_shadow(r: &mut Record, on: bool) -> bool {
    r.shadow = Some(on);
    true
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn run(record: &mut Option<Record>, command: Command, settings: &Settings) -> Outcome {
        apply(record, &command, settings, Instant::now(), || 7)
    }

    fn seed(generation: u64, fail_counter: u32) -> Command {
        Command::Register {
            seed: Some(Seed {
                state: State::Closed,
                generation,
                fail_counter,
                open_remaining: None,
                trial_remaining: None,
                confirmed: None,
                shadow: None,
                since_close: None,
            }),
        }
    }

    #[test]
    fn a_generation_that_cannot_be_bumped_refuses_transitions_and_force_recreates() {
        let settings = Settings::DEFAULT.fail_max(1);
        let mut record = None;
        // A seed above the bound is taken at the bound.
        let created = run(&mut record, seed(u64::MAX, u32::MAX), &settings);
        assert_eq!(created.snapshot.generation, MAX_GENERATION);
        assert_eq!(created.snapshot.fail_counter, u32::MAX);
        let before = record.clone();
        let trip = Command::RecordFailure {
            generation: MAX_GENERATION,
            count: 1,
            instance: 1,
        };
        let error = try_apply(&mut record, &trip, &settings, Instant::now(), || 7).unwrap_err();
        assert!(
            matches!(&error, StorageError::Corrupt(m) if m.contains("maximum")),
            "{error}"
        );
        assert_eq!(record, before, "nothing changed");
        let refused = run(&mut record, trip, &settings);
        assert!(!refused.applied, "{refused:?}");
        assert_eq!(record, before, "nothing changed");
        // What does not bump the generation still runs.
        let counted = run(
            &mut record,
            Command::RecordSuccess {
                generation: MAX_GENERATION,
            },
            &settings,
        );
        assert!(counted.applied && counted.snapshot.fail_counter == 0);
        // Force recreates the record (a new incarnation), then applies.
        let forced = run(&mut record, Command::Force(Target::Closed), &settings);
        assert!(forced.applied);
        assert_eq!(forced.from, State::Closed);
        assert_eq!(forced.snapshot.generation, 2);
        assert_eq!(
            forced.snapshot.version,
            Version {
                incarnation: 7,
                seq: 1
            }
        );
        let tripped = run(
            &mut record,
            Command::RecordFailure {
                generation: 2,
                count: 1,
                instance: 1,
            },
            &settings,
        );
        assert_eq!(tripped.snapshot.state, State::Open);
        assert_eq!(tripped.snapshot.generation, 3);
    }

    #[test]
    fn the_generation_below_the_bound_can_still_be_bumped_once() {
        let settings = Settings::DEFAULT.fail_max(1);
        let mut record = None;
        run(&mut record, seed(MAX_GENERATION - 1, 0), &settings);
        let tripped = run(
            &mut record,
            Command::RecordFailure {
                generation: MAX_GENERATION - 1,
                count: u32::MAX,
                instance: 1,
            },
            &settings,
        );
        assert_eq!(tripped.snapshot.state, State::Open);
        assert_eq!(tripped.snapshot.generation, MAX_GENERATION);
        assert_eq!(tripped.snapshot.fail_counter, u32::MAX);
    }

    #[test]
    fn extreme_times_and_counts_neither_panic_nor_wrap() {
        let settings = Settings::DEFAULT
            .fail_max(u32::MAX)
            .success_threshold(u32::MAX)
            .reset_timeout(Duration::MAX)
            .max_reset_timeout(Duration::MAX)
            .failure_rate(100)
            .window(Duration::MAX);
        let mut record = None;
        run(&mut record, Command::Register { seed: None }, &settings);
        for _ in 0..3 {
            let counts = Counts {
                calls: u32::MAX,
                failures: u32::MAX - 1,
                slow: u32::MAX,
                tail: u32::MAX - 1,
            };
            let outcome = run(
                &mut record,
                Command::RecordCalls {
                    generation: 1,
                    counts,
                    instance: u64::MAX,
                },
                &settings,
            );
            assert!(outcome.applied, "{outcome:?}");
            assert_eq!(outcome.snapshot.state, State::Closed, "{outcome:?}");
        }
        let opened = run(
            &mut record,
            Command::Force(Target::Open(Duration::MAX)),
            &settings,
        );
        let remaining = opened.snapshot.open_remaining.unwrap();
        assert!(remaining > Duration::from_secs(1 << 40), "{remaining:?}");
        run(&mut record, Command::Force(Target::HalfOpen), &settings);
        let token = TrialToken(999);
        let lease = Duration::MAX;
        assert!(
            run(
                &mut record,
                Command::AcquireTrial { token, lease },
                &settings
            )
            .applied
        );
        let reopened = run(
            &mut record,
            Command::RecordTrial {
                token,
                success: false,
            },
            &settings,
        );
        assert_eq!(reopened.snapshot.state, State::Open);
        assert!(reopened.snapshot.open_remaining.unwrap() > Duration::from_secs(1 << 40));
    }

    /// Trips a closed record with one failure (fail_max 1).
    fn fail(record: &mut Option<Record>, settings: &Settings, now: Instant) -> Outcome {
        let generation = record.as_ref().unwrap().generation;
        let command = Command::RecordFailure {
            generation,
            count: 1,
            instance: 1,
        };
        apply(record, &command, settings, now, || 7)
    }

    /// Closes an open record through a successful trial.
    fn recover(record: &mut Option<Record>, settings: &Settings, now: Instant) -> Outcome {
        let token = TrialToken(1_000);
        let lease = Duration::from_secs(1);
        let acquire = Command::AcquireTrial { token, lease };
        assert!(apply(record, &acquire, settings, now, || 7).applied);
        let trial = Command::RecordTrial {
            token,
            success: true,
        };
        apply(record, &trial, settings, now, || 7)
    }

    #[test]
    fn a_close_after_a_trip_is_timed_and_a_fresh_record_is_not() {
        let settings = Settings::DEFAULT
            .fail_max(1)
            .reset_timeout(Duration::from_secs(10))
            .slow_start(Duration::from_secs(30));
        let t0 = Instant::now();
        let mut record = None;
        let fresh = apply(
            &mut record,
            &Command::Register { seed: None },
            &settings,
            t0,
            || 7,
        );
        assert_eq!(
            fresh.snapshot.since_close, None,
            "never tripped: no recovery"
        );
        let forced = apply(
            &mut record,
            &Command::Force(Target::Closed),
            &settings,
            t0,
            || 7,
        );
        assert_eq!(
            forced.snapshot.since_close, None,
            "closing a closed breaker"
        );
        assert_eq!(fail(&mut record, &settings, t0).snapshot.state, State::Open);
        let t1 = t0 + Duration::from_secs(10);
        let closed = recover(&mut record, &settings, t1);
        assert_eq!(closed.snapshot.state, State::Closed);
        assert_eq!(closed.snapshot.since_close, Some(Duration::ZERO));
        let later = record
            .as_ref()
            .unwrap()
            .snapshot(t1 + Duration::from_secs(12));
        assert_eq!(later.since_close, Some(Duration::from_secs(12)));
        // An operator's close of a closed breaker goes on with its period.
        let t2 = t1 + Duration::from_secs(5);
        let again = apply(
            &mut record,
            &Command::Force(Target::Closed),
            &settings,
            t2,
            || 7,
        );
        assert_eq!(again.snapshot.since_close, Some(Duration::from_secs(5)));
        // Disabled, then closed: calls ran all along, no recovery.
        apply(
            &mut record,
            &Command::Force(Target::Disabled),
            &settings,
            t2,
            || 7,
        );
        let enabled = apply(
            &mut record,
            &Command::Force(Target::Closed),
            &settings,
            t2,
            || 7,
        );
        assert_eq!(enabled.snapshot.since_close, None);
        // An operator's close of an open breaker is a recovery.
        apply(
            &mut record,
            &Command::Force(Target::ForcedOpen),
            &settings,
            t2,
            || 7,
        );
        let reopened = apply(
            &mut record,
            &Command::Force(Target::Closed),
            &settings,
            t2,
            || 7,
        );
        assert_eq!(reopened.snapshot.since_close, Some(Duration::ZERO));
    }

    #[test]
    fn a_trip_during_slow_start_is_a_failed_recovery() {
        let base = Settings::DEFAULT
            .fail_max(1)
            .reset_timeout(Duration::from_secs(10))
            .max_reset_timeout(Duration::from_secs(80));
        let t0 = Instant::now();
        for slow_start in [None, Some(Duration::from_secs(30))] {
            let settings = match slow_start {
                Some(ramp) => base.slow_start(ramp),
                None => base,
            };
            let mut record = Some(Record::closed(7));
            let mut now = t0;
            let mut opens = Vec::new();
            // Trip, recover, and trip again 10 s into the closed period, three times.
            for _ in 0..3 {
                let open = fail(&mut record, &settings, now).snapshot.open_remaining;
                opens.push(open.unwrap().as_secs());
                now += open.unwrap();
                recover(&mut record, &settings, now);
                now += Duration::from_secs(10);
            }
            let reopens = record.as_ref().unwrap().reopens;
            match slow_start {
                None => {
                    assert_eq!(opens, [10, 10, 10], "a close resets the backoff");
                    assert_eq!(reopens, 0);
                }
                Some(_) => {
                    assert_eq!(opens, [10, 20, 40], "each trip in slow start backs off");
                    assert_eq!(reopens, 2, "kept through the ramp");
                }
            }
            // Tripping after slow start ended starts the backoff over.
            now += Duration::from_secs(30);
            let open = fail(&mut record, &settings, now).snapshot.open_remaining;
            assert_eq!(open, Some(Duration::from_secs(10)));
            assert_eq!(record.as_ref().unwrap().reopens, 0);
        }
    }
}
