//! A process's local view of one breaker: what the fast path reads.
//!
//! The view caches the store's answers in one packed atomic word, so that admitting a
//! call in the closed state, or rejecting one while open, is one atomic load: no lock, no
//! store round trip and no clock read. While open, rejections need no clock read until
//! shortly before the open time ends: a timer (armed by the [`Cell`](crate::local::Cell))
//! then hands admission back to the clock, so the open time still ends exactly. Without a
//! tokio runtime to arm a timer, admission reads the clock throughout.
//!
//! A closed breaker in slow start (`slow_start`: it closed less than that long ago) has
//! state bits of its own ([`RAMP`]), so the closed fast path's single comparison sends
//! its calls to the cold path, where an atomic counter admits an evenly spread share of
//! them (no lock, no store round trip); the first call after slow start ends puts the
//! plain closed word back.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::core::{now_nanos, ramp_share, saturating_nanos, Settings, Snapshot, State, Version};

/// Bits 63–61: the state's code ([`State::code`]), or [`UNSYNCED`].
const STATE_SHIFT: u32 = 61;
/// The fleet's fail counter is above zero: a success must reset it.
const DIRTY: u64 = 1 << 60;
/// Open, and the open time has passed: calls compete for the trial.
const DUE: u64 = 1 << 59;
/// Open, and the end of the open time is more than [`CLOCK_MARGIN`] away (a timer clears
/// this bit then): rejecting needs no clock read.
const TIMED: u64 = 1 << 58;
/// How long before the end of an open period admission starts reading the clock again.
/// Timers fire late by up to a millisecond (more on a busy runtime); the clock is exact.
pub(crate) const CLOCK_MARGIN: Duration = Duration::from_millis(5);
/// Bits 57–0: the generation.
const GEN_MASK: u64 = TIMED - 1;
/// The state bits of a view that has not loaded the shared state yet.
const UNSYNCED: u64 = 7;
/// The state bits of a closed breaker in slow start (not a [`State`] code: it reads as
/// closed), so that its calls miss the fast path.
const RAMP: u64 = 5;
/// Every state bit.
const STATE_BITS: u64 = 7 << STATE_SHIFT;
/// The longest retry hint of a call slow start did not admit: the share grows meanwhile.
const RAMP_RETRY: Duration = Duration::from_secs(1);
/// Every word below this one is closed: the fast path's single comparison.
const CLOSED_LIMIT: u64 = 1 << STATE_SHIFT;

const OPEN: u64 = State::Open.code() as u64;
const HALF_OPEN: u64 = State::HalfOpen.code() as u64;
const FORCED_OPEN: u64 = State::ForcedOpen.code() as u64;
const DISABLED: u64 = State::Disabled.code() as u64;

/// What the view decided about a call.
pub(crate) enum Admit {
    /// Run the call under this generation.
    Pass(u64),
    /// Reject: open until this point on the fast-path clock.
    RejectOpen(u64),
    /// Reject: held open by an operator.
    RejectForced,
    /// The open time has passed (or half-open): ask the store for the trial slot.
    Trial,
    /// The view has not loaded the shared state yet: load it first.
    Sync,
    /// Reject: slow start did not admit this call; try again at this point on the
    /// fast-path clock.
    RejectRecovering(u64),
}

/// A timer the cell must arm: after `after`, admission reads the clock again if the view
/// is still in the open period (`generation`, `until`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Arm {
    pub(crate) generation: u64,
    pub(crate) until: u64,
    pub(crate) after: Duration,
}

