//! The store conformance suite: every `infuse::store::Store` backend must pass it.
//!
//! Each case is a `pub async fn case(store: &S, prefix: &str)` generic over the store. A
//! case only touches its own breakers, named `{prefix}{case}` (or `{prefix}{case}-{n}`),
//! so cases can run concurrently against one store. The timeouts are small but real (no
//! paused clock): a Redis store measures time with the server's clock.
//!
//! Use it from a test binary with `mod conformance;` at the crate root and either
//!
//! ```ignore
//! conformance_tests!(store = infuse::store::memory::MemoryStore::new(), prefix = "mem:");
//! ```
//!
//! which instantiates one `#[tokio::test]` per case (the `store` expression is evaluated
//! inside each async test, so it may `.await`; attributes written before `store =` are
//! put on every test, e.g. `#[ignore = "needs redis-server"]`), or
//! `conformance::run_all(&store, prefix).await` to run every case in sequence.
//!
//! The stores that keep the fleet's budgets (`infuse::store::Budgets`) also pass the
//! budget cases (`budgets.rs`: `budget_conformance_tests!`, `run_budgets`).
//!
//! Against a store that outlives the test run (a shared Redis), pass a prefix unique to
//! the run, e.g. `&conformance::unique_prefix("redis")`.

#![allow(dead_code)] // each binary uses a subset

mod budgets;
pub use budgets::*;

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use infuse::store::{Command, Counts, Outcome, Seed, Snapshot, Store, Target, TrialToken, Version};
use infuse::{Settings, State};

/// The open timeout of every case.
pub const RESET: Duration = Duration::from_millis(200);
/// The lease of trials that a case lets expire.
pub const LEASE: Duration = Duration::from_millis(250);
/// The lease of trials that must not expire during a case.
pub const LONG_LEASE: Duration = Duration::from_secs(30);
/// Added to a timeout before sleeping past it.
pub const MARGIN: Duration = Duration::from_millis(150);

/// Calls `$callback! { [args] case, case, … }` with every case, in order: the one list
/// of cases, from which `CASES`, `run_all` and `conformance_tests!` are made.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($($callback:ident)::+ ! [$($args:tt)*]) => {
        $($callback)::+! { [$($args)*]
            register_creates_closed,
            register_does_not_overwrite,
            independent_services,
            failures_trip_at_fail_max,
            coalesced_failures_count_as_many,
            success_resets_fail_counter,
            stale_generation_not_counted,
            results_while_not_closed_not_counted,
            open_rejects_trial_until_timeout,
            trial_allowed_after_timeout,
            no_trial_while_closed,
            one_trial_among_concurrent_acquirers,
            same_token_reacquire_is_idempotent,
            trial_success_closes,
            success_threshold_needs_sequential_trials,
            trial_failure_reopens_with_fresh_timeout,
            trial_failure_counts_past_fail_max,
            result_with_wrong_token_ignored,
            result_with_expired_token_ignored,
            release_trial_frees_slot,
            release_with_wrong_token_keeps_slot,
            expired_lease_frees_slot,
            force_from_closed,
            force_from_open,
            force_from_half_open,
            force_frees_trial_slot,
            versions_increase_on_writes,
            snapshot_is_side_effect_free,
            forced_open_holds_until_closed,
            disabled_counts_but_never_trips,
            open_for_sets_the_open_time,
            register_replaces_only_when_the_store_lost_history,
            absent_records_stay_absent,
            record_calls_stale_generation_ignored,
            record_calls_counts_consecutive_failures_by_tail,
            failure_rate_trips_only_past_min_calls,
            slow_call_rate_trips,
            min_instances_needs_distinct_instances,
            min_instances_holds_for_consecutive_failures,
            disabled_counts_calls_but_never_trips,
            trip_clears_the_window,
            window_slides,
            reporters_leave_the_window,
            backoff_doubles_open_time_up_to_max,
            close_and_force_reset_backoff,
            a_close_after_a_trip_records_when,
            a_trip_during_slow_start_backs_off,
            counts_saturate_at_their_bounds,
            seeds_above_the_generation_bound_are_taken_at_it,
            a_generation_at_its_bound_cannot_be_bumped_and_force_recreates_the_record,
            times_beyond_any_bound_are_capped,
            shadow_switch_is_kept_by_every_transition,
            shadow_switch_creates_an_absent_record,
            a_seed_keeps_its_shadow_switch,
            a_seed_keeps_the_time_since_its_recovery,
        }
    };
}

/// Instantiates one `#[tokio::test]` per conformance case for a store expression.
#[macro_export]
macro_rules! conformance_tests {
    ($(#[$attr:meta])* store = $store:expr, prefix = $prefix:expr $(,)?) => {
        $crate::__conformance_cases!($crate::__conformance_test! [[$(#[$attr])*] ($store) ($prefix)]);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test {
    ([$attrs:tt ($store:expr) ($prefix:expr)]) => {};
    ([[$($attr:tt)*] ($store:expr) ($prefix:expr)] $case:ident, $($rest:ident,)*) => {
        #[::tokio::test]
        $($attr)*
        async fn $case() {
            let store = $store;
            $crate::conformance::$case(&store, &$prefix).await;
        }
        $crate::__conformance_test!([[$($attr)*] ($store) ($prefix)] $($rest,)*);
    };
}

macro_rules! define_run_all {
    ([] $($case:ident,)*) => {
        /// Every case, in order (the names match the functions and the generated tests).
        pub const CASES: &[&str] = &[$(stringify!($case)),*];

        /// Runs every case in sequence (a few seconds in all).
        pub async fn run_all<S: Store>(store: &S, prefix: &str) {
            $($case(store, prefix).await;)*
        }
    };
}

crate::__conformance_cases!(define_run_all![]);

// ---------------------------------------------------------------------------------------
// Helpers

/// A prefix unique to this run (process id and start time), for persistent stores.
pub fn unique_prefix(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{base}-{}-{nanos:x}:", std::process::id())
}

/// The service name of a case, leaked to `&'static str` as the store requires.
pub fn service(prefix: &str, case: &str) -> &'static str {
    Box::leak(format!("{prefix}{case}").into_boxed_str())
}

/// Settings with the suite's small reset timeout.
pub fn settings(fail_max: u32, success_threshold: u32) -> Settings {
    Settings::DEFAULT
        .fail_max(fail_max)
        .reset_timeout(RESET)
        .success_threshold(success_threshold)
}

async fn apply<S: Store>(store: &S, svc: &'static str, s: &Settings, command: Command) -> Outcome {
    store
        .apply(svc, s, command)
        .await
        .unwrap_or_else(|e| panic!("{svc}: {command:?} failed: {e}"))
}

async fn register<S: Store>(store: &S, svc: &'static str, s: &Settings) -> Snapshot {
    apply(store, svc, s, Command::Register { seed: None })
        .await
        .snapshot
}

async fn snap<S: Store>(store: &S, svc: &'static str, s: &Settings) -> Snapshot {
    apply(store, svc, s, Command::Snapshot).await.snapshot
}

async fn fail<S: Store>(store: &S, svc: &'static str, s: &Settings, generation: u64) -> Outcome {
    apply(
        store,
        svc,
        s,
        Command::RecordFailure {
            generation,
            count: 1,
            instance: 1,
        },
    )
    .await
}

async fn succeed<S: Store>(store: &S, svc: &'static str, s: &Settings, generation: u64) -> Outcome {
    apply(store, svc, s, Command::RecordSuccess { generation }).await
}

async fn acquire<S: Store>(
    store: &S,
    svc: &'static str,
    s: &Settings,
    token: TrialToken,
    lease: Duration,
) -> Outcome {
    apply(store, svc, s, Command::AcquireTrial { token, lease }).await
}

async fn trial<S: Store>(
    store: &S,
    svc: &'static str,
    s: &Settings,
    token: TrialToken,
    success: bool,
) -> Outcome {
    apply(store, svc, s, Command::RecordTrial { token, success }).await
}

async fn release<S: Store>(
    store: &S,
    svc: &'static str,
    s: &Settings,
    token: TrialToken,
) -> Outcome {
    apply(store, svc, s, Command::ReleaseTrial { token }).await
}

async fn force<S: Store>(store: &S, svc: &'static str, s: &Settings, to: State) -> Outcome {
    let target = match to {
        State::Closed => Target::Closed,
        State::Open => Target::Open(s.reset_timeout),
        State::HalfOpen => Target::HalfOpen,
        State::ForcedOpen => Target::ForcedOpen,
        State::Disabled => Target::Disabled,
        other => panic!("no target for {other}"),
    };
    apply(store, svc, s, Command::Force(target)).await
}

/// A batch of `calls` outcomes: `failures` of them failed, `slow` were slow, and the
/// last `tail` failed after the batch's last success.
pub fn counts(calls: u32, failures: u32, slow: u32, tail: u32) -> Counts {
    Counts {
        calls,
        failures,
        slow,
        tail,
    }
}

/// Reports a batch (`RecordCalls`) from `instance` at `generation`.
async fn report<S: Store>(
    store: &S,
    svc: &'static str,
    s: &Settings,
    generation: u64,
    counts: Counts,
    instance: u64,
) -> Outcome {
    let command = Command::RecordCalls {
        generation,
        counts,
        instance,
    };
    apply(store, svc, s, command).await
}

/// Registers and records `n` failures at the current generation; returns the last answer.
async fn fail_n<S: Store>(store: &S, svc: &'static str, s: &Settings, n: u32) -> Snapshot {
    let mut current = register(store, svc, s).await;
    for _ in 0..n {
        let outcome = fail(store, svc, s, current.generation).await;
        assert!(outcome.applied, "{svc}: failure not counted: {outcome:?}");
        current = outcome.snapshot;
    }
    current
}

/// Registers and trips the breaker with `fail_max` failures.
async fn trip<S: Store>(store: &S, svc: &'static str, s: &Settings) -> Snapshot {
    let snapshot = fail_n(store, svc, s, s.fail_max).await;
    assert_eq!(snapshot.state, State::Open, "{svc}: {snapshot:?}");
    snapshot
}

/// Registers, trips and forces half-open (no waiting).
async fn half_open<S: Store>(store: &S, svc: &'static str, s: &Settings) -> Snapshot {
    trip(store, svc, s).await;
    let outcome = force(store, svc, s, State::HalfOpen).await;
    assert_eq!(
        outcome.snapshot.state,
        State::HalfOpen,
        "{svc}: {outcome:?}"
    );
    outcome.snapshot
}

/// Polls `snapshot` until `done` holds, for at most `within` (for best-effort writes).
async fn eventually<S: Store>(
    store: &S,
    svc: &'static str,
    s: &Settings,
    within: Duration,
    done: impl Fn(&Snapshot) -> bool,
) -> Snapshot {
    let deadline = std::time::Instant::now() + within;
    loop {
        let snapshot = snap(store, svc, s).await;
        if done(&snapshot) || std::time::Instant::now() >= deadline {
            return snapshot;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_fresh_closed(svc: &str, snapshot: &Snapshot) {
    assert_eq!(snapshot.state, State::Closed, "{svc}: {snapshot:?}");
    assert_eq!(snapshot.fail_counter, 0, "{svc}: {snapshot:?}");
    assert_eq!(snapshot.success_counter, 0, "{svc}: {snapshot:?}");
    assert_eq!(snapshot.open_remaining, None, "{svc}: {snapshot:?}");
    assert_eq!(snapshot.trial_remaining, None, "{svc}: {snapshot:?}");
}

/// An open snapshot whose timeout was (re)started just now.
fn assert_freshly_open(svc: &str, snapshot: &Snapshot) {
    assert_eq!(snapshot.state, State::Open, "{svc}: {snapshot:?}");
    let remaining = snapshot
        .open_remaining
        .unwrap_or_else(|| panic!("{svc}: open without open_remaining: {snapshot:?}"));
    assert!(remaining <= RESET, "{svc}: {remaining:?} > {RESET:?}");
    assert!(
        remaining > RESET / 2,
        "{svc}: the open timeout was not restarted: {remaining:?} left of {RESET:?}"
    );
    assert_eq!(snapshot.trial_remaining, None, "{svc}: {snapshot:?}");
    assert_eq!(snapshot.success_counter, 0, "{svc}: {snapshot:?}");
}

// ---------------------------------------------------------------------------------------
// Registration

/// A new breaker is closed with zeroed counters, and reads agree with it.
pub async fn register_creates_closed<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "register_creates_closed");
    let s = settings(3, 1);
    let registered = register(store, svc, &s).await;
    assert_fresh_closed(svc, &registered);
    let read = snap(store, svc, &s).await;
    assert_fresh_closed(svc, &read);
    assert_eq!(read.generation, registered.generation);
    assert_eq!(read.version, registered.version);
}

/// Registering again (even with other settings) keeps the stored state and counters.
pub async fn register_does_not_overwrite<S: Store>(store: &S, prefix: &str) {
    let closed = service(prefix, "register_does_not_overwrite-closed");
    let s = settings(3, 1);
    let counted = fail_n(store, closed, &s, 2).await;
    let again = register(store, closed, &settings(10, 2)).await;
    assert_eq!(again.state, State::Closed);
    assert_eq!(again.fail_counter, 2, "{again:?}");
    assert_eq!(again.generation, counted.generation);

    let open = service(prefix, "register_does_not_overwrite-open");
    let tripped = trip(store, open, &s).await;
    let again = register(store, open, &s).await;
    assert_eq!(again.state, State::Open, "{again:?}");
    assert_eq!(again.fail_counter, 3);
    assert_eq!(again.generation, tripped.generation);
    assert!(
        again.open_remaining.is_some_and(|r| r <= RESET),
        "{again:?}"
    );
}

/// Two services in one store do not share anything.
pub async fn independent_services<S: Store>(store: &S, prefix: &str) {
    let a = service(prefix, "independent_services-a");
    let b = service(prefix, "independent_services-b");
    let s = settings(2, 1);
    register(store, b, &s).await;
    trip(store, a, &s).await;
    let other = snap(store, b, &s).await;
    assert_fresh_closed(b, &other);
    let token = TrialToken::new();
    assert!(!acquire(store, b, &s, token, LONG_LEASE).await.applied);
    assert_eq!(snap(store, a, &s).await.state, State::Open);
}

// ---------------------------------------------------------------------------------------
// Closed: counting and tripping

/// Failures count one by one and the `fail_max`-th trips; the answers say so.
pub async fn failures_trip_at_fail_max<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "failures_trip_at_fail_max");
    let s = settings(3, 1);
    let start = register(store, svc, &s).await;
    let generation = start.generation;
    for n in 1..=2 {
        let outcome = fail(store, svc, &s, generation).await;
        assert!(outcome.applied, "{outcome:?}");
        assert_eq!(outcome.from, State::Closed);
        assert_eq!(outcome.snapshot.state, State::Closed);
        assert!(!outcome.changed_state());
        assert_eq!(outcome.snapshot.fail_counter, n);
        assert_eq!(outcome.snapshot.generation, generation);
        assert_eq!(outcome.snapshot.open_remaining, None);
    }
    let tripped = fail(store, svc, &s, generation).await;
    assert!(tripped.applied, "{tripped:?}");
    assert_eq!(tripped.from, State::Closed);
    assert!(tripped.changed_state());
    assert_freshly_open(svc, &tripped.snapshot);
    assert_eq!(
        tripped.snapshot.fail_counter, 3,
        "the tripping failure is counted"
    );
    assert!(
        tripped.snapshot.generation > generation,
        "a trip starts a new generation: {tripped:?}"
    );
    let read = snap(store, svc, &s).await;
    assert_eq!(read.state, State::Open);
    assert_eq!(read.fail_counter, 3);
    assert_eq!(read.generation, tripped.snapshot.generation);
}

/// A coalesced report of `count` failures counts as `count` failures in a row: below
/// `fail_max` it only counts, reaching it trips (counting every failure of the batch), a
/// count of 0 is refused, and a batch at a stale generation is not counted.
pub async fn coalesced_failures_count_as_many<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "coalesced_failures_count_as_many");
    let s = settings(5, 1);
    let generation = register(store, svc, &s).await.generation;
    let batch = |count| Command::RecordFailure {
        generation,
        count,
        instance: 1,
    };
    let none = apply(store, svc, &s, batch(0)).await;
    assert!(!none.applied, "an empty batch: {none:?}");
    assert_eq!(none.snapshot.fail_counter, 0);
    let three = apply(store, svc, &s, batch(3)).await;
    assert!(three.applied, "{three:?}");
    assert_eq!(three.snapshot.state, State::Closed);
    assert_eq!(three.snapshot.fail_counter, 3);
    assert_eq!(three.snapshot.generation, generation);
    let tripped = apply(store, svc, &s, batch(4)).await;
    assert!(tripped.applied, "{tripped:?}");
    assert!(tripped.changed_state());
    assert_freshly_open(svc, &tripped.snapshot);
    assert_eq!(
        tripped.snapshot.fail_counter, 7,
        "the whole batch is counted"
    );
    let stale = apply(store, svc, &s, batch(2)).await;
    assert!(!stale.applied, "a stale batch: {stale:?}");
    assert_eq!(stale.snapshot.fail_counter, 7);
    assert_eq!(snap(store, svc, &s).await.fail_counter, 7);
}

/// A success resets the consecutive count (so `fail_max` counts consecutive failures);
/// a success with nothing to reset is not applied.
pub async fn success_resets_fail_counter<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "success_resets_fail_counter");
    let s = settings(3, 1);
    let counted = fail_n(store, svc, &s, 2).await;
    let generation = counted.generation;
    let reset = succeed(store, svc, &s, generation).await;
    assert!(reset.applied, "{reset:?}");
    assert_eq!(reset.from, State::Closed);
    assert_eq!(reset.snapshot.state, State::Closed);
    assert_eq!(reset.snapshot.fail_counter, 0);
    assert_eq!(
        reset.snapshot.generation, generation,
        "a reset is no transition"
    );

    let nothing = succeed(store, svc, &s, generation).await;
    assert!(!nothing.applied, "nothing to reset: {nothing:?}");
    assert_eq!(nothing.snapshot.fail_counter, 0);

    // Two more failures do not trip: the count restarted.
    for n in 1..=2 {
        let outcome = fail(store, svc, &s, generation).await;
        assert_eq!(outcome.snapshot.state, State::Closed);
        assert_eq!(outcome.snapshot.fail_counter, n);
    }
    let tripped = fail(store, svc, &s, generation).await;
    assert_eq!(tripped.snapshot.state, State::Open);
}

