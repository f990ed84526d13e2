//! When a failure trips a closed breaker — kept apart from the transition rules, so that
//! new rules (failure rates, slow calls) change this module and not the state machine.

use crate::core::Settings;

/// The rule that decides whether a closed breaker trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TripPolicy {
    /// pybreaker's rule: `fail_max` consecutive failures (a success resets the count).
    ConsecutiveFailures {
        /// The count that trips.
        fail_max: u32,
    },
}

impl TripPolicy {
    /// The policy a breaker's settings describe.
    pub fn of(settings: &Settings) -> TripPolicy {
        TripPolicy::ConsecutiveFailures {
            fail_max: settings.fail_max.max(1),
        }
    }

    /// Whether a closed breaker with `fail_counter` consecutive failures (this one
    /// included) trips.
    pub fn trips(&self, fail_counter: u32) -> bool {
        match *self {
            TripPolicy::ConsecutiveFailures { fail_max } => fail_counter >= fail_max,
        }
    }
}
