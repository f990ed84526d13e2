//! The sliding window that failure and slow-call rates are measured over: ten buckets of
//! a tenth of the window each, keyed by the store's clock. A process adds its counts in
//! batches ([`Counts`]); the store keeps only per-bucket sums, never per-call records.

use std::time::Duration;

use crate::core::store_ms;

/// How many buckets a window holds.
pub const BUCKETS: u64 = 10;

/// The largest count a bucket or a window's total holds: 2^53 - 1, exact in Lua (the
/// Redis store keeps the same bound). Counts saturate at it instead of wrapping.
pub const MAX_TOTAL: u64 = (1 << 53) - 1;

/// `a + b`, saturating at [`MAX_TOTAL`].
fn add(a: u64, b: u64) -> u64 {
    a.saturating_add(b).min(MAX_TOTAL)
}

/// The outcomes of a batch of calls one process reports at once
/// ([`Command::RecordCalls`](crate::store::Command::RecordCalls)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Counts {
    /// Calls that completed (successes, failures and timeouts; ignored errors excluded).
    pub calls: u32,
    /// Of those, failures (timeouts included).
    pub failures: u32,
    /// Of those, calls slower than `slow_call` (whatever their result).
    pub slow: u32,
    /// The failures after the batch's last success: the batch's contribution to the
    /// consecutive-failure count (all of its failures when it holds no success).
    pub tail: u32,
}

impl Counts {
    /// Whether the batch holds a success (which resets the consecutive-failure count).
    pub fn has_success(&self) -> bool {
        self.calls > self.failures
    }

    /// Whether the batch reports nothing.
    pub fn is_empty(&self) -> bool {
        self.calls == 0
    }
}

/// The sums over the live buckets of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Totals {
    /// Calls.
    pub calls: u64,
    /// Failures.
    pub failures: u64,
    /// Slow calls.
    pub slow: u64,
}

/// The width of one bucket of `window`, in milliseconds (at least 1; a window is taken as
/// at most 2^53 - 1 ms).
pub(crate) fn bucket_ms(window: Duration) -> u64 {
    (store_ms(window) / BUCKETS).max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Bucket {
    index: u64,
    calls: u64,
    failures: u64,
    slow: u64,
}

/// One breaker's window as the in-memory store keeps it (Redis keeps the same in a hash:
/// see `record_calls.lua`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Window {
    buckets: [Bucket; BUCKETS as usize],
    /// Processes that reported failures or slow calls, with the last bucket they did.
    instances: Vec<(u64, u64)>,
}

impl Window {
    /// Adds a batch in bucket `index` (`now / bucket_ms`), reported by `instance`.
    pub(crate) fn add(&mut self, index: u64, counts: &Counts, instance: u64) {
        let slot = &mut self.buckets[(index % BUCKETS) as usize];
        if slot.index != index {
            *slot = Bucket {
                index,
                ..Bucket::default()
            };
        }
        slot.calls = add(slot.calls, u64::from(counts.calls));
        slot.failures = add(slot.failures, u64::from(counts.failures));
        slot.slow = add(slot.slow, u64::from(counts.slow));
        self.instances.retain(|&(_, last)| live(last, index));
        if counts.failures > 0 || counts.slow > 0 {
            match self.instances.iter_mut().find(|(id, _)| *id == instance) {
                Some(entry) => entry.1 = index,
                None => self.instances.push((instance, index)),
            }
        }
    }

    /// The sums over the buckets still in the window at bucket `index` (saturating at
    /// [`MAX_TOTAL`]).
    pub(crate) fn totals(&self, index: u64) -> Totals {
        self.buckets
            .iter()
            .filter(|b| live(b.index, index) && b.calls > 0)
            .fold(Totals::default(), |t, b| Totals {
                calls: add(t.calls, b.calls),
                failures: add(t.failures, b.failures),
                slow: add(t.slow, b.slow),
            })
    }

    /// How many processes reported failures or slow calls in the window at `index`.
    pub(crate) fn instances(&self, index: u64) -> u32 {
        let live = self
            .instances
            .iter()
            .filter(|&&(_, last)| live(last, index))
            .count();
        u32::try_from(live).unwrap_or(u32::MAX)
    }
}

/// Whether a bucket is still in the window at bucket `now`.
fn live(bucket: u64, now: u64) -> bool {
    bucket <= now && now - bucket < BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(calls: u32, failures: u32, slow: u32) -> Counts {
        Counts {
            calls,
            failures,
            slow,
            tail: 0,
        }
    }

    #[test]
    fn buckets_age_out_of_the_window() {
        let mut w = Window::default();
        w.add(100, &counts(10, 5, 1), 1);
        w.add(105, &counts(10, 0, 0), 2);
        assert_eq!(
            w.totals(105),
            Totals {
                calls: 20,
                failures: 5,
                slow: 1
            }
        );
        assert_eq!(w.totals(109).calls, 20);
        assert_eq!(w.totals(110).calls, 10, "bucket 100 left the window");
        assert_eq!(w.totals(115).calls, 0);
        // A slot reused by a later bucket starts from zero.
        w.add(115, &counts(1, 1, 0), 1);
        assert_eq!(w.totals(115).calls, 1);
    }

    #[test]
    fn instances_count_distinct_reporters_of_failures() {
        let mut w = Window::default();
        w.add(0, &counts(10, 0, 0), 1);
        assert_eq!(w.instances(0), 0, "successes alone do not count");
        w.add(0, &counts(10, 1, 0), 1);
        w.add(1, &counts(10, 0, 1), 2);
        w.add(2, &counts(10, 3, 0), 1);
        assert_eq!(w.instances(2), 2);
        assert_eq!(w.instances(11), 1, "instance 2 last reported in bucket 1");
        assert_eq!(w.instances(12), 0);
    }

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        let max = counts(u32::MAX, u32::MAX, u32::MAX);
        let mut w = Window::default();
        w.add(7, &max, 1);
        w.add(7, &max, 2);
        let twice = 2 * u64::from(u32::MAX);
        assert_eq!(
            w.totals(7),
            Totals {
                calls: twice,
                failures: twice,
                slow: twice
            },
            "exact below the bound"
        );
        // Buckets near the bound: each saturates, and so do their sums.
        let mut w = Window {
            buckets: [Bucket {
                index: 3,
                calls: MAX_TOTAL - 1,
                failures: MAX_TOTAL,
                slow: 0,
            }; BUCKETS as usize],
            ..Window::default()
        };
        w.add(3, &counts(5, 5, 5), 1);
        let slot = w.buckets[3];
        assert_eq!(
            (slot.calls, slot.failures, slot.slow),
            (MAX_TOTAL, MAX_TOTAL, 5)
        );
        for (i, bucket) in w.buckets.iter_mut().enumerate() {
            bucket.index = i as u64; // ten live buckets at index 9
        }
        let totals = w.totals(9);
        assert_eq!(
            (totals.calls, totals.failures, totals.slow),
            (MAX_TOTAL, MAX_TOTAL, 5),
            "u64 sums of these would wrap or pass 2^53"
        );
    }

    #[test]
    fn bucket_width_is_a_tenth() {
        assert_eq!(bucket_ms(Duration::from_secs(10)), 1000);
        assert_eq!(bucket_ms(Duration::from_secs(1)), 100);
        assert_eq!(bucket_ms(Duration::ZERO), 1);
    }
}
