//! The breaker handle: admission, outcome recording, inspection and manual control.

use std::fmt::{self, Debug};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::backend::Backend;
use crate::call::{CallOptions, GuardedResult};
use crate::guarded::Guarded;
use crate::listener::{Listener, Listeners};
use crate::store::{Outcome, Snapshot, Store, TrialToken};
use crate::view::{Admit, View};
use crate::{BreakerError, Settings, State, StorageError};

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) service: &'static str,
    pub(crate) view: View,
    pub(crate) binding: ArcSwap<Binding>,
    pub(crate) listeners: Listeners,
}

/// What a breaker is bound to; swapped as a whole when `init` reconfigures.
pub(crate) struct Binding {
    pub(crate) settings: Settings,
    pub(crate) backend: Backend,
    pub(crate) trial_lease: Duration,
}

/// The outcome of [`Breaker::admit_now`].
pub(crate) enum Admission<'a> {
    Pass(Permit<'a>),
    Reject(BreakerError),
    /// The store must be asked (trial slot, or first load of the shared state).
    Slow,
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Counted; the breaker did not change state.
    Counted,
    /// This failure reached `fail_max` and opened the breaker.
    Tripped,
    /// This failed trial re-opened the breaker.
    TrialFailed,
    /// Not counted: the breaker changed state since the call was admitted (stale result).
    Ignored,
}

/// Permission to run one call, from [`Breaker::acquire`]. Report the outcome with
/// [`success`](Permit::success) or [`failure`](Permit::failure); dropping it unreported
/// (cancellation, panic) counts as neither and frees the trial slot if it held it.
#[must_use = "report the call's outcome with `success()` or `failure()`"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    kind: PermitKind,
}

#[derive(Clone, Copy)]
enum PermitKind {
    Normal { generation: u64 },
    Trial { token: TrialToken },
    Settled,
}

impl Breaker {
    pub(crate) fn new(service: &'static str, binding: Binding) -> Breaker {
        Breaker {
            inner: Arc::new(Inner {
                service,
                view: View::new(),
                binding: ArcSwap::from_pointee(binding),
                listeners: Listeners::default(),
            }),
        }
    }

    /// The service this breaker protects.
    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// The thresholds in force (after boot-time overrides).
    pub fn settings(&self) -> Settings {
        self.inner.binding.load().settings
    }

    /// Adds a listener for this breaker's events.
    pub fn add_listener(&self, listener: Arc<dyn Listener>) {
        self.inner.listeners.add(listener);
    }

