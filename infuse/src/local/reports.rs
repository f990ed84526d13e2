//! At most one failure report per breaker in flight to a remote store: failures that
//! happen meanwhile join the next report as a count (see `Command::RecordFailure`), and
//! wait for its answer.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::core::Outcome;

/// What a report's waiters learn: how many failures it carried, and the store's answer
/// (`None`: the store failed).
pub(crate) type Answer = Option<(u32, Option<Outcome>)>;

/// The reports of one breaker's failures.
#[derive(Debug, Default)]
pub(crate) struct FailureReports {
    state: Mutex<Reports>,
}

#[derive(Debug, Default)]
struct Reports {
    in_flight: bool,
    next: Option<Batch>,
}

/// Failures waiting for the report in flight to end.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) generation: u64,
    pub(crate) count: u32,
    answer: watch::Sender<Answer>,
}

impl Batch {
    /// Tells the batch's waiters what the report of `count` failures answered.
    pub(crate) fn answer(&self, outcome: Option<Outcome>) {
        self.answer.send_replace(Some((self.count, outcome)));
    }
}

/// How a failure is reported.
pub(crate) enum Joined {
    /// Nothing in flight: this failure reports itself, now.
    Lead,
    /// It is the `index`-th failure (from 1) of the next report; `answer` tells its outcome.
    Wait {
        index: u32,
        answer: watch::Receiver<Answer>,
    },
    /// Admitted at an older generation than failures already waiting: not counted.
    Stale,
}

impl FailureReports {
    fn lock(&self) -> MutexGuard<'_, Reports> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the reports with a failure of a call admitted at `generation`.
    pub(crate) fn join(&self, generation: u64) -> Joined {
        let mut reports = self.lock();
        if !reports.in_flight {
            reports.in_flight = true;
            return Joined::Lead;
        }
        match &mut reports.next {
            Some(batch) if batch.generation == generation => {
                batch.count = batch.count.saturating_add(1);
                Joined::Wait {
                    index: batch.count,
                    answer: batch.answer.subscribe(),
                }
            }
            next => {
                // A batch of another generation is stale now that this call was admitted
                // at a newer one (or this call is): the older one is dropped, its waiters
                // told nothing was recorded.
                if let Some(old) = next.take() {
                    if old.generation > generation {
                        *next = Some(old);
                        return Joined::Stale;
                    }
                    old.answer(None);
                }
                let (answer, receiver) = watch::channel(None);
                *next = Some(Batch {
                    generation,
                    count: 1,
                    answer,
                });
                Joined::Wait {
                    index: 1,
                    answer: receiver,
                }
            }
        }
    }

    /// The report in flight ended: the next batch to report, if failures are waiting
    /// (the caller must report it and come back here), else nothing is in flight now.
    pub(crate) fn next(&self) -> Option<Batch> {
        let mut reports = self.lock();
        let next = reports.next.take();
        reports.in_flight = next.is_some();
        next
    }
}