pub(crate) struct View {
    /// state (3 bits) | dirty | due | timed | generation (58 bits).
    word: AtomicU64,
    /// While open: when the open time ends, in [`now_nanos`] time.
    open_until: AtomicU64,
    /// The fleet's fail counter as last seen (to seed a store that lost the record).
    fail_counter: AtomicU32,
    /// A trial from this process is being acquired or is running.
    pub(crate) probing: AtomicBool,
    /// Do not ask the store for a trial before this time (another process holds it).
    pub(crate) next_trial_check: AtomicU64,
    /// When the known trial's lease ends (the retry hint of a trial-in-flight rejection).
    pub(crate) trial_until: AtomicU64,
    /// A reset of the fail counter is in flight (sent once, not per success).
    pub(crate) resetting: AtomicBool,
    /// Until when this process keeps the breaker open on its own (fast-path clock).
    quarantine_until: AtomicU64,
    /// The open state the view shows is this process's own protection over the fleet's
    /// closed breaker (not an open period of the fleet's).
    overlaid: AtomicBool,
    /// The operator's shadow switch of the last snapshot taken in (see
    /// [`Snapshot::shadow`]): [`SWITCH_NONE`], [`SWITCH_OFF`] or [`SWITCH_ON`].
    shadow: AtomicU8,
    /// Serialises updates so that an older snapshot never overwrites a newer one.
    applied: Mutex<Option<Version>>,
    /// When the fleet's breaker closed after a recovery (fast-path clock, from the
    /// store's [`Snapshot::since_close`]); 0: unknown, or not closed.
    ramp_from: AtomicU64,
    /// The settings' `slow_start` in ns (0: off) and `slow_start_min`.
    slow_start: AtomicU64,
    slow_start_min: AtomicU32,
    /// Calls slow start was asked about: the evenly spread counter.
    ramp_calls: AtomicU64,
}

const SWITCH_NONE: u8 = 0;
const SWITCH_OFF: u8 = 1;
const SWITCH_ON: u8 = 2;

fn pack(state: State, dirty: bool, generation: u64) -> u64 {
    (u64::from(state.code()) << STATE_SHIFT)
        | if dirty { DIRTY } else { 0 }
        | (generation & GEN_MASK)
}

fn state_of(word: u64) -> Option<State> {
    match word >> STATE_SHIFT {
        RAMP => Some(State::Closed),
        code => State::from_code(code as u8),
    }
}

/// Whether slow start admits the `n`-th call it is asked about while admitting `share`
/// percent: `share` of every 100 consecutive calls, spread evenly (Bresenham: call `n`
/// is admitted when ⌊(n+1)·share/100⌋ passes ⌊n·share/100⌋), so no burst gets through
/// as a random draw's would.
pub(crate) fn evenly_admitted(n: u64, share: u32) -> bool {
    let n = n % 100;
    let share = u64::from(share.min(100));
    (n + 1) * share / 100 > n * share / 100
}

impl View {
    pub(crate) fn new() -> View {
        View {
            word: AtomicU64::new(pack(State::Closed, false, 1)),
            open_until: AtomicU64::new(0),
            fail_counter: AtomicU32::new(0),
            probing: AtomicBool::new(false),
            next_trial_check: AtomicU64::new(0),
            trial_until: AtomicU64::new(0),
            resetting: AtomicBool::new(false),
            quarantine_until: AtomicU64::new(0),
            overlaid: AtomicBool::new(false),
            shadow: AtomicU8::new(SWITCH_NONE),
            applied: Mutex::new(None),
            ramp_from: AtomicU64::new(0),
            slow_start: AtomicU64::new(0),
            slow_start_min: AtomicU32::new(100),
            ramp_calls: AtomicU64::new(0),
        }
    }

    /// Takes in the settings' slow start (at creation, and when they change; a ramp in
    /// progress follows the new ones from its next call).
    pub(crate) fn set_slow_start(&self, settings: &Settings) {
        let ramp = settings.slow_start.map_or(0, saturating_nanos);
        self.slow_start_min
            .store(settings.slow_start_min, Ordering::Relaxed);
        self.slow_start.store(ramp, Ordering::Release);
    }

    /// Admission from the view alone: one atomic load when closed.
    #[inline(always)]
    pub(crate) fn admit(&self) -> Admit {
        let word = self.word.load(Ordering::Acquire);
        if word < CLOSED_LIMIT {
            return Admit::Pass(word & GEN_MASK);
        }
        self.admit_slow(word)
    }