/// Results reported under another generation than the current one are not counted.
pub async fn stale_generation_not_counted<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "stale_generation_not_counted");
    let s = settings(2, 1);
    let counted = fail_n(store, svc, &s, 1).await;
    let generation = counted.generation;
    for stale in [
        generation.wrapping_sub(1),
        generation + 1,
        generation + 1000,
    ] {
        let f = fail(store, svc, &s, stale).await;
        assert!(!f.applied, "stale failure applied: {f:?}");
        assert_eq!(f.snapshot.state, State::Closed);
        assert_eq!(f.snapshot.fail_counter, 1);
        let ok = succeed(store, svc, &s, stale).await;
        assert!(!ok.applied, "stale success applied: {ok:?}");
        assert_eq!(ok.snapshot.fail_counter, 1);
    }

    // After a close (new generation), results of the old closed period are stale too.
    let closed = force(store, svc, &s, State::Closed).await.snapshot;
    assert!(closed.generation > generation);
    let f = fail(store, svc, &s, generation).await;
    assert!(!f.applied, "{f:?}");
    assert_eq!(f.snapshot.fail_counter, 0);
    let f = fail(store, svc, &s, closed.generation).await;
    assert!(f.applied, "{f:?}");
    let f = fail(store, svc, &s, generation).await;
    assert!(!f.applied, "a stale failure must not trip: {f:?}");
    assert_eq!(f.snapshot.state, State::Closed);
    assert_eq!(f.snapshot.fail_counter, 1);
}

/// Ordinary results reported while open or half-open are not counted, even under the
/// current generation: only the trial decides.
pub async fn results_while_not_closed_not_counted<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "results_while_not_closed_not_counted");
    let s = settings(2, 1);
    let open = trip(store, svc, &s).await;
    let f = fail(store, svc, &s, open.generation).await;
    assert!(!f.applied, "{f:?}");
    assert_eq!(f.snapshot.fail_counter, 2);
    assert_eq!(f.snapshot.state, State::Open);
    let ok = succeed(store, svc, &s, open.generation).await;
    assert!(!ok.applied, "{ok:?}");
    assert_eq!(ok.snapshot.fail_counter, 2);
    assert_eq!(ok.snapshot.state, State::Open);

    let half = force(store, svc, &s, State::HalfOpen).await.snapshot;
    let f = fail(store, svc, &s, half.generation).await;
    assert!(!f.applied, "{f:?}");
    assert_eq!(f.snapshot.state, State::HalfOpen);
    assert_eq!(f.snapshot.fail_counter, 2);
    let ok = succeed(store, svc, &s, half.generation).await;
    assert!(!ok.applied, "{ok:?}");
    assert_eq!(ok.snapshot.state, State::HalfOpen);
    assert_eq!(ok.snapshot.success_counter, 0);
}

// ---------------------------------------------------------------------------------------
// Open → half-open

/// While open, no trial is granted, and `open_remaining` counts down from `reset_timeout`.
pub async fn open_rejects_trial_until_timeout<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "open_rejects_trial_until_timeout");
    let s = settings(1, 1);
    let tripped = trip(store, svc, &s).await;
    let first = tripped.open_remaining.expect("open_remaining");
    assert!(first <= RESET);

    let denied = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
    assert!(!denied.applied, "{denied:?}");
    assert_eq!(denied.from, State::Open);
    assert_eq!(denied.snapshot.state, State::Open);
    assert_eq!(denied.snapshot.generation, tripped.generation);
    assert_eq!(denied.snapshot.trial_remaining, None);

    tokio::time::sleep(Duration::from_millis(60)).await;
    let later = snap(store, svc, &s).await;
    assert_eq!(later.state, State::Open);
    let second = later.open_remaining.expect("open_remaining");
    assert!(second < first, "{second:?} !< {first:?}");

    let denied = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
    assert!(!denied.applied, "{denied:?}");
    let third = denied.snapshot.open_remaining.expect("open_remaining");
    assert!(third <= second, "{third:?} > {second:?}");
}

/// Once `reset_timeout` has passed the breaker still reads open (as in pybreaker, open →
/// half-open is lazy) with no time left; the first acquirer gets the trial and moves it
/// to half-open, keeping the fail counter and zeroing the success counter.
pub async fn trial_allowed_after_timeout<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "trial_allowed_after_timeout");
    let s = settings(2, 1);
    let tripped = trip(store, svc, &s).await;
    tokio::time::sleep(RESET + MARGIN).await;
    let read = snap(store, svc, &s).await;
    assert_eq!(read.state, State::Open, "lazy half-open: {read:?}");
    assert_eq!(read.open_remaining, Some(Duration::ZERO), "{read:?}");
    assert_eq!(read.trial_remaining, None, "{read:?}");
    assert_eq!(read.generation, tripped.generation);
    assert_eq!(read.version, tripped.version, "time passing is no write");

    let token = TrialToken::new();
    let granted = acquire(store, svc, &s, token, LEASE).await;
    assert!(granted.applied, "{granted:?}");
    assert_eq!(granted.from, State::Open);
    assert!(granted.changed_state(), "{granted:?}");
    assert_eq!(granted.snapshot.state, State::HalfOpen);
    assert_eq!(granted.snapshot.open_remaining, None, "{granted:?}");
    assert_eq!(granted.snapshot.success_counter, 0);
    assert_eq!(
        granted.snapshot.fail_counter, 2,
        "entering half-open keeps the fail counter"
    );
    assert!(granted.snapshot.generation >= tripped.generation);
    let lease = granted.snapshot.trial_remaining.expect("trial_remaining");
    assert!(lease <= LEASE && lease > LEASE / 2, "{lease:?}");
    let read = snap(store, svc, &s).await;
    assert_eq!(read.state, State::HalfOpen);
    assert!(read.trial_remaining.is_some());
}

