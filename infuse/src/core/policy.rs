//! When a closed breaker trips — kept apart from the transition rules, so that the rules
//! of when to trip change this module and not the state machine — and what a failure's
//! report did, as the call path tells it.

use crate::core::window::{Counts, Totals};
use crate::core::{Outcome, Settings, State};

/// The rules that decide whether a closed breaker trips: pybreaker's consecutive
/// failures, and optionally failure and slow-call rates over a window. Whichever rule
/// trips first opens the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TripPolicy {
    /// Consecutive failures that trip (a success resets the count).
    pub fail_max: u32,
    /// Failures in the window, as a percentage of its calls, that trip.
    pub failure_rate: Option<u32>,
    /// Slow calls in the window, as a percentage of its calls, that trip.
    pub slow_call_rate: Option<u32>,
    /// No rate decision below this many calls in the window.
    pub min_calls: u32,
    /// No rate decision unless this many processes reported failures or slow calls.
    pub min_instances: u32,
}

/// Why a breaker tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TripReason {
    /// `fail_max` consecutive failures.
    ConsecutiveFailures,
    /// The failure rate reached `failure_rate`.
    FailureRate,
    /// The slow-call rate reached `slow_call_rate`.
    SlowCallRate,
}

impl TripPolicy {
    /// The policy a breaker's settings describe.
    pub fn of(settings: &Settings) -> TripPolicy {
        TripPolicy {
            fail_max: settings.fail_max.max(1),
            failure_rate: settings.failure_rate,
            slow_call_rate: settings.slow_call_rate,
            min_calls: settings.min_calls.max(1),
            min_instances: settings.min_instances.max(1),
        }
    }

    /// Whether `fail_counter` consecutive failures trip.
    pub fn trips(&self, fail_counter: u32) -> bool {
        fail_counter >= self.fail_max
    }

    /// Whether the window's totals trip, reported by `instances` distinct processes.
    /// Integer arithmetic only (in 128 bits: no overflow whatever the totals), so that
    /// `record_calls.lua` decides exactly the same (its doubles are exact while a count
    /// times 100 stays below 2^53: 90 trillion calls in one window).
    pub fn trips_on(&self, totals: &Totals, instances: u32) -> Option<TripReason> {
        if totals.calls < u64::from(self.min_calls) || instances < self.min_instances {
            return None;
        }
        let reached = |count: u64, percent: Option<u32>| {
            percent.is_some_and(|p| {
                u128::from(count) * 100 >= u128::from(p) * u128::from(totals.calls)
            })
        };
        if reached(totals.failures, self.failure_rate) {
            Some(TripReason::FailureRate)
        } else if reached(totals.slow, self.slow_call_rate) {
            Some(TripReason::SlowCallRate)
        } else {
            None
        }
    }
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Counted; the breaker did not change state.
    Counted,
    /// This failure opened the breaker.
    Tripped,
    /// This failed trial re-opened the breaker.
    TrialFailed,
    /// Not counted: the breaker changed state since the call was admitted (stale result).
    Ignored,
}

impl TripPolicy {
    /// Whether a process's counts not yet reported could trip a breaker in `state`: the
    /// consecutive rule with the fleet's `fail_counter`, or a rate over `known` (the
    /// store's window as of this process's last report) plus `counts`. The window may
    /// have moved since: this only decides when to report, the store decides the trip.
    pub(crate) fn could_trip(
        &self,
        state: State,
        fail_counter: u32,
        known: Totals,
        counts: &Counts,
    ) -> bool {
        if state != State::Closed {
            return false; // disabled: nothing trips
        }
        let fail = if counts.has_success() {
            counts.tail
        } else {
            fail_counter.saturating_add(counts.tail)
        };
        let totals = Totals {
            calls: known.calls.saturating_add(u64::from(counts.calls)),
            failures: known.failures.saturating_add(u64::from(counts.failures)),
            slow: known.slow.saturating_add(u64::from(counts.slow)),
        };
        self.trips(fail) || self.trips_on(&totals, self.min_instances).is_some()
    }

    /// The verdict of the `index`-th (from 1) of `count` failures reported together
    /// (`outcome`: the store's answer, `None` if it failed), as if each had been reported
    /// alone in turn: the one that reached `fail_max` tripped the breaker, those before
    /// it were counted, those after it would have been stale.
    pub(crate) fn verdict_in_batch(
        &self,
        index: u32,
        count: u32,
        outcome: Option<&Outcome>,
    ) -> Verdict {
        match outcome {
            Some(o) if o.changed_state() && o.snapshot.state == State::Open => {
                let before = o.snapshot.fail_counter.saturating_sub(count);
                let trips_at = self.fail_max.saturating_sub(before).max(1);
                match index.cmp(&trips_at) {
                    std::cmp::Ordering::Less => Verdict::Counted,
                    std::cmp::Ordering::Equal => Verdict::Tripped,
                    std::cmp::Ordering::Greater => Verdict::Ignored,
                }
            }
            Some(o) if o.applied => Verdict::Counted,
            _ => Verdict::Ignored,
        }
    }
}

