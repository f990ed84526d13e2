//! Asking to run a call: from the local view when it can decide (closed: run; open:
//! reject), else from the store (the trial slot, or a first load of the shared state).
//! In shadow mode every rejection goes through [`Shared::refuse`], which lets the call
//! run instead.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::breaker::shared::Shared;
use crate::core::{BreakerError, Command, RetryAt, State, TransitionReason, TrialToken};
use crate::local::Admit;

/// The generation of a call that runs only because of shadow mode. No record has it
/// (generations start at 1), so the call's outcome is stale by construction: the
/// breaker counts nothing of it, and sees what it would have seen had the call been
/// rejected.
pub(crate) const SHADOW_GENERATION: u64 = 0;

/// What admission granted: a call at a generation, or the trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PermitKind {
    Normal { generation: u64 },
    Trial { token: TrialToken },
    Settled,
}

impl Shared {
    /// Admission, waiting on the store only when the view cannot decide. Tells listeners.
    pub(crate) async fn admit(self: &Arc<Self>) -> Result<PermitKind, BreakerError> {
        match self.view.admit() {
            Admit::Pass(generation) => {
                self.listeners.before_call(self.service);
                Ok(PermitKind::Normal { generation })
            }
            other => match self.admit_other(other) {
                Ok(Some(kind)) => Ok(kind),
                Ok(None) => self.admit_slow().await,
                Err(rejected) => Err(rejected),
            },
        }
    }

    /// A call while open (until `until`, on the fast-path clock): rejected, or run in
    /// shadow mode. Inline: an open breaker's rejection is a fast path too (two loads
    /// tell that shadow mode is off).
    #[inline(always)]
    pub(crate) fn refuse_open(&self, until: u64) -> Result<PermitKind, BreakerError> {
        let error = BreakerError::Open {
            service: self.service,
            retry_at: RetryAt(until),
        };
        if !self.shadow() {
            return Err(self.rejected(error));
        }
        self.refuse(error)
    }

    /// Every rejection: tells listeners and answers with it — or, in shadow mode, counts
    /// it as [`would_reject`](crate::Breaker::would_reject), tells listeners and
    /// `tracing`, and admits the call at [`SHADOW_GENERATION`].
    #[cold]
    #[inline(never)]
    pub(crate) fn refuse(&self, error: BreakerError) -> Result<PermitKind, BreakerError> {
        if !self.shadow() {
            return Err(self.rejected(error));
        }
        let service = self.service;
        let count = self.would_reject.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            service,
            rejection = %error,
            would_reject = count,
            "shadow mode: a call the circuit breaker would reject runs"
        );
        self.listeners.shadow_rejected(service, &error);
        self.listeners.before_call(service);
        Ok(PermitKind::Normal {
            generation: SHADOW_GENERATION,
        })
    }

    /// Admission in every case the view decided but a closed breaker's (`Ok(None)`: ask
    /// the store).
    #[cold]
    #[inline(never)]
    pub(crate) fn admit_other(&self, admit: Admit) -> Result<Option<PermitKind>, BreakerError> {
        let service = self.service;
        match admit {
            Admit::Pass(generation) => {
                self.listeners.before_call(service);
                Ok(Some(PermitKind::Normal { generation }))
            }
            Admit::RejectOpen(until) => self.refuse_open(until).map(Some),
            Admit::RejectForced => self.refuse(BreakerError::ForcedOpen { service }).map(Some),
            Admit::RejectRecovering(at) => self
                .refuse(BreakerError::Recovering {
                    service,
                    retry_at: RetryAt(at),
                })
                .map(Some),
            // Another call of this process is trying, or another process holds the trial.
            Admit::Trial if self.view.trial_blocked() => self.trial_in_flight().map(Some),
            Admit::Trial | Admit::Sync => Ok(None),
        }
    }

    /// Admission when the view alone cannot decide: the trial slot, or a view that has
    /// not loaded the shared state yet.
    #[cold]
    pub(crate) async fn admit_slow(self: &Arc<Self>) -> Result<PermitKind, BreakerError> {
        if let Admit::Sync = self.view.admit() {
            let backend = self.bound().backend.clone();
            let snapshot = backend.load(self.service, &self.settings()).await;
            self.observe(&snapshot);
        }
        match self.view.admit() {
            Admit::Trial => self.acquire_trial().await,
            // Still unknown (nothing could be loaded): behave as closed.
            Admit::Sync => {
                self.listeners.before_call(self.service);
                Ok(PermitKind::Normal {
                    generation: self.view.generation(),
                })
            }
            other => match self.admit_other(other)? {
                Some(kind) => Ok(kind),
                None => self.trial_in_flight(),
            },
        }
    }

    /// Tells listeners of a rejection, and answers with it.
    #[inline(always)]
    fn rejected(&self, error: BreakerError) -> BreakerError {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.listeners.rejected(self.service);
        error
    }

    #[cold]
    fn trial_in_flight(&self) -> Result<PermitKind, BreakerError> {
        self.refuse(BreakerError::TrialInFlight {
            service: self.service,
            retry_at: RetryAt(self.view.trial_retry_at()),
        })
    }

    /// Competes for the trial slot: one call of this process asks the store at a time.
    #[cold]
    async fn acquire_trial(self: &Arc<Self>) -> Result<PermitKind, BreakerError> {
        let view = &self.view;
        if view.trial_blocked() || view.probing.swap(true, Ordering::AcqRel) {
            return self.trial_in_flight();
        }
        let token = TrialToken::new();
        let request = TrialRequest { cell: self, token };
        let lease = self.bound().lease_for(&self.settings());
        let outcome = self.apply(Command::AcquireTrial { token, lease }).await;
        std::mem::forget(request); // answered: the code below settles `probing`
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                view.probing.store(false, Ordering::Release);
                tracing::debug!(service = self.service, %error, "trial acquisition failed");
                return self.trial_in_flight();
            }
        };
        if outcome.applied {
            view.trial_taken(lease);
            self.observe_because(&outcome.snapshot, Some(TransitionReason::OpenElapsed));
            self.listeners.before_call(self.service);
            return Ok(PermitKind::Trial { token });
        }
        // Not ours: clear `probing` first, so that observing a trial held elsewhere sets
        // the time before this process asks again.
        view.probing.store(false, Ordering::Release);
        self.observe(&outcome.snapshot);
        let snapshot = outcome.snapshot;
        let service = self.service;
        match snapshot.state {
            // Closed (or disabled) elsewhere meanwhile: an ordinary call.
            State::Closed | State::Disabled => {
                self.listeners.before_call(service);
                Ok(PermitKind::Normal {
                    generation: snapshot.generation,
                })
            }
            State::Open => self.refuse(BreakerError::Open {
                service,
                retry_at: RetryAt::after(snapshot.open_remaining.unwrap_or_default()),
            }),
            State::ForcedOpen => self.refuse(BreakerError::ForcedOpen { service }),
            _ => self.trial_in_flight(),
        }
    }
}

