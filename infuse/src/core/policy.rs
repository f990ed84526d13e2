//! When a closed breaker trips — kept apart from the transition rules, so that the rules
//! of when to trip change this module and not the state machine.

use crate::core::window::Totals;
use crate::core::Settings;

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
}
