//! What every handle of one breaker shares: the process's cell, with what the breaker is
//! bound to (its store), and the store operations the call path makes through it.
//!
//! The layers of the call path, lowest first: this module; `admission` (asking to run),
//! `recording` and `counting` (telling the store how calls ended); `permit` and
//! `guarded` (one call); `handle` (the [`Breaker`]'s methods).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::backend::Backend;
use crate::core::{Command, Outcome, Settings, StorageError, Target, TransitionReason};
use crate::local::Cell;
use crate::store::redis::keys::Audit;

/// A cheap, clonable handle to one service's breaker.
///
/// Every handle of a service (and every `#[circuit_breaker]` function naming it) shares
/// one state and one counter. Get one with [`infuse::breaker`](crate::breaker).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), infuse::StorageError> {
/// let users = infuse::breaker("doc-users");
/// let reply: Result<&str, infuse::BreakerError> = users.call(async { Ok("hello") }).await;
/// assert_eq!(reply, Ok("hello"));
///
/// users.open().await?; // operators can force states
/// let rejected: Result<&str, infuse::BreakerError> = users.call(async { Ok("never runs") }).await;
/// assert!(matches!(rejected, Err(infuse::BreakerError::Open { .. })));
/// assert_eq!(users.state().await?, infuse::State::Open);
/// users.close().await?;
/// # Ok(()) }
/// ```
// Defined here, below the permit and the guarded call that hold one; its methods are all
// in `handle.rs`, above them.
#[derive(Clone)]
pub struct Breaker {
    /// The whole handle: one `Arc`, so that an owned call costs one reference count.
    pub(crate) cell: Arc<Shared>,
}

/// One breaker's cell, bound: what the call path works on.
pub(crate) type Shared = Cell<ArcSwap<Binding>>;

/// What a breaker is bound to; swapped as a whole when `init` reconfigures. Read on slow
/// paths only.
#[derive(Clone)]
pub(crate) struct Binding {
    pub(crate) backend: Backend,
    pub(crate) trial_lease: Duration,
}

impl Binding {
    /// How long a trial holds the fleet's slot: derived from the trial's limit when it
    /// has one (so that the slot outlives the call, with a margin for recording the
    /// result), else the registry's `trial_lease`.
    pub(crate) fn lease_for(&self, settings: &Settings) -> Duration {
        match settings.trial_limit() {
            Some(limit) => {
                limit + (limit / 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
            }
            None => self.trial_lease,
        }
    }
}

impl Shared {
    /// The store and lease this breaker is bound to (a load of the `ArcSwap`).
    pub(crate) fn bound(&self) -> arc_swap::Guard<Arc<Binding>> {
        self.binding.load()
    }

    /// Applies `command` to this breaker in its store.
    pub(crate) async fn apply(&self, command: Command) -> Result<Outcome, StorageError> {
        let backend = self.bound().backend.clone();
        backend.apply(self.service, &self.settings(), command).await
    }

    /// Forces this breaker's record to `target`, noting `audit` in its history.
    pub(crate) async fn force(
        &self,
        target: Target,
        audit: &Audit,
    ) -> Result<Outcome, StorageError> {
        let backend = self.bound().backend.clone();
        backend
            .force(self.service, &self.settings(), target, audit)
            .await
    }

    /// Sends a command without waiting for its answer (from a `Drop`).
    pub(crate) fn apply_detached(&self, command: Command) {
        self.bound()
            .backend
            .apply_detached(self.service, self.settings(), command);
    }

    /// Whether the store is remote (its commands are worth not waiting for).
    pub(crate) fn is_remote(&self) -> bool {
        self.bound().backend.is_remote()
    }

    /// Takes in the store's answer to this process's command; `reason` is why a change
    /// it shows happened, if the command made it.
    pub(crate) fn record_outcome(
        self: &Arc<Self>,
        outcome: Result<Outcome, StorageError>,
        reason: Option<TransitionReason>,
    ) -> Option<Outcome> {
        match outcome {
            Ok(outcome) => {
                self.observe_because(&outcome.snapshot, reason);
                Some(outcome)
            }
            Err(error) => {
                tracing::debug!(service = self.service, %error, "recording an outcome failed");
                None
            }
        }
    }
}
