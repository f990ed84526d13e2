//! Call, state and transition metrics through the [`metrics`] facade (feature `metrics`).
//!
//! The application installs the exporter (Prometheus, StatsD, …) *before*
//! [`infuse::init`](crate::init), then asks for metrics with [`Config::metrics`]: every
//! breaker gets a [`BreakerMetrics`] listener holding its own metric handles, registered
//! once when the breaker is created, so that a call costs a few atomic increments and
//! no allocation, no lookup by name.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `infuse_calls_total` | counter | `service`, `outcome` | calls by outcome: `success`, `failure`, `timeout`, `ignored` (calls that ran), `rejected` (not run), `shadow_rejected` (in shadow mode: would have been rejected, ran; also counted by how they ended), `retry_budget_exhausted` (a failure not retried: the budget was spent) |
//! | `infuse_retries_total` | counter | `service` | retries of failed calls ([`Breaker::call_retrying`](crate::Breaker::call_retrying)); each is also a call above, and took one token of the retry budget: this is the tokens spent ([`Breaker::retries`](crate::Breaker::retries)) |
//! | `infuse_call_duration_seconds` | histogram | `service` | how long the calls that ran took |
//! | `infuse_state` | gauge | `service`, `state` | 1 for the breaker's state in this process, 0 for the others (`closed`, `open`, `half-open`, `forced-open`, `disabled`) |
//! | `infuse_transitions_total` | counter | `service`, `from`, `to` | state changes this process saw (its own and the fleet's) |
//! | `infuse_slow_start_percent` | gauge | `service` | the share of calls admitted, in percent: below 100 while closed in slow start (`slow_start`), updated at each rejection and, while below 100, at the end of each call; 100 otherwise |
//! | `infuse_permits` | gauge | `service`, `kind` | with `max_concurrent`, this process's permits of the concurrency cap ([`Breaker::concurrency`](crate::Breaker::concurrency)): `in_use` by its calls, `held` (the cap in memory; with Redis, its lease of the fleet's cap), and the `cap`; updated at the end of each call and at each rejection (a process without calls shows the last) |
//!
//! Every process exports its own view; the exporter's scrape adds the process (an
//! `instance` label in Prometheus), so a fleet's board can show which processes see a
//! breaker open.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), infuse::InitError> {
//! // metrics_exporter_prometheus::PrometheusBuilder::new().install()?; // first
//! infuse::init(infuse::Config::in_memory().metrics()).await?;
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Counter, Gauge, Histogram, Unit};

use crate::breaker::Breaker;
use crate::core::{BreakerError, State};
use crate::local::{CallOutcome, Listener, Transition};
use crate::registry::Config;

/// Calls by `service` and `outcome`.
pub const CALLS_TOTAL: &str = "infuse_calls_total";
/// The `outcome` of [`CALLS_TOTAL`] counting, in shadow mode, the calls the breaker would
/// have rejected (and let run).
pub const SHADOW_REJECTED: &str = "shadow_rejected";
/// The duration of the calls that ran, by `service`, in seconds.
pub const CALL_DURATION_SECONDS: &str = "infuse_call_duration_seconds";
/// The breaker's state in this process: 1 for `state`, 0 for the others.
pub const STATE: &str = "infuse_state";
/// State changes by `service`, `from` and `to`.
pub const TRANSITIONS_TOTAL: &str = "infuse_transitions_total";
/// Retries of failed calls, by `service`.
pub const RETRIES_TOTAL: &str = "infuse_retries_total";
/// The share of calls admitted by `service`'s breaker, in percent (below 100 in slow
/// start).
pub const SLOW_START_PERCENT: &str = "infuse_slow_start_percent";
/// With `max_concurrent`: this process's permits of `service`'s concurrency cap, by
/// `kind` ([`PERMIT_KINDS`]).
pub const PERMITS: &str = "infuse_permits";
/// The `kind`s of [`PERMITS`]: in use by this process's calls, held by it, the cap.
pub const PERMIT_KINDS: [&str; 3] = ["in_use", "held", "cap"];

impl Config {
    /// Exports every breaker's calls, state and transitions through the `metrics` facade
    /// (see [`infuse::metrics`](crate::metrics) for the names). Install the exporter
    /// first: the handles are registered with the recorder installed when each breaker
    /// is created.
    pub fn metrics(self) -> Self {
        self.listener_per_breaker(|breaker| Arc::new(BreakerMetrics::new(breaker)))
    }
}

/// One breaker's metric handles, as a [`Listener`]. [`Config::metrics`] gives one to
/// every breaker; add one by hand with
/// `breaker.add_listener(Arc::new(BreakerMetrics::new(&breaker)))`.
pub struct BreakerMetrics {
    success: Counter,
    failure: Counter,
    timeout: Counter,
    ignored: Counter,
    rejected: Counter,
    retry_budget_exhausted: Counter,
    retries: Counter,
    shadow_rejected: Counter,
    duration: Histogram,
    /// One gauge per state, in [`State::ALL`] order.
    states: [Gauge; 5],
    /// `from` × `to` counters, registered on first use (most pairs never happen).
    transitions: [OnceLock<Counter>; 25],
    /// The share slow start admits, read from the breaker's view (weakly: the breaker
    /// holds this listener).
    slow_start: Gauge,
    /// The share the gauge shows: while it is 100, only a rejection (slow start turns
    /// calls away) reads the view again, so a healthy call costs one load.
    shown: AtomicU32,
    /// With `max_concurrent`: one gauge per [`PERMIT_KINDS`], set from the breaker's
    /// permits when a call ends or is rejected (their only changes a call sees; a lease's
    /// renewal in the background shows with the next call).
    permits: Option<[Gauge; 3]>,
    cell: Weak<crate::local::Cell>,
    service: &'static str,
}