/// A trial request in flight. Dropped only if the caller's future is cancelled while the
/// store is asked: clears `probing` (or this process would never ask again) and gives back
/// the slot in case it was granted.
struct TrialRequest<'a> {
    cell: &'a Shared,
    token: TrialToken,
}

impl Drop for TrialRequest<'_> {
    fn drop(&mut self) {
        self.cell
            .apply_detached(Command::ReleaseTrial { token: self.token });
        self.cell.view.probing.store(false, Ordering::Release);
    }
}

/// How long a process's first calls wait for its first lease of the fleet's concurrency
/// permits (whatever `max_wait`): a process that just started has asked, not been refused.
const FIRST_LEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a call that found none of this process's permits free waits while its lease
/// could grow (it holds less than the cap, and the fleet had room at the keeper's last
/// request), whatever `max_wait`: one request of the lease's keeper to Redis. Once the
/// fleet's cap is reached, a call without a permit is saturated at once. The keeper asks
/// at most every `fleet::lease::ASK_GAP` (50 ms): the wait covers that gap and a round
/// trip (a fresh process's second burst, right after its first lease, gets its permits).
const LEASE_GROWTH_WAIT: std::time::Duration = std::time::Duration::from_millis(75);

impl Shared {
    /// Takes a permit of the concurrency cap now, if one is free (the caller then owns
    /// it and gives it back when the call ends).
    #[inline]
    pub(crate) fn take_cap_now(&self) -> bool {
        self.permits.try_take()
    }

    /// Takes a permit of the concurrency cap, waiting up to `max_wait` (a first lease up
    /// to [`FIRST_LEASE_WAIT`]): answers whether the call holds one. Without one, the
    /// rejection — or in shadow mode, the call runs without a permit (`Ok(false)`).
    #[cold]
    pub(crate) async fn take_cap(self: &Arc<Self>) -> Result<bool, BreakerError> {
        let settings = self.settings();
        let (granted, _, _) = self.permits.counts();
        let could_grow = settings.max_concurrent.is_some_and(|cap| granted < cap)
            && !self.permits.fleet_full()
            && self.bound().backend.lease_can_grow();
        let wait = if !self.permits.granted_once() {
            settings.max_wait.max(FIRST_LEASE_WAIT)
        } else if could_grow {
            settings.max_wait.max(LEASE_GROWTH_WAIT)
        } else {
            settings.max_wait
        };
        let cell: Arc<crate::local::Cell> = self.clone();
        self.permits.note_short();
        self.bound().backend.permits_wanted(&cell);
        if self.permits.take_within(wait).await {
            return Ok(true);
        }
        self.refuse(BreakerError::Saturated {
            service: self.service,
        })
        .map(|_| false)
    }

    /// Takes a permit of the concurrency cap for a call admitted as `kind`, if it needs
    /// one (an ordinary call of a breaker with `max_concurrent`; a trial takes none):
    /// answers whether it holds one.
    pub(crate) async fn cap_for(self: &Arc<Self>, kind: PermitKind) -> Result<bool, BreakerError> {
        if !matches!(kind, PermitKind::Normal { .. }) || self.measure() & crate::local::CAP == 0 {
            return Ok(false);
        }
        if self.take_cap_now() {
            return Ok(true);
        }
        self.take_cap().await
    }

    /// Gives a permit of the concurrency cap back (the call that held it ended).
    #[inline]
    pub(crate) fn give_cap_back(&self) {
        self.permits.give_back();
    }
}
