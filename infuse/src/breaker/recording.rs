//! Telling the store how a call ended, under pybreaker's consecutive rule and for trials
//! (the rate rules count calls instead: see `counting`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::breaker::shared::Shared;
use crate::core::{
    process_instance, Command, Outcome, StorageError, TransitionReason, TrialToken, TripPolicy,
    Verdict,
};
use crate::local::Joined;

impl Shared {
    /// Records a success admitted at `generation`: the healthy path sends nothing; after
    /// failures, the first success resets the (fleet's) fail counter, once.
    pub(crate) async fn record_success(self: &Arc<Self>, generation: u64) {
        if self.view.needs_reset(generation) && !self.view.resetting.swap(true, Ordering::AcqRel) {
            self.reset_fail_counter(generation).await;
        }
    }

    /// Records a failure admitted at `generation` (still current): with a remote store
    /// in batches (see [`report_failure`](Self::report_failure)), in memory at once.
    pub(crate) async fn record_failure(self: &Arc<Self>, generation: u64) -> Verdict {
        if self.is_remote() {
            return self.report_failure(generation).await;
        }
        self.send_failures(generation, 1).await
    }

    /// Sends `count` failures admitted at `generation`, and tells the verdict of the first.
    async fn send_failures(self: &Arc<Self>, generation: u64, count: u32) -> Verdict {
        let outcome = self.report_failures(generation, count).await;
        self.policy().verdict_in_batch(1, count, outcome.as_ref())
    }

    /// Sends `count` failures admitted at `generation`, and takes in the answer.
    async fn report_failures(self: &Arc<Self>, generation: u64, count: u32) -> Option<Outcome> {
        let command = Command::RecordFailure {
            generation,
            count,
            instance: process_instance(),
        };
        let outcome = self.apply(command).await;
        self.record_outcome(outcome, Some(TransitionReason::ConsecutiveFailures))
    }

    fn policy(&self) -> TripPolicy {
        TripPolicy::of(&self.settings())
    }

    /// Reports a failure to a remote store, at most one report per breaker in flight:
    /// a failure while one is in flight joins the next report (a count) and shares its
    /// answer, waiting at most the call deadline (then it is reported, its verdict
    /// unknown: `Counted`). A storm of failures on one breaker thus sends a handful of
    /// scripts, never a queue of them.
    async fn report_failure(self: &Arc<Self>, generation: u64) -> Verdict {
        match self.failures.join(generation) {
            Joined::Stale => Verdict::Ignored,
            Joined::Lead => {
                let drain = Drain(self.clone());
                let verdict = self.send_failures(generation, 1).await;
                drop(drain);
                verdict
            }
            Joined::Wait { index, mut answer } => {
                let deadline = self.bound().backend.call_deadline();
                let answered =
                    tokio::time::timeout(deadline, answer.wait_for(Option::is_some)).await;
                match answered {
                    Ok(Ok(answer)) => {
                        let Some((count, outcome)) = *answer else {
                            return Verdict::Counted;
                        };
                        self.policy()
                            .verdict_in_batch(index, count, outcome.as_ref())
                    }
                    Ok(Err(_)) => Verdict::Ignored, // the batch was dropped unsent
                    Err(_) => Verdict::Counted,
                }
            }
        }
    }

    /// Sends the next batch of failures, if one is waiting (in the background: whoever
    /// ends a report does not wait for the next).
    fn report_next_batch(self: &Arc<Self>) {
        let Some(batch) = self.failures.next() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            batch.answer(None);
            while let Some(batch) = self.failures.next() {
                batch.answer(None);
            }
            return;
        };
        let cell = self.clone();
        runtime.spawn(async move {
            let drain = Drain(cell.clone());
            batch.answer(cell.report_failures(batch.generation, batch.count).await);
            drop(drain);
        });
    }

    /// Resets the (fleet's) fail counter once after failures. With a remote store it is
    /// sent in the background: a successful call in the closed state never waits.
    async fn reset_fail_counter(self: &Arc<Self>, generation: u64) {
        let cell = self.clone();
        let reset = async move {
            let outcome = cell.apply(Command::RecordSuccess { generation }).await;
            // Apply the reply (clearing the dirty bit) before allowing another reset, or
            // a concurrent success would send a second one.
            cell.record_outcome(outcome, None);
            cell.view.resetting.store(false, Ordering::Release);
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
        self.view.probing.store(false, Ordering::Release);
        outcome
    }

    /// A trial was cancelled or panicked: free the slot so the breaker cannot wedge.
    #[cold]
    #[inline(never)]
    pub(crate) fn release_abandoned_trial(&self, token: TrialToken) {
        self.apply_detached(Command::ReleaseTrial { token });
        self.view.probing.store(false, Ordering::Release);
    }
}

/// Reports the batch of failures waiting when its breaker's report in flight ends.
struct Drain(Arc<Shared>);

impl Drop for Drain {
    fn drop(&mut self) {
        self.0.report_next_batch();
    }
}