/// No trial is granted while closed.
pub async fn no_trial_while_closed<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "no_trial_while_closed");
    let s = settings(2, 1);
    register(store, svc, &s).await;
    let outcome = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
    assert!(!outcome.applied, "{outcome:?}");
    assert_eq!(outcome.snapshot.state, State::Closed);
    assert_eq!(outcome.snapshot.trial_remaining, None);
    let ignored = trial(store, svc, &s, TrialToken::new(), false).await;
    assert!(!ignored.applied, "{ignored:?}");
    assert_eq!(ignored.snapshot.state, State::Closed);
    assert_eq!(ignored.snapshot.fail_counter, 0);
}

// ---------------------------------------------------------------------------------------
// The trial slot

/// Among many concurrent acquirers with distinct tokens, exactly one gets the trial.
pub async fn one_trial_among_concurrent_acquirers<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "one_trial_among_concurrent_acquirers");
    let s = settings(1, 1);
    trip(store, svc, &s).await;
    tokio::time::sleep(RESET + MARGIN).await;
    let tokens: Vec<TrialToken> = (0..50).map(|_| TrialToken::new()).collect();
    assert_eq!(
        tokens.iter().collect::<HashSet<_>>().len(),
        50,
        "tokens must be distinct"
    );
    let outcomes = join_all(
        tokens
            .iter()
            .map(|&token| acquire(store, svc, &s, token, LONG_LEASE)),
    )
    .await;
    let granted: Vec<_> = outcomes.iter().filter(|o| o.applied).collect();
    assert_eq!(granted.len(), 1, "{outcomes:#?}");
    for outcome in &outcomes {
        assert_eq!(outcome.snapshot.state, State::HalfOpen, "{outcome:?}");
    }
    // The losers see the slot taken.
    let denied = outcomes.iter().find(|o| !o.applied).unwrap();
    assert!(denied.snapshot.trial_remaining.is_some(), "{denied:?}");
}

/// Asking again with the holding token grants again; other tokens are still refused.
pub async fn same_token_reacquire_is_idempotent<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "same_token_reacquire_is_idempotent");
    let s = settings(1, 1);
    half_open(store, svc, &s).await;
    let token = TrialToken::new();
    let first = acquire(store, svc, &s, token, LONG_LEASE).await;
    assert!(first.applied, "{first:?}");
    let again = acquire(store, svc, &s, token, LONG_LEASE).await;
    assert!(again.applied, "same-token retry refused: {again:?}");
    assert_eq!(again.snapshot.state, State::HalfOpen);
    assert_eq!(again.snapshot.generation, first.snapshot.generation);
    let other = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
    assert!(!other.applied, "{other:?}");
    // The holder can still report.
    let done = trial(store, svc, &s, token, true).await;
    assert!(done.applied, "{done:?}");
    assert_eq!(done.snapshot.state, State::Closed);
}

/// With `success_threshold = 1` a successful trial closes: counters zeroed, new generation.
pub async fn trial_success_closes<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "trial_success_closes");
    let s = settings(2, 1);
    trip(store, svc, &s).await;
    tokio::time::sleep(RESET + MARGIN).await;
    let token = TrialToken::new();
    let granted = acquire(store, svc, &s, token, LONG_LEASE).await;
    assert!(granted.applied, "{granted:?}");
    let closed = trial(store, svc, &s, token, true).await;
    assert!(closed.applied, "{closed:?}");
    assert_eq!(closed.from, State::HalfOpen);
    assert!(closed.changed_state());
    assert_fresh_closed(svc, &closed.snapshot);
    assert!(closed.snapshot.generation > granted.snapshot.generation);

    // Reporting again with the same token is ignored now.
    let again = trial(store, svc, &s, token, false).await;
    assert!(!again.applied, "{again:?}");
    assert_eq!(again.snapshot.state, State::Closed);
    // And the closed breaker counts afresh under the new generation.
    let f = fail(store, svc, &s, closed.snapshot.generation).await;
    assert!(f.applied);
    assert_eq!(f.snapshot.fail_counter, 1);
}

/// With `success_threshold = 3` it takes three sequential successful trials to close;
/// in between the breaker stays half-open and the slot is free again.
pub async fn success_threshold_needs_sequential_trials<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "success_threshold_needs_sequential_trials");
    let s = settings(2, 3);
    let start = half_open(store, svc, &s).await;
    assert_eq!(start.fail_counter, 2);
    for n in 1..=2 {
        let token = TrialToken::new();
        let granted = acquire(store, svc, &s, token, LONG_LEASE).await;
        assert!(granted.applied, "trial {n} refused: {granted:?}");
        let outcome = trial(store, svc, &s, token, true).await;
        assert!(outcome.applied, "{outcome:?}");
        assert_eq!(outcome.snapshot.state, State::HalfOpen, "{outcome:?}");
        assert!(!outcome.changed_state());
        assert_eq!(outcome.snapshot.success_counter, n);
        assert_eq!(
            outcome.snapshot.fail_counter, 0,
            "a success resets the fail counter"
        );
        assert_eq!(outcome.snapshot.generation, start.generation);
        assert_eq!(outcome.snapshot.trial_remaining, None, "slot freed");
    }
    let token = TrialToken::new();
    assert!(acquire(store, svc, &s, token, LONG_LEASE).await.applied);
    let closed = trial(store, svc, &s, token, true).await;
    assert!(closed.applied);
    assert!(closed.changed_state());
    assert_fresh_closed(svc, &closed.snapshot);
}

/// A failed trial re-opens with a fresh timeout; the fail counter keeps counting
/// (pybreaker shows `fail_max + 1`) and the success counter is reset.
pub async fn trial_failure_reopens_with_fresh_timeout<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "trial_failure_reopens_with_fresh_timeout");
    let s = settings(2, 2);
    trip(store, svc, &s).await;
    tokio::time::sleep(RESET + MARGIN).await;
    // One successful trial first, so that the success counter has something to reset.
    let token = TrialToken::new();
    assert!(acquire(store, svc, &s, token, LONG_LEASE).await.applied);
    let half = trial(store, svc, &s, token, true).await.snapshot;
    assert_eq!(half.success_counter, 1);
    assert_eq!(half.fail_counter, 0);

    let token = TrialToken::new();
    assert!(acquire(store, svc, &s, token, LONG_LEASE).await.applied);
    let reopened = trial(store, svc, &s, token, false).await;
    assert!(reopened.applied, "{reopened:?}");
    assert_eq!(reopened.from, State::HalfOpen);
    assert!(reopened.changed_state());
    assert_freshly_open(svc, &reopened.snapshot);
    assert_eq!(reopened.snapshot.fail_counter, 1);
    assert!(reopened.snapshot.generation > half.generation);
    let denied = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
    assert!(!denied.applied, "{denied:?}");
}

/// A trial failure right after a trip shows `fail_max + 1`, as in pybreaker (whose test
/// `test_failed_call_after_timeout` expects 4 with `fail_max = 3`).
pub async fn trial_failure_counts_past_fail_max<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "trial_failure_counts_past_fail_max");
    let s = settings(3, 1);
    half_open(store, svc, &s).await;
    let token = TrialToken::new();
    assert!(acquire(store, svc, &s, token, LONG_LEASE).await.applied);
    let reopened = trial(store, svc, &s, token, false).await;
    assert_eq!(reopened.snapshot.fail_counter, 4, "{reopened:?}");
}

/// A result reported with a token that does not hold the slot changes nothing.
pub async fn result_with_wrong_token_ignored<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "result_with_wrong_token_ignored");
    let s = settings(3, 1);
    let half = half_open(store, svc, &s).await;
    let holder = TrialToken::new();
    assert!(acquire(store, svc, &s, holder, LONG_LEASE).await.applied);
    for success in [true, false] {
        let outcome = trial(store, svc, &s, TrialToken::new(), success).await;
        assert!(!outcome.applied, "{outcome:?}");
        assert_eq!(outcome.snapshot.state, State::HalfOpen);
        assert_eq!(outcome.snapshot.generation, half.generation);
        assert_eq!(outcome.snapshot.fail_counter, 3);
        assert_eq!(outcome.snapshot.success_counter, 0);
        assert!(outcome.snapshot.trial_remaining.is_some(), "{outcome:?}");
    }
    // The holder still decides.
    let closed = trial(store, svc, &s, holder, true).await;
    assert!(closed.applied);
    assert_eq!(closed.snapshot.state, State::Closed);
}

/// A result reported after the lease expired is ignored.
pub async fn result_with_expired_token_ignored<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "result_with_expired_token_ignored");
    let s = settings(2, 1);
    let half = half_open(store, svc, &s).await;
    let token = TrialToken::new();
    assert!(acquire(store, svc, &s, token, LEASE).await.applied);
    tokio::time::sleep(LEASE + MARGIN).await;
    for success in [true, false] {
        let outcome = trial(store, svc, &s, token, success).await;
        assert!(!outcome.applied, "expired lease still reports: {outcome:?}");
        assert_eq!(outcome.snapshot.state, State::HalfOpen);
        assert_eq!(outcome.snapshot.generation, half.generation);
        assert_eq!(outcome.snapshot.trial_remaining, None);
    }
}

/// `release_trial` gives the slot back at once (or soon, for a best-effort store).
pub async fn release_trial_frees_slot<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "release_trial_frees_slot");
    let s = settings(2, 1);
    let half = half_open(store, svc, &s).await;
    let first = TrialToken::new();
    assert!(acquire(store, svc, &s, first, LONG_LEASE).await.applied);
    assert!(release(store, svc, &s, first).await.applied);
    let freed = eventually(store, svc, &s, Duration::from_millis(500), |snap| {
        snap.trial_remaining.is_none()
    })
    .await;
    assert_eq!(
        freed.trial_remaining, None,
        "release did not free: {freed:?}"
    );
    assert_eq!(freed.state, State::HalfOpen);
    assert_eq!(freed.generation, half.generation);
    assert_eq!(freed.fail_counter, 2, "a release is no verdict");
    let second = TrialToken::new();
    let granted = acquire(store, svc, &s, second, LONG_LEASE).await;
    assert!(granted.applied, "{granted:?}");
    // The released token can no longer report.
    let stale = trial(store, svc, &s, first, false).await;
    assert!(!stale.applied, "{stale:?}");
    assert_eq!(stale.snapshot.state, State::HalfOpen);
}

/// Releasing with a token that does not hold the slot leaves the holder in place.
pub async fn release_with_wrong_token_keeps_slot<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "release_with_wrong_token_keeps_slot");
    let s = settings(2, 1);
    half_open(store, svc, &s).await;
    let holder = TrialToken::new();
    assert!(acquire(store, svc, &s, holder, LONG_LEASE).await.applied);
    assert!(!release(store, svc, &s, TrialToken::new()).await.applied);
    let other = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
    assert!(!other.applied, "{other:?}");
    assert!(trial(store, svc, &s, holder, true).await.applied);
}

