//! A process's counts of one breaker's calls since its last report to the store, for
//! the rate rules: the healthy call path adds one to its thread's own counter (a plain
//! load and store: no locked instruction, no clock read), and a flush (at most every
//! [`FLUSH_INTERVAL`], or at once when the counts could trip) reports them as one batch.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::core::{Counts, Totals};

/// The longest a process keeps counts before reporting them.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The shortest time between two reports of one breaker from one process: flushing at
/// once (counts that could trip) never sends more than 100 reports a second, whatever
/// the call rate.
pub(crate) const MIN_FLUSH_GAP: Duration = Duration::from_millis(10);

// Failures (low 32 bits) | tail (high 32 bits), saturating.
const FAILURE: u64 = 1;
const TAIL: u64 = 1 << 32;
const FAILURES_MASK: u64 = TAIL - 1;
const TAIL_MASK: u64 = !FAILURES_MASK;

/// How many threads count successes without a shared atomic read-modify-write; more
/// threads than this share one `fetch_add`.
const SLOTS: usize = 32;
const UNASSIGNED: usize = usize::MAX;
const NO_SLOT: usize = usize::MAX - 1;

/// What a count asks of the caller (on its cold path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing: a flush is already scheduled.
    Nothing,
    /// The first count since the last flush: schedule one.
    Schedule,
    /// Flush now (the counts could trip).
    Now,
}

/// One thread's success counter, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Successes, by thread: each slot is written by one thread only, with a plain load
    /// and store (no locked instruction, no contention), and only ever grows; a flush
    /// reports the growth since the last one.
    slots: OnceLock<Box<[Slot]>>,
    /// Successes of threads without a slot of their own.
    shared: AtomicU64,
    /// The successes already reported (the sum at the last flush).
    reported: Mutex<u64>,
    failures: AtomicU64,
    slow: AtomicU32,
    /// A flush task is waiting (or, `orphaned`, no runtime could run one).
    pub(crate) scheduled: AtomicBool,
    /// `scheduled` was set without a task: the next report in memory clears it.
    pub(crate) orphaned: AtomicBool,
    /// Wakes the waiting flush task early.
    pub(crate) flush_now: Notify,
    /// When the counts were last taken (fast-path clock).
    pub(crate) last_flush: AtomicU64,
    /// The store's window as of this process's last report (with Redis, the fleet's).
    known: Mutex<Totals>,
}

impl Tally {
    /// Counts a success (or an excluded error). `true`: the caller has cold work to do
    /// ([`Tally::after_success`]): a flush to schedule, or a tail of failures to end.
    #[inline(always)]
    pub(crate) fn success(&self) -> bool {
        match self.slots.get().and_then(|slots| slots.get(thread_slot())) {
            // This thread's own counter: no other thread writes it.
            Some(Slot(count)) => count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed),
            None => self.success_shared(),
        }
        !self.scheduled.load(Ordering::Relaxed)
            || self.failures.load(Ordering::Relaxed) & TAIL_MASK != 0
    }

    #[cold]
    #[inline(never)]
    fn success_shared(&self) {
        if self.slots.get().is_none() {
            self.slots
                .get_or_init(|| (0..SLOTS).map(|_| Slot::default()).collect());
        }
        self.shared.fetch_add(1, Ordering::Relaxed);
    }

    /// The cold part of counting a success: ends the tail of failures, and says whether a
    /// flush is due.
    #[cold]
    pub(crate) fn after_success(&self) -> Due {
        let mut word = self.failures.load(Ordering::Relaxed);
        while word & TAIL_MASK != 0 {
            match self.failures.compare_exchange_weak(
                word,
                word & FAILURES_MASK,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => word = actual,
            }
        }
        if self.scheduled.load(Ordering::Relaxed) {
            Due::Nothing
        } else {
            Due::Schedule
        }
    }

    /// Counts a failure; answers with the counts not yet reported (this one included)
    /// and whether a flush must be scheduled.
    pub(crate) fn failure(&self) -> (Counts, bool) {
        let mut word = self.failures.load(Ordering::Relaxed);
        loop {
            let failure = if word & FAILURES_MASK == FAILURES_MASK {
                0
            } else {
                FAILURE
            };
            let tail = if word & TAIL_MASK == TAIL_MASK {
                0
            } else {
                TAIL
            };
            match self.failures.compare_exchange_weak(
                word,
                word + failure + tail,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => word = actual,
            }
        }
        let pending = self.successes().wrapping_sub(*lock(&self.reported));
        let counts = counts(pending, self.failures.load(Ordering::Relaxed), &self.slow);
        (counts, !self.scheduled.load(Ordering::Relaxed))
    }

    /// Counts a slow call (besides its success or failure).
    pub(crate) fn slow(&self) {
        self.slow.fetch_add(1, Ordering::Relaxed);
    }

    /// The store's window as of the last report.
    pub(crate) fn known(&self) -> Totals {
        *lock(&self.known)
    }

    /// Remembers the store's window from a report's answer (`None`: unknown, or reset).
    pub(crate) fn set_known(&self, totals: Option<Totals>) {
        *lock(&self.known) = totals.unwrap_or_default();
    }

    /// Takes the counts since the last flush, leaving zero.
    pub(crate) fn take(&self) -> Counts {
        self.last_flush
            .store(crate::core::now_nanos(), Ordering::Relaxed);
        let failures = self.failures.swap(0, Ordering::Relaxed);
        let successes = {
            let mut reported = lock(&self.reported);
            let total = self.successes();
            let new = total.wrapping_sub(*reported);
            *reported = total;
            new
        };
        let slow = AtomicU32::new(self.slow.swap(0, Ordering::Relaxed));
        counts(successes, failures, &slow)
    }

    /// Every success counted so far.
    fn successes(&self) -> u64 {
        let slots = self.slots.get().map_or(0, |slots| {
            slots
                .iter()
                .map(|Slot(count)| count.load(Ordering::Relaxed))
                .fold(0u64, u64::wrapping_add)
        });
        slots.wrapping_add(self.shared.load(Ordering::Relaxed))
    }
}