    #[inline]
    fn admit_slow(&self, word: u64) -> Admit {
        match word >> STATE_SHIFT {
            OPEN if word & DUE != 0 => Admit::Trial,
            OPEN => {
                let until = self.open_until.load(Ordering::Acquire);
                if word & TIMED != 0 || now_nanos() < until {
                    Admit::RejectOpen(until)
                } else {
                    Admit::Trial
                }
            }
            DISABLED => Admit::Pass(word & GEN_MASK),
            HALF_OPEN => Admit::Trial,
            FORCED_OPEN => Admit::RejectForced,
            // Slow start, or not loaded yet: out of line, so that the inlined admission
            // stays as small as it was without slow start.
            _ => self.admit_rest(word),
        }
    }

    #[cold]
    #[inline(never)]
    fn admit_rest(&self, word: u64) -> Admit {
        match word >> STATE_SHIFT {
            RAMP => self.admit_ramp(word),
            _ => Admit::Sync,
        }
    }

    /// Admission in slow start: the share of calls it admits now, spread evenly. The
    /// first call after it ended puts the plain closed word back (the fast path).
    fn admit_ramp(&self, word: u64) -> Admit {
        let generation = word & GEN_MASK;
        let now = now_nanos();
        let Some((share, left)) = self.ramp_at(now) else {
            let _ = self.word.compare_exchange(
                word,
                word & !STATE_BITS,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            return Admit::Pass(generation);
        };
        let n = self.ramp_calls.fetch_add(1, Ordering::Relaxed);
        if evenly_admitted(n, share) {
            Admit::Pass(generation)
        } else {
            let wait = left.min(RAMP_RETRY);
            Admit::RejectRecovering(now.saturating_add(saturating_nanos(wait)))
        }
    }

    /// Slow start's share at `now` (percent) and the time it has left, from the close
    /// this view last took in; `None` when it is over, off, or no close is known.
    fn ramp_at(&self, now: u64) -> Option<(u32, Duration)> {
        let from = self.ramp_from.load(Ordering::Acquire);
        if from == 0 {
            return None;
        }
        let ramp = self.slow_start.load(Ordering::Acquire);
        let elapsed = now.saturating_sub(from);
        let min = self.slow_start_min.load(Ordering::Relaxed);
        let share = ramp_share(min, elapsed, ramp)?;
        Some((share, Duration::from_nanos(ramp - elapsed)))
    }

    /// The share of calls slow start admits now, in percent, while the breaker is in it
    /// (as this process sees it): the metrics' gauge.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn slow_start_share(&self) -> Option<u32> {
        if self.word.load(Ordering::Acquire) >> STATE_SHIFT != RAMP {
            return None;
        }
        self.ramp_at(now_nanos()).map(|(share, _)| share)
    }

    /// The time since the close this view last took in (see [`View::ramp_from`]).
    fn since_close(&self, now: u64) -> Option<Duration> {
        let from = self.ramp_from.load(Ordering::Acquire);
        (from != 0).then(|| Duration::from_nanos(now.saturating_sub(from)))
    }

    /// The consecutive failures last seen in the store.
    pub(crate) fn fail_counter(&self) -> u32 {
        self.fail_counter.load(Ordering::Acquire)
    }