/// An expired lease frees the slot for another acquirer, without changing the state.
pub async fn expired_lease_frees_slot<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "expired_lease_frees_slot");
    let s = settings(2, 1);
    let half = half_open(store, svc, &s).await;
    let first = TrialToken::new();
    assert!(acquire(store, svc, &s, first, LEASE).await.applied);
    let denied = acquire(store, svc, &s, TrialToken::new(), LEASE).await;
    assert!(!denied.applied, "{denied:?}");
    let lease = denied.snapshot.trial_remaining.expect("trial_remaining");
    assert!(lease <= LEASE, "{lease:?}");

    tokio::time::sleep(LEASE + MARGIN).await;
    let read = snap(store, svc, &s).await;
    assert_eq!(read.state, State::HalfOpen, "{read:?}");
    assert_eq!(read.trial_remaining, None, "{read:?}");
    let second = TrialToken::new();
    let granted = acquire(store, svc, &s, second, LONG_LEASE).await;
    assert!(granted.applied, "{granted:?}");
    assert_eq!(granted.snapshot.generation, half.generation);
    // The expired holder is now refused, even for a same-token retry.
    assert!(!acquire(store, svc, &s, first, LONG_LEASE).await.applied);
}

// ---------------------------------------------------------------------------------------
// Manual transitions

/// Checks one forced transition from a prepared snapshot `before`.
fn assert_forced(svc: &str, before: &Snapshot, to: State, outcome: &Outcome) {
    let after = &outcome.snapshot;
    assert!(
        outcome.applied,
        "{svc}: force is always applied: {outcome:?}"
    );
    assert_eq!(outcome.from, before.state, "{svc}: {outcome:?}");
    assert_eq!(after.state, to, "{svc}: {outcome:?}");
    assert!(
        after.generation > before.generation,
        "{svc}: force bumps the generation: {before:?} → {after:?}"
    );
    assert_eq!(after.trial_remaining, None, "{svc}: {after:?}");
    match to {
        State::Closed => assert_fresh_closed(svc, after),
        State::Open => {
            assert_freshly_open(svc, after);
            assert_eq!(
                after.fail_counter, before.fail_counter,
                "{svc}: entering open keeps the fail counter"
            );
        }
        _ => {
            assert_eq!(after.open_remaining, None, "{svc}: {after:?}");
            assert_eq!(after.success_counter, 0, "{svc}: {after:?}");
            assert_eq!(
                after.fail_counter, before.fail_counter,
                "{svc}: entering {to} keeps the fail counter"
            );
        }
    }
}

const TARGETS: [State; 5] = [
    State::Open,
    State::HalfOpen,
    State::ForcedOpen,
    State::Disabled,
    State::Closed,
];

fn target_name(state: State) -> &'static str {
    state.as_str()
}

/// Forcing each state from closed (with failures counted).
pub async fn force_from_closed<S: Store>(store: &S, prefix: &str) {
    for to in TARGETS {
        let svc = service(prefix, &format!("force_from_closed-{}", target_name(to)));
        let s = settings(5, 2);
        let before = fail_n(store, svc, &s, 2).await;
        let outcome = force(store, svc, &s, to).await;
        assert_forced(svc, &before, to, &outcome);
    }
}

/// Forcing each state from open (opening again restarts the timeout).
pub async fn force_from_open<S: Store>(store: &S, prefix: &str) {
    for to in TARGETS {
        let svc = service(prefix, &format!("force_from_open-{}", target_name(to)));
        let s = settings(2, 2);
        trip(store, svc, &s).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = snap(store, svc, &s).await;
        assert_eq!(before.state, State::Open);
        assert!(before.open_remaining.unwrap() < RESET - Duration::from_millis(50));
        let outcome = force(store, svc, &s, to).await;
        assert_forced(svc, &before, to, &outcome);
    }
}

/// Forcing each state from half-open after one successful trial (success counter 1).
pub async fn force_from_half_open<S: Store>(store: &S, prefix: &str) {
    for to in TARGETS {
        let svc = service(prefix, &format!("force_from_half_open-{}", target_name(to)));
        let s = settings(2, 3);
        half_open(store, svc, &s).await;
        let token = TrialToken::new();
        assert!(acquire(store, svc, &s, token, LONG_LEASE).await.applied);
        let before = trial(store, svc, &s, token, true).await.snapshot;
        assert_eq!(before.state, State::HalfOpen);
        assert_eq!(before.success_counter, 1);
        let outcome = force(store, svc, &s, to).await;
        assert_forced(svc, &before, to, &outcome);
    }
}

/// A forced transition takes the slot from a trial in flight: its result is ignored,
/// and after forcing half-open a new trial can start at once.
pub async fn force_frees_trial_slot<S: Store>(store: &S, prefix: &str) {
    for to in TARGETS {
        let svc = service(
            prefix,
            &format!("force_frees_trial_slot-{}", target_name(to)),
        );
        let s = settings(2, 1);
        half_open(store, svc, &s).await;
        let token = TrialToken::new();
        assert!(acquire(store, svc, &s, token, LONG_LEASE).await.applied);
        let forced = force(store, svc, &s, to).await;
        assert_eq!(forced.from, State::HalfOpen);
        assert_eq!(forced.snapshot.trial_remaining, None, "{forced:?}");
        for success in [true, false] {
            let late = trial(store, svc, &s, token, success).await;
            assert!(!late.applied, "{svc}: {late:?}");
            assert_eq!(late.snapshot.state, to, "{svc}: {late:?}");
            assert_eq!(late.snapshot.generation, forced.snapshot.generation);
        }
        let next = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
        assert_eq!(next.applied, to == State::HalfOpen, "{svc}: {next:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Versions and reads

/// Every applied write bumps `version.seq`; refused requests and reads do not go back.
pub async fn versions_increase_on_writes<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "versions_increase_on_writes");
    let s = settings(2, 1);
    let start = register(store, svc, &s).await;
    let mut last = start.version;
    // `strict`: a write that changes state or counters must bump `seq`. Taking or
    // re-taking the trial slot may or may not count as a write of the record; refused
    // requests may not move the version back.
    let mut check = |what: &str, strict: bool, outcome: &Outcome| {
        let v = outcome.snapshot.version;
        assert_eq!(v.incarnation, last.incarnation, "{what}: {outcome:?}");
        if strict {
            assert!(outcome.applied, "{what}: not applied: {outcome:?}");
            assert!(
                v.seq > last.seq,
                "{what}: applied without a new seq: {outcome:?}"
            );
        } else {
            assert!(v.seq >= last.seq, "{what}: seq went back: {outcome:?}");
        }
        last = v;
    };
    let g = start.generation;
    check("failure", true, &fail(store, svc, &s, g).await);
    check("success", true, &succeed(store, svc, &s, g).await);
    check("no-op success", false, &succeed(store, svc, &s, g).await);
    check("stale failure", false, &fail(store, svc, &s, g + 7).await);
    check("failure", true, &fail(store, svc, &s, g).await);
    check("trip", true, &fail(store, svc, &s, g).await);
    let refused = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
    assert!(!refused.applied);
    check("refused trial", false, &refused);
    let half = force(store, svc, &s, State::HalfOpen).await;
    check("force half-open", true, &half);
    let token = TrialToken::new();
    check(
        "trial",
        false,
        &acquire(store, svc, &s, token, LONG_LEASE).await,
    );
    check(
        "trial again",
        false,
        &acquire(store, svc, &s, token, LONG_LEASE).await,
    );
    check(
        "trial failure",
        true,
        &trial(store, svc, &s, token, false).await,
    );
    check(
        "force open",
        true,
        &force(store, svc, &s, State::Open).await,
    );
    check(
        "force open again",
        true,
        &force(store, svc, &s, State::Open).await,
    );
    check(
        "force close",
        true,
        &force(store, svc, &s, State::Closed).await,
    );
    check(
        "force close again",
        true,
        &force(store, svc, &s, State::Closed).await,
    );
    let read = snap(store, svc, &s).await;
    assert_eq!(read.version, last, "a read is no write");
}

/// Reading changes nothing: not the counters, not the version, not the trial slot, and
/// reading past the open timeout does not start a trial.
pub async fn snapshot_is_side_effect_free<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "snapshot_is_side_effect_free");
    let s = settings(2, 1);
    let counted = fail_n(store, svc, &s, 1).await;
    for _ in 0..3 {
        assert_eq!(snap(store, svc, &s).await, counted);
    }
    let tripped = fail(store, svc, &s, counted.generation).await.snapshot;
    let read = snap(store, svc, &s).await;
    assert_eq!(read.state, State::Open);
    assert_eq!(
        (read.generation, read.fail_counter, read.version),
        (tripped.generation, tripped.fail_counter, tripped.version)
    );

    tokio::time::sleep(RESET + MARGIN).await;
    let first = snap(store, svc, &s).await;
    let second = snap(store, svc, &s).await;
    assert_eq!(first.state, State::Open, "reading starts no trial");
    assert_eq!(first.open_remaining, Some(Duration::ZERO));
    assert_eq!(first, second);
    assert_eq!(first.version, tripped.version, "reading is no write");
    assert_eq!(first.generation, tripped.generation);
    assert_eq!(first.trial_remaining, None);

    let token = TrialToken::new();
    let granted = acquire(store, svc, &s, token, LONG_LEASE).await;
    assert!(granted.applied, "{granted:?}");
    let held = snap(store, svc, &s).await;
    assert_eq!(held.version, granted.snapshot.version);
    assert!(held.trial_remaining.is_some());
    assert!(
        !acquire(store, svc, &s, TrialToken::new(), LONG_LEASE)
            .await
            .applied
    );
}

// ---------------------------------------------------------------------------------------
// Operators' states, seeds and absent records

/// A forced-open breaker grants no trial and counts nothing until it is closed.
pub async fn forced_open_holds_until_closed<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "forced_open_holds_until_closed");
    let s = settings(2, 1);
    register(store, svc, &s).await;
    let forced = force(store, svc, &s, State::ForcedOpen).await.snapshot;
    assert_eq!(forced.state, State::ForcedOpen, "{svc}: {forced:?}");
    let trial = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
    assert!(
        !trial.applied,
        "{svc}: no trial while forced open: {trial:?}"
    );
    let failure = fail(store, svc, &s, forced.generation).await;
    assert!(
        !failure.applied,
        "{svc}: nothing counted while forced open: {failure:?}"
    );
    tokio::time::sleep(RESET + MARGIN).await;
    let later = snap(store, svc, &s).await;
    assert_eq!(
        later.state,
        State::ForcedOpen,
        "{svc}: no timeout ends it: {later:?}"
    );
    let closed = force(store, svc, &s, State::Closed).await.snapshot;
    assert_fresh_closed(svc, &closed);
}

/// A disabled breaker counts failures and successes but never trips.
pub async fn disabled_counts_but_never_trips<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "disabled_counts_but_never_trips");
    let s = settings(2, 1);
    register(store, svc, &s).await;
    let disabled = force(store, svc, &s, State::Disabled).await.snapshot;
    for n in 1..=5 {
        let outcome = fail(store, svc, &s, disabled.generation).await;
        assert!(outcome.applied, "{svc}: {outcome:?}");
        assert_eq!(
            outcome.snapshot.state,
            State::Disabled,
            "{svc}: {outcome:?}"
        );
        assert_eq!(outcome.snapshot.fail_counter, n, "{svc}: {outcome:?}");
    }
    let reset = succeed(store, svc, &s, disabled.generation).await;
    assert!(reset.applied, "{svc}: {reset:?}");
    assert_eq!(reset.snapshot.fail_counter, 0, "{svc}: {reset:?}");
    assert_eq!(reset.snapshot.state, State::Disabled, "{svc}: {reset:?}");
    let closed = force(store, svc, &s, State::Closed).await.snapshot;
    assert_fresh_closed(svc, &closed);
}