    /// Runs `future` through the breaker with default [`CallOptions`].
    ///
    /// Rejected calls return `Err(E::from(BreakerError::Open { .. }))` without polling
    /// `future`. Inside [`skip_breaker`](crate::skip_breaker) the future runs unchecked.
    pub fn call<T, E, F>(&self, future: F) -> Guarded<'_, Result<T, E>, F>
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
    ) -> Guarded<'_, Result<T, E>, F>
    where
        F: Future<Output = Result<T, E>>,
        E: From<BreakerError> + Debug,
    {
        Guarded::new(self, options, future)
    }

    /// The form `#[circuit_breaker]` expands to: like [`call_with`](Breaker::call_with),
    /// for any [`GuardedResult`] (a `Result` under any alias).
    pub fn guard<R, F>(&self, options: CallOptions<R::Err>, future: F) -> Guarded<'_, R, F>
    where
        R: GuardedResult,
        F: Future<Output = R>,
    {
        Guarded::new(self, options, future)
    }

    /// Admission decided from the local view alone, when it can be: what a guarded
    /// call does on its first poll.
    #[inline]
    pub(crate) fn admit_now(&self) -> Admission<'_> {
        match self.inner.view.admit() {
            Admit::Pass(generation) => {
                Admission::Pass(self.admitted(PermitKind::Normal { generation }))
            }
            Admit::Reject(retry_after) => Admission::Reject(self.rejected(retry_after)),
            // Another call of this process is trying, or another process holds the trial.
            Admit::Trial if self.inner.view.trial_blocked() => {
                Admission::Reject(self.rejected(None))
            }
            Admit::Trial | Admit::Sync => Admission::Slow,
        }
    }

    /// Asks to run one call. In the closed state this never waits; after the open
    /// timeout it competes for the single trial slot.
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
    pub async fn acquire(&self) -> Result<Permit<'_>, BreakerError> {
        match self.inner.view.admit() {
            Admit::Pass(generation) => Ok(self.admitted(PermitKind::Normal { generation })),
            Admit::Reject(retry_after) => Err(self.rejected(retry_after)),
            Admit::Trial | Admit::Sync => self.acquire_slow().await,
        }
    }

    /// Admission when the view alone cannot decide: the trial slot, or a view that has
    /// not loaded the shared state yet.
    #[cold]
    pub(crate) async fn acquire_slow(&self) -> Result<Permit<'_>, BreakerError> {
        if let Admit::Sync = self.inner.view.admit() {
            self.sync().await;
        }
        match self.inner.view.admit() {
            Admit::Pass(generation) => Ok(self.admitted(PermitKind::Normal { generation })),
            Admit::Reject(retry_after) => Err(self.rejected(retry_after)),
            Admit::Trial => self.acquire_trial().await,
            // Still unknown (nothing could be loaded): behave as closed.
            Admit::Sync => Ok(self.admitted(PermitKind::Normal {
                generation: self.inner.view.generation(),
            })),
        }
    }

    /// Loads the shared state into a view that has none yet (first call of a breaker
    /// created after `init` in fleet mode), within the call deadline.
    #[cold]
    async fn sync(&self) {
        let binding = self.inner.binding.load_full();
        let snapshot = binding
            .backend
            .sync_on_call(self.inner.service, &binding.settings)
            .await;
        self.observe_snapshot(&snapshot);
    }

    #[inline(always)]
    fn admitted(&self, kind: PermitKind) -> Permit<'_> {
        let service = self.inner.service;
        self.inner
            .listeners
            .emit(service, |l| l.before_call(service));
        Permit {
            breaker: self,
            kind,
        }
    }

    #[cold]
    fn rejected(&self, retry_after: Option<Duration>) -> BreakerError {
        let service = self.inner.service;
        self.inner
            .listeners
            .emit(service, |l| l.on_rejected(service));
        BreakerError::Open {
            service,
            retry_after,
        }
    }

    #[cold]
    async fn acquire_trial(&self) -> Result<Permit<'_>, BreakerError> {
        let view = &self.inner.view;
        if view.trial_blocked() || view.probing.swap(true, Ordering::AcqRel) {
            return Err(self.rejected(None));
        }
        let token = TrialToken::new();
        let binding = self.inner.binding.load_full();
        let request = TrialRequest {
            breaker: self,
            token,
        };
        let outcome = binding
            .backend
            .acquire_trial(
                self.inner.service,
                &binding.settings,
                token,
                binding.trial_lease,
            )
            .await;
        std::mem::forget(request); // answered: the code below settles `probing`
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                view.probing.store(false, Ordering::Release);
                tracing::debug!(service = self.inner.service, %error, "trial acquisition failed");
                return Err(self.rejected(None));
            }
        };
        if outcome.applied {
            self.observe_snapshot(&outcome.snapshot);
            return Ok(self.admitted(PermitKind::Trial { token }));
        }
        // Not ours: clear `probing` first, so that observing a trial held elsewhere sets
        // the time before this process asks again.
        view.probing.store(false, Ordering::Release);
        self.observe_snapshot(&outcome.snapshot);
        let snapshot = outcome.snapshot;
        match snapshot.state {
            // Closed elsewhere meanwhile: an ordinary call.
            State::Closed => Ok(self.admitted(PermitKind::Normal {
                generation: snapshot.generation,
            })),
            State::Open => Err(self.rejected(snapshot.open_remaining)),
            State::HalfOpen => Err(self.rejected(None)),
        }
    }

    /// Replaces the view with `snapshot` whatever its version (a store taking over) and
    /// tells listeners about the state change.
    pub(crate) fn adopt_snapshot(&self, snapshot: &Snapshot) {
        if let Some((from, to)) = self.inner.view.force(snapshot) {
            self.notify_change(from, to);
        }
    }

    /// Takes in a snapshot (a store answer, a pub/sub event, a resync) and tells
    /// listeners about the state change it shows. Notifying exactly when this process's
    /// view changes means a change is told once, whether the script's reply or the
    /// pub/sub echo of the same write arrives first.
    pub(crate) fn observe_snapshot(&self, snapshot: &Snapshot) {
        if let Some((from, to)) = self.inner.view.apply(snapshot) {
            self.notify_change(from, to);
        }
    }

    pub(crate) fn notify_change(&self, from: State, to: State) {
        let service = self.inner.service;
        match to {
            State::Open => tracing::warn!(service, %from, %to, "circuit breaker opened"),
            _ => tracing::info!(service, %from, %to, "circuit breaker state changed"),
        }
        self.inner
            .listeners
            .emit(service, |l| l.on_state_change(service, from, to));
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
        let binding = self.inner.binding.load_full();
        let snapshot = binding
            .backend
            .snapshot(self.inner.service, &binding.settings)
            .await?;
        self.observe_snapshot(&snapshot);
        Ok(snapshot)
    }

    /// Opens the breaker for `reset_timeout`, as if it had tripped.
    pub async fn open(&self) -> Result<(), StorageError> {
        self.force(State::Open).await
    }

    /// Moves the breaker to half-open: the next call is a trial.
    pub async fn half_open(&self) -> Result<(), StorageError> {
        self.force(State::HalfOpen).await
    }

    /// Closes the breaker and resets its counters.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.force(State::Closed).await
    }

    async fn force(&self, to: State) -> Result<(), StorageError> {
        let binding = self.inner.binding.load_full();
        let outcome = binding
            .backend
            .force(self.inner.service, &binding.settings, to)
            .await?;
        let seen = self.inner.view.apply(&outcome.snapshot);
        // As pybreaker: manual transitions always notify, even to the same state; a real
        // change is told by whichever of the reply and its pub/sub echo arrives first.
        if seen.is_some() || outcome.from == outcome.snapshot.state {
            self.notify_change(outcome.from, outcome.snapshot.state);
        }
        Ok(())
    }

    /// Rebinds to a new store and settings (at `init`), then loads the stored state.
    pub(crate) async fn rebind(&self, binding: Binding) -> Result<(), StorageError> {
        let settings = binding.settings;
        let backend = binding.backend.clone();
        self.inner.binding.store(Arc::new(binding));
        let snapshot = backend.register(self.inner.service, &settings).await?;
        self.adopt_snapshot(&snapshot);
        Ok(())
    }
}

