//! The rate rules on the call path: counting outcomes into the process's tally, and
//! reporting it to the store in batches (see [`crate::local::Tally`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::backend::Backend;
use crate::breaker::shared::Shared;
use crate::core::{
    now_nanos, process_instance, saturating_nanos, Command, Outcome, TransitionReason, TripPolicy,
    Verdict,
};
use crate::local::{Due, FLUSH_INTERVAL, MIN_FLUSH_GAP};

impl Shared {
    /// Counts a successful (or excluded) call of the current period; `slow`: it took
    /// longer than `slow_call`.
    #[inline(always)]
    pub(crate) fn count_success(self: &Arc<Self>, slow: bool) {
        if slow {
            self.tally.slow();
        }
        if self.tally.success() {
            self.after_count();
        }
        if slow {
            self.after_slow();
        }
    }

    /// In memory, a slow call is reported at once (a lock, no I/O), so that the rule
    /// trips on the call that reaches it.
    #[cold]
    #[inline(never)]
    fn after_slow(self: &Arc<Self>) {
        let _ = self.flush_in_memory();
    }

    #[cold]
    #[inline(never)]
    fn after_count(self: &Arc<Self>) {
        let due = self.tally.after_success();
        self.flush_when(due);
    }

    /// Counts a failed call admitted at `generation` (dropped if the breaker has moved
    /// on). In memory the count is reported at once (a lock, no I/O); with Redis, with the
    /// next batch — unless this process's counts alone could trip, when the failing call
    /// reports them itself (at most every [`MIN_FLUSH_GAP`]) and learns whether it
    /// tripped.
    #[cold]
    pub(crate) fn count_failure(self: &Arc<Self>, generation: u64, slow: bool) -> Counted {
        let view = &self.view;
        if view.generation() != generation {
            return Counted::Done(Verdict::Ignored);
        }
        if slow {
            self.tally.slow();
        }
        let (counts, schedule) = self.tally.failure();
        if let Some(outcome) = self.flush_in_memory() {
            return Counted::Done(Verdict::of_batch(outcome.as_ref()));
        }
        let tally = &self.tally;
        let recent = now_nanos().saturating_sub(tally.last_flush.load(Ordering::Relaxed))
            < saturating_nanos(MIN_FLUSH_GAP);
        let could_trip = TripPolicy::of(&self.settings()).could_trip(
            view.state(),
            view.fail_counter(),
            tally.known(),
            &counts,
        );
        if could_trip && !recent {
            let cell = self.clone();
            return Counted::Reporting(Box::pin(async move {
                Verdict::of_batch(cell.flush().await.as_ref())
            }));
        }
        let due = if could_trip {
            Due::Now // within MIN_FLUSH_GAP of the last report: the flush task waits
        } else if schedule {
            Due::Schedule
        } else {
            Due::Nothing
        };
        self.flush_when(due);
        Counted::Done(Verdict::Counted)
    }

    fn flush_when(self: &Arc<Self>, due: Due) {
        let tally = &self.tally;
        match due {
            Due::Nothing => {}
            Due::Schedule => self.schedule_flush(),
            Due::Now => {
                self.schedule_flush();
                tally.flush_now.notify_one();
            }
        }
    }

    /// Starts the task that reports the tally after [`FLUSH_INTERVAL`] (or when woken),
    /// unless one is waiting already.
    fn schedule_flush(self: &Arc<Self>) {
        let tally = &self.tally;
        if tally.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to wait on. In memory, every failure and slow call reports the
            // counts at once, successes with them; until then `scheduled` stays set, so
            // that successes do not come back here (see `flush_in_memory`).
            tally.orphaned.store(true, Ordering::Release);
            return;
        };
        let cell = self.clone();
        runtime.spawn(async move {
            let tally = &cell.tally;
            tokio::select! {
                () = tokio::time::sleep(FLUSH_INTERVAL) => {}
                () = tally.flush_now.notified() => {
                    // Woken early: still no sooner than MIN_FLUSH_GAP after the last.
                    let since = now_nanos().saturating_sub(tally.last_flush.load(Ordering::Relaxed));
                    let gap = saturating_nanos(MIN_FLUSH_GAP).saturating_sub(since);
                    tokio::time::sleep(std::time::Duration::from_nanos(gap)).await;
                }
            }
            tally.scheduled.store(false, Ordering::Release);
            let _ = cell.flush().await;
        });
    }

    /// Reports the counts now when the store is this process's memory (`None`: it is
    /// not, nothing was done; `Some(None)`: nothing to report).
    fn flush_in_memory(self: &Arc<Self>) -> Option<Option<Outcome>> {
        let Backend::Memory(store) = self.bound().backend.clone() else {
            return None;
        };
        let tally = &self.tally;
        if tally.orphaned.swap(false, Ordering::AcqRel) {
            tally.scheduled.store(false, Ordering::Release);
        }
        let outcome = self.batch().map(|command| {
            let outcome = store.apply_now(self.service, &self.settings().alone(), command);
            self.observe_because(&outcome.snapshot, Some(TransitionReason::Tripped));
            outcome
        });
        Some(outcome)
    }

    /// Reports the counts since the last flush as one batch, and answers with the
    /// store's outcome (`None`: nothing to report, or the store failed).
    pub(crate) async fn flush(self: &Arc<Self>) -> Option<Outcome> {
        let command = self.batch()?;
        let outcome = self.apply(command).await;
        let outcome = self.record_outcome(outcome, Some(TransitionReason::Tripped))?;
        self.tally.set_known(outcome.window);
        Some(outcome)
    }

    /// The command reporting the counts since the last flush, if there are any to report.
    fn batch(&self) -> Option<Command> {
        let counts = self.tally.take();
        let view = &self.view;
        (!counts.is_empty() && view.state().lets_calls_through()).then(|| Command::RecordCalls {
            generation: view.generation(),
            counts,
            instance: process_instance(),
        })
    }
}

/// What counting a failure did.
pub(crate) enum Counted {
    /// Counted (and, in memory, reported).
    Done(Verdict),
    /// Being reported by the failing call itself, which waits for the verdict.
    Reporting(Pin<Box<dyn Future<Output = Verdict> + Send>>),
}