/// Opening for a given time sets that time, not the reset timeout.
pub async fn open_for_sets_the_open_time<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "open_for_sets_the_open_time");
    let s = settings(2, 1);
    register(store, svc, &s).await;
    let window = Duration::from_secs(3600);
    let open = apply(store, svc, &s, Command::Force(Target::Open(window))).await;
    assert!(open.applied, "{svc}: {open:?}");
    let remaining = open.snapshot.open_remaining.expect("open");
    assert!(
        remaining > window - Duration::from_secs(5) && remaining <= window,
        "{svc}: {remaining:?}"
    );
    tokio::time::sleep(RESET + MARGIN).await;
    let trial = acquire(store, svc, &s, TrialToken::new(), LONG_LEASE).await;
    assert!(
        !trial.applied,
        "{svc}: the reset timeout does not end a longer window: {trial:?}"
    );
}

/// A seed recreates an absent record; it replaces an existing one only when the store
/// lost history (the record is older than what the seeding process read from it: same
/// incarnation, lower seq), never merely because the seed's generation is newer (a
/// process cut off from the store, whatever it decided meanwhile).
pub async fn register_replaces_only_when_the_store_lost_history<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "register_replaces_only_when_the_store_lost_history");
    let s = settings(3, 1);
    let seed = Seed {
        state: State::Open,
        generation: 7,
        fail_counter: 3,
        open_remaining: Some(Duration::from_secs(60)),
        trial_remaining: None,
        confirmed: None,
        shadow: None,
        since_close: None,
    };
    let created = apply(store, svc, &s, Command::Register { seed: Some(seed) }).await;
    assert!(created.applied, "{svc}: {created:?}");
    let snapshot = created.snapshot;
    assert!(snapshot.exists(), "{svc}: {snapshot:?}");
    assert_eq!(
        (snapshot.state, snapshot.generation, snapshot.fail_counter),
        (State::Open, 7, 3)
    );
    let left = snapshot.open_remaining.expect("open");
    assert!(left > Duration::from_secs(55), "{svc}: {left:?}");
    let version = snapshot.version;

    let newer = Seed {
        state: State::Closed,
        generation: 9,
        fail_counter: 0,
        open_remaining: None,
        trial_remaining: None,
        confirmed: None,
        shadow: None,
        since_close: None,
    };
    let seen = |incarnation, seq| Some(Version { incarnation, seq });
    // A newer generation is no evidence: nor is a version at or behind the record's,
    // nor one of another incarnation.
    for confirmed in [
        None,
        seen(version.incarnation, version.seq),
        seen(version.incarnation, version.seq - 1),
        seen(version.incarnation.wrapping_add(1), version.seq + 5),
    ] {
        let kept = apply(
            store,
            svc,
            &s,
            Command::Register {
                seed: Some(newer.with_confirmed(confirmed)),
            },
        )
        .await;
        assert!(
            !kept.applied,
            "{svc}: a seed confirmed at {confirmed:?} does not replace the record at {version:?}: {kept:?}"
        );
        assert_eq!(kept.snapshot.state, State::Open, "{svc}: {kept:?}");
        assert_eq!(kept.snapshot.version, version, "{svc}: nothing written");
    }

    // The process read seq + 2 of this record: the store lost those writes.
    let lost = seen(version.incarnation, version.seq + 2);
    let replaced = apply(
        store,
        svc,
        &s,
        Command::Register {
            seed: Some(newer.with_confirmed(lost)),
        },
    )
    .await;
    assert!(
        replaced.applied,
        "{svc}: a record older than what the process read is replaced: {replaced:?}"
    );
    assert_eq!(replaced.from, State::Open, "{svc}: {replaced:?}");
    assert_eq!(
        (replaced.snapshot.state, replaced.snapshot.generation),
        (State::Closed, 9)
    );
    assert_ne!(
        replaced.snapshot.version.incarnation, version.incarnation,
        "{svc}: a replaced record is a new incarnation: {replaced:?}"
    );
    // The first process to notice re-seeds; another with the same old evidence adopts.
    let again = apply(
        store,
        svc,
        &s,
        Command::Register {
            seed: Some(seed.with_confirmed(lost)),
        },
    )
    .await;
    assert!(!again.applied, "{svc}: {again:?}");
    assert_eq!(again.snapshot.version, replaced.snapshot.version);

    // The record a process read is gone and a blank one (made by a process that knew
    // nothing: still at generation 1) stands in its place: a seed that knows of a
    // transition re-seeds it; a seed that knows nothing more does not.
    let blank_svc = service(
        prefix,
        "register_replaces_only_when_the_store_lost_history-2",
    );
    let blank = apply(store, blank_svc, &s, Command::Register { seed: None }).await;
    assert!(blank.applied && blank.snapshot.generation == 1, "{blank:?}");
    let other = seen(blank.snapshot.version.incarnation.wrapping_add(1), 3);
    let knows_nothing = Seed {
        generation: 1,
        ..seed
    };
    let kept = apply(
        store,
        blank_svc,
        &s,
        Command::Register {
            seed: Some(knows_nothing.with_confirmed(other)),
        },
    )
    .await;
    assert!(!kept.applied, "{blank_svc}: {kept:?}");
    let reseeded = apply(
        store,
        blank_svc,
        &s,
        Command::Register {
            seed: Some(seed.with_confirmed(other)),
        },
    )
    .await;
    assert!(reseeded.applied, "{blank_svc}: {reseeded:?}");
    assert_eq!(
        (reseeded.snapshot.state, reseeded.snapshot.generation),
        (State::Open, 7),
        "{blank_svc}"
    );
    let twice = apply(
        store,
        blank_svc,
        &s,
        Command::Register {
            seed: Some(newer.with_confirmed(other)),
        },
    )
    .await;
    assert!(
        !twice.applied,
        "{blank_svc}: once re-seeded, the record is no longer blank: {twice:?}"
    );

    // A half-open view with a trial in flight re-seeds a half-open record whose slot is
    // held until the lease ends: no second trial starts while that one may still run,
    // and no result claims it.
    let trial_svc = service(
        prefix,
        "register_replaces_only_when_the_store_lost_history-3",
    );
    let half_open = Seed {
        state: State::HalfOpen,
        open_remaining: None,
        trial_remaining: Some(LONG_LEASE),
        ..seed
    };
    let held = apply(
        store,
        trial_svc,
        &s,
        Command::Register {
            seed: Some(half_open),
        },
    )
    .await;
    assert!(held.applied, "{trial_svc}: {held:?}");
    assert_eq!(
        held.snapshot.state,
        State::HalfOpen,
        "{trial_svc}: {held:?}"
    );
    assert!(
        held.snapshot.trial_remaining.is_some(),
        "{trial_svc}: {held:?}"
    );
    let token = TrialToken::new();
    let second = acquire(store, trial_svc, &s, token, LONG_LEASE).await;
    assert!(!second.applied, "{trial_svc}: a second trial: {second:?}");
    let claimed = trial(store, trial_svc, &s, token, true).await;
    assert!(!claimed.applied, "{trial_svc}: {claimed:?}");
}

/// Commands about a breaker with no record change nothing and say it is absent.
pub async fn absent_records_stay_absent<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "absent_records_stay_absent");
    let s = settings(1, 1);
    for command in [
        Command::Snapshot,
        Command::RecordFailure {
            generation: 1,
            count: 1,
            instance: 1,
        },
        Command::RecordSuccess { generation: 1 },
        Command::RecordCalls {
            generation: 1,
            counts: counts(3, 3, 1, 3),
            instance: 1,
        },
        Command::AcquireTrial {
            token: TrialToken::new(),
            lease: LONG_LEASE,
        },
        Command::RecordTrial {
            token: TrialToken::new(),
            success: false,
        },
        Command::ReleaseTrial {
            token: TrialToken::new(),
        },
    ] {
        let outcome = apply(store, svc, &s, command).await;
        assert!(!outcome.applied, "{svc}: {command:?} → {outcome:?}");
        assert!(
            !outcome.snapshot.exists(),
            "{svc}: {command:?} created a record: {outcome:?}"
        );
    }
    let created = register(store, svc, &s).await;
    assert!(created.exists(), "{svc}: {created:?}");
    assert_fresh_closed(svc, &created);
}

// ---------------------------------------------------------------------------------------
// Batches of calls (`RecordCalls`): consecutive failures and rates over the window

/// Batches reported under another generation, or empty ones, change nothing (and leave
/// nothing in the window).
pub async fn record_calls_stale_generation_ignored<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "record_calls_stale_generation_ignored");
    let s = settings(2, 1).failure_rate(50).min_calls(1);
    let start = register(store, svc, &s).await;
    let g = start.generation;
    for stale in [g.wrapping_sub(1), g + 1, g + 1000] {
        let outcome = report(store, svc, &s, stale, counts(10, 10, 0, 10), 1).await;
        assert!(!outcome.applied, "{svc}: stale batch applied: {outcome:?}");
        assert_eq!(outcome.snapshot.state, State::Closed, "{svc}: {outcome:?}");
        assert_eq!(outcome.snapshot.fail_counter, 0, "{svc}: {outcome:?}");
    }
    let empty = report(store, svc, &s, g, Counts::default(), 1).await;
    assert!(
        !empty.applied,
        "{svc}: an empty batch is no report: {empty:?}"
    );
    // Had the stale batches been counted, 11 calls with 10 failures would trip now.
    let ok = report(store, svc, &s, g, counts(1, 0, 0, 0), 1).await;
    assert!(ok.applied, "{svc}: {ok:?}");
    assert_eq!(ok.snapshot.state, State::Closed, "{svc}: {ok:?}");
    assert_eq!(ok.snapshot.generation, g, "{svc}: {ok:?}");

    // After a close, batches of the old closed period are stale too.
    let closed = force(store, svc, &s, State::Closed).await.snapshot;
    let late = report(store, svc, &s, g, counts(10, 10, 0, 10), 1).await;
    assert!(!late.applied, "{svc}: {late:?}");
    assert_fresh_closed(svc, &late.snapshot);
    // And batches reported while open are not counted, even at the current generation.
    let open = force(store, svc, &s, State::Open).await.snapshot;
    let refused = report(store, svc, &s, open.generation, counts(3, 3, 0, 3), 1).await;
    assert!(!refused.applied, "{svc}: {refused:?}");
    assert_eq!(
        refused.snapshot.fail_counter, closed.fail_counter,
        "{svc}: {refused:?}"
    );
    assert_eq!(refused.snapshot.state, State::Open, "{svc}: {refused:?}");
}

/// A batch continues the consecutive-failure count with its failures when it holds no
/// success, and restarts it from its tail (the failures after its last success) when it
/// does; `fail_max` consecutive failures trip, with or without a rate rule.
pub async fn record_calls_counts_consecutive_failures_by_tail<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "record_calls_counts_consecutive_failures_by_tail");
    let s = settings(4, 1);
    let g = register(store, svc, &s).await.generation;
    for (batch, expected) in [
        (counts(2, 2, 0, 2), 2), // no success: 0 + 2
        (counts(3, 1, 0, 1), 1), // a success, then one failure
        (counts(1, 0, 0, 0), 0), // a success
        (counts(1, 0, 0, 0), 0), // nothing to reset: still applied
        (counts(5, 3, 0, 2), 2), // failure, success, two failures
        (counts(1, 1, 0, 1), 3),
    ] {
        let outcome = report(store, svc, &s, g, batch, 1).await;
        assert!(outcome.applied, "{svc}: {batch:?}: {outcome:?}");
        assert_eq!(outcome.snapshot.state, State::Closed, "{svc}: {outcome:?}");
        assert_eq!(
            outcome.snapshot.fail_counter, expected,
            "{svc}: {batch:?}: {outcome:?}"
        );
        assert_eq!(outcome.snapshot.generation, g, "{svc}: {outcome:?}");
    }
    let tripped = report(store, svc, &s, g, counts(2, 2, 0, 2), 2).await;
    assert!(tripped.applied, "{svc}: {tripped:?}");
    assert!(tripped.changed_state(), "{svc}: {tripped:?}");
    assert_freshly_open(svc, &tripped.snapshot);
    assert_eq!(tripped.snapshot.fail_counter, 5, "{svc}: {tripped:?}");
    assert!(tripped.snapshot.generation > g, "{svc}: {tripped:?}");

    // With a rate rule far from tripping, the consecutive rule still trips.
    let rated = service(
        prefix,
        "record_calls_counts_consecutive_failures_by_tail-rated",
    );
    let s = settings(3, 1).failure_rate(90).min_calls(100);
    let g = register(store, rated, &s).await.generation;
    let counted = report(store, rated, &s, g, counts(50, 2, 0, 2), 1).await;
    assert_eq!(
        counted.snapshot.state,
        State::Closed,
        "{rated}: {counted:?}"
    );
    let tripped = report(store, rated, &s, g, counts(1, 1, 0, 1), 1).await;
    assert!(tripped.changed_state(), "{rated}: {tripped:?}");
    assert_freshly_open(rated, &tripped.snapshot);
    assert_eq!(tripped.snapshot.fail_counter, 3, "{rated}: {tripped:?}");
}

