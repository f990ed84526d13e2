//! The one monotonic clock of the fast path: nanoseconds on tokio's clock (so that a
//! paused test clock drives it), packed in a `u64` so that deadlines fit in atomics.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

fn epoch() -> Instant {
    #[cfg(test)]
    if let Some(epoch) = test_epoch::get() {
        return epoch;
    }
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process epoch, plus 2^63: an instant before the epoch (a paused
/// clock of a runtime behind the one that set it) must not saturate to one value, or
/// time would stop there.
pub(crate) fn now_nanos() -> u64 {
    to_nanos(Instant::now())
}

fn to_nanos(instant: Instant) -> u64 {
    const OFFSET: u64 = 1 << 63;
    let epoch = epoch();
    if instant >= epoch {
        OFFSET.saturating_add(saturating_nanos(instant - epoch))
    } else {
        OFFSET.saturating_sub(saturating_nanos(epoch - instant))
    }
}

/// Whole milliseconds of `d`, saturating (the unit of Redis expiries and the window).
pub(crate) fn saturating_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The longest time a store sets (an open time, a trial lease, a key's expiry), in
/// milliseconds: 2^53 - 1 (285,000 years), exact in Lua and far below what Redis's `PX`
/// accepts. Longer durations are taken as this long.
pub(crate) const MAX_EXPIRY_MS: u64 = (1 << 53) - 1;

/// Whole milliseconds of `d`, at most [`MAX_EXPIRY_MS`]: a time as a store sets it.
pub(crate) fn store_ms(d: Duration) -> u64 {
    saturating_millis(d).min(MAX_EXPIRY_MS)
}

/// `d` after `now`, `d` taken as at most [`MAX_EXPIRY_MS`] (as the Redis store sends
/// it): never overflows.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    let d = d.min(Duration::from_millis(MAX_EXPIRY_MS));
    now.checked_add(d).unwrap_or(now)
}

pub(crate) fn saturating_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Milliseconds on the in-memory store's clock (the window's buckets are keyed by it;
/// Redis keys them by its own `TIME`).
pub(crate) fn store_millis(instant: Instant) -> u64 {
    to_nanos(instant) / 1_000_000
}

/// A seeded simulation pins the epoch to its own start on its thread: the window's
/// buckets (keyed by [`store_millis`]) then fall at the same instants of every run.
#[cfg(test)]
pub(crate) mod test_epoch {
    use std::cell::Cell;

    use tokio::time::Instant;

    thread_local! {
        static EPOCH: Cell<Option<Instant>> = const { Cell::new(None) };
    }

    pub(super) fn get() -> Option<Instant> {
        EPOCH.with(Cell::get)
    }

    /// Pins the epoch to `epoch` on this thread (`None`: back to the process's).
    pub(crate) fn set(epoch: Option<Instant>) {
        EPOCH.with(|cell| cell.set(epoch));
    }
}
