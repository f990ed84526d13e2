//! Permission to run one call, and recording its outcome.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::breaker::counting::Counted;
use crate::breaker::handle::{Breaker, Verdict};
use crate::core::{
    process_instance, Command, Outcome, State, StorageError, TransitionReason, TrialToken,
};
use crate::local::{CallOutcome, Joined, COUNT};

/// Permission to run one call, from [`Breaker::acquire`] (borrowing the breaker) or
/// [`Breaker::acquire_owned`] (owning a handle, to move into a task). Report the outcome
/// with [`success`](Permit::success) or [`failure`](Permit::failure); dropping it
/// unreported (cancellation, panic) counts as neither and frees the trial slot if it held
/// it.
#[must_use = "report the call's outcome with `success()` or `failure()`"]
pub struct Permit<B: Borrow<Breaker>> {
    breaker: B,
    kind: PermitKind,
}

/// What a permit allows: a call at a generation, or the trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermitKind {
    Normal { generation: u64 },
    Trial { token: TrialToken },
    Settled,
}

impl<B: Borrow<Breaker>> Permit<B> {
    pub(crate) fn new(breaker: B, kind: PermitKind) -> Permit<B> {
        Permit { breaker, kind }
    }

    /// Whether this permit is the half-open trial call.
    pub fn is_trial(&self) -> bool {
        matches!(self.kind, PermitKind::Trial { .. })
    }