/// The failure rate trips once the window holds `min_calls` calls and failures reach
/// the percentage (integer arithmetic: exactly 50 % of 12 trips at 50).
pub async fn failure_rate_trips_only_past_min_calls<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "failure_rate_trips_only_past_min_calls");
    let s = settings(100, 1).failure_rate(50).min_calls(10);
    let g = register(store, svc, &s).await.generation;
    for (batch, (calls, failures)) in [
        (counts(4, 4, 0, 4), (4, 4)),  // 100 % of 4 calls: below min_calls
        (counts(4, 0, 0, 0), (8, 4)),  // 4 of 8
        (counts(2, 0, 0, 0), (10, 4)), // 4 of 10: 40 %
        (counts(1, 1, 0, 1), (11, 5)), // 5 of 11: 45 %
    ] {
        let outcome = report(store, svc, &s, g, batch, 1).await;
        assert!(outcome.applied, "{svc}: {batch:?}: {outcome:?}");
        assert_eq!(
            outcome.snapshot.state,
            State::Closed,
            "{svc}: {batch:?}: {outcome:?}"
        );
        // The answer tells the reporter the window's totals after its batch.
        let window = infuse::store::Totals {
            calls,
            failures,
            slow: 0,
        };
        assert_eq!(
            outcome.window,
            Some(window),
            "{svc}: {batch:?}: {outcome:?}"
        );
    }
    let tripped = report(store, svc, &s, g, counts(1, 1, 0, 1), 1).await; // 6 of 12
    assert!(tripped.applied, "{svc}: {tripped:?}");
    assert_eq!(
        tripped.window, None,
        "{svc}: a trip ends the window: {tripped:?}"
    );
    assert!(
        tripped.changed_state(),
        "{svc}: 50 % must trip: {tripped:?}"
    );
    assert_freshly_open(svc, &tripped.snapshot);
    assert_eq!(tripped.snapshot.fail_counter, 2, "{svc}: {tripped:?}");
}

/// The slow-call rate trips on slow calls alone; failures do not count towards it.
pub async fn slow_call_rate_trips<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "slow_call_rate_trips");
    let s = settings(100, 1)
        .slow_call(Duration::from_millis(100))
        .slow_call_rate(50)
        .min_calls(4);
    let g = register(store, svc, &s).await.generation;
    let failing = report(store, svc, &s, g, counts(4, 4, 0, 4), 1).await;
    assert!(failing.applied, "{svc}: {failing:?}");
    assert_eq!(
        failing.snapshot.state,
        State::Closed,
        "{svc}: no failure-rate rule: {failing:?}"
    );
    let slow = report(store, svc, &s, g, counts(4, 0, 3, 0), 1).await; // 3 slow of 8
    assert_eq!(slow.snapshot.state, State::Closed, "{svc}: {slow:?}");
    let tripped = report(store, svc, &s, g, counts(2, 0, 2, 0), 1).await; // 5 of 10
    assert!(tripped.changed_state(), "{svc}: {tripped:?}");
    assert_freshly_open(svc, &tripped.snapshot);
    assert_eq!(tripped.snapshot.fail_counter, 0, "{svc}: {tripped:?}");
}

/// `min_instances` covers the consecutive rule too: `fail_max` failures in a row trip only
/// once the streak holds failures of that many distinct processes; a success (any
/// process's) ends the streak and its reporters.
pub async fn min_instances_holds_for_consecutive_failures<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "min_instances_holds_for_consecutive_failures");
    let s = settings(5, 1).min_instances(2);
    let g = register(store, svc, &s).await.generation;
    let failures = |count, instance| Command::RecordFailure {
        generation: g,
        count,
        instance,
    };
    // One sick process, far past fail_max: counted, never tripped.
    for _ in 0..4 {
        let outcome = apply(store, svc, &s, failures(3, 1)).await;
        assert!(outcome.applied, "{svc}: {outcome:?}");
        assert_eq!(
            outcome.snapshot.state,
            State::Closed,
            "{svc}: one reporter: {outcome:?}"
        );
    }
    // A success ends the streak and its reporters: process 2's failures alone, then
    // process 1's again in the same streak, trip it.
    let reset = apply(store, svc, &s, Command::RecordSuccess { generation: g }).await;
    assert!(
        reset.applied && reset.snapshot.fail_counter == 0,
        "{svc}: {reset:?}"
    );
    let two = apply(store, svc, &s, failures(5, 2)).await;
    assert_eq!(two.snapshot.state, State::Closed, "{svc}: {two:?}");
    let tripped = apply(store, svc, &s, failures(1, 1)).await;
    assert!(
        tripped.changed_state(),
        "{svc}: 6 failures in a row from two processes: {tripped:?}"
    );
    assert_freshly_open(svc, &tripped.snapshot);

    // The same through batches (RecordCalls), which a process with `min_instances`
    // sends: a batch with a success restarts the streak with its own tail.
    let svc = service(prefix, "min_instances_holds_for_consecutive_failures-2");
    let g = register(store, svc, &s).await.generation;
    let one = report(store, svc, &s, g, counts(9, 9, 0, 9), 1).await;
    assert_eq!(one.snapshot.state, State::Closed, "{svc}: {one:?}");
    let restarted = report(store, svc, &s, g, counts(3, 2, 0, 2), 2).await;
    assert_eq!(
        (restarted.snapshot.state, restarted.snapshot.fail_counter),
        (State::Closed, 2),
        "{svc}: {restarted:?}"
    );
    let tripped = report(store, svc, &s, g, counts(3, 3, 0, 3), 1).await;
    assert!(
        tripped.changed_state(),
        "{svc}: 5 in a row from processes 2 and 1: {tripped:?}"
    );
}

/// With `min_instances = 2`, a rate trips only once two distinct processes reported
/// failures (or slow calls) in the window; successes alone do not make a reporter.
pub async fn min_instances_needs_distinct_instances<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "min_instances_needs_distinct_instances");
    let s = settings(100, 1)
        .failure_rate(50)
        .min_calls(4)
        .min_instances(2);
    let g = register(store, svc, &s).await.generation;
    for (batch, instance) in [
        (counts(10, 10, 0, 10), 1), // 100 %, one reporter
        (counts(2, 2, 0, 2), 1),    // the same one again
        (counts(3, 0, 0, 0), 2),    // another process, successes only
    ] {
        let outcome = report(store, svc, &s, g, batch, instance).await;
        assert!(outcome.applied, "{svc}: {batch:?}: {outcome:?}");
        assert_eq!(
            outcome.snapshot.state,
            State::Closed,
            "{svc}: {batch:?} from {instance}: {outcome:?}"
        );
    }
    let tripped = report(store, svc, &s, g, counts(1, 1, 0, 1), 2).await;
    assert!(
        tripped.changed_state(),
        "{svc}: two reporters of 13 failures in 16 calls: {tripped:?}"
    );
    assert_freshly_open(svc, &tripped.snapshot);
}

/// A disabled breaker counts batches (consecutive count and window) but never trips;
/// closing it by hand starts an empty window.
pub async fn disabled_counts_calls_but_never_trips<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "disabled_counts_calls_but_never_trips");
    let s = settings(2, 1).failure_rate(50).min_calls(2);
    register(store, svc, &s).await;
    let disabled = force(store, svc, &s, State::Disabled).await.snapshot;
    let g = disabled.generation;
    for n in 1..=2 {
        let outcome = report(store, svc, &s, g, counts(10, 10, 0, 10), 1).await;
        assert!(outcome.applied, "{svc}: {outcome:?}");
        assert_eq!(
            outcome.snapshot.state,
            State::Disabled,
            "{svc}: {outcome:?}"
        );
        assert_eq!(outcome.snapshot.fail_counter, 10 * n, "{svc}: {outcome:?}");
    }
    let reset = report(store, svc, &s, g, counts(3, 1, 0, 0), 1).await;
    assert!(reset.applied, "{svc}: {reset:?}");
    assert_eq!(reset.snapshot.fail_counter, 0, "{svc}: {reset:?}");
    assert_eq!(reset.snapshot.state, State::Disabled, "{svc}: {reset:?}");
    let closed = force(store, svc, &s, State::Closed).await.snapshot;
    assert_fresh_closed(svc, &closed);
    // 21 failures in 23 calls were counted while disabled; the closed period starts
    // without them.
    let ok = report(store, svc, &s, closed.generation, counts(2, 0, 0, 0), 1).await;
    assert!(ok.applied, "{svc}: {ok:?}");
    assert_eq!(
        ok.snapshot.state,
        State::Closed,
        "{svc}: window kept: {ok:?}"
    );
}

/// A trip clears the window: after a trial closes the breaker, the new closed period
/// counts from zero.
pub async fn trip_clears_the_window<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "trip_clears_the_window");
    let s = settings(100, 1).failure_rate(50).min_calls(4);
    let g = register(store, svc, &s).await.generation;
    report(store, svc, &s, g, counts(3, 3, 0, 3), 1).await;
    let tripped = report(store, svc, &s, g, counts(1, 1, 0, 1), 1).await;
    assert!(tripped.changed_state(), "{svc}: {tripped:?}");
    tokio::time::sleep(RESET + MARGIN).await;
    let token = TrialToken::new();
    assert!(acquire(store, svc, &s, token, LONG_LEASE).await.applied);
    let closed = trial(store, svc, &s, token, true).await.snapshot;
    assert_fresh_closed(svc, &closed);
    let g = closed.generation;
    for batch in [
        counts(2, 0, 0, 0), // with the old window: 4 failures of 6
        counts(2, 1, 0, 1), // 1 of 4
        counts(1, 1, 0, 1), // 2 of 5
    ] {
        let outcome = report(store, svc, &s, g, batch, 1).await;
        assert!(outcome.applied, "{svc}: {batch:?}: {outcome:?}");
        assert_eq!(
            outcome.snapshot.state,
            State::Closed,
            "{svc}: {batch:?}: the window was not cleared: {outcome:?}"
        );
    }
    let tripped = report(store, svc, &s, g, counts(1, 1, 0, 1), 1).await; // 3 of 6
    assert!(tripped.changed_state(), "{svc}: {tripped:?}");
}

/// The window slides: calls older than the window no longer count; calls of earlier
/// buckets still in it do.
pub async fn window_slides<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "window_slides");
    let s = settings(100, 1)
        .failure_rate(50)
        .min_calls(4)
        .window(Settings::MIN_WINDOW); // ten buckets of 100 ms
    let g = register(store, svc, &s).await.generation;
    let first = report(store, svc, &s, g, counts(3, 3, 0, 3), 1).await;
    assert_eq!(first.snapshot.state, State::Closed, "{svc}: {first:?}");
    tokio::time::sleep(Settings::MIN_WINDOW + Duration::from_millis(200)).await;
    let later = report(store, svc, &s, g, counts(3, 1, 0, 1), 1).await;
    assert!(later.applied, "{svc}: {later:?}");
    assert_eq!(
        later.snapshot.state,
        State::Closed,
        "{svc}: the first batch left the window (with it: 4 failures of 6 calls): {later:?}"
    );
    tokio::time::sleep(Duration::from_millis(150)).await; // a later bucket
    let tripped = report(store, svc, &s, g, counts(1, 1, 0, 1), 1).await;
    assert!(
        tripped.changed_state(),
        "{svc}: 2 failures of 4 calls in two buckets of the window: {tripped:?}"
    );
}

