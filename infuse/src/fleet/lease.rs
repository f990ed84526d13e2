//! The fleet's concurrency cap: a background task per breaker with `max_concurrent`
//! keeps this process's lease of the fleet's permits (`scripts/lease_permits.lua`, the
//! rule in `core/lease.rs`), so that calls take permits locally, with no Redis command.
//!
//! While the permits are used, the lease is renewed every half of [`LEASE`]; a call that
//! finds none makes the keeper ask for more at once (at most every [`ASK_GAP`], backing
//! off to [`MAX_ASK_GAP`] while the fleet's cap has no room); a
//! process whose permits were not used since the last renewal gives back what it does
//! not use, and its keeper stops until a call needs a permit again. A process that
//! cannot renew stops using its lease [`MARGIN`] before it ends by its own clock (Redis
//! may give those permits to others then); from then on its permits follow the
//! unavailable-policy: none (`FailClosed`), no cap (`FailOpen`), or the share of its last
//! lease (`LocalFallback`, the default) — the fleet's sum then holds as long as no new
//! process starts during the outage; a process that never held a share (it started
//! while Redis was unreachable) has none to keep, so under `LocalFallback` its capped
//! calls are saturated until Redis answers: the number in the configuration is never
//! passed. The first fall-back of an outage is logged as a warning.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{Fleet, UnavailablePolicy};
use crate::core::process_instance;
use crate::local::Cell;

/// How long a lease lasts on Redis's clock: a crashed process's permits come back this
/// long after its last renewal.
pub(crate) const LEASE: Duration = Duration::from_secs(2);

/// A process stops using its lease this long before it ends by its own clock: the
/// answer's travel time and the drift of the two clocks stay inside it.
pub(crate) const MARGIN: Duration = Duration::from_millis(300);

/// A keeper asks for more permits at most this often.
pub(crate) const ASK_GAP: Duration = Duration::from_millis(50);

/// While the fleet's cap has no room for more, a keeper's gap between requests for more
/// doubles up to this (a full fleet is not asked 20 times a second by every process;
/// permits freed elsewhere are found within it, or at the next renewal).
pub(crate) const MAX_ASK_GAP: Duration = Duration::from_millis(400);

impl Fleet {
    /// Starts the keeper of `cell`'s lease, unless one runs.
    pub(crate) fn keep_lease(&self, cell: &Arc<Cell>) {
        // SeqCst with `Permits::note_short` and the keeper's stop: of a caller that marks
        // itself short and a keeper that stops, one sees the other.
        if cell.permits.keeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            cell.permits.keeping.store(false, Ordering::Release);
            return;
        };
        runtime.spawn(keeper(self.me.clone(), Arc::downgrade(cell)));
    }
}

/// What a keeper asks for: how many permits to hold, from what the calls did since the
/// last request.
fn wanted(granted: u32, in_use: u32, waiting: u32, short: bool, used: bool, cap: u32) -> u32 {
    if short || waiting > 0 {
        // Twice as many: a busy process reaches the fleet's unused permits in a few
        // requests (the rule keeps each target within a fair share once others want more).
        let more = waiting.max(1).max(granted);
        granted.saturating_add(more).min(cap)
    } else if used {
        // What runs now and a quarter more: what is not used goes back to the fleet.
        in_use.saturating_add((in_use / 4).max(1)).min(cap)
    } else {
        in_use.min(cap)
    }
}

