//! A trip of one process's own: with `min_instances > 1` the fleet's breaker trips only
//! when enough processes report failures, so a process whose calls alone fail keeps
//! counting them itself, and protects itself when they trip a rule the fleet did not.
//! The fleet layer feeds it every batch it records and opens the breaker for that
//! process only (`Cell::quarantine`) when [`trips_alone`] says so.

use tokio::time::Instant;

use crate::core::window::{bucket_ms, Window};
use crate::core::{store_millis, Counts, Settings, TripPolicy};

/// This process's own window and failure streak of one breaker.
#[derive(Debug, Default)]
pub(crate) struct OwnCounts {
    window: Window,
    streak: u32,
}

/// Whether a breaker's rules need a process's own counts: only when the fleet's trip
/// waits for several processes.
pub(crate) fn applies(settings: &Settings) -> bool {
    settings.min_instances > 1
}

/// Adds a batch this process recorded (`counts`, at `now`) to its own counts and says
/// whether they alone trip the breaker's rules, as if this process were the whole fleet.
/// `fleet_closed`: the fleet's breaker took the batch and is still closed; otherwise its
/// closed period ended (or never started) and the own counts start afresh, as they do
/// after a trip.
pub(crate) fn trips_alone(
    own: &mut OwnCounts,
    settings: &Settings,
    counts: &Counts,
    fleet_closed: bool,
    now: Instant,
) -> bool {
    if !fleet_closed {
        *own = OwnCounts::default();
        return false;
    }
    if counts.has_success() {
        own.streak = 0;
    }
    own.streak = own.streak.saturating_add(counts.tail);
    let policy = TripPolicy::of(&settings.alone());
    let bucket = store_millis(now) / bucket_ms(settings.window);
    let trips = policy.trips(own.streak)
        || (settings.has_rates() && {
            own.window.add(bucket, counts, 0);
            policy.trips_on(&own.window.totals(bucket), 1).is_some()
        });
    if trips {
        *own = OwnCounts::default();
    }
    trips
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn settings(fail_max: u32) -> Settings {
        Settings {
            fail_max,
            min_instances: 3,
            ..Settings::default()
        }
    }

    fn failures(n: u32) -> Counts {
        Counts {
            calls: n,
            failures: n,
            slow: 0,
            tail: n,
        }
    }

    #[test]
    fn a_streak_of_its_own_trips_at_fail_max() {
        let (settings, now) = (settings(3), Instant::now());
        let mut own = OwnCounts::default();
        assert!(applies(&settings));
        assert!(!trips_alone(&mut own, &settings, &failures(2), true, now));
        assert!(trips_alone(&mut own, &settings, &failures(1), true, now));
        // Tripped: it starts afresh.
        assert!(!trips_alone(&mut own, &settings, &failures(2), true, now));
    }

    #[test]
    fn a_success_or_the_fleets_period_ending_starts_afresh() {
        let (settings, now) = (settings(3), Instant::now());
        let mut own = OwnCounts::default();
        assert!(!trips_alone(&mut own, &settings, &failures(2), true, now));
        let success_then_one = Counts {
            calls: 2,
            failures: 1,
            slow: 0,
            tail: 1,
        };
        assert!(!trips_alone(
            &mut own,
            &settings,
            &success_then_one,
            true,
            now
        ));
        assert!(!trips_alone(&mut own, &settings, &failures(1), true, now));
        assert!(!trips_alone(&mut own, &settings, &failures(1), false, now));
        assert!(!trips_alone(&mut own, &settings, &failures(2), true, now));
        assert!(trips_alone(&mut own, &settings, &failures(1), true, now));
    }

    #[test]
    fn a_rate_of_its_own_trips_over_its_window() {
        let settings = Settings {
            failure_rate: Some(50),
            min_calls: 4,
            window: Duration::from_secs(10),
            ..settings(1000)
        };
        let now = Instant::now();
        let mut own = OwnCounts::default();
        let half = Counts {
            calls: 2,
            failures: 1,
            slow: 0,
            tail: 0,
        };
        assert!(!trips_alone(&mut own, &settings, &half, true, now));
        assert!(trips_alone(&mut own, &settings, &half, true, now));
    }

    #[test]
    fn one_process_is_the_whole_fleet_without_min_instances() {
        assert!(!applies(&Settings::default()));
    }
}