/// A process that reported failures only before the window no longer counts towards
/// `min_instances`.
pub async fn reporters_leave_the_window<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "reporters_leave_the_window");
    let s = settings(100, 1)
        .failure_rate(50)
        .min_calls(4)
        .min_instances(2)
        .window(Settings::MIN_WINDOW);
    let g = register(store, svc, &s).await.generation;
    report(store, svc, &s, g, counts(1, 1, 0, 1), 1).await;
    tokio::time::sleep(Settings::MIN_WINDOW + Duration::from_millis(200)).await;
    let alone = report(store, svc, &s, g, counts(4, 4, 0, 4), 2).await;
    assert!(alone.applied, "{svc}: {alone:?}");
    assert_eq!(
        alone.snapshot.state,
        State::Closed,
        "{svc}: instance 1 reported before the window: one reporter: {alone:?}"
    );
    let tripped = report(store, svc, &s, g, counts(1, 1, 0, 1), 1).await;
    assert!(
        tripped.changed_state(),
        "{svc}: two reporters in the window: {tripped:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Backoff of the open time (`max_reset_timeout`)

/// The base and bound of the backoff cases: 100 ms doubling up to 400 ms.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_millis(400);

fn backoff_settings() -> Settings {
    settings(1, 1)
        .reset_timeout(BACKOFF_BASE)
        .max_reset_timeout(BACKOFF_MAX)
}

/// Asserts that `snapshot` was opened just now for `expected_ms`.
fn assert_open_for(svc: &str, snapshot: &Snapshot, expected_ms: u64) {
    assert_eq!(snapshot.state, State::Open, "{svc}: {snapshot:?}");
    let expected = Duration::from_millis(expected_ms);
    let remaining = snapshot
        .open_remaining
        .unwrap_or_else(|| panic!("{svc}: open without open_remaining: {snapshot:?}"));
    assert!(
        remaining <= expected && remaining + Duration::from_millis(50) >= expected,
        "{svc}: open for {remaining:?}, expected {expected:?}: {snapshot:?}"
    );
}

/// Waits out the open time of `open`, takes the trial and reports its result.
async fn trial_after<S: Store>(
    store: &S,
    svc: &'static str,
    s: &Settings,
    open: &Snapshot,
    success: bool,
) -> (TrialToken, Outcome) {
    tokio::time::sleep(open.open_remaining.unwrap_or_default() + MARGIN).await;
    let token = TrialToken::new();
    let granted = acquire(store, svc, s, token, LONG_LEASE).await;
    assert!(granted.applied, "{svc}: {granted:?}");
    (token, trial(store, svc, s, token, success).await)
}

/// Each consecutive failed trial doubles the open time (less the token's jitter, up to a
/// fifth) up to `max_reset_timeout`.
pub async fn backoff_doubles_open_time_up_to_max<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "backoff_doubles_open_time_up_to_max");
    let s = backoff_settings();
    let mut open = trip(store, svc, &s).await;
    assert_open_for(svc, &open, s.open_ms(0, 0));
    for reopens in 1..=3 {
        let (token, reopened) = trial_after(store, svc, &s, &open, false).await;
        assert!(reopened.applied, "{svc}: {reopened:?}");
        let expected = s.open_ms(reopens, token.jitter());
        assert_open_for(svc, &reopened.snapshot, expected);
        let unjittered = [200, 400, 400][reopens as usize - 1];
        assert!(expected <= unjittered && expected * 5 >= unjittered * 4);
        open = reopened.snapshot;
    }
}

/// A close resets the backoff: the next trip opens for `reset_timeout` and the next
/// failed trial doubles it once; so does forcing a state.
pub async fn close_and_force_reset_backoff<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "close_and_force_reset_backoff");
    let s = backoff_settings();
    let open = trip(store, svc, &s).await;
    let (_, reopened) = trial_after(store, svc, &s, &open, false).await;
    let (_, closed) = trial_after(store, svc, &s, &reopened.snapshot, true).await;
    assert_fresh_closed(svc, &closed.snapshot);
    let tripped = fail(store, svc, &s, closed.snapshot.generation)
        .await
        .snapshot;
    assert_open_for(svc, &tripped, s.open_ms(0, 0));
    let (token, reopened) = trial_after(store, svc, &s, &tripped, false).await;
    assert_open_for(svc, &reopened.snapshot, s.open_ms(1, token.jitter()));

    // Forcing half-open resets it too: a failed trial then doubles once, not twice.
    force(store, svc, &s, State::HalfOpen).await;
    let token = TrialToken::new();
    assert!(acquire(store, svc, &s, token, LONG_LEASE).await.applied);
    let reopened = trial(store, svc, &s, token, false).await;
    assert_open_for(svc, &reopened.snapshot, s.open_ms(1, token.jitter()));
}

// ---------------------------------------------------------------------------------------
// Slow start: the time since the close a recovery began with

/// A close that ends an open period (a successful trial, an operator's close of an open
/// breaker) is timed, on the store's clock: answers carry the time since, while closed.
/// A record that never tripped, closing a closed or disabled breaker, and every other
/// state carry none.
pub async fn a_close_after_a_trip_records_when<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "a_close_after_a_trip_records_when");
    let s = settings(1, 1);
    assert_eq!(
        register(store, svc, &s).await.since_close,
        None,
        "{svc}: fresh"
    );
    let closed = force(store, svc, &s, State::Closed).await.snapshot;
    assert_eq!(closed.since_close, None, "{svc}: closing a closed breaker");
    let open = trip(store, svc, &s).await;
    assert_eq!(open.since_close, None, "{svc}: {open:?}");
    let (_, recovered) = trial_after(store, svc, &s, &open, true).await;
    let since = recovered.snapshot.since_close;
    assert!(
        since.is_some_and(|since| since < Duration::from_secs(1)),
        "{svc}: a trial closed it just now: {recovered:?}"
    );
    tokio::time::sleep(MARGIN).await;
    let later = snap(store, svc, &s).await.since_close;
    assert!(
        later.is_some_and(|later| later >= MARGIN && later < MARGIN + Duration::from_secs(1)),
        "{svc}: {MARGIN:?} later: {later:?}"
    );
    // An operator's close of a closed breaker goes on with the same period.
    let again = force(store, svc, &s, State::Closed).await.snapshot;
    assert!(again.since_close >= later, "{svc}: {again:?}");
    // Disabled, then closed: calls ran all along, nothing to time.
    assert_eq!(
        force(store, svc, &s, State::Disabled)
            .await
            .snapshot
            .since_close,
        None
    );
    let enabled = force(store, svc, &s, State::Closed).await.snapshot;
    assert_eq!(enabled.since_close, None, "{svc}: {enabled:?}");
    // Held open, then closed by hand: a recovery.
    force(store, svc, &s, State::ForcedOpen).await;
    let reopened = force(store, svc, &s, State::Closed).await.snapshot;
    assert!(
        reopened
            .since_close
            .is_some_and(|since| since < Duration::from_secs(1)),
        "{svc}: {reopened:?}"
    );
}

/// With `slow_start`, a trip within it after a close is a failed recovery: the open time
/// backs off as after a failed trial (without jitter), and the backoff survives the
/// close. A trip after slow start ended opens for `reset_timeout` again.
pub async fn a_trip_during_slow_start_backs_off<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "a_trip_during_slow_start_backs_off");
    let ramping = backoff_settings().slow_start(Duration::from_secs(60));
    let mut open = trip(store, svc, &ramping).await;
    assert_open_for(svc, &open, ramping.open_ms(0, 0));
    for reopens in 1..=2 {
        let (_, closed) = trial_after(store, svc, &ramping, &open, true).await;
        assert_eq!(closed.snapshot.state, State::Closed, "{svc}: {closed:?}");
        let tripped = fail(store, svc, &ramping, closed.snapshot.generation).await;
        assert_open_for(svc, &tripped.snapshot, ramping.open_ms(reopens, 0));
        open = tripped.snapshot;
    }
    // A short slow start, waited out: the trip after it starts the backoff over.
    let short = backoff_settings().slow_start(MARGIN);
    let (_, closed) = trial_after(store, svc, &short, &open, true).await;
    tokio::time::sleep(MARGIN * 2).await;
    let tripped = fail(store, svc, &short, closed.snapshot.generation).await;
    assert_open_for(svc, &tripped.snapshot, short.open_ms(0, 0));
}

// ---------------------------------------------------------------------------------------
// Extreme values through the Store API: nothing panics, wraps, or wedges

/// Counters saturate instead of wrapping: the fail counter at `u32::MAX`, and a window's
/// totals (batches of `u32::MAX` calls add up exactly, far below the window's bound).
pub async fn counts_saturate_at_their_bounds<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "counts_saturate_at_their_bounds");
    let s = settings(u32::MAX, 1).failure_rate(50).min_calls(1);
    register(store, svc, &s).await;
    // Disabled: counted, never tripped.
    let generation = force(store, svc, &s, State::Disabled)
        .await
        .snapshot
        .generation;
    let many = Command::RecordFailure {
        generation,
        count: u32::MAX,
        instance: 1,
    };
    for _ in 0..2 {
        let outcome = apply(store, svc, &s, many).await;
        assert!(outcome.applied, "{svc}: {outcome:?}");
        assert_eq!(
            outcome.snapshot.fail_counter,
            u32::MAX,
            "{svc}: {outcome:?}"
        );
        assert_eq!(
            outcome.snapshot.state,
            State::Disabled,
            "{svc}: {outcome:?}"
        );
    }
    let reset = succeed(store, svc, &s, generation).await;
    assert_eq!(reset.snapshot.fail_counter, 0, "{svc}: {reset:?}");
    let max = u32::MAX;
    let mut last = None;
    for instance in 1..=3 {
        let outcome = report(
            store,
            svc,
            &s,
            generation,
            counts(max, max, max, max),
            instance,
        )
        .await;
        assert!(outcome.applied, "{svc}: {outcome:?}");
        assert_eq!(
            outcome.snapshot.state,
            State::Disabled,
            "{svc}: {outcome:?}"
        );
        last = Some(outcome);
    }
    let last = last.unwrap();
    let total = 3 * u64::from(max);
    let window = last.window.expect("a rate rule's batch answers the window");
    assert_eq!(
        (window.calls, window.failures, window.slow),
        (total, total, total),
        "{svc}: {last:?}"
    );
    assert_eq!(last.snapshot.fail_counter, u32::MAX, "{svc}: {last:?}");
}

fn seed_of(state: State, generation: u64, fail_counter: u32) -> infuse::store::Seed {
    let mut snapshot = Snapshot::closed(infuse::store::Version::default());
    snapshot.state = state;
    snapshot.generation = generation;
    snapshot.fail_counter = fail_counter;
    infuse::store::Seed::of(&snapshot)
}