async fn keeper(fleet: Weak<Fleet>, cell: Weak<Cell>) {
    // When this process's lease ends by its own clock (less the margin), and the share
    // it last held.
    let mut valid_until: Option<Instant> = None;
    let mut last_share = 0;
    let mut first = true;
    // The gap before the next request for more: doubles while the fleet is full.
    let mut ask_gap = ASK_GAP;
    // The lease ended without a renewal and the unavailable-policy decides (logged once).
    let mut fallen_back = false;
    loop {
        let (Some(fleet), Some(cell)) = (fleet.upgrade(), cell.upgrade()) else {
            return;
        };
        let permits = &cell.permits;
        let Some(cap) = cell.settings().max_concurrent else {
            permits.keeping.store(false, Ordering::Release);
            return;
        };
        let (granted, in_use, waiting) = permits.counts();
        let (short, used) = permits.demand();
        // A first lease asks for a share to start with, not only what a call needs.
        let want = match first {
            true => wanted(granted, in_use, waiting, true, true, cap).max(cap.div_ceil(4)),
            false => wanted(granted, in_use, waiting, short, used, cap),
        };
        first = false;
        // Until the answer is read, this process may admit calls up to its grant: the
        // store must keep that many (else a lost or late answer leaves calls running on
        // permits its lease no longer holds). To give permits back, the grant is lowered
        // here first, then the store keeps what it still allows.
        if want < granted {
            permits.grant(want.max(in_use));
        }
        let (limit, in_use_now, _) = permits.counts();
        let keep = limit.max(in_use_now).min(cap);
        let asked_at = Instant::now();
        let answer = if fleet.health.is_healthy() {
            let process = process_instance();
            let request = fleet
                .store
                .lease_permits(cell.service, process, keep, want, cap, LEASE);
            // Never past the current lease's end: then the permits must stop.
            let deadline = valid_until.map_or(LEASE, |until| {
                until.saturating_duration_since(asked_at).max(ASK_GAP)
            });
            tokio::time::timeout(deadline, request).await.ok()
        } else {
            None
        };
        let renewed = matches!(answer, Some(Ok(_)));
        match answer {
            Some(Ok(grant)) => {
                // What this process may use for new calls (its lease may hold more, for
                // the calls that run).
                let target = grant.target;
                fallen_back = false;
                // Asked for more and got none: the fleet's cap is full (until the next
                // answer says otherwise), and the next request for more waits longer.
                let full = want > granted && target <= granted;
                permits.set_fleet_full(full);
                ask_gap = match full {
                    true => (ask_gap * 2).min(MAX_ASK_GAP),
                    false => ASK_GAP,
                };
                permits.grant(target);
                last_share = target;
                valid_until = Some(asked_at + LEASE - MARGIN);
            }
            other => {
                if let Some(Err(error)) = other {
                    tracing::debug!(service = cell.service, %error, "renewing the concurrency lease failed");
                }
                // No answer: what the fleet has room for is not known.
                permits.set_fleet_full(false);
                ask_gap = ASK_GAP;
                if valid_until.is_none_or(|until| Instant::now() >= until) {
                    let policy = fleet.fallback.policy();
                    let permits_now = match policy {
                        UnavailablePolicy::FailClosed => 0,
                        UnavailablePolicy::FailOpen => u32::MAX,
                        UnavailablePolicy::LocalFallback => last_share,
                    };
                    if !fallen_back {
                        fallen_back = true;
                        tracing::warn!(
                            service = cell.service,
                            %policy,
                            permits = permits_now,
                            "the concurrency lease could not be renewed before it ended: \
                             this process uses {} until Redis answers",
                            match permits_now {
                                u32::MAX => "no cap".to_owned(),
                                0 => "no permit (it never held a share, or the policy \
                                      fails closed)"
                                    .to_owned(),
                                n => format!("{n} permits, its last share"),
                            }
                        );
                    }
                    permits.grant(permits_now);
                }
            }
        }
        let (granted, in_use, waiting) = permits.counts();
        if renewed && granted == 0 && in_use == 0 && waiting == 0 {
            // Idle, and all given back: stop until a call needs a permit (it restarts
            // the keeper). A call that found none meanwhile must not wait for a keeper
            // that stopped: then go on.
            permits.keeping.store(false, Ordering::SeqCst);
            // What the fleet had room for is not known any more: the next call that finds
            // no permit waits for a request.
            permits.set_fleet_full(false);
            let (short, _) = permits.demand();
            if !short || permits.keeping.swap(true, Ordering::AcqRel) {
                return;
            }
            continue;
        }
        // Renew at half the lease (before it ends by this process's clock), or at once
        // (after a short gap) when a call needs a permit.
        // Once the lease has ended by this process's clock (Redis away), every ASK_GAP:
        // the time to its end is zero then, and the keeper would spin.
        let now = Instant::now();
        let renew_in = match valid_until {
            Some(until) if until > now => (LEASE / 2).min(until - now),
            _ => ASK_GAP,
        };
        drop(fleet);
        let wanted = cell.permits.wanted.notified();
        tokio::select! {
            _ = tokio::time::sleep(renew_in) => {}
            // A call needs a permit: ask at once, unless the last request was less than
            // the gap ago (ASK_GAP, more while the fleet is full).
            _ = wanted => tokio::time::sleep_until(asked_at + ask_gap).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn a_keeper_asks_for_more_when_short_and_gives_back_when_idle() {
        assert_eq!(wanted(1, 1, 3, true, true, 20), 4, "3 waiting");
        assert_eq!(wanted(8, 8, 0, true, true, 20), 16, "twice as many");
        assert_eq!(
            wanted(16, 16, 0, true, true, 20),
            20,
            "twice as many, at most the cap"
        );
        assert_eq!(
            wanted(8, 2, 0, false, true, 20),
            3,
            "used: what runs and some more"
        );
        assert_eq!(wanted(16, 16, 0, false, true, 20), 20);
        assert_eq!(
            wanted(8, 2, 0, false, false, 20),
            2,
            "idle: all but what runs"
        );
        assert_eq!(wanted(0, 0, 0, false, false, 20), 0);
    }
}

/// A keeper on a paused clock, against a store of leases that is the rule itself (the
/// memory store's [`Budgets`](crate::store::Budgets), on tokio's clock, which is the
/// store's clock here): a process cut off from the store stops using its lease when it
/// ends by its own clock less [`MARGIN`], before the store gives its permits to another.
#[cfg(test)]
mod expiry {
    use std::future::{pending, ready};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{Fleet, ASK_GAP, LEASE, MARGIN};
    use crate::core::lease::Grant;
    use crate::core::{Command, Outcome, Settings, StorageError};
    use crate::fleet::remote::{Answer, Remote};
    use crate::fleet::UnavailablePolicy;
    use crate::local::Cell;
    use crate::store::memory::MemoryStore;
    use crate::store::redis::{Announcement, Deadlines, LogRead};
    use crate::store::Budgets;

    const CAP: u32 = 4;

    /// One process's link to the shared leases: it asks as `process` (the processes of
    /// a test share one process instance), and hangs, as to an unreachable Redis, while
    /// `cut`.
    struct Link {
        leases: Arc<MemoryStore>,
        process: u64,
        cut: Arc<AtomicBool>,
        /// When the store last answered.
        answered: Arc<Mutex<Option<Instant>>>,
    }

    fn unavailable<'a, T: Send + 'a>() -> Answer<'a, T> {
        Box::pin(ready(Err(StorageError::Unavailable("leases only".into()))))
    }

    impl Remote for Link {
        fn apply<'a>(
            &'a self,
            _: &'static str,
            _: &'a Settings,
            _: Command,
        ) -> Answer<'a, Outcome> {
            unavailable()
        }
        fn changes<'a>(&'a self, _: usize, _: Option<&'a Announcement>) -> Answer<'a, LogRead> {
            unavailable()
        }
        fn ping(&self) -> Answer<'_, ()> {
            unavailable()
        }
        fn load_scripts(&self) -> Answer<'_, ()> {
            Box::pin(ready(Ok(())))
        }
        fn deadlines(&self) -> Deadlines {
            Deadlines {
                call: Duration::from_millis(100),
                admin: Duration::from_secs(1),
            }
        }
        fn lease_permits<'a>(
            &'a self,
            service: &'a str,
            _process: u64,
            keep: u32,
            want: u32,
            cap: u32,
            lease: Duration,
        ) -> Answer<'a, Grant> {
            if self.cut.load(Ordering::Relaxed) {
                return Box::pin(pending());
            }
            Box::pin(async move {
                let grant = Budgets::lease_permits(
                    &*self.leases,
                    service,
                    self.process,
                    keep,
                    want,
                    cap,
                    lease,
                )
                .await?;
                *self.answered.lock().unwrap() = Some(Instant::now());
                Ok(grant)
            })
        }
    }

    struct Process {
        fleet: Arc<Fleet>,
        cell: Arc<Cell>,
        cut: Arc<AtomicBool>,
        answered: Arc<Mutex<Option<Instant>>>,
    }

    fn process(leases: &Arc<MemoryStore>, id: u64) -> Process {
        let (cut, answered) = (Arc::default(), Arc::default());
        let link = Link {
            leases: Arc::clone(leases),
            process: id,
            cut: Arc::clone(&cut),
            answered: Arc::clone(&answered),
        };
        let fleet = Fleet::over(
            Box::new(link),
            UnavailablePolicy::FailClosed,
            format!("leases (p{id})"),
            true,
            Duration::from_secs(3600),
        );
        let settings = Settings::DEFAULT.max_concurrent(CAP);
        let cell: Arc<Cell> = Cell::new("capped", settings, ());
        Process {
            fleet,
            cell,
            cut,
            answered,
        }
    }

    impl Process {
        fn granted(&self) -> u32 {
            self.cell.permits.counts().0
        }

        /// A call as the call path makes it (`Cell::take_cap`): the keeper told, then a
        /// permit waited for up to 10 s, held for `hold`.
        fn call(&self, hold: Duration) -> tokio::task::JoinHandle<bool> {
            let (fleet, cell) = (Arc::clone(&self.fleet), Arc::clone(&self.cell));
            tokio::spawn(async move {
                cell.permits.note_short();
                fleet.keep_lease(&cell);
                let taken = cell.permits.take_within(Duration::from_secs(10)).await;
                if taken {
                    tokio::time::sleep(hold).await;
                    cell.permits.give_back();
                }
                taken
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_process_cut_off_stops_using_its_lease_before_the_store_gives_it_away() {
        let leases = Arc::new(MemoryStore::new());
        let (a, b) = (process(&leases, 1), process(&leases, 2));
        // A's four long calls make its keeper ask for all the permits, and keep them
        // used (an idle process would give them back itself).
        let calls: Vec<_> = (0..CAP).map(|_| a.call(Duration::from_secs(60))).collect();
        while a.cell.permits.counts() != (CAP, CAP, 0) {
            assert!(
                calls.iter().all(|call| !call.is_finished()),
                "a permit within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // B wants one too: none is free while A's lease lasts.
        let waiting = b.call(Duration::ZERO);
        tokio::time::sleep(ASK_GAP * 2).await;
        assert_eq!(b.granted(), 0);
        a.cut.store(true, Ordering::Relaxed);
        let renewed = a.answered.lock().unwrap().expect("A's lease was granted");
        let (mut a_stopped, mut b_started) = (None, None);
        while Instant::now() < renewed + LEASE * 3 {
            let since = Instant::now() - renewed;
            let (held_a, held_b) = (a.granted(), b.granted());
            assert!(
                held_a + held_b <= CAP,
                "{since:?} after A's last renewal: A may use {held_a}, B {held_b}"
            );
            if held_a == 0 && a_stopped.is_none() {
                a_stopped = Some(since);
            }
            if held_b > 0 && b_started.is_none() {
                b_started = Some(since);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A stopped when its lease ended by its own clock less the margin (the first
        // sample at or after it), and B got permits only once the store's lease ended.
        let a_stopped = a_stopped.expect("A stopped using its lease");
        assert!(
            a_stopped >= LEASE - MARGIN && a_stopped < LEASE - MARGIN + Duration::from_millis(20),
            "A stopped {a_stopped:?} after its last renewal"
        );
        let b_started = b_started.expect("B got the permits A's lease held");
        assert!(
            b_started >= LEASE,
            "B started {b_started:?} after A's last renewal"
        );
        assert!(waiting.await.unwrap(), "B's call ran");
        assert_eq!(a.granted(), 0, "A is still cut off: fail-closed");
        for call in calls {
            call.abort();
        }
    }
}