impl BreakerMetrics {
    /// Registers `breaker`'s handles with the installed recorder, and sets its state
    /// gauge from this process's view.
    pub fn new(breaker: &Breaker) -> BreakerMetrics {
        describe();
        let service = breaker.service();
        let calls = |outcome: &'static str| counter!(CALLS_TOTAL, "service" => service, "outcome" => outcome);
        let states =
            State::ALL.map(|state| gauge!(STATE, "service" => service, "state" => state.as_str()));
        let now = breaker.cell.view.state();
        for (state, gauge) in State::ALL.iter().zip(&states) {
            gauge.set(if *state == now { 1.0 } else { 0.0 });
        }
        let metrics = BreakerMetrics {
            success: calls(CallOutcome::Success.as_str()),
            failure: calls(CallOutcome::Failure.as_str()),
            timeout: calls(CallOutcome::Timeout.as_str()),
            ignored: calls(CallOutcome::Ignored.as_str()),
            rejected: calls("rejected"),
            retry_budget_exhausted: calls("retry_budget_exhausted"),
            retries: counter!(RETRIES_TOTAL, "service" => service),
            shadow_rejected: calls(SHADOW_REJECTED),
            duration: histogram!(CALL_DURATION_SECONDS, "service" => service),
            states,
            transitions: std::array::from_fn(|_| OnceLock::new()),
            slow_start: gauge!(SLOW_START_PERCENT, "service" => service),
            shown: AtomicU32::new(0),
            permits: breaker.settings().max_concurrent.map(|_| {
                PERMIT_KINDS.map(|kind| gauge!(PERMITS, "service" => service, "kind" => kind))
            }),
            cell: Arc::downgrade(&breaker.cell()),
            service,
        };
        metrics.update_slow_start();
        metrics.update_permits();
        metrics
    }

    /// Sets the permits gauges from the breaker's permits (with `max_concurrent`).
    fn update_permits(&self) {
        // A breaker without the cap pays one branch: the cell is reached only with it.
        let Some(gauges) = &self.permits else {
            return;
        };
        let Some(cell) = self.cell.upgrade() else {
            return;
        };
        let Some(cap) = cell.settings().max_concurrent else {
            return;
        };
        let (held, in_use, _) = cell.permits.counts();
        // Under `FailOpen` without Redis a process holds "unlimited" (u32::MAX): the cap.
        for (gauge, value) in gauges.iter().zip([in_use, held.min(cap), cap]) {
            gauge.set(f64::from(value));
        }
    }

    /// Sets the slow-start gauge from the view.
    fn update_slow_start(&self) {
        if let Some(cell) = self.cell.upgrade() {
            let share = cell.view.slow_start_share().unwrap_or(100);
            self.shown.store(share, Ordering::Relaxed);
            self.slow_start.set(f64::from(share));
        }
    }
}

impl Listener for BreakerMetrics {
    fn on_rejected(&self, _service: &str) {
        self.rejected.increment(1);
        self.update_slow_start();
        self.update_permits();
    }

    fn on_retry(&self, _service: &str, _attempt: u32) {
        self.retries.increment(1);
    }

    fn on_retry_budget_exhausted(&self, _service: &str) {
        self.retry_budget_exhausted.increment(1);
    }

    fn on_shadow_rejected(&self, _service: &str, _rejection: &BreakerError) {
        self.shadow_rejected.increment(1);
    }

    fn on_call_end(&self, _service: &str, outcome: CallOutcome, duration: Option<Duration>) {
        match outcome {
            CallOutcome::Success => self.success.increment(1),
            CallOutcome::Failure => self.failure.increment(1),
            CallOutcome::Timeout => self.timeout.increment(1),
            CallOutcome::Ignored => self.ignored.increment(1),
        }
        if let Some(duration) = duration {
            self.duration.record(duration.as_secs_f64());
        }
        if self.shown.load(Ordering::Relaxed) < 100 {
            self.update_slow_start();
        }
        self.update_permits();
    }

    fn on_transition(&self, transition: &Transition) {
        let (from, to) = (transition.from, transition.to);
        for (state, gauge) in State::ALL.iter().zip(&self.states) {
            gauge.set(if *state == to { 1.0 } else { 0.0 });
        }
        let pair = usize::from(from.code()) * 5 + usize::from(to.code());
        let service = self.service;
        self.transitions[pair]
            .get_or_init(|| {
                counter!(TRANSITIONS_TOTAL, "service" => service, "from" => from.as_str(), "to" => to.as_str())
            })
            .increment(1);
    }

    fn wants_durations(&self) -> bool {
        true
    }
}

/// Describes the metrics to the installed recorder (units, help texts).
fn describe() {
    describe_counter!(
        CALLS_TOTAL,
        "Calls through an infuse circuit breaker, by outcome."
    );
    describe_histogram!(
        CALL_DURATION_SECONDS,
        Unit::Seconds,
        "How long the calls an infuse circuit breaker let through took."
    );
    describe_gauge!(
        STATE,
        "1 for the infuse circuit breaker's state in this process, 0 for the others."
    );
    describe_gauge!(
        SLOW_START_PERCENT,
        "The share of calls an infuse circuit breaker admits, in percent: below 100 in slow start."
    );
    describe_gauge!(
        PERMITS,
        "Permits of an infuse circuit breaker's concurrency cap in this process: in use, held, the cap."
    );
    describe_counter!(
        RETRIES_TOTAL,
        "Retries of failed calls through an infuse circuit breaker (one retry budget token each)."
    );
    describe_counter!(
        TRANSITIONS_TOTAL,
        "State changes of an infuse circuit breaker seen by this process."
    );
}