    /// The token of the trial this permit holds, if it is the trial (the fleet
    /// simulation counts trials by it).
    #[cfg(test)]
    pub(crate) fn trial_token(&self) -> Option<TrialToken> {
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
        match permit.kind {
            PermitKind::Normal { generation } => {
                let breaker = permit.breaker.borrow();
                let view = &breaker.cell.view;
                if breaker.cell.measure() & COUNT != 0 {
                    // Rate rules: reported with the next batch.
                    breaker.count_success(false);
                }
                // The healthy path: nothing to reset, no store round trip.
                else if view.needs_reset(generation)
                    && !view.resetting.swap(true, Ordering::AcqRel)
                {
                    breaker.reset_fail_counter(generation).await;
                }
            }
            PermitKind::Trial { token } => {
                let outcome = permit.breaker.borrow().settle_trial(token, true).await;
                permit.kind = PermitKind::Settled;
                permit
                    .breaker
                    .borrow()
                    .record_outcome(outcome, Some(TransitionReason::TrialSucceeded));
            }
            PermitKind::Settled => {}
        }
        permit.breaker.borrow().emit_success_after(duration);
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
        self.breaker.borrow().emit_failure(error, ended, duration);
        async move {
            let mut permit = self;
            match permit.kind {
                PermitKind::Normal { generation } => {
                    let breaker = permit.breaker.borrow();
                    if breaker.cell.view.generation() != generation {
                        return Verdict::Ignored; // the breaker moved on: stale
                    }
                    if breaker.cell.measure() & COUNT != 0 {
                        // Rate rules: reported in batches (see `count_failure`).
                        return match breaker.count_failure(generation, false) {
                            Counted::Done(verdict) => verdict,
                            Counted::Reporting(reporting) => reporting.await,
                        };
                    }
                    if breaker.is_remote() {
                        return breaker.report_failure(generation).await;
                    }
                    let command = Command::RecordFailure {
                        generation,
                        count: 1,
                        instance: process_instance(),
                    };
                    let outcome = breaker.apply(command).await;
                    let tripped = Some(TransitionReason::ConsecutiveFailures);
                    let outcome = breaker.record_outcome(outcome, tripped);
                    verdict_in_batch(1, 1, outcome.as_ref(), breaker.fail_max())
                }
                PermitKind::Trial { token } => {
                    let outcome = permit.breaker.borrow().settle_trial(token, false).await;
                    permit.kind = PermitKind::Settled;
                    let failed = Some(TransitionReason::TrialFailed);
                    match permit.breaker.borrow().record_outcome(outcome, failed) {
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
            self.breaker.borrow().release_abandoned_trial(token);
        }
    }
}

impl<B: Borrow<Breaker>> Debug for Permit<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit")
            .field("service", &self.breaker.borrow().service())
            .field("trial", &self.is_trial())
            .finish()
    }
}

/// The verdict of the `index`-th (from 1) of `count` failures reported together, as if
/// each had been reported alone in turn: the one that reached `fail_max` tripped the
/// breaker, those before it were counted, those after it would have been stale.
fn verdict_in_batch(index: u32, count: u32, outcome: Option<&Outcome>, fail_max: u32) -> Verdict {
    match outcome {
        Some(o) if o.changed_state() && o.snapshot.state == State::Open => {
            let before = o.snapshot.fail_counter.saturating_sub(count);
            let trips_at = fail_max.saturating_sub(before).max(1);
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

/// Reports the batch of failures waiting when its breaker's report in flight ends.
struct Drain(Breaker);

impl Drop for Drain {
    fn drop(&mut self) {
        self.0.report_next_batch();
    }
}

/// Recording outcomes in the store.
impl Breaker {
    fn fail_max(&self) -> u32 {
        crate::core::TripPolicy::of(&self.settings()).fail_max
    }

    /// Reports a failure to a remote store, at most one report per breaker in flight:
    /// a failure while one is in flight joins the next report (a count) and shares its
    /// answer, waiting at most the call deadline (then it is reported, its verdict
    /// unknown: `Counted`). A storm of failures on one breaker thus sends a handful of
    /// scripts, never a queue of them.
    async fn report_failure(&self, generation: u64) -> Verdict {
        match self.cell.failures.join(generation) {
            Joined::Stale => Verdict::Ignored,
            Joined::Lead => {
                let drain = Drain(self.clone());
                let command = Command::RecordFailure {
                    generation,
                    count: 1,
                    instance: process_instance(),
                };
                let outcome = self.apply(command).await;
                let tripped = Some(TransitionReason::ConsecutiveFailures);
                let outcome = self.record_outcome(outcome, tripped);
                drop(drain);
                verdict_in_batch(1, 1, outcome.as_ref(), self.fail_max())
            }
            Joined::Wait { index, mut answer } => {
                let deadline = self.binding().backend.call_deadline();
                let answered =
                    tokio::time::timeout(deadline, answer.wait_for(Option::is_some)).await;
                match answered {
                    Ok(Ok(answer)) => {
                        let Some((count, outcome)) = *answer else {
                            return Verdict::Counted;
                        };
                        verdict_in_batch(index, count, outcome.as_ref(), self.fail_max())
                    }
                    Ok(Err(_)) => Verdict::Ignored, // the batch was dropped unsent
                    Err(_) => Verdict::Counted,
                }
            }
        }
    }

    /// Sends the next batch of failures, if one is waiting (in the background: whoever
    /// ends a report does not wait for the next).
    fn report_next_batch(&self) {
        let Some(batch) = self.cell.failures.next() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            batch.answer(None);
            while let Some(batch) = self.cell.failures.next() {
                batch.answer(None);
            }
            return;
        };
        let breaker = self.clone();
        runtime.spawn(async move {
            let drain = Drain(breaker.clone());
            let command = Command::RecordFailure {
                generation: batch.generation,
                count: batch.count,
                instance: process_instance(),
            };
            let outcome = breaker.apply(command).await;
            let tripped = Some(TransitionReason::ConsecutiveFailures);
            batch.answer(breaker.record_outcome(outcome, tripped));
            drop(drain);
        });
    }

    /// Tells listeners an unmeasured call succeeded. The closure captures nothing, so
    /// that without listeners the fast path pays one load.
    #[inline(always)]
    pub(crate) fn emit_success(&self) {
        let service = self.cell.service;
        self.cell.listeners.emit(service, |l, service| {
            l.on_success(service);
            l.on_call_end(service, CallOutcome::Success, None);
        });
    }

    /// Tells listeners a call succeeded, and how long it took if measured.
    pub(crate) fn emit_success_after(&self, duration: Option<Duration>) {
        let service = self.cell.service;
        self.cell.listeners.emit(service, |l, service| {
            l.on_success(service);
            l.on_call_end(service, CallOutcome::Success, duration);
        });
    }

    /// Tells listeners a call failed with an error that counts (`outcome`: a failure, or
    /// a timeout).
    #[cold]
    pub(crate) fn emit_failure(
        &self,
        error: &dyn Debug,
        outcome: CallOutcome,
        duration: Option<Duration>,
    ) {
        let service = self.cell.service;
        self.cell.listeners.emit(service, |l, service| {
            l.on_failure(service, error);
            l.on_call_end(service, outcome, duration);
        });
    }

    /// Tells listeners a call ended with an ignored error.
    #[cold]
    pub(crate) fn emit_ignored(&self, duration: Option<Duration>) {
        let service = self.cell.service;
        self.cell.listeners.emit(service, |l, service| {
            l.on_call_end(service, CallOutcome::Ignored, duration);
        });
    }

    /// Resets the (fleet's) fail counter once after failures. With a remote store it is
    /// sent in the background: a successful call in the closed state never waits.
    pub(crate) async fn reset_fail_counter(&self, generation: u64) {
        let breaker = self.clone();
        let reset = async move {
            let outcome = breaker.apply(Command::RecordSuccess { generation }).await;
            // Apply the reply (clearing the dirty bit) before allowing another reset, or
            // a concurrent success would send a second one.
            breaker.record_outcome(outcome, None);
            breaker.cell.view.resetting.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.is_remote() => {
                runtime.spawn(reset);
            }
            _ => reset.await,
        }
    }

    /// Records a trial's result; releases the slot if the result was not recorded.
    pub(crate) async fn settle_trial(
        &self,
        token: TrialToken,
        success: bool,
    ) -> Result<Outcome, StorageError> {
        let outcome = self.apply(Command::RecordTrial { token, success }).await;
        if !matches!(&outcome, Ok(o) if o.applied) {
            // Not recorded (store error, lease lost): give the slot back now rather than
            // leaving the fleet to wait for the lease; the token makes this safe.
            self.apply_detached(Command::ReleaseTrial { token });
        }
        self.cell.view.probing.store(false, Ordering::Release);
        outcome
    }

    /// Takes in the store's answer to this process's command; `reason` is why a change
    /// it shows happened, if the command made it.
    pub(crate) fn record_outcome(
        &self,
        outcome: Result<Outcome, StorageError>,
        reason: Option<TransitionReason>,
    ) -> Option<Outcome> {
        match outcome {
            Ok(outcome) => {
                self.cell.observe_because(&outcome.snapshot, reason);
                Some(outcome)
            }
            Err(error) => {
                tracing::debug!(service = self.cell.service, %error, "recording an outcome failed");
                None
            }
        }
    }

    /// A trial was cancelled or panicked: free the slot so the breaker cannot wedge.
    #[cold]
    #[inline(never)]
    pub(crate) fn release_abandoned_trial(&self, token: TrialToken) {
        self.apply_detached(Command::ReleaseTrial { token });
        self.cell.view.probing.store(false, Ordering::Release);
    }
}
