//! The breaker handle's methods: running calls, inspection, manual control and binding
//! to a store. (The type itself is defined with what its handles share, in `shared.rs`:
//! below the permit and the guarded call that hold one.)

use std::fmt::{self, Debug};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::breaker::control::Control;
#[cfg(doc)]
use crate::breaker::control::MAX_OPEN_FOR;
use crate::breaker::guarded::Guarded;
use crate::breaker::options::{CallOptions, GuardedResult};
use crate::breaker::permit::Permit;
use crate::breaker::retry;
use crate::breaker::shared::{Binding, Breaker};
use crate::core::{
    BreakerError, Command, Settings, Snapshot, State, StorageError, TransitionReason,
};
use crate::local::{Cell, Listener};
use crate::store::redis::keys::Audit;

impl Breaker {
    /// A breaker of `service`, bound to `binding`; the registry loads its state.
    pub(crate) fn new(service: &'static str, settings: Settings, binding: Binding) -> Breaker {
        let backend = binding.backend.clone();
        let breaker = Breaker {
            cell: Cell::new(service, settings, ArcSwap::from_pointee(binding)),
        };
        backend.bind_permits(&breaker.cell());
        breaker
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

    /// Runs a call through the breaker, and again after a failure, up to the breaker's
    /// [`retries`](Settings::retries) times: `make` makes each attempt's future, and
    /// each attempt is a guarded call of its own. Before each retry the call waits a
    /// random time up to `retry_backoff × 2^n` (at most `max_retry_backoff`: full
    /// jitter), and takes a token of the retry budget (`retry_budget` percent of the
    /// first attempts over 10 s, or `retry_min_per_sec` a second; with Redis, the
    /// fleet's). Returns the first success, else the last attempt's error.
    ///
    /// Only failures as the breaker counts them are retried (an error that is neither
    /// ignored nor excluded, or a timeout), never a rejection, and none once the breaker
    /// stops letting calls through. Without `retries` set, this is one
    /// [`call`](Breaker::call).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), infuse::InitError> {
    /// use infuse::{Config, ServiceOverride};
    ///
    /// let config = Config::in_memory().service("doc-flaky", ServiceOverride::new().retries(2));
    /// let registry = infuse::Registry::new(config).await?;
    /// let flaky = registry.breaker("doc-flaky");
    /// let mut attempts = 0;
    /// let answer = flaky
    ///     .call_retrying(|| {
    ///         attempts += 1;
    ///         let attempt = attempts;
    ///         async move {
    ///             match attempt {
    ///                 1 => Err(std::io::Error::other("connection reset")),
    ///                 _ => Ok("pong"),
    ///             }
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(answer.unwrap(), "pong");
    /// assert_eq!(attempts, 2);
    /// # Ok(()) }
    /// ```
    pub async fn call_retrying<T, E, F, M>(&self, make: M) -> Result<T, E>
    where
        M: FnMut() -> F,
        F: Future<Output = Result<T, E>>,
        E: From<BreakerError> + Debug,
    {
        retry::call_retrying(self, CallOptions::new(), None, make).await
    }

    /// Like [`call_retrying`](Breaker::call_retrying), with the call site's options and
    /// `retry_if`: when given, only errors for which it returns true are retried (the
    /// attribute's `retry_if = path::to_fn`).
    pub async fn call_retrying_with<T, E, F, M>(
        &self,
        options: CallOptions<E>,
        retry_if: Option<fn(&E) -> bool>,
        make: M,
    ) -> Result<T, E>
    where
        M: FnMut() -> F,
        F: Future<Output = Result<T, E>>,
        E: From<BreakerError> + Debug,
    {
        retry::call_retrying(self, options, retry_if, make).await
    }

    /// This breaker's retry budget, for a retry loop of your own (tower's `Retry`):
    /// [`deposit`](retry::RetryBudget::deposit) a first attempt,
    /// [`withdraw`](retry::RetryBudget::withdraw) a retry. It never waits: see
    /// [`RetryBudget`](retry::RetryBudget) for what that costs with Redis.
    pub fn retry_budget(&self) -> retry::RetryBudget {
        retry::RetryBudget::new(self.clone())
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
        let capped = self.cell.cap_for(kind).await?;
        Ok(Permit::holding(self, kind, capped))
    }

    /// Like [`acquire`](Breaker::acquire), with a permit that owns a handle to the
    /// breaker (to move it into a spawned task).
    pub async fn acquire_owned(&self) -> Result<Permit<Breaker>, BreakerError> {
        let kind = self.cell.admit().await?;
        let capped = self.cell.cap_for(kind).await?;
        Ok(Permit::holding(self.clone(), kind, capped))
    }

    /// The breaker's current state, read from the store. A breaker in slow start is
    /// [`State::Closed`]; [`slow_start`](Breaker::slow_start) tells the share of calls it
    /// admits.
    pub async fn state(&self) -> Result<State, StorageError> {
        Ok(self.snapshot().await?.state)
    }

    /// While the breaker is in slow start (it closed after a recovery less than
    /// `slow_start` ago): the share of calls admitted now, in percent, from
    /// `slow_start_min` up to 100. `None` otherwise, or without `slow_start`. Read from
    /// the store, timed on its clock ([`Snapshot::since_close`]), as every process of a
    /// fleet admits it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use infuse::{Config, Registry, ServiceOverride};
    /// let slow = ServiceOverride::new().slow_start(Duration::from_secs(30));
    /// let registry = Registry::new(Config::in_memory().service("users", slow)).await?;
    /// let users = registry.breaker("users");
    /// assert_eq!(users.slow_start().await?, None, "never tripped: no recovery to ramp");
    /// users.open().await?;
    /// users.close().await?; // an operator's close, as a successful trial
    /// assert_eq!(users.slow_start().await?, Some(10));
    /// tokio::time::sleep(Duration::from_secs(15)).await;
    /// assert_eq!(users.slow_start().await?, Some(55));
    /// tokio::time::sleep(Duration::from_secs(15)).await;
    /// assert_eq!(users.slow_start().await?, None, "over");
    /// # Ok(()) }
    /// ```
    pub async fn slow_start(&self) -> Result<Option<u8>, StorageError> {
        let since_close = self.snapshot().await?.since_close;
        Ok(since_close.and_then(|since| self.settings().slow_start_share(since)))
    }

    /// The concurrency cap as this process sees it (`None` without `max_concurrent`):
    /// the cap, the permits this process may use (the cap in memory; with Redis, its
    /// lease of the fleet's cap), those its calls use now, and the calls waiting for one.
    /// Read from this process, no store round trip.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), infuse::InitError> {
    /// use infuse::{Config, Registry, ServiceOverride};
    ///
    /// let capped = ServiceOverride::new().max_concurrent(64);
    /// let registry = Registry::new(Config::in_memory().service("doc-capped", capped)).await?;
    /// let concurrency = registry.breaker("doc-capped").concurrency().unwrap();
    /// assert_eq!((concurrency.cap, concurrency.permits, concurrency.in_use), (64, 64, 0));
    /// # Ok(()) }
    /// ```
    pub fn concurrency(&self) -> Option<Concurrency> {
        let cap = self.settings().max_concurrent?;
        let (permits, in_use, waiting) = self.cell.permits.counts();
        Some(Concurrency {
            cap,
            permits,
            in_use,
            waiting,
        })
    }

    /// The retry budget as this process spent it (`None` without `retries`): the retries
    /// it took from the budget since it started (with Redis, tokens of the fleet's
    /// budget, or of its own while Redis cannot answer). Each is a retry
    /// [`call_retrying`](Breaker::call_retrying) made (or is about to make, after its
    /// backoff), counted as the metric `infuse_retries_total` counts them. The fleet's
    /// total is the sum over processes (`infuse status`, [`BreakerRow::retries`]). Read
    /// from this process, no store round trip.
    ///
    /// [`BreakerRow::retries`]: crate::admin::BreakerRow::retries
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), infuse::InitError> {
    /// use infuse::{Config, Registry, ServiceOverride};
    ///
    /// let retried = ServiceOverride::new().retries(1).retry_min_per_sec(10);
    /// let registry = Registry::new(Config::in_memory().service("doc-retried", retried)).await?;
    /// let breaker = registry.breaker("doc-retried");
    /// let failed: Result<(), std::io::Error> = breaker
    ///     .call_retrying(|| async { Err(std::io::Error::other("reset")) })
    ///     .await;
    /// assert!(failed.is_err());
    /// assert_eq!(breaker.retries().unwrap().spent, 1);
    /// assert_eq!(registry.breaker("doc-plain").retries(), None, "no `retries` set");
    /// # Ok(()) }
    /// ```
    pub fn retries(&self) -> Option<Retries> {
        self.settings().retries?;
        Some(Retries {
            spent: self.cell.retries.spent(),
        })
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
        self.control(Control::Open, &Audit::default()).await
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
        self.control(Control::OpenFor(duration), &Audit::default())
            .await
    }

    /// Moves the breaker to half-open: the next call is a trial.
    pub async fn half_open(&self) -> Result<(), StorageError> {
        self.control(Control::HalfOpen, &Audit::default()).await
    }

    /// Closes the breaker and resets its counters; ends a forced state. With Redis, also
    /// repairs a record holding garbage.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.control(Control::Close, &Audit::default()).await
    }