impl Verdict {
    /// The verdict of a batch of counts (rate rules) on the failure that reported it:
    /// tripped if the batch opened the breaker, else counted.
    pub(crate) fn of_batch(outcome: Option<&Outcome>) -> Verdict {
        match outcome {
            Some(o) if o.changed_state() && o.snapshot.state == State::Open => Verdict::Tripped,
            _ => Verdict::Counted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(calls: u64, failures: u64, slow: u64) -> Totals {
        Totals {
            calls,
            failures,
            slow,
        }
    }

    #[test]
    fn rates_need_the_minimum_volume_and_instances() {
        let settings = Settings::DEFAULT
            .failure_rate(50)
            .min_calls(20)
            .min_instances(2);
        let policy = TripPolicy::of(&settings);
        assert_eq!(policy.trips_on(&totals(19, 19, 0), 2), None);
        assert_eq!(policy.trips_on(&totals(20, 10, 0), 1), None);
        assert_eq!(
            policy.trips_on(&totals(20, 10, 0), 2),
            Some(TripReason::FailureRate)
        );
        assert_eq!(policy.trips_on(&totals(20, 9, 0), 2), None);
    }

    #[test]
    fn slow_calls_trip_on_their_own_rate() {
        let settings = Settings::DEFAULT
            .slow_call(std::time::Duration::from_millis(100))
            .slow_call_rate(80)
            .min_calls(10);
        let policy = TripPolicy::of(&settings);
        assert_eq!(
            policy.trips_on(&totals(10, 10, 7), 1),
            None,
            "no failure rule"
        );
        assert_eq!(
            policy.trips_on(&totals(10, 0, 8), 1),
            Some(TripReason::SlowCallRate)
        );
        assert!(!policy.trips(4));
        assert!(policy.trips(5));
    }

    fn counts(calls: u32, failures: u32, tail: u32) -> Counts {
        Counts {
            calls,
            failures,
            slow: 0,
            tail,
        }
    }

    #[test]
    fn counts_could_trip_on_the_fleets_streak_or_the_known_window() {
        let policy = TripPolicy::of(&Settings::DEFAULT.fail_max(5));
        let known = Totals::default();
        // Four failures known to the fleet, one more in this batch (no success in it).
        assert!(policy.could_trip(State::Closed, 4, known, &counts(1, 1, 1)));
        assert!(!policy.could_trip(State::Closed, 3, known, &counts(1, 1, 1)));
        // A success in the batch ends the fleet's streak: only the batch's tail counts.
        assert!(!policy.could_trip(State::Closed, 4, known, &counts(3, 2, 2)));
        assert!(policy.could_trip(State::Closed, 0, known, &counts(9, 5, 5)));
        // Nothing trips a disabled breaker.
        assert!(!policy.could_trip(State::Disabled, 4, known, &counts(1, 1, 1)));

        let rate = TripPolicy::of(&Settings::DEFAULT.failure_rate(50).min_calls(10));
        let known = totals(8, 3, 0);
        assert!(!rate.could_trip(State::Closed, 0, known, &counts(1, 1, 0)));
        assert!(
            rate.could_trip(State::Closed, 0, known, &counts(2, 2, 0)),
            "10 calls, 5 failures"
        );
        let most = totals(u64::MAX, u64::MAX, 0);
        assert!(
            rate.could_trip(State::Closed, 0, most, &counts(1, 1, 0)),
            "saturates"
        );
    }

    fn opened(fail_counter: u32) -> Outcome {
        let mut snapshot = crate::core::Snapshot::absent();
        snapshot.state = State::Open;
        snapshot.fail_counter = fail_counter;
        Outcome {
            applied: true,
            from: State::Closed,
            snapshot,
            window: None,
        }
    }

    #[test]
    fn in_a_batch_that_trips_the_failure_that_reached_fail_max_tripped() {
        let policy = TripPolicy::of(&Settings::DEFAULT.fail_max(5));
        // Three failures before, a batch of four: the second reached five.
        let outcome = opened(7);
        let verdicts: Vec<_> = (1..=4)
            .map(|i| policy.verdict_in_batch(i, 4, Some(&outcome)))
            .collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Counted,
                Verdict::Tripped,
                Verdict::Ignored,
                Verdict::Ignored
            ]
        );
        let mut counted = Outcome::absent();
        counted.applied = true;
        assert_eq!(
            policy.verdict_in_batch(2, 3, Some(&counted)),
            Verdict::Counted
        );
        assert_eq!(
            policy.verdict_in_batch(1, 1, Some(&Outcome::absent())),
            Verdict::Ignored,
            "not applied: stale"
        );
        assert_eq!(policy.verdict_in_batch(1, 1, None), Verdict::Ignored);
        assert_eq!(Verdict::of_batch(Some(&opened(1))), Verdict::Tripped);
        assert_eq!(Verdict::of_batch(Some(&counted)), Verdict::Counted);
        assert_eq!(Verdict::of_batch(None), Verdict::Counted);
    }
}
