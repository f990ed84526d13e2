//! The rate rules on the call path: counting outcomes into the process's tally, and
//! reporting it to the store in batches (see [`crate::local::Tally`]).

use std::sync::atomic::Ordering;

use crate::backend::Backend;
use crate::breaker::handle::{Binding, Breaker};
use crate::core::{
    now_nanos, process_instance, saturating_nanos, Command, Counts, State, Totals, TripPolicy,
};
use crate::local::{Due, Tally, FLUSH_INTERVAL, MIN_FLUSH_GAP};

impl Breaker {
    /// Counts a successful (or excluded) call of the current period; `slow`: it took
    /// longer than `slow_call`.
    #[inline(always)]
    pub(crate) fn count_success(&self, slow: bool) {
        if slow {
            self.cell.tally.slow();
        }
        if let Some(previous) = self.cell.tally.success() {
            self.after_count(previous);
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
        self.flush_in_memory();
    }

    #[cold]
    #[inline(never)]
    fn after_count(&self, previous: u64) {
        let due = self.cell.tally.after_success(previous);
        self.flush_when(due);
    }

    /// Counts a failed call admitted at `generation` (dropped if the breaker has moved
    /// on); flushes at once when this process's counts alone could trip.
    #[cold]
    pub(crate) fn count_failure(&self, generation: u64, slow: bool) {
        let view = &self.cell.view;
        if view.generation() != generation {
            return;
        }
        if slow {
            self.cell.tally.slow();
        }
        let (counts, first) = self.cell.tally.failure();
        // In memory every failure is reported at once (a lock, no I/O); with Redis, in
        // batches, unless this batch alone could trip.
        if self.flush_in_memory() {
            return;
        }
        let due = if self.could_trip(&counts) || Tally::filling(&counts) {
            Due::Now
        } else if first {
            Due::Schedule
        } else {
            Due::Nothing
        };
        self.flush_when(due);
    }

    /// Whether the counts not yet reported could trip on their own: the consecutive rule
    /// with the fleet's count, or a rate over this batch alone.
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
        let totals = Totals {
            calls: counts.calls.into(),
            failures: counts.failures.into(),
            slow: counts.slow.into(),
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
            // No runtime to wait on: report now (in memory this is a lock, no I/O).
            tally.scheduled.store(false, Ordering::Release);
            self.flush_in_memory();
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
            breaker.flush().await;
        });
    }

    /// Reports the counts now when the store is this process's memory (`false`: it is
    /// not, nothing was done).
    fn flush_in_memory(&self) -> bool {
        let Some(Backend::Memory(store)) = self.bound_backend() else {
            return false;
        };
        if let Some(command) = self.batch() {
            let outcome = store.apply_now(self.service(), &self.settings().alone(), command);
            self.cell.observe(&outcome.snapshot);
        }
        true
    }

    /// Reports the counts since the last flush as one batch.
    pub(crate) async fn flush(&self) {
        if let Some(command) = self.batch() {
            let outcome = self.apply(command).await;
            self.record_outcome(outcome);
        }
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

    fn bound_backend(&self) -> Option<Backend> {
        self.cell
            .binding()
            .downcast_ref::<Binding>()
            .map(|binding| binding.backend.clone())
    }
}
