//! This process's permits of a breaker's concurrency cap (`max_concurrent`). A call
//! takes one with a single atomic operation and gives it back when it ends; no lock, no
//! store command. How many this process may use (`granted`) is the whole cap in memory,
//! and with Redis the process's lease of the fleet's cap, kept by a background task
//! (`fleet/lease.rs`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// A breaker's concurrency permits in this process.
#[derive(Debug, Default)]
pub(crate) struct Permits {
    /// How many this process may use at once.
    granted: AtomicU32,
    /// How many its calls use now.
    in_use: AtomicU32,
    /// Calls waiting for one (`max_wait`).
    waiting: AtomicU32,
    /// A call found none since the lease was last renewed (the keeper asks for more).
    short: AtomicBool,
    /// A call took one since the lease was last renewed (else the keeper gives them back).
    used: AtomicBool,
    /// A lease keeper runs for these permits.
    pub(crate) keeping: AtomicBool,
    /// Permits were granted at least once (a process's first lease is awaited, not
    /// taken for saturation).
    granted_once: AtomicBool,
    /// The fleet's cap had no room for more the last time the keeper asked: a call that
    /// finds none of this process's permits free is saturated at once (no wait for a
    /// lease that will not grow).
    fleet_full: AtomicBool,
    /// Told when a permit is given back or more are granted.
    available: Notify,
    /// Told when a call found none: the keeper asks for more at once.
    pub(crate) wanted: Notify,
}

impl Permits {
    /// Takes a permit if one is free.
    #[inline]
    pub(crate) fn try_take(&self) -> bool {
        let mut in_use = self.in_use.load(Ordering::Relaxed);
        loop {
            if in_use >= self.granted.load(Ordering::Relaxed) {
                return false;
            }
            match self.in_use.compare_exchange_weak(
                in_use,
                in_use + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    if !self.used.load(Ordering::Relaxed) {
                        self.used.store(true, Ordering::Relaxed);
                    }
                    return true;
                }
                Err(now) => in_use = now,
            }
        }
    }

    /// Gives a permit back (the call ended).
    #[inline]
    pub(crate) fn give_back(&self) {
        self.in_use.fetch_sub(1, Ordering::Release);
        if self.waiting.load(Ordering::Relaxed) > 0 {
            self.available.notify_one();
        }
    }

    /// Marks that a call found no permit, for the keeper to ask for more. Set before the
    /// keeper is started or found running: a keeper that stops checks this last, so it
    /// cannot stop unseen between the two.
    pub(crate) fn note_short(&self) {
        self.short.store(true, Ordering::SeqCst);
    }

    /// Takes a permit, waiting up to `max_wait` for one to be given back or granted.
    pub(crate) async fn take_within(&self, max_wait: Duration) -> bool {
        if self.try_take() {
            return true;
        }
        self.short.store(true, Ordering::Relaxed);
        self.wanted.notify_one();
        if max_wait.is_zero() {
            return false;
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + max_wait;
        let taken = loop {
            let available = self.available.notified();
            if self.try_take() {
                break true;
            }
            if tokio::time::timeout_at(deadline, available).await.is_err() {
                break self.try_take();
            }
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        taken
    }

    /// Sets how many permits this process may use (the cap, or its lease).
    pub(crate) fn grant(&self, granted: u32) {
        self.granted_once.store(true, Ordering::Relaxed);
        let before = self.granted.swap(granted, Ordering::AcqRel);
        if granted > before {
            self.available.notify_waiters();
        }
    }

    /// Records whether the fleet's cap had room for the permits the keeper last asked for.
    pub(crate) fn set_fleet_full(&self, full: bool) {
        self.fleet_full.store(full, Ordering::Relaxed);
    }

    /// Whether the fleet's cap had no room for more at the keeper's last request.
    pub(crate) fn fleet_full(&self) -> bool {
        self.fleet_full.load(Ordering::Relaxed)
    }

    /// Whether permits were ever granted (else the first lease is still being asked for).
    pub(crate) fn granted_once(&self) -> bool {
        self.granted_once.load(Ordering::Relaxed)
    }

    /// How many it may use, how many are used, how many calls wait.
    pub(crate) fn counts(&self) -> (u32, u32, u32) {
        (
            self.granted.load(Ordering::Relaxed),
            self.in_use.load(Ordering::Relaxed),
            self.waiting.load(Ordering::Relaxed),
        )
    }

    /// Whether a call found no permit, and whether one took a permit, since the last
    /// call of this (the keeper's renewal); both are reset.
    pub(crate) fn demand(&self) -> (bool, bool) {
        (
            self.short.swap(false, Ordering::SeqCst),
            self.used.swap(false, Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn permits_are_taken_up_to_the_grant_and_given_back() {
        let permits = Permits::default();
        assert!(!permits.try_take(), "none granted");
        permits.grant(2);
        assert!(permits.try_take() && permits.try_take());
        assert!(!permits.try_take());
        assert_eq!(permits.counts(), (2, 2, 0));
        permits.give_back();
        assert!(permits.try_take());
        permits.grant(1);
        permits.give_back();
        assert!(!permits.try_take(), "1 in use of 1 granted");
        assert_eq!(permits.demand(), (false, true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_waits_up_to_max_wait() {
        let permits = Arc::new(Permits::default());
        permits.grant(1);
        assert!(permits.take_within(Duration::ZERO).await);
        assert!(!permits.take_within(Duration::ZERO).await);
        assert_eq!(permits.demand(), (true, true), "short: the keeper is told");
        let waiter = tokio::spawn({
            let permits = permits.clone();
            async move { permits.take_within(Duration::from_millis(100)).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(permits.counts(), (1, 1, 1));
        permits.give_back();
        assert!(waiter.await.unwrap(), "given back within max_wait");
        let late = tokio::spawn({
            let permits = permits.clone();
            async move { permits.take_within(Duration::from_millis(100)).await }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!late.await.unwrap(), "none within max_wait");
        // More granted: a waiter takes one at once.
        let granted = tokio::spawn({
            let permits = permits.clone();
            async move { permits.take_within(Duration::from_secs(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        permits.grant(2);
        assert!(granted.await.unwrap());
    }

    #[test]
    fn many_threads_never_pass_the_grant() {
        let permits = Arc::new(Permits::default());
        permits.grant(3);
        let peak = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (permits, peak) = (permits.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if permits.try_take() {
                            peak.fetch_max(permits.counts().1, Ordering::Relaxed);
                            permits.give_back();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(permits.counts(), (3, 0, 0));
    }
}
