//! Observers of a breaker's calls and state changes (pybreaker's `CircuitBreakerListener`).

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::core::State;

/// Receives a breaker's events. Every method has an empty default, so implement only
/// what you need.
///
/// Order, as in pybreaker: `before_call`, then either `on_failure` followed by the trip's
/// `on_state_change`, or the `on_state_change` to closed followed by `on_success`.
/// Rejected calls get only `on_rejected`. Listeners run on the calling task, outside any
/// lock; a panicking listener is caught and logged, never poisoning the breaker.
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
    /// The breaker changed state (also fired for manual transitions to the same state,
    /// and when this process learns of a change made elsewhere in the fleet).
    fn on_state_change(&self, service: &str, from: State, to: State) {
        let _ = (service, from, to);
    }
}

/// A breaker's listeners: an atomic flag keeps the common "no listeners" case to one load.
#[derive(Default)]
pub(crate) struct Listeners {
    any: AtomicBool,
    list: RwLock<Arc<[Arc<dyn Listener>]>>,
}

impl Listeners {
    pub(crate) fn add(&self, listener: Arc<dyn Listener>) {
        let mut list = self.list.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<_> = list.iter().cloned().collect();
        next.push(listener);
        *list = next.into();
        self.any.store(true, Ordering::Release);
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

    #[cold]
    #[inline(never)]
    fn emit_to_all(&self, service: &'static str, f: &dyn Fn(&dyn Listener, &str)) {
        let list = self.list.read().unwrap_or_else(|e| e.into_inner()).clone();
        for listener in list.iter() {
            if catch_unwind(AssertUnwindSafe(|| f(listener.as_ref(), service))).is_err() {
                tracing::error!(service, "an infuse listener panicked; the panic was caught");
            }
        }
    }
}