impl Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("service", &self.inner.service)
            .field("state", &self.inner.view.state())
            .field("generation", &self.inner.view.generation())
            .field("settings", &self.settings())
            .finish()
    }
}

impl<'a> Permit<'a> {
    /// Whether this permit is the half-open trial call.
    pub fn is_trial(&self) -> bool {
        matches!(self.kind, PermitKind::Trial { .. })
    }

    /// Settles a success that needs no store round trip (closed, nothing to reset)
    /// without awaiting; hands the permit back otherwise.
    #[inline]
    pub(crate) fn success_now(mut self) -> Result<(), Self> {
        match self.kind {
            PermitKind::Normal { generation }
                if !self.breaker.inner.view.needs_reset(generation) =>
            {
                self.kind = PermitKind::Settled;
                let service = self.breaker.inner.service;
                self.breaker
                    .inner
                    .listeners
                    .emit(service, |l| l.on_success(service));
                Ok(())
            }
            _ => Err(self),
        }
    }

    /// Records a success (also what an excluded error counts as).
    pub async fn success(mut self) {
        let breaker = self.breaker;
        let inner = &breaker.inner;
        let service = inner.service;
        // The kind stays until the verdict is recorded: if this future is dropped on the
        // way, `Drop` still gives the trial slot back.
        match self.kind {
            PermitKind::Normal { generation } => {
                // The healthy path: nothing to reset, no store round trip.
                if inner.view.needs_reset(generation)
                    && !inner.view.resetting.swap(true, Ordering::AcqRel)
                {
                    breaker.reset_fail_counter(generation).await;
                }
            }
            PermitKind::Trial { token } => {
                let outcome = breaker.settle_trial(token, true).await;
                self.kind = PermitKind::Settled;
                breaker.record_outcome(outcome);
            }
            PermitKind::Settled => {}
        }
        inner.listeners.emit(service, |l| l.on_success(service));
    }