    /// Holds the breaker open until [`close`](Breaker::close): every call is rejected
    /// with [`BreakerError::ForcedOpen`], and no trial is made. With Redis, for the whole
    /// fleet, and the record does not expire.
    pub async fn force_open(&self) -> Result<(), StorageError> {
        self.control(Control::ForceOpen, &Audit::default()).await
    }

    /// Disables the breaker until [`close`](Breaker::close): every call runs and is
    /// counted, but nothing trips. With Redis, for the whole fleet.
    pub async fn disable(&self) -> Result<(), StorageError> {
        self.control(Control::Disable, &Audit::default()).await
    }

    /// Applies `control` as the method of the same name does, and with Redis writes why
    /// (and who, when `audit` names someone; the process is always recorded) to the
    /// breaker's history, where `infuse explain` and the dashboard show it. The in-memory
    /// store keeps no history: there the audit is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), infuse::StorageError> {
    /// use infuse::admin::{Audit, Control};
    ///
    /// let search = infuse::breaker("doc-search");
    /// search
    ///     .control(Control::ForceOpen, &Audit::because("reindexing until 14:00"))
    ///     .await?;
    /// assert_eq!(search.state().await?, infuse::State::ForcedOpen);
    /// # search.close().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As the method of the same name.
    pub async fn control(&self, control: Control, audit: &Audit) -> Result<(), StorageError> {
        let target = control.target(self.settings().reset_timeout)?;
        let outcome = self.cell.force(target, audit).await?;
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
        backend.bind_permits(&self.cell());
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

/// A breaker's concurrency cap as one process sees it ([`Breaker::concurrency`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Concurrency {
    /// `max_concurrent`: the most calls in flight at once (with Redis, across the fleet).
    pub cap: u32,
    /// The permits this process may use now: the cap in memory; with Redis, its lease of
    /// the fleet's cap (`u32::MAX` under `FailOpen` while Redis is unreachable).
    pub permits: u32,
    /// The permits its calls use now.
    pub in_use: u32,
    /// Its calls waiting for a permit (`max_wait`).
    pub waiting: u32,
}

/// A breaker's retry budget as one process spent it ([`Breaker::retries`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retries {
    /// The retries this process took from the budget since it started: one token each.
    pub spent: u64,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::registry::{Config, Registry, ServiceOverride};