    /// This process's view as a snapshot (to seed a store).
    pub(crate) fn local_snapshot(&self) -> Snapshot {
        let word = self.word.load(Ordering::Acquire);
        let state = self.state();
        let mut snapshot = Snapshot::absent();
        snapshot.state = state;
        snapshot.generation = word & GEN_MASK;
        snapshot.fail_counter = self.fail_counter.load(Ordering::Acquire);
        snapshot.shadow = self.shadow_switch();
        let now = now_nanos();
        snapshot.open_remaining = (state == State::Open).then(|| {
            let until = self.open_until.load(Ordering::Acquire);
            if word & DUE != 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos(until.saturating_sub(now))
            }
        });
        // The trial in flight, as far as this process knows (its own, or one it saw).
        let trial_until = self.trial_until.load(Ordering::Acquire);
        snapshot.trial_remaining = (state == State::HalfOpen && trial_until > now)
            .then(|| Duration::from_nanos(trial_until - now));
        snapshot.since_close = self.since_close(now).filter(|_| state == State::Closed);
        snapshot
    }

    /// Whether asking the store for the trial slot is pointless right now: a call of this
    /// process is already asking or holds it, or another process's trial holds it.
    #[inline]
    pub(crate) fn trial_blocked(&self) -> bool {
        self.probing.load(Ordering::Acquire)
            || now_nanos() < self.next_trial_check.load(Ordering::Acquire)
    }

    /// When to ask again while a trial is in flight: its lease end, at least 1 ms ahead.
    pub(crate) fn trial_retry_at(&self) -> u64 {
        let floor = now_nanos().saturating_add(1_000_000);
        self.trial_until.load(Ordering::Acquire).max(floor)
    }

    /// Records that this process took the trial for `lease`.
    pub(crate) fn trial_taken(&self, lease: Duration) {
        self.trial_until.store(
            now_nanos().saturating_add(saturating_nanos(lease)),
            Ordering::Release,
        );
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
        state_of(self.word.load(Ordering::Acquire)).unwrap_or(State::Closed)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.word.load(Ordering::Acquire) & GEN_MASK
    }

    /// Whether the fleet's fail counter was above zero when last seen, whatever the
    /// generation (see [`needs_reset`](View::needs_reset)).
    #[inline(always)]
    pub(crate) fn dirty(&self) -> bool {
        self.word.load(Ordering::Relaxed) & DIRTY != 0
    }

    /// Whether a success under `generation` must reset the fleet's fail counter.
    #[inline(always)]
    pub(crate) fn needs_reset(&self, generation: u64) -> bool {
        let word = self.word.load(Ordering::Relaxed);
        word & DIRTY != 0 && word & GEN_MASK == generation & GEN_MASK
    }

    /// The timer armed for `arm` ended — it went off shortly before the open time ends,
    /// or its runtime shut down: from now on, while still in that open period, admission
    /// reads the clock, so the open time ends exactly when it should.
    pub(crate) fn deadline_near(&self, arm: Arm) {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            let waiting = word >> STATE_SHIFT == OPEN
                && word & TIMED != 0
                && word & GEN_MASK == arm.generation & GEN_MASK
                && self.open_until.load(Ordering::Acquire) == arm.until;
            if !waiting {
                return;
            }
            match self.word.compare_exchange_weak(
                word,
                word & !TIMED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    /// Takes in a store answer unless a newer one was already applied. Returns the
    /// state change it caused in this view, if any, and a timer to arm.
    pub(crate) fn apply(&self, snapshot: &Snapshot, timers: bool) -> Applied {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seen) = *applied {
            if seen.incarnation == snapshot.version.incarnation && seen.seq > snapshot.version.seq {
                return Applied::default();
            }
        }
        *applied = Some(snapshot.version);
        self.store_switch(snapshot.shadow);
        self.store_snapshot(snapshot, timers)
    }

    /// The operator's shadow switch as last seen in the store (`None`: never switched).
    #[inline]
    pub(crate) fn shadow_switch(&self) -> Option<bool> {
        match self.shadow.load(Ordering::Acquire) {
            SWITCH_OFF => Some(false),
            SWITCH_ON => Some(true),
            _ => None,
        }
    }

    fn store_switch(&self, switch: Option<bool>) {
        let code = match switch {
            None => SWITCH_NONE,
            Some(false) => SWITCH_OFF,
            Some(true) => SWITCH_ON,
        };
        self.shadow.store(code, Ordering::Release);
    }

    /// Overwrites the view regardless of versions (e.g. a fallback taking over, or the
    /// store again after an outage). From then on the usual rule holds against the
    /// snapshot taken in: a late answer or event older than it (same incarnation, lower
    /// seq) is ignored, whatever the view held before.
    pub(crate) fn force(&self, snapshot: &Snapshot, timers: bool) -> Applied {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        *applied = Some(snapshot.version);
        self.store_switch(snapshot.shadow);
        self.store_snapshot(snapshot, timers)
    }

    /// Opens the breaker for this process alone until `until`, while the fleet's record
    /// stays closed: its own counts tripped the rate rule, but too few processes reported
    /// failures for a fleet-wide trip (`min_instances`). Until then, a closed answer from
    /// the store reads as open; afterwards the next call asks the store as after any open
    /// time, and finds it closed.
    pub(crate) fn quarantine(&self, until: u64, timers: bool) -> Applied {
        let _applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        self.quarantine_until.store(until, Ordering::Release);
        let word = self.word.load(Ordering::Acquire);
        if state_of(word) != Some(State::Closed) {
            return Applied::default();
        }
        // The fleet's closed breaker, which `store_snapshot` shows open until `until`.
        let snapshot = self.local_snapshot();
        self.store_snapshot(&snapshot, timers)
    }

    /// Ends this process's own protection that was to last `until` (see
    /// [`View::quarantine`]): if the view still shows it over the fleet's closed breaker,
    /// it shows the breaker closed again. Nothing changes if the protection was replaced
    /// (a new one) or the view shows something else now (the fleet's breaker moved on,
    /// or is open itself).
    pub(crate) fn end_quarantine(&self, until: u64, timers: bool) -> Applied {
        let _applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if self.quarantine_until.load(Ordering::Acquire) != until {
            return Applied::default();
        }
        self.quarantine_until.store(0, Ordering::Release);
        let word = self.word.load(Ordering::Acquire);
        if word >> STATE_SHIFT != OPEN || !self.overlaid.load(Ordering::Acquire) {
            return Applied::default();
        }
        let mut snapshot = self.local_snapshot();
        snapshot.state = State::Closed;
        snapshot.open_remaining = None;
        snapshot.since_close = self.since_close(now_nanos());
        self.store_snapshot(&snapshot, timers)
    }

    /// Until when this process keeps the breaker open on its own (fast-path clock).
    #[cfg(test)]
    pub(crate) fn quarantine_until(&self) -> u64 {
        self.quarantine_until.load(Ordering::Acquire)
    }

    /// Whether this process keeps the breaker open on its own (see [`View::quarantine`]).
    pub(crate) fn quarantined(&self) -> bool {
        now_nanos() < self.quarantine_until.load(Ordering::Acquire)
    }

    fn store_snapshot(&self, snapshot: &Snapshot, timers: bool) -> Applied {
        let now = now_nanos();
        if snapshot.generation & GEN_MASK != self.word.load(Ordering::Acquire) & GEN_MASK {
            // The fleet's breaker moved on (a trip, or an operator's command): this
            // process's own protection ends with the period it was taken in.
            self.quarantine_until.store(0, Ordering::Release);
        }
        // The close slow start is timed from, taken in on this process's clock (also
        // under this process's own protection, which hides the fleet's closed breaker).
        let ramp_from = match snapshot.since_close {
            Some(since) if snapshot.state == State::Closed => {
                now.saturating_sub(saturating_nanos(since)).max(1)
            }
            _ => 0,
        };
        self.ramp_from.store(ramp_from, Ordering::Release);
        let quarantine = self.quarantine_until.load(Ordering::Acquire);
        let quarantined;
        let overlaid = snapshot.state == State::Closed && now < quarantine;
        self.overlaid.store(overlaid, Ordering::Release);
        let snapshot = if overlaid {
            quarantined = Snapshot {
                state: State::Open,
                open_remaining: Some(Duration::from_nanos(quarantine - now)),
                ..*snapshot
            };
            &quarantined
        } else {
            snapshot
        };
        let previous = self.word.load(Ordering::Acquire);
        let mut word = pack(
            snapshot.state,
            snapshot.fail_counter > 0,
            snapshot.generation,
        );
        let mut arm = None;
        if snapshot.state == State::Closed && self.ramp_at(now).is_some() {
            word = (word & !STATE_BITS) | (RAMP << STATE_SHIFT);
        }
        if snapshot.state == State::Open {
            let remaining = snapshot.open_remaining.unwrap_or(Duration::ZERO);
            let until = now.saturating_add(saturating_nanos(remaining));
            let same_period = previous >> STATE_SHIFT == OPEN
                && previous & GEN_MASK == word & GEN_MASK
                && previous & (DUE | TIMED) != 0;
            if remaining.is_zero() {
                word |= DUE;
            } else if same_period
                && until.abs_diff(self.open_until.load(Ordering::Acquire)) < 5_000_000
            {
                // A re-read of the same open period (a resync, an echo): keep the timer.
                word |= previous & (DUE | TIMED);
            } else {
                self.open_until.store(until, Ordering::Release);
                if timers && remaining > CLOCK_MARGIN {
                    word |= TIMED;
                    arm = Some(Arm {
                        generation: snapshot.generation,
                        until,
                        after: remaining - CLOCK_MARGIN,
                    });
                }
            }
        }
        if snapshot.state == State::HalfOpen && !self.probing.load(Ordering::Acquire) {
            // Someone else's trial is in flight: do not ask for the slot before its lease
            // ends (nor more often than every 50 ms).
            if let Some(lease) = snapshot.trial_remaining {
                let wait = lease.min(Duration::from_millis(50));
                self.next_trial_check.store(
                    now.saturating_add(saturating_nanos(wait)),
                    Ordering::Release,
                );
                self.trial_until.store(
                    now.saturating_add(saturating_nanos(lease)),
                    Ordering::Release,
                );
            }
        }
        self.fail_counter
            .store(snapshot.fail_counter, Ordering::Release);
        let previous = self.word.swap(word, Ordering::AcqRel);
        let change = match state_of(previous) {
            // First load: nothing changed from this process's point of view.
            None => None,
            Some(from) => (from != snapshot.state).then_some((from, snapshot.state)),
        };
        Applied { change, arm }
    }
}