/// A seed whose generation is beyond [`MAX_GENERATION`](infuse::store::MAX_GENERATION)
/// (`u64::MAX` included) creates the record at that generation: stored exactly, read
/// back exactly.
pub async fn seeds_above_the_generation_bound_are_taken_at_it<S: Store>(store: &S, prefix: &str) {
    let max = infuse::store::MAX_GENERATION;
    for (n, generation) in [max + 1, u64::MAX, max].into_iter().enumerate() {
        let svc = service(
            prefix,
            &format!("seeds_above_the_generation_bound_are_taken_at_it-{n}"),
        );
        let s = settings(u32::MAX, 1);
        let seed = seed_of(State::Closed, generation, u32::MAX - 2);
        let created = apply(store, svc, &s, Command::Register { seed: Some(seed) }).await;
        assert!(created.applied, "{svc}: {created:?}");
        let snapshot = snap(store, svc, &s).await;
        assert_eq!(
            (snapshot.state, snapshot.generation, snapshot.fail_counter),
            (State::Closed, max, u32::MAX - 2),
            "{svc}: {snapshot:?}"
        );
        // Counting does not bump the generation.
        let counted = fail(store, svc, &s, max).await;
        assert!(counted.applied, "{svc}: {counted:?}");
        assert_eq!(
            (counted.snapshot.generation, counted.snapshot.fail_counter),
            (max, u32::MAX - 1),
            "{svc}: {counted:?}"
        );
    }
}

/// A record at [`MAX_GENERATION`](infuse::store::MAX_GENERATION) cannot make a
/// transition: the command is refused as corrupt (a store behind the unavailable-policy
/// answers for it, as not applied) and changes nothing; a force recreates the record
/// (a new incarnation, the target at generation 2) and it trips as usual afterwards. A
/// record one below the bound still makes its last transition.
pub async fn a_generation_at_its_bound_cannot_be_bumped_and_force_recreates_the_record<S: Store>(
    store: &S,
    prefix: &str,
) {
    let max = infuse::store::MAX_GENERATION;
    let svc = service(prefix, "a_generation_at_its_bound_cannot_be_bumped-last");
    let s = settings(1, 1);
    let seed = seed_of(State::Closed, max - 1, 0);
    apply(store, svc, &s, Command::Register { seed: Some(seed) }).await;
    let tripped = fail(store, svc, &s, max - 1).await;
    assert_eq!(
        (tripped.snapshot.state, tripped.snapshot.generation),
        (State::Open, max),
        "{svc}: {tripped:?}"
    );

    let svc = service(prefix, "a_generation_at_its_bound_cannot_be_bumped");
    let seed = seed_of(State::Closed, max, 0);
    let created = apply(store, svc, &s, Command::Register { seed: Some(seed) }).await;
    let trip = Command::RecordFailure {
        generation: max,
        count: 1,
        instance: 1,
    };
    match store.apply(svc, &s, trip).await {
        Err(infuse::StorageError::Corrupt(detail)) => {
            assert!(detail.contains("maximum"), "{svc}: {detail}")
        }
        Ok(outcome) => assert!(
            !outcome.applied,
            "{svc}: the trip bumped past the bound: {outcome:?}"
        ),
        Err(other) => panic!("{svc}: {other}"),
    }
    let unchanged = snap(store, svc, &s).await;
    assert_eq!(
        (
            unchanged.state,
            unchanged.generation,
            unchanged.fail_counter,
            unchanged.version
        ),
        (State::Closed, max, 0, created.snapshot.version),
        "{svc}: nothing changed"
    );
    let forced = force(store, svc, &s, State::HalfOpen).await;
    assert!(forced.applied, "{svc}: {forced:?}");
    assert_eq!(forced.from, State::Closed, "{svc}: {forced:?}");
    assert_eq!(
        (forced.snapshot.state, forced.snapshot.generation),
        (State::HalfOpen, 2),
        "{svc}: {forced:?}"
    );
    assert_ne!(
        forced.snapshot.version.incarnation, created.snapshot.version.incarnation,
        "{svc}: the record was recreated"
    );
    let closed = force(store, svc, &s, State::Closed).await.snapshot;
    let tripped = fail(store, svc, &s, closed.generation).await;
    assert_eq!(
        (tripped.snapshot.state, tripped.snapshot.generation),
        (State::Open, closed.generation + 1),
        "{svc}: {tripped:?}"
    );
}

/// Times beyond any bound (`Duration::MAX`: an open time, a trial lease, a reset timeout)
/// are taken as the longest a store sets (2^53 - 1 ms, 285,000 years): nothing panics or
/// overflows, and the breaker is open (or the trial held) for that long.
pub async fn times_beyond_any_bound_are_capped<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "times_beyond_any_bound_are_capped");
    let s = settings(1, 1)
        .reset_timeout(Duration::MAX)
        .max_reset_timeout(Duration::MAX);
    let eons = Duration::from_secs(1 << 40); // 35,000 years
    register(store, svc, &s).await;
    let opened = apply(store, svc, &s, Command::Force(Target::Open(Duration::MAX))).await;
    let left = opened.snapshot.open_remaining.expect("open");
    assert!(left > eons, "{svc}: {left:?}");
    force(store, svc, &s, State::HalfOpen).await;
    let token = TrialToken::new();
    let acquired = acquire(store, svc, &s, token, Duration::MAX).await;
    assert!(acquired.applied, "{svc}: {acquired:?}");
    let lease = acquired.snapshot.trial_remaining.expect("held");
    assert!(lease > eons, "{svc}: {lease:?}");
    let reopened = trial(store, svc, &s, token, false).await;
    assert_eq!(reopened.snapshot.state, State::Open, "{svc}: {reopened:?}");
    let left = reopened.snapshot.open_remaining.expect("open");
    assert!(left > eons, "{svc}: {left:?}");
    let closed = force(store, svc, &s, State::Closed).await.snapshot;
    let tripped = fail(store, svc, &s, closed.generation).await;
    assert!(
        tripped.snapshot.open_remaining.expect("open") > eons,
        "{svc}: {tripped:?}"
    );
}

/// The operator's shadow switch (`SetShadow`) is a field of the record: it changes
/// neither the state nor the generation, a repeat writes nothing, and it is kept through
/// trips, trials, closes and forced states until switched again.
pub async fn shadow_switch_is_kept_by_every_transition<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "shadow_switch_is_kept_by_every_transition");
    let s = settings(2, 1);
    let start = register(store, svc, &s).await;
    assert_eq!(start.shadow, None, "{svc}: never switched: {start:?}");
    let on = apply(store, svc, &s, Command::SetShadow { on: true }).await;
    assert!(on.applied, "{svc}: {on:?}");
    assert_eq!(on.snapshot.shadow, Some(true), "{svc}: {on:?}");
    assert_eq!(
        (on.from, on.snapshot.state, on.snapshot.generation),
        (State::Closed, State::Closed, start.generation),
        "{svc}: a switch is no transition"
    );
    assert!(on.snapshot.version.seq > start.version.seq, "{svc}: {on:?}");
    let again = apply(store, svc, &s, Command::SetShadow { on: true }).await;
    assert!(again.applied, "{svc}: {again:?}");
    assert_eq!(
        again.snapshot.version, on.snapshot.version,
        "{svc}: no write"
    );
    let tripped = trip(store, svc, &s).await;
    assert_eq!(tripped.shadow, Some(true), "{svc}: {tripped:?}");
    let half = force(store, svc, &s, State::HalfOpen).await;
    let token = TrialToken::new();
    let trial = acquire(store, svc, &s, token, LONG_LEASE).await;
    assert!(trial.applied, "{svc}: {trial:?}");
    let closed = apply(
        store,
        svc,
        &s,
        Command::RecordTrial {
            token,
            success: true,
        },
    )
    .await;
    assert_eq!(closed.snapshot.state, State::Closed, "{svc}: {closed:?}");
    for outcome in [&half, &trial, &closed] {
        assert_eq!(outcome.snapshot.shadow, Some(true), "{svc}: {outcome:?}");
    }
    let forced = force(store, svc, &s, State::ForcedOpen).await;
    assert_eq!(forced.snapshot.shadow, Some(true), "{svc}: {forced:?}");
    let off = apply(store, svc, &s, Command::SetShadow { on: false }).await;
    assert_eq!(off.snapshot.shadow, Some(false), "{svc}: {off:?}");
    assert_eq!(
        (off.snapshot.state, off.snapshot.generation),
        (State::ForcedOpen, forced.snapshot.generation),
        "{svc}: {off:?}"
    );
    assert_eq!(snap(store, svc, &s).await.shadow, Some(false), "{svc}");
    force(store, svc, &s, State::Closed).await;
}

/// A switch of a breaker without a record creates it, closed, with the switch.
pub async fn shadow_switch_creates_an_absent_record<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "shadow_switch_creates_an_absent_record");
    let s = settings(2, 1);
    let created = apply(store, svc, &s, Command::SetShadow { on: true }).await;
    assert!(created.applied, "{svc}: {created:?}");
    let snapshot = created.snapshot;
    assert!(snapshot.exists(), "{svc}: {snapshot:?}");
    assert_eq!(
        (snapshot.state, snapshot.generation, snapshot.version.seq),
        (State::Closed, 1, 1),
        "{svc}: {snapshot:?}"
    );
    assert_eq!(snapshot.shadow, Some(true), "{svc}: {snapshot:?}");
    let registered = apply(store, svc, &s, Command::Register { seed: None }).await;
    assert!(!registered.applied, "{svc}: {registered:?}");
    assert_eq!(registered.snapshot.shadow, Some(true), "{svc}: kept");
}

/// A record recreated from a process's view keeps the switch that process knew of; one
/// created without a seed has none.
pub async fn a_seed_keeps_its_shadow_switch<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "a_seed_keeps_its_shadow_switch");
    let s = settings(2, 1);
    let mut snapshot = Snapshot::closed(Version::default());
    snapshot.generation = 4;
    snapshot.shadow = Some(false);
    let seed = Seed::of(&snapshot);
    assert_eq!(seed.shadow, Some(false));
    let created = apply(store, svc, &s, Command::Register { seed: Some(seed) }).await;
    assert!(created.applied, "{svc}: {created:?}");
    assert_eq!(
        (created.snapshot.generation, created.snapshot.shadow),
        (4, Some(false)),
        "{svc}: {created:?}"
    );
    let plain = service(prefix, "a_seed_keeps_its_shadow_switch-none");
    let blank = register(store, plain, &s).await;
    assert_eq!(blank.shadow, None, "{plain}: {blank:?}");
}

/// A closed seed in a recovery carries the time since the close ([`Seed::since_close`]):
/// the recreated record answers with it, so slow start goes on where it was; a seed
/// without it (or of another state) recreates a record that times no recovery.
pub async fn a_seed_keeps_the_time_since_its_recovery<S: Store>(store: &S, prefix: &str) {
    let svc = service(prefix, "a_seed_keeps_the_time_since_its_recovery");
    let s = settings(2, 1);
    let mut snapshot = Snapshot::closed(Version::default());
    snapshot.generation = 6;
    snapshot.since_close = Some(Duration::from_secs(4));
    let seed = Seed::of(&snapshot);
    assert_eq!(seed.since_close, Some(Duration::from_secs(4)));
    let created = apply(store, svc, &s, Command::Register { seed: Some(seed) }).await;
    assert!(created.applied, "{svc}: {created:?}");
    let since = created.snapshot.since_close.expect("a recovery's close");
    assert!(
        since >= Duration::from_secs(4) && since < Duration::from_secs(4) + MARGIN,
        "{svc}: {created:?}"
    );
    let later = snap(store, svc, &s).await;
    assert!(
        later.since_close.expect("still") >= since,
        "{svc}: {later:?}"
    );

    let plain = service(prefix, "a_seed_keeps_the_time_since_its_recovery-none");
    let seed = seed_of(State::Closed, 6, 0);
    assert_eq!(seed.since_close, None);
    let created = apply(store, plain, &s, Command::Register { seed: Some(seed) }).await;
    assert_eq!(created.snapshot.since_close, None, "{plain}: {created:?}");

    // Open: no close to time (the seed of an open snapshot has none).
    let mut open = Snapshot::closed(Version::default());
    open.state = State::Open;
    open.since_close = Some(Duration::from_secs(4));
    assert_eq!(Seed::of(&open).since_close, None);
}
