//! Permission to run one call, and recording its outcome.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use crate::breaker::admission::PermitKind;
use crate::breaker::counting::Counted;
use crate::breaker::shared::Breaker;
use crate::core::{TransitionReason, Verdict};
use crate::local::{CallOutcome, COUNT};

/// Permission to run one call, from [`Breaker::acquire`] (borrowing the breaker) or
/// [`Breaker::acquire_owned`] (owning a handle, to move into a task). Report the outcome
/// with [`success`](Permit::success) or [`failure`](Permit::failure); dropping it
/// unreported (cancellation, panic) counts as neither and frees the trial slot if it held
/// it.
#[must_use = "report the call's outcome with `success()` or `failure()`"]
pub struct Permit<B: Borrow<Breaker>> {
    breaker: B,
    kind: PermitKind,
    /// It holds a permit of the concurrency cap, given back when it is dropped.
    capped: bool,
}

impl<B: Borrow<Breaker>> Permit<B> {
    pub(crate) fn new(breaker: B, kind: PermitKind) -> Permit<B> {
        Permit {
            breaker,
            kind,
            capped: false,
        }
    }

    /// A permit of a call admitted as `kind`, holding a permit of the concurrency cap
    /// when `capped`.
    pub(crate) fn holding(breaker: B, kind: PermitKind, capped: bool) -> Permit<B> {
        Permit {
            breaker,
            kind,
            capped,
        }
    }

    /// Whether this permit is the half-open trial call.
    pub fn is_trial(&self) -> bool {
        matches!(self.kind, PermitKind::Trial { .. })
    }

    /// The token of the trial this permit holds, if it is the trial (the fleet
    /// simulation counts trials by it).
    #[cfg(test)]
    pub(crate) fn trial_token(&self) -> Option<crate::core::TrialToken> {
        match self.kind {
            PermitKind::Trial { token } => Some(token),
            _ => None,
        }
    }

    /// The breaker this permit belongs to.
    pub fn breaker(&self) -> &Breaker {
        self.breaker.borrow()
    }

    /// Records a success (also what an excluded error counts as).
    pub async fn success(self) {
        self.success_ended(None).await
    }

    /// Records a success of a call that ran for `duration` (if measured).
    pub(crate) async fn success_ended(self, duration: Option<Duration>) {
        // The permit stays whole until the verdict is recorded: if this future is dropped
        // on the way, `Drop` still gives the trial slot back.
        let mut permit = self;
        let cell = &permit.breaker.borrow().cell;
        match permit.kind {
            // Rate rules: reported with the next batch.
            PermitKind::Normal { .. } if cell.measure() & COUNT != 0 => {
                cell.count_success(false);
            }
            PermitKind::Normal { generation } => cell.record_success(generation).await,
            PermitKind::Trial { token } => {
                let outcome = cell.settle_trial(token, true).await;
                permit.kind = PermitKind::Settled;
                let cell = &permit.breaker.borrow().cell;
                cell.record_outcome(outcome, Some(TransitionReason::TrialSucceeded));
            }
            PermitKind::Settled => {}
        }
        let cell = &permit.breaker.borrow().cell;
        cell.listeners.succeeded(cell.service, duration);
    }

    /// Records a failure; tells whether it opened the breaker.
    ///
    /// The error is only shown to listeners (before anything is awaited), so the returned
    /// future does not borrow it.
    pub fn failure(self, error: &dyn Debug) -> impl Future<Output = Verdict> + Send + use<B>
    where
        B: Send,
    {
        self.failure_ended(error, CallOutcome::Failure, None)
    }

    /// Records a failure (`ended`: a failure or a timeout) of a call that ran for
    /// `duration` (if measured).
    pub(crate) fn failure_ended(
        self,
        error: &dyn Debug,
        ended: CallOutcome,
        duration: Option<Duration>,
    ) -> impl Future<Output = Verdict> + Send + use<B>
    where
        B: Send,
    {
        let cell = &self.breaker.borrow().cell;
        cell.listeners.failed(cell.service, error, ended, duration);
        async move {
            let mut permit = self;
            let cell = &permit.breaker.borrow().cell;
            match permit.kind {
                PermitKind::Normal { generation } => {
                    if cell.view.generation() != generation {
                        return Verdict::Ignored; // the breaker moved on: stale
                    }
                    if cell.measure() & COUNT != 0 {
                        // Rate rules: reported in batches (see `count_failure`).
                        return match cell.count_failure(generation, false) {
                            Counted::Done(verdict) => verdict,
                            Counted::Reporting(reporting) => reporting.await,
                        };
                    }
                    cell.record_failure(generation).await
                }
                PermitKind::Trial { token } => {
                    let outcome = cell.settle_trial(token, false).await;
                    permit.kind = PermitKind::Settled;
                    let failed = Some(TransitionReason::TrialFailed);
                    match permit.breaker.borrow().cell.record_outcome(outcome, failed) {
                        Some(o) if o.applied => Verdict::TrialFailed,
                        _ => Verdict::Ignored,
                    }
                }
                PermitKind::Settled => Verdict::Ignored,
            }
        }
    }
}

impl<B: Borrow<Breaker>> Drop for Permit<B> {
    #[inline]
    fn drop(&mut self) {
        if let PermitKind::Trial { token } = self.kind {
            self.breaker.borrow().cell.release_abandoned_trial(token);
        }
        if self.capped {
            self.breaker.borrow().cell.give_cap_back();
        }
    }
}

impl<B: Borrow<Breaker>> Debug for Permit<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("service", &self.breaker.borrow().cell.service)
            .field("trial", &self.is_trial())
            .finish()
    }
}
