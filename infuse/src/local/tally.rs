//! A process's counts of one breaker's calls since its last report to the store, for
//! the rate rules: the healthy call path adds to them with one atomic `fetch_add` and no
//! clock read, and a flush (at most every [`FLUSH_INTERVAL`], or at once when this
//! process's counts alone could trip) reports them as one batch.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::core::{Counts, Totals};

/// The longest a process keeps counts before reporting them.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The shortest time between two reports of one breaker from one process: flushing at
/// once (counts that could trip) never sends more than 100 reports a second, whatever
/// the call rate.
pub(crate) const MIN_FLUSH_GAP: Duration = Duration::from_millis(10);

// One word: calls (26 bits) | failures (19 bits) | tail (19 bits). A flush comes long
// before a field fills: at a quarter of its range the next call flushes at once.
const CALLS_BITS: u32 = 26;
const FIELD_BITS: u32 = 19;
const CALL: u64 = 1;
const FAILURE: u64 = 1 << CALLS_BITS;
const TAIL: u64 = 1 << (CALLS_BITS + FIELD_BITS);
const CALLS_MASK: u64 = FAILURE - 1;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const TAIL_MASK: u64 = FIELD_MASK * TAIL;
/// Set once calls or failures reach a quarter of their range (checked by every count).
const HIGH_WATER: u64 = (1 << (CALLS_BITS - 2)) | (1 << (CALLS_BITS + FIELD_BITS - 2));

/// What a count asks of the caller (on its cold path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing: a flush is already scheduled.
    Nothing,
    /// The first count since the last flush: schedule one.
    Schedule,
    /// Flush now (the counts could trip, or are filling up).
    Now,
}

#[derive(Debug, Default)]
pub(crate) struct Tally {
    word: AtomicU64,
    slow: AtomicU32,
    /// A flush task is waiting.
    pub(crate) scheduled: AtomicBool,
    /// Wakes the waiting flush task early.
    pub(crate) flush_now: Notify,
    /// When the counts were last taken (fast-path clock).
    pub(crate) last_flush: AtomicU64,
    /// The store's window as of this process's last report (with Redis, the fleet's).
    known: Mutex<Totals>,
}

impl Tally {
    /// Counts a success (or an excluded error). `Some(previous)`: the caller has cold
    /// work to do ([`Tally::after_success`]).
    #[inline(always)]
    pub(crate) fn success(&self) -> Option<u64> {
        let previous = self.word.fetch_add(CALL, Ordering::Relaxed);
        (previous == 0 || previous & (TAIL_MASK | HIGH_WATER) != 0).then_some(previous)
    }

    /// The cold part of counting a success (`previous`: the counts before it): ends the
    /// tail of failures, and says whether a flush is due.
    #[cold]
    pub(crate) fn after_success(&self, previous: u64) -> Due {
        let mut word = self.word.load(Ordering::Relaxed);
        while previous & TAIL_MASK != 0 && word & TAIL_MASK != 0 {
            match self.word.compare_exchange_weak(
                word,
                word & !TAIL_MASK,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => word = actual,
            }
        }
        if previous & HIGH_WATER != 0 {
            Due::Now
        } else if previous == 0 {
            Due::Schedule
        } else {
            Due::Nothing
        }
    }

    /// Counts a failure; answers with the counts so far (this one included) and whether
    /// this was the first count since the last flush.
    pub(crate) fn failure(&self) -> (Counts, bool) {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let tail = if word & TAIL_MASK == TAIL_MASK {
                0
            } else {
                TAIL
            };
            let next = word + CALL + FAILURE + tail;
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (unpack(next, self.slow.load(Ordering::Relaxed)), word == 0),
                Err(actual) => word = actual,
            }
        }
    }

    /// Counts a slow call (besides its success or failure).
    pub(crate) fn slow(&self) {
        self.slow.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the counts have reached the high-water mark.
    pub(crate) fn filling(counts: &Counts) -> bool {
        let word = u64::from(counts.calls) | (u64::from(counts.failures) << CALLS_BITS);
        word & HIGH_WATER != 0
    }

    /// The store's window as of the last report.
    pub(crate) fn known(&self) -> Totals {
        *self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers the store's window from a report's answer (`None`: unknown, or reset).
    pub(crate) fn set_known(&self, totals: Option<Totals>) {
        *self.known.lock().unwrap_or_else(PoisonError::into_inner) = totals.unwrap_or_default();
    }

    /// Takes the counts since the last flush, leaving zero.
    pub(crate) fn take(&self) -> Counts {
        self.last_flush
            .store(crate::core::now_nanos(), Ordering::Relaxed);
        let word = self.word.swap(0, Ordering::Relaxed);
        let slow = self.slow.swap(0, Ordering::Relaxed);
        unpack(word, slow)
    }
}

fn unpack(word: u64, slow: u32) -> Counts {
    let calls = (word & CALLS_MASK) as u32;
    Counts {
        calls,
        failures: ((word >> CALLS_BITS) & FIELD_MASK) as u32,
        // A slow count may land just before its call's own count: never report more
        // slow calls than calls.
        slow: slow.min(calls),
        tail: ((word >> (CALLS_BITS + FIELD_BITS)) & FIELD_MASK) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_successes_failures_and_the_tail() {
        let tally = Tally::default();
        let first = tally.success().expect("the first count schedules a flush");
        assert_eq!(tally.after_success(first), Due::Schedule);
        assert_eq!(tally.success(), None);
        let (counts, first) = tally.failure();
        assert!(!first);
        assert_eq!((counts.calls, counts.failures, counts.tail), (3, 1, 1));
        tally.failure();
        tally.slow();
        let previous = tally
            .success()
            .expect("a success after failures ends the tail");
        assert_eq!(tally.after_success(previous), Due::Nothing);
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
        let (_, first) = tally.failure();
        assert!(first);
    }

    #[test]
    fn a_filling_tally_asks_for_a_flush_now() {
        let tally = Tally::default();
        tally
            .word
            .store((1 << (CALLS_BITS - 2)) - 1, Ordering::Relaxed);
        assert_eq!(tally.success(), None);
        let previous = tally.success().expect("at the high-water mark");
        assert_eq!(tally.after_success(previous), Due::Now);
        assert!(Tally::filling(&tally.take()));
    }
}