    #[derive(Default)]
    struct Rejections(AtomicUsize);

    impl Listener for Rejections {
        fn on_rejected(&self, _service: &str) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls through `call` (the guarded future's first poll): how many ran, and the
    /// rejections, which must all be slow start's.
    async fn calls(breaker: &Breaker, n: usize) -> (usize, Vec<BreakerError>) {
        let (mut ran, mut rejected) = (0, Vec::new());
        for _ in 0..n {
            match breaker.call(async { Ok::<_, BreakerError>(()) }).await {
                Ok(()) => ran += 1,
                Err(error) => rejected.push(error),
            }
        }
        (ran, rejected)
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_turns_calls_away_as_rejections_and_a_trip_in_it_backs_off() {
        let overrides = ServiceOverride::new()
            .fail_max(1)
            .reset_timeout(Duration::from_secs(10))
            .max_reset_timeout(Duration::from_secs(80))
            .slow_start(Duration::from_secs(20))
            .slow_start_min(20);
        let registry = Registry::new(Config::in_memory().service("users", overrides))
            .await
            .unwrap();
        let users = registry.breaker("users");
        let rejections = Arc::new(Rejections::default());
        users.add_listener(rejections.clone());
        assert_eq!(calls(&users, 50).await, (50, Vec::new()), "never tripped");

        users.force_open().await.unwrap();
        users.close().await.unwrap();
        let (ran, rejected) = calls(&users, 100).await;
        assert_eq!(ran, 20);
        assert_eq!(rejected.len(), 80);
        assert!(rejected.iter().all(|e| matches!(
            e,
            BreakerError::Recovering {
                service: "users",
                ..
            }
        ) && e.retry_after() == Some(Duration::from_secs(1))));
        assert_eq!(
            rejections.0.load(Ordering::Relaxed),
            80,
            "told as rejections"
        );

        // A failure 5 s in trips: a failed recovery, open twice as long.
        tokio::time::advance(Duration::from_secs(5)).await;
        while users
            .call(async { Err::<(), _>(BreakerError::ForcedOpen { service: "down" }) })
            .await
            .is_err_and(|e| matches!(e, BreakerError::Recovering { .. }))
        {}
        let open = users.snapshot().await.unwrap();
        assert_eq!(open.state, State::Open);
        assert_eq!(open.open_remaining, Some(Duration::from_secs(20)));

        // The trial closes it: slow start again, from the start.
        tokio::time::advance(Duration::from_secs(20)).await;
        users
            .call(async { Ok::<_, BreakerError>(()) })
            .await
            .unwrap();
        assert_eq!(users.slow_start().await.unwrap(), Some(20));
        // Once it is over, every call runs, through the plain closed word again.
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(calls(&users, 100).await, (100, Vec::new()));
        assert_eq!(users.cell.view.slow_start_share(), None);
        assert_eq!(users.slow_start().await.unwrap(), None);
    }
}