/// What applying a snapshot did to the view.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// The state change, if the view's state changed.
    pub(crate) change: Option<(State, State)>,
    /// A timer to arm for the open time.
    pub(crate) arm: Option<Arm>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(generation: u64, seq: u64, since_close: Option<Duration>) -> Snapshot {
        let mut snapshot = Snapshot::closed(Version {
            incarnation: 7,
            seq,
        });
        snapshot.generation = generation;
        snapshot.since_close = since_close;
        snapshot
    }

    /// Admits `calls` calls from the view: how many passed, and how many slow start
    /// turned away.
    fn admit(view: &View, calls: usize) -> (usize, usize) {
        let (mut passed, mut rejected) = (0, 0);
        for _ in 0..calls {
            match view.admit() {
                Admit::Pass(_) => passed += 1,
                Admit::RejectRecovering(_) => rejected += 1,
                _ => panic!("a closed breaker only passes or turns calls away"),
            }
        }
        (passed, rejected)
    }

    #[test]
    fn the_counter_admits_exactly_the_share_spread_evenly() {
        for share in 0..=100u32 {
            let admitted: Vec<bool> = (0..300).map(|n| evenly_admitted(n, share)).collect();
            for hundred in admitted.chunks(100) {
                let n = hundred.iter().filter(|&&a| a).count();
                assert_eq!(n, share as usize, "{share} % of 100 calls");
            }
            // Evenly: any 10 consecutive calls hold share/10 admitted calls, give or take
            // one (a random draw would let bursts through).
            for start in 0..290 {
                let n = admitted[start..start + 10].iter().filter(|&&a| a).count() as f64;
                let expected = f64::from(share) / 10.0;
                assert!(
                    (n - expected).abs() <= 1.0,
                    "{share} %: {n} of 10 at {start}"
                );
            }
        }
        assert!(evenly_admitted(u64::MAX, 100), "no overflow");
        assert!(!evenly_admitted(u64::MAX, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_the_share_then_leaves_the_fast_path_as_it_was() {
        let view = View::new();
        view.set_slow_start(
            &Settings::DEFAULT
                .slow_start(Duration::from_secs(10))
                .slow_start_min(10),
        );
        // A fresh record (no close to time from) is no recovery: the plain closed word.
        view.apply(&closed(1, 1, None), true);
        assert!(view.word.load(Ordering::Relaxed) < CLOSED_LIMIT);
        assert_eq!(admit(&view, 100), (100, 0));

        // Closed by a trial just now: 10 % of the calls.
        view.apply(&closed(3, 5, Some(Duration::ZERO)), true);
        assert_eq!(view.state(), State::Closed, "slow start is closed");
        assert_eq!(view.generation(), 3);
        assert!(
            view.word.load(Ordering::Relaxed) >= CLOSED_LIMIT,
            "off the fast path"
        );
        assert_eq!(view.slow_start_share(), Some(10));
        assert_eq!(admit(&view, 100), (10, 90));
        let Admit::RejectRecovering(retry_at) = (0..10)
            .map(|_| view.admit())
            .find(|a| matches!(a, Admit::RejectRecovering(_)))
            .unwrap()
        else {
            unreachable!()
        };
        assert_eq!(
            retry_at - now_nanos(),
            1_000_000_000,
            "retry within a second"
        );

        // Halfway: 55 %.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(view.slow_start_share(), Some(55));
        let (passed, _) = admit(&view, 1000);
        assert!((545..=555).contains(&passed), "{passed}");

        // An event of the same close, read later (another process's write): the same
        // moment, taken in on this process's clock.
        view.apply(&closed(3, 6, Some(Duration::from_secs(5))), true);
        assert_eq!(view.slow_start_share(), Some(55));

        // Near the end, the hint is the time left.
        tokio::time::advance(Duration::from_millis(4_700)).await;
        assert_eq!(view.slow_start_share(), Some(97));
        let hint = (0..100)
            .find_map(|_| match view.admit() {
                Admit::RejectRecovering(at) => Some(at - now_nanos()),
                _ => None,
            })
            .unwrap();
        assert_eq!(hint, 300_000_000);

        // Over: the next call puts the plain closed word back.
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(view.slow_start_share(), None);
        assert!(matches!(view.admit(), Admit::Pass(3)));
        assert!(
            view.word.load(Ordering::Relaxed) < CLOSED_LIMIT,
            "the fast path"
        );
        assert_eq!(admit(&view, 100), (100, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_follows_the_settings_and_ends_with_the_closed_period() {
        let view = View::new();
        // Without slow start, a close is admitted in full.
        view.apply(&closed(2, 2, Some(Duration::ZERO)), true);
        assert_eq!(view.slow_start_share(), None);
        assert!(view.word.load(Ordering::Relaxed) < CLOSED_LIMIT);

        let ramp = Settings::DEFAULT
            .slow_start(Duration::from_secs(60))
            .slow_start_min(50);
        view.set_slow_start(&ramp);
        view.apply(&closed(2, 3, Some(Duration::from_secs(30))), true);
        assert_eq!(view.slow_start_share(), Some(75));
        // Settings changed to no slow start: the next call ends it.
        view.set_slow_start(&Settings::DEFAULT);
        assert!(matches!(view.admit(), Admit::Pass(2)));
        assert!(view.word.load(Ordering::Relaxed) < CLOSED_LIMIT);

        // A trip ends it too, and the open word is as without slow start.
        view.set_slow_start(&ramp);
        view.apply(&closed(2, 4, Some(Duration::ZERO)), true);
        assert_eq!(view.slow_start_share(), Some(50));
        let mut open = closed(3, 5, None);
        open.state = State::Open;
        open.open_remaining = Some(Duration::from_secs(60));
        let applied = view.apply(&open, true);
        assert_eq!(applied.change, Some((State::Closed, State::Open)));
        assert!(matches!(view.admit(), Admit::RejectOpen(_)));
        assert_eq!(view.local_snapshot().since_close, None);
    }
}
