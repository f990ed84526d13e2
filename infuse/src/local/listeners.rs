//! Observers of a breaker's calls and state changes (pybreaker's `CircuitBreakerListener`).

use std::fmt::{self, Debug};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::core::{BreakerError, State, TransitionReason};

/// Receives a breaker's events. Every method has an empty default, so implement only
/// what you need.
///
/// Order, as in pybreaker: `before_call`, then either `on_failure` followed by the trip's
/// `on_state_change`, or the `on_state_change` to closed followed by `on_success`.
/// Rejected calls get only `on_rejected`. In shadow mode (the `shadow` setting), a call
/// the breaker would have rejected gets `on_shadow_rejected` instead, then runs as any
/// admitted call (`before_call`, …). Every call that ran also ends with one
/// `on_call_end` (after `on_success` / `on_failure`), and every state change comes with an
/// `on_transition` carrying its generation and reason. Listeners run on the calling task,
/// outside any lock; a panicking listener is caught and logged, never poisoning the
/// breaker.
///
/// ```
/// use std::sync::Arc;
/// use infuse::{Listener, State};
///
/// struct LogChanges;
/// impl Listener for LogChanges {
///     fn on_state_change(&self, service: &str, from: State, to: State) {
///         println!("{service}: {from} -> {to}");
///     }
/// }
/// # async fn demo() {
/// infuse::breaker("users").add_listener(Arc::new(LogChanges));
/// # }
/// ```
pub trait Listener: Send + Sync + 'static {
    /// A call was admitted and is about to run.
    fn before_call(&self, service: &str) {
        let _ = service;
    }
    /// The call succeeded (or failed with an excluded error, which counts as a success).
    fn on_success(&self, service: &str) {
        let _ = service;
    }
    /// The call failed with an error that counts.
    fn on_failure(&self, service: &str, error: &dyn Debug) {
        let _ = (service, error);
    }
    /// The call was rejected without running because the breaker is open.
    fn on_rejected(&self, service: &str) {
        let _ = service;
    }
    /// A failed call is tried again ([`Breaker::call_retrying`](crate::Breaker::call_retrying)):
    /// `attempt` is the retry's number (1 for the first retry), after a backoff.
    fn on_retry(&self, service: &str, attempt: u32) {
        let _ = (service, attempt);
    }
    /// A failed call that could have been retried was not: the retry budget was spent.
    fn on_retry_budget_exhausted(&self, service: &str) {
        let _ = service;
    }
    /// Shadow mode: the breaker would have rejected the call with `rejection` (open,
    /// held open, a trial in flight, …), and lets it run instead. Its outcome is then
    /// told as any call's; it counts for nothing in the breaker (see
    /// [`Breaker::would_reject`](crate::Breaker::would_reject)).
    fn on_shadow_rejected(&self, service: &str, rejection: &BreakerError) {
        let _ = (service, rejection);
    }
    /// The breaker changed state (also fired for manual transitions to the same state,
    /// and when this process learns of a change made elsewhere in the fleet).
    fn on_state_change(&self, service: &str, from: State, to: State) {
        let _ = (service, from, to);
    }
    /// The same change as [`on_state_change`](Listener::on_state_change), told right
    /// after it, with the breaker's generation and the reason.
    fn on_transition(&self, transition: &Transition) {
        let _ = transition;
    }
    /// A call that was admitted has ended: how, and how long it ran — measured only
    /// when a listener of the breaker [wants durations](Listener::wants_durations) or a
    /// timing rule (`timeout`, `slow_call`) applies, else `None`. Calls made through a
    /// [`Permit`](crate::Permit) report no duration.
    fn on_call_end(&self, service: &str, outcome: CallOutcome, duration: Option<Duration>) {
        let _ = (service, outcome, duration);
    }
    /// Whether this listener wants the durations of calls: while a breaker has such a
    /// listener, each of its calls reads the clock twice (no allocation). Read once,
    /// when the listener is added.
    fn wants_durations(&self) -> bool {
        false
    }
}

/// How a call that ran ended (see [`Listener::on_call_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallOutcome {
    /// It succeeded, or failed with an excluded error (which counts as a success).
    Success,
    /// It failed with an error that counts.
    Failure,
    /// It reached its `timeout` (or `trial_timeout`) and was dropped; counts as a
    /// failure.
    Timeout,
    /// It failed with an ignored error: counted as nothing.
    Ignored,
}