    /// Records a failure; tells whether it tripped the breaker.
    ///
    /// The error is only shown to listeners (before anything is awaited), so the returned
    /// future does not borrow it and stays `Send`.
    pub fn failure(self, error: &dyn Debug) -> impl Future<Output = Verdict> + Send + 'a {
        let breaker = self.breaker;
        let service = breaker.inner.service;
        breaker
            .inner
            .listeners
            .emit(service, |l| l.on_failure(service, error));
        let kind = self.kind;
        async move {
            // Owned until the verdict is recorded, so that dropping this future on the way
            // gives the trial slot back (see `Drop`).
            let mut permit = self;
            let inner = &breaker.inner;
            match kind {
                PermitKind::Normal { generation } => {
                    if inner.view.generation() != generation {
                        return Verdict::Ignored; // the breaker moved on: stale
                    }
                    let binding = inner.binding.load_full();
                    let outcome = binding
                        .backend
                        .record_failure(service, &binding.settings, generation)
                        .await;
                    match breaker.record_outcome(outcome) {
                        Some(o) if o.changed_state() && o.snapshot.state == State::Open => {
                            Verdict::Tripped
                        }
                        Some(o) if o.applied => Verdict::Counted,
                        _ => Verdict::Ignored,
                    }
                }
                PermitKind::Trial { token } => {
                    let outcome = breaker.settle_trial(token, false).await;
                    permit.kind = PermitKind::Settled;
                    match breaker.record_outcome(outcome) {
                        Some(o) if o.applied => Verdict::TrialFailed,
                        _ => Verdict::Ignored,
                    }
                }
                PermitKind::Settled => Verdict::Ignored,
            }
        }
    }
}

impl Breaker {
    /// Resets the (fleet's) fail counter once after failures. With a remote store it is
    /// sent in the background: a successful call in the closed state never waits.
    async fn reset_fail_counter(&self, generation: u64) {
        let binding = self.inner.binding.load_full();
        let reset = {
            let breaker = self.clone();
            async move {
                let outcome = binding
                    .backend
                    .record_success(breaker.inner.service, &binding.settings, generation)
                    .await;
                // Apply the reply (clearing the dirty bit) before allowing another reset,
                // or a concurrent success would send a second one.
                breaker.record_outcome(outcome);
                breaker.inner.view.resetting.store(false, Ordering::Release);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if self.inner.binding.load().backend.is_remote() => {
                runtime.spawn(reset);
            }
            _ => reset.await,
        }
    }

    async fn settle_trial(
        &self,
        token: TrialToken,
        success: bool,
    ) -> Result<Outcome, StorageError> {
        let binding = self.inner.binding.load_full();
        let outcome = binding
            .backend
            .record_trial(self.inner.service, &binding.settings, token, success)
            .await;
        if !matches!(&outcome, Ok(o) if o.applied) {
            // Not recorded (store error, lease lost): give the slot back now rather than
            // leaving the fleet to wait for the lease; the token makes this safe.
            binding.backend.release_trial(self.inner.service, token);
        }
        self.inner.view.probing.store(false, Ordering::Release);
        outcome
    }

    fn record_outcome(&self, outcome: Result<Outcome, StorageError>) -> Option<Outcome> {
        match outcome {
            Ok(outcome) => {
                self.observe_snapshot(&outcome.snapshot);
                Some(outcome)
            }
            Err(error) => {
                tracing::debug!(service = self.inner.service, %error, "recording an outcome failed");
                None
            }
        }
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
        let inner = &self.breaker.inner;
        inner
            .binding
            .load()
            .backend
            .release_trial(inner.service, self.token);
        inner.view.probing.store(false, Ordering::Release);
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if let PermitKind::Trial { token } = self.kind {
            release_abandoned_trial(self.breaker, token);
        }
    }
}

/// A trial was cancelled or panicked: free the slot so the breaker cannot wedge.
#[cold]
#[inline(never)]
fn release_abandoned_trial(breaker: &Breaker, token: TrialToken) {
    let inner = &breaker.inner;
    inner
        .binding
        .load()
        .backend
        .release_trial(inner.service, token);
    inner.view.probing.store(false, Ordering::Release);
}