fn counts(successes: u64, failures: u64, slow: &AtomicU32) -> Counts {
    let failed = (failures & FAILURES_MASK) as u32;
    let calls = u32::try_from(successes)
        .unwrap_or(u32::MAX)
        .saturating_add(failed);
    Counts {
        calls,
        failures: failed,
        // A slow count may land just before its call's own count: never report more
        // slow calls than calls.
        slow: slow.load(Ordering::Relaxed).min(calls),
        tail: (failures >> 32) as u32,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// This thread's success slot (the same index in every breaker's tally).
    static SLOT: Cell<usize> = const { Cell::new(UNASSIGNED) };
    /// Gives the slot back when the thread ends.
    static LEASE: Lease = const { Lease(Cell::new(NO_SLOT)) };
}

/// Slots given back by threads that ended, and the next never used.
static FREE_SLOTS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// This thread's slot index (`NO_SLOT` when all are taken).
#[inline(always)]
fn thread_slot() -> usize {
    let slot = SLOT.try_with(Cell::get).unwrap_or(NO_SLOT);
    if slot == UNASSIGNED {
        assign_slot()
    } else {
        slot
    }
}

#[cold]
#[inline(never)]
fn assign_slot() -> usize {
    let slot = lock(&FREE_SLOTS).pop().unwrap_or_else(|| {
        let next = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        if next < SLOTS {
            next
        } else {
            NEXT_SLOT.store(SLOTS, Ordering::Relaxed);
            NO_SLOT
        }
    });
    let leased = slot == NO_SLOT || LEASE.try_with(|lease| lease.0.set(slot)).is_ok();
    let slot = if leased { slot } else { NO_SLOT };
    let _ = SLOT.try_with(|s| s.set(slot));
    slot
}

struct Lease(Cell<usize>);

impl Drop for Lease {
    fn drop(&mut self) {
        let slot = self.0.get();
        if slot != NO_SLOT {
            let _ = SLOT.try_with(|s| s.set(NO_SLOT));
            lock(&FREE_SLOTS).push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_successes_failures_and_the_tail() {
        let tally = Tally::default();
        assert!(tally.success(), "nothing scheduled yet");
        assert_eq!(tally.after_success(), Due::Schedule);
        tally.scheduled.store(true, Ordering::Relaxed);
        assert!(!tally.success());
        let (counts, schedule) = tally.failure();
        assert!(!schedule);
        assert_eq!((counts.calls, counts.failures, counts.tail), (3, 1, 1));
        tally.failure();
        tally.slow();
        assert!(tally.success(), "a success after failures ends the tail");
        assert_eq!(tally.after_success(), Due::Nothing);
        tally.failure();
        assert_eq!(
            tally.take(),
            Counts {
                calls: 6,
                failures: 3,
                slow: 1,
                tail: 1
            }
        );
        assert_eq!(tally.take(), Counts::default());
    }

    #[test]
    fn threads_count_in_slots_of_their_own() {
        let tally = std::sync::Arc::new(Tally::default());
        tally.scheduled.store(true, Ordering::Relaxed);
        let threads: Vec<_> = (0..40)
            .map(|_| {
                let tally = tally.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        tally.success();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // More threads than slots: the others share one counter; none is lost.
        assert_eq!(tally.take().calls, 40_000);
    }

    #[test]
    fn counts_saturate_rather_than_overflow() {
        let tally = Tally::default();
        tally
            .failures
            .store(FAILURES_MASK | TAIL_MASK, Ordering::Relaxed);
        let (counts, _) = tally.failure();
        assert_eq!((counts.failures, counts.tail), (u32::MAX, u32::MAX));
        tally
            .shared
            .store(u64::from(u32::MAX) + 10, Ordering::Relaxed);
        assert_eq!(tally.take().calls, u32::MAX);
    }
}
