//! The rate rules on the call path: counting outcomes into the process's tally, and
//! reporting it to the store in batches (see [`crate::local::Tally`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;

use crate::backend::Backend;
use crate::breaker::handle::{Breaker, Verdict};
use crate::core::{
    now_nanos, process_instance, saturating_nanos, Command, Counts, Outcome, State, Totals,
    TransitionReason, TripPolicy,
};
use crate::local::{Due, FLUSH_INTERVAL, MIN_FLUSH_GAP};

impl Breaker {
    /// Counts a successful (or excluded) call of the current period; `slow`: it took
    /// longer than `slow_call`.
    #[inline(always)]
    pub(crate) fn count_success(&self, slow: bool) {
        if slow {
            self.cell.tally.slow();
        }
        if self.cell.tally.success() {
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
    fn after_slow(&self) {
        let _ = self.flush_in_memory();
    }

    #[cold]
    #[inline(never)]
    fn after_count(&self) {
        let due = self.cell.tally.after_success();
        self.flush_when(due);
    }

    /// Counts a failed call admitted at `generation` (dropped if the breaker has moved
    /// on). In memory the count is reported at once (a lock, no I/O); with Redis, with the
    /// next batch — unless this process's counts alone could trip, when the failing call
    /// reports them itself (at most every [`MIN_FLUSH_GAP`]) and learns whether it
    /// tripped.
    #[cold]
    pub(crate) fn count_failure(&self, generation: u64, slow: bool) -> Counted {
        let view = &self.cell.view;
        if view.generation() != generation {
            return Counted::Done(Verdict::Ignored);
        }
        if slow {
            self.cell.tally.slow();
        }
        let (counts, schedule) = self.cell.tally.failure();
        if let Some(outcome) = self.flush_in_memory() {
            return Counted::Done(verdict_of(outcome.as_ref()));
        }
        let tally = &self.cell.tally;
        let recent = now_nanos().saturating_sub(tally.last_flush.load(Ordering::Relaxed))
            < saturating_nanos(MIN_FLUSH_GAP);
        let could_trip = self.could_trip(&counts);
        if could_trip && !recent {
            let breaker = self.clone();
            return Counted::Reporting(Box::pin(async move {
                verdict_of(breaker.flush().await.as_ref())
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

    /// Whether the counts not yet reported could trip: the consecutive rule with the
    /// fleet's count, or a rate over the store's window as of this process's last report
    /// plus this batch (the window may have moved since: this only decides when to report).
    fn could_trip(&self, counts: &Counts) -> bool {
        if self.cell.view.state() != State::Closed {
            return false; // disabled: nothing trips
        }
        let policy = TripPolicy::of(&self.settings());
        let fail = if counts.has_success() {
            counts.tail
        } else {
            self.cell.view.fail_counter().saturating_add(counts.tail)
        };
        let known = self.cell.tally.known();
        let totals = Totals {
            calls: known.calls + u64::from(counts.calls),
            failures: known.failures + u64::from(counts.failures),
            slow: known.slow + u64::from(counts.slow),
        };
        policy.trips(fail) || policy.trips_on(&totals, policy.min_instances).is_some()
    }

    fn flush_when(&self, due: Due) {
        let tally = &self.cell.tally;
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
    fn schedule_flush(&self) {
        let tally = &self.cell.tally;
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
        let breaker = self.clone();
        runtime.spawn(async move {
            let tally = &breaker.cell.tally;
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
            let _ = breaker.flush().await;
        });
    }

    /// Reports the counts now when the store is this process's memory (`None`: it is
    /// not, nothing was done; `Some(None)`: nothing to report).
    fn flush_in_memory(&self) -> Option<Option<Outcome>> {
        let Backend::Memory(store) = self.binding().backend else {
            return None;
        };
        let tally = &self.cell.tally;
        if tally.orphaned.swap(false, Ordering::AcqRel) {
            tally.scheduled.store(false, Ordering::Release);
        }
        let outcome = self.batch().map(|command| {
            let outcome = store.apply_now(self.service(), &self.settings().alone(), command);
            self.cell
                .observe_because(&outcome.snapshot, Some(TransitionReason::Tripped));
            outcome
        });
        Some(outcome)
    }

    /// Reports the counts since the last flush as one batch, and answers with the
    /// store's outcome (`None`: nothing to report, or the store failed).
    pub(crate) async fn flush(&self) -> Option<Outcome> {
        let command = self.batch()?;
        let outcome = self.apply(command).await;
        let outcome = self.record_outcome(outcome, Some(TransitionReason::Tripped))?;
        self.cell.tally.set_known(outcome.window);
        Some(outcome)
    }

    /// The command reporting the counts since the last flush, if there are any to report.
    fn batch(&self) -> Option<Command> {
        let counts = self.cell.tally.take();
        let view = &self.cell.view;
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

/// The verdict of a report on the failure that made it.
fn verdict_of(outcome: Option<&Outcome>) -> Verdict {
    match outcome {
        Some(o) if o.changed_state() && o.snapshot.state == State::Open => Verdict::Tripped,
        _ => Verdict::Counted,
    }
}
