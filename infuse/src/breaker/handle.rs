//! The breaker handle's methods: running calls, inspection, manual control and binding
//! to a store. (The type itself is defined with what its handles share, in `shared.rs`:
//! below the permit and the guarded call that hold one.)

use std::fmt::{self, Debug};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::breaker::guarded::Guarded;
use crate::breaker::options::{CallOptions, GuardedResult};
use crate::breaker::permit::Permit;
use crate::breaker::shared::{Binding, Breaker};
use crate::core::{
    check_duration, BreakerError, Command, Settings, Snapshot, State, StorageError, Target,
    TransitionReason,
};
use crate::local::{Cell, Listener};

/// The longest a breaker can be opened for by hand with [`Breaker::open_for`] (30 days);
/// [`Breaker::force_open`] holds it open without a time limit.
pub const MAX_OPEN_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

impl Breaker {
    /// A breaker of `service`, bound to `binding`; the registry loads its state.
    pub(crate) fn new(service: &'static str, settings: Settings, binding: Binding) -> Breaker {
        Breaker {
            cell: Cell::new(service, settings, ArcSwap::from_pointee(binding)),
        }
    }

    /// This breaker's cell as the fleet layer keeps it (not knowing the binding).
    pub(crate) fn cell(&self) -> Arc<Cell> {
        self.cell.clone()
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
        let kind = self.cell.admit().await?;
        Ok(Permit::new(self, kind))
    }

    /// Like [`acquire`](Breaker::acquire), with a permit that owns a handle to the
    /// breaker (to move it into a spawned task).
    pub async fn acquire_owned(&self) -> Result<Permit<Breaker>, BreakerError> {
        let kind = self.cell.admit().await?;
        Ok(Permit::new(self.clone(), kind))
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
        let outcome = self.cell.apply(Command::Snapshot).await?;
        self.cell.observe(&outcome.snapshot);
        Ok(outcome.snapshot)
    }

    /// Whether the breaker is in shadow mode in this process: the operator's switch
    /// ([`set_shadow`](Breaker::set_shadow)) as last seen in the store, else the `shadow`
    /// setting. In shadow mode the breaker trips and records as usual but rejects no call.
    pub fn shadow(&self) -> bool {
        self.cell.shadow()
    }

    /// How many calls this process ran in shadow mode that the breaker would have
    /// rejected (open, held open, a trial in flight), since the process started. The
    /// fleet's total is the sum over processes (each also exports it as the metric
    /// `infuse_calls_total{outcome="shadow_rejected"}`).
    pub fn would_reject(&self) -> u64 {
        self.cell
            .would_reject
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Switches the breaker in (`true`) or out of shadow mode, overriding the `shadow`
    /// setting until switched again. The state machine is unchanged (a breaker open in
    /// shadow mode starts rejecting when switched out). With Redis, for the whole fleet:
    /// kept in the breaker's record, written to its history, and followed by every
    /// process within a second (pub/sub, resync).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), infuse::StorageError> {
    /// let search = infuse::breaker("doc-search");
    /// search.set_shadow(true).await?;
    /// search.force_open().await?;
    /// let ran: Result<&str, infuse::BreakerError> = search.call(async { Ok("ran") }).await;
    /// assert_eq!(ran, Ok("ran"));
    /// assert_eq!(search.would_reject(), 1);
    /// search.set_shadow(false).await?;
    /// let rejected: Result<&str, infuse::BreakerError> = search.call(async { Ok("ran") }).await;
    /// assert!(rejected.is_err());
    /// # search.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_shadow(&self, on: bool) -> Result<(), StorageError> {
        let outcome = self.cell.apply(Command::SetShadow { on }).await?;
        self.cell.observe(&outcome.snapshot);
        Ok(())
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
        let outcome = self.cell.apply(Command::Force(target)).await?;
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
        self.cell.binding.store(Arc::new(binding));
        backend.track(&self.cell());
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
