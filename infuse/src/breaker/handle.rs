//! The breaker handle: admission, inspection and manual control.

use std::fmt::{self, Debug};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::breaker::guarded::Guarded;
use crate::breaker::options::{CallOptions, GuardedResult};
use crate::breaker::permit::{Permit, PermitKind};
use crate::core::{
    check_duration, BreakerError, Command, Outcome, RetryAt, Settings, Snapshot, State,
    StorageError, Target, TransitionReason, TrialToken,
};
use crate::local::{Admit, Cell, Listener};

/// A cheap, clonable handle to one service's breaker.
///
/// Every handle of a service (and every `#[circuit_breaker]` function naming it) shares
/// one state and one counter. Get one with [`infuse::breaker`](crate::breaker).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), infuse::StorageError> {
/// let users = infuse::breaker("doc-users");
/// let reply: Result<&str, infuse::BreakerError> = users.call(async { Ok("hello") }).await;
/// assert_eq!(reply, Ok("hello"));
///
/// users.open().await?; // operators can force states
/// let rejected: Result<&str, infuse::BreakerError> = users.call(async { Ok("never runs") }).await;
/// assert!(matches!(rejected, Err(infuse::BreakerError::Open { .. })));
/// assert_eq!(users.state().await?, infuse::State::Open);
/// users.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Breaker {
    /// The whole handle: one `Arc`, so that an owned call costs one reference count.
    pub(crate) cell: Arc<Cell>,
}

/// What a breaker is bound to; swapped as a whole when `init` reconfigures. Kept in the
/// cell (which does not know its type); read on slow paths only.
#[derive(Clone)]
pub(crate) struct Binding {
    pub(crate) backend: Backend,
    pub(crate) trial_lease: Duration,
}

impl Binding {
    /// How long a trial holds the fleet's slot: derived from the trial's limit when it
    /// has one (so that the slot outlives the call, with a margin for recording the
    /// result), else the registry's `trial_lease`.
    pub(crate) fn lease_for(&self, settings: &Settings) -> Duration {
        match settings.trial_limit() {
            Some(limit) => {
                limit + (limit / 2).clamp(Duration::from_millis(100), Duration::from_secs(1))
            }
            None => self.trial_lease,
        }
    }
}

/// The longest a breaker can be opened for by hand with [`Breaker::open_for`] (30 days);
/// [`Breaker::force_open`] holds it open without a time limit.
pub const MAX_OPEN_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Counted; the breaker did not change state.
    Counted,
    /// This failure opened the breaker.
    Tripped,
    /// This failed trial re-opened the breaker.
    TrialFailed,
    /// Not counted: the breaker changed state since the call was admitted (stale result).
    Ignored,
}

impl Breaker {
    pub(crate) fn new(cell: Arc<Cell>) -> Breaker {
        Breaker { cell }
    }

    /// The store and lease this breaker is bound to (slow paths only).
    pub(crate) fn binding(&self) -> Binding {
        self.cell
            .binding()
            .downcast_ref::<Binding>()
            .expect("a breaker's cell holds its binding")
            .clone()
    }