impl CallOutcome {
    /// The stable name exported as a metric label: `success`, `failure`, `timeout`,
    /// `ignored`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Success => "success",
            CallOutcome::Failure => "failure",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Ignored => "ignored",
        }
    }
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A breaker's change of state, as this process saw it (see
/// [`Listener::on_transition`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The service.
    pub service: &'static str,
    /// The state before.
    pub from: State,
    /// The state after.
    pub to: State,
    /// The breaker's generation after the change: it grows with every transition the
    /// store makes (the same number in every process of the fleet); a half-open state
    /// reached by the clock keeps the open period's.
    pub generation: u64,
    /// Why, as far as this process knows.
    pub reason: TransitionReason,
    /// Made in shadow mode: the breaker changed state, but rejects nothing (an open
    /// state means calls "would have been" rejected).
    pub shadow: bool,
}

/// A breaker's listeners: an atomic flag keeps the common "no listeners" case to one load,
/// and the list is read without a lock (events fire on every call once there is one).
#[derive(Default)]
pub(crate) struct Listeners {
    any: AtomicBool,
    /// Some listener wants call durations.
    timed: AtomicBool,
    list: ArcSwap<Vec<Arc<dyn Listener>>>,
    /// Serialises `add`s (a read-copy-update of `list`).
    adding: Mutex<()>,
}

impl Listeners {
    pub(crate) fn add(&self, listener: Arc<dyn Listener>) {
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<_> = self.list.load().iter().cloned().collect();
        if listener.wants_durations() {
            self.timed.store(true, Ordering::Relaxed);
        }
        next.push(listener);
        self.list.store(Arc::new(next));
        self.any.store(true, Ordering::Release);
    }

    /// Whether a listener was added.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Relaxed)
    }

    /// Whether some listener wants call durations.
    pub(crate) fn timed(&self) -> bool {
        self.timed.load(Ordering::Relaxed)
    }

    /// Calls `f(listener, service)` on every listener, catching panics so one bad
    /// listener cannot break calls. With no listener this is one load: `f` captures
    /// nothing that has to be computed first.
    #[inline(always)]
    pub(crate) fn emit(&self, service: &'static str, f: impl Fn(&dyn Listener, &str)) {
        if self.any.load(Ordering::Acquire) {
            self.emit_to_all(service, &f);
        }
    }

    /// A call was admitted and is about to run.
    #[inline(always)]
    pub(crate) fn before_call(&self, service: &'static str) {
        self.emit(service, |l, service| l.before_call(service));
    }

    /// A call was rejected without running.
    #[inline(always)]
    pub(crate) fn rejected(&self, service: &'static str) {
        self.emit(service, |l, service| l.on_rejected(service));
    }

    /// A failed call is tried again.
    pub(crate) fn retrying(&self, service: &'static str, attempt: u32) {
        self.emit(service, |l, service| l.on_retry(service, attempt));
    }

    /// A failed call was not retried: the budget was spent.
    pub(crate) fn retry_budget_exhausted(&self, service: &'static str) {
        self.emit(service, |l, service| l.on_retry_budget_exhausted(service));
    }

    /// Shadow mode: a call the breaker would have rejected with `rejection` runs.
    #[cold]
    pub(crate) fn shadow_rejected(&self, service: &'static str, rejection: &BreakerError) {
        self.emit(service, |l, service| {
            l.on_shadow_rejected(service, rejection)
        });
    }

    /// A call succeeded (or failed with an excluded error), after `duration` if measured.
    #[inline(always)]
    pub(crate) fn succeeded(&self, service: &'static str, duration: Option<Duration>) {
        self.emit(service, |l, service| {
            l.on_success(service);
            l.on_call_end(service, CallOutcome::Success, duration);
        });
    }

    /// A call failed with an error that counts (`outcome`: a failure, or a timeout).
    #[cold]
    pub(crate) fn failed(
        &self,
        service: &'static str,
        error: &dyn Debug,
        outcome: CallOutcome,
        duration: Option<Duration>,
    ) {
        self.emit(service, |l, service| {
            l.on_failure(service, error);
            l.on_call_end(service, outcome, duration);
        });
    }

    /// A call ended with an ignored error.
    #[cold]
    pub(crate) fn ignored(&self, service: &'static str, duration: Option<Duration>) {
        self.emit(service, |l, service| {
            l.on_call_end(service, CallOutcome::Ignored, duration);
        });
    }

    #[cold]
    #[inline(never)]
    fn emit_to_all(&self, service: &'static str, f: &dyn Fn(&dyn Listener, &str)) {
        let list = self.list.load();
        for listener in list.iter() {
            if catch_unwind(AssertUnwindSafe(|| f(listener.as_ref(), service))).is_err() {
                tracing::error!(service, "an infuse listener panicked; the panic was caught");
            }
        }
    }
}