    /// The service this breaker protects.
    pub fn service(&self) -> &'static str {
        self.cell.service
    }

    /// The thresholds in force (after boot-time overrides).
    pub fn settings(&self) -> Settings {
        self.cell.settings()
    }

    /// Adds a listener for this breaker's events.
    pub fn add_listener(&self, listener: Arc<dyn Listener>) {
        self.cell.add_listener(listener);
    }

    /// Runs `future` through the breaker with default [`CallOptions`].
    ///
    /// Rejected calls return `Err(E::from(BreakerError::Open { .. }))` (or another
    /// rejection) without polling `future`. Inside [`skip_breaker`](crate::skip_breaker)
    /// the future runs unchecked. The returned future borrows the breaker; see
    /// [`call_owned`](Breaker::call_owned) for one that does not.
    pub fn call<T, E, F>(&self, future: F) -> Guarded<&Breaker, Result<T, E>, F>
    where
        F: Future<Output = Result<T, E>>,
        E: From<BreakerError> + Debug,
    {
        Guarded::new(self, CallOptions::new(), future)
    }

    /// Runs `future` through the breaker with the given options.
    pub fn call_with<T, E, F>(
        &self,
        options: CallOptions<E>,
        future: F,
    ) -> Guarded<&Breaker, Result<T, E>, F>
    where
        F: Future<Output = Result<T, E>>,
        E: From<BreakerError> + Debug,
    {
        Guarded::new(self, options, future)
    }

    /// The form `#[circuit_breaker]` expands to: like [`call_with`](Breaker::call_with),
    /// for any [`GuardedResult`] (a `Result` under any alias).
    pub fn guard<R, F>(&self, options: CallOptions<R::Err>, future: F) -> Guarded<&Breaker, R, F>
    where
        R: GuardedResult,
        F: Future<Output = R>,
    {
        Guarded::new(self, options, future)
    }

    /// Like [`call_with`](Breaker::call_with), but the returned future owns a handle to
    /// the breaker: it is `'static` whenever `future` is, so it can be spawned or
    /// returned from a tower `Service`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let users = infuse::breaker("doc-owned");
    /// let call = users.call_owned(infuse::CallOptions::new(), async { Ok::<_, infuse::BreakerError>(7) });
    /// let joined = tokio::spawn(call).await.unwrap();
    /// assert_eq!(joined, Ok(7));
    /// # }
    /// ```
    pub fn call_owned<R, F>(
        &self,
        options: CallOptions<R::Err>,
        future: F,
    ) -> Guarded<Breaker, R, F>
    where
        R: GuardedResult,
        F: Future<Output = R>,
    {
        Guarded::new(self.clone(), options, future)
    }

    /// Asks to run one call. In the closed state this never waits; after the open time
    /// it competes for the single trial slot. Report the outcome on the permit.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), infuse::BreakerError> {
    /// let breaker = infuse::breaker("doc-manual");
    /// let permit = breaker.acquire().await?;
    /// match std::fs::metadata("/") {
    ///     Ok(_) => permit.success().await,
    ///     Err(e) => { permit.failure(&e).await; }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn acquire(&self) -> Result<Permit<&Breaker>, BreakerError> {
        let kind = self.admit().await?;
        Ok(Permit::new(self, kind))
    }

    /// Like [`acquire`](Breaker::acquire), with a permit that owns a handle to the
    /// breaker (to move it into a spawned task).
    pub async fn acquire_owned(&self) -> Result<Permit<Breaker>, BreakerError> {
        let kind = self.admit().await?;
        Ok(Permit::new(self.clone(), kind))
    }

    /// Admission, waiting on the store only when the view cannot decide.
    pub(crate) async fn admit(&self) -> Result<PermitKind, BreakerError> {
        match self.admit_now() {
            Ok(Some(kind)) => Ok(kind),
            Ok(None) => self.admit_slow().await,
            Err(rejected) => Err(rejected),
        }
    }

    /// Admission from the local view alone, when it can decide (`Ok(None)`: ask the
    /// store). Tells listeners.
    #[inline(always)]
    pub(crate) fn admit_now(&self) -> Result<Option<PermitKind>, BreakerError> {
        match self.cell.view.admit() {
            Admit::Pass(generation) => {
                self.before_call();
                Ok(Some(PermitKind::Normal { generation }))
            }
            Admit::RejectOpen(until) => Err(self.rejected_open(until)),
            other => self.admit_other(other),
        }
    }

    /// The rejection of a call while open (until `until`, on the fast-path clock).
    #[inline(always)]
    pub(crate) fn rejected_open(&self, until: u64) -> BreakerError {
        self.rejected(BreakerError::Open {
            service: self.cell.service,
            retry_at: RetryAt(until),
        })
    }

    /// Admission in every case but a closed or open breaker's.
    #[cold]
    #[inline(never)]
    pub(crate) fn admit_other(&self, admit: Admit) -> Result<Option<PermitKind>, BreakerError> {
        let service = self.cell.service;
        match admit {
            Admit::Pass(generation) => {
                self.before_call();
                Ok(Some(PermitKind::Normal { generation }))
            }
            Admit::RejectOpen(until) => Err(self.rejected(BreakerError::Open {
                service,
                retry_at: RetryAt(until),
            })),
            Admit::RejectForced => Err(self.rejected(BreakerError::ForcedOpen { service })),
            // Another call of this process is trying, or another process holds the trial.
            Admit::Trial if self.cell.view.trial_blocked() => Err(self.trial_in_flight()),
            Admit::Trial | Admit::Sync => Ok(None),
        }
    }

    /// Admission when the view alone cannot decide: the trial slot, or a view that has
    /// not loaded the shared state yet.
    #[cold]
    pub(crate) async fn admit_slow(&self) -> Result<PermitKind, BreakerError> {
        if let Admit::Sync = self.cell.view.admit() {
            let binding = self.binding();
            let snapshot = binding
                .backend
                .load(self.cell.service, &self.settings())
                .await;
            self.cell.observe(&snapshot);
        }
        match self.cell.view.admit() {
            Admit::Trial => self.acquire_trial().await,
            // Still unknown (nothing could be loaded): behave as closed.
            Admit::Sync => {
                self.before_call();
                Ok(PermitKind::Normal {
                    generation: self.cell.view.generation(),
                })
            }
            other => match self.admit_other(other)? {
                Some(kind) => Ok(kind),
                None => Err(self.trial_in_flight()),
            },
        }
    }

    #[inline(always)]
    pub(crate) fn before_call(&self) {
        let service = self.cell.service;
        self.cell
            .listeners
            .emit(service, |l, service| l.before_call(service));
    }

    #[inline(always)]
    fn rejected(&self, error: BreakerError) -> BreakerError {
        let service = self.cell.service;
        self.cell
            .listeners
            .emit(service, |l, service| l.on_rejected(service));
        error
    }

    #[cold]
    fn trial_in_flight(&self) -> BreakerError {
        self.rejected(BreakerError::TrialInFlight {
            service: self.cell.service,
            retry_at: RetryAt(self.cell.view.trial_retry_at()),
        })
    }

    #[cold]
    async fn acquire_trial(&self) -> Result<PermitKind, BreakerError> {
        let view = &self.cell.view;
        if view.trial_blocked() || view.probing.swap(true, Ordering::AcqRel) {
            return Err(self.trial_in_flight());
        }
        let token = TrialToken::new();
        let binding = self.binding();
        let request = TrialRequest {
            breaker: self,
            token,
        };
        let lease = binding.lease_for(&self.settings());
        let command = Command::AcquireTrial { token, lease };
        let outcome = binding
            .backend
            .apply(self.cell.service, &self.settings(), command)
            .await;
        std::mem::forget(request); // answered: the code below settles `probing`
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                view.probing.store(false, Ordering::Release);
                tracing::debug!(service = self.cell.service, %error, "trial acquisition failed");
                return Err(self.trial_in_flight());
            }
        };
        if outcome.applied {
            view.trial_taken(lease);
            self.cell
                .observe_because(&outcome.snapshot, Some(TransitionReason::OpenElapsed));
            self.before_call();
            return Ok(PermitKind::Trial { token });
        }
        // Not ours: clear `probing` first, so that observing a trial held elsewhere sets
        // the time before this process asks again.
        view.probing.store(false, Ordering::Release);
        self.cell.observe(&outcome.snapshot);
        let snapshot = outcome.snapshot;
        let service = self.cell.service;
        match snapshot.state {
            // Closed (or disabled) elsewhere meanwhile: an ordinary call.
            State::Closed | State::Disabled => {
                self.before_call();
                Ok(PermitKind::Normal {
                    generation: snapshot.generation,
                })
            }
            State::Open => Err(self.rejected(BreakerError::Open {
                service,
                retry_at: RetryAt::after(snapshot.open_remaining.unwrap_or_default()),
            })),
            State::ForcedOpen => Err(self.rejected(BreakerError::ForcedOpen { service })),
            _ => Err(self.trial_in_flight()),
        }
    }

    /// The breaker's current state, read from the store.
    pub async fn state(&self) -> Result<State, StorageError> {
        Ok(self.snapshot().await?.state)
    }

    /// Consecutive failures (fleet-wide with Redis), read from the store.
    pub async fn fail_counter(&self) -> Result<u32, StorageError> {
        Ok(self.snapshot().await?.fail_counter)
    }

    /// Successful trial calls in the current half-open period, read from the store.
    pub async fn success_counter(&self) -> Result<u32, StorageError> {
        Ok(self.snapshot().await?.success_counter)
    }

    /// Everything the store knows about this breaker.
    pub async fn snapshot(&self) -> Result<Snapshot, StorageError> {
        let outcome = self.apply(Command::Snapshot).await?;
        self.cell.observe(&outcome.snapshot);
        Ok(outcome.snapshot)
    }

    /// Opens the breaker for its `reset_timeout`, as if it had tripped.
    pub async fn open(&self) -> Result<(), StorageError> {
        self.force(Target::Open(self.settings().reset_timeout))
            .await
    }

    /// Opens the breaker for `duration` (at most [`MAX_OPEN_FOR`], 30 days), e.g. for a
    /// maintenance window; then a trial call decides as usual. With Redis, for the whole
    /// fleet.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), infuse::StorageError> {
    /// use std::time::Duration;
    /// let payments = infuse::breaker("doc-payments");
    /// payments.open_for(Duration::from_secs(30 * 60)).await?;
    /// let left = payments.snapshot().await?.open_remaining.unwrap();
    /// assert!(left > Duration::from_secs(29 * 60));
    /// # payments.close().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StorageError::InvalidInput`] naming the limit when `duration` is zero or longer
    /// than [`MAX_OPEN_FOR`] (nothing is changed); otherwise the store's error.
    pub async fn open_for(&self, duration: Duration) -> Result<(), StorageError> {
        check_duration("open_for", duration, MAX_OPEN_FOR).map_err(|reason| {
            StorageError::InvalidInput(format!(
                "{reason}; to hold a breaker open until closed by hand, use force_open()"
            ))
        })?;
        self.force(Target::Open(duration)).await
    }

    /// Moves the breaker to half-open: the next call is a trial.
    pub async fn half_open(&self) -> Result<(), StorageError> {
        self.force(Target::HalfOpen).await
    }

    /// Closes the breaker and resets its counters; ends a forced state. With Redis, also
    /// repairs a record holding garbage.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.force(Target::Closed).await
    }

    /// Holds the breaker open until [`close`](Breaker::close): every call is rejected
    /// with [`BreakerError::ForcedOpen`], and no trial is made. With Redis, for the whole
    /// fleet, and the record does not expire.
    pub async fn force_open(&self) -> Result<(), StorageError> {
        self.force(Target::ForcedOpen).await
    }

    /// Disables the breaker until [`close`](Breaker::close): every call runs and is
    /// counted, but nothing trips. With Redis, for the whole fleet.
    pub async fn disable(&self) -> Result<(), StorageError> {
        self.force(Target::Disabled).await
    }

    async fn force(&self, target: Target) -> Result<(), StorageError> {
        let outcome = self.apply(Command::Force(target)).await?;
        let manual = Some(TransitionReason::Manual);
        let seen = self.cell.observe_because(&outcome.snapshot, manual);
        // As pybreaker: manual transitions always notify, even to the same state; a real
        // change is told by whichever of the reply and its pub/sub echo arrives first.
        if seen.is_none() && outcome.from == outcome.snapshot.state {
            self.cell.notify_change(
                outcome.from,
                outcome.snapshot.state,
                outcome.snapshot.generation,
                manual,
            );
        }
        Ok(())
    }

    pub(crate) async fn apply(&self, command: Command) -> Result<Outcome, StorageError> {
        let binding = self.binding();
        binding
            .backend
            .apply(self.cell.service, &self.settings(), command)
            .await
    }

    /// Sends a command without waiting for its answer (from a `Drop`).
    pub(crate) fn apply_detached(&self, command: Command) {
        self.binding()
            .backend
            .apply_detached(self.cell.service, self.settings(), command);
    }

    pub(crate) fn is_remote(&self) -> bool {
        self.binding().backend.is_remote()
    }

    /// Rebinds to a new store and settings (at `init`), then loads the stored state.
    ///
    /// A breaker whose record holds garbage does not fail the boot: its calls follow the
    /// unavailable-policy until `close()` repairs it. An unreachable store fails it unless
    /// `degraded_ok` (the process was told to start degraded).
    pub(crate) async fn rebind(
        &self,
        settings: Settings,
        binding: Binding,
        degraded_ok: bool,
    ) -> Result<(), StorageError> {
        let backend = binding.backend.clone();
        self.cell.set_settings(settings);
        self.cell.set_binding(Box::new(binding));
        backend.track(&self.cell);
        // The view came from another store: offer no seed.
        let register = Command::Register { seed: None };
        let snapshot = match backend.apply(self.cell.service, &settings, register).await {
            Ok(outcome) => outcome.snapshot,
            Err(StorageError::Corrupt(_)) => backend.load(self.cell.service, &settings).await,
            Err(_) if degraded_ok => backend.load(self.cell.service, &settings).await,
            Err(error) => return Err(error),
        };
        self.cell.adopt(&snapshot);
        Ok(())
    }
}

impl Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("service", &self.cell.service)
            .field("state", &self.cell.view.state())
            .field("generation", &self.cell.view.generation())
            .field("settings", &self.settings())
            .finish()
    }
}

/// A trial request in flight. Dropped only if the caller's future is cancelled while the
/// store is asked: clears `probing` (or this process would never ask again) and gives back
/// the slot in case it was granted.
struct TrialRequest<'a> {
    breaker: &'a Breaker,
    token: TrialToken,
}

impl Drop for TrialRequest<'_> {
    fn drop(&mut self) {
        self.breaker
            .apply_detached(Command::ReleaseTrial { token: self.token });
        self.breaker
            .cell
            .view
            .probing
            .store(false, Ordering::Release);
    }
}
