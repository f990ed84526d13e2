//! One breaker's local state, shared by the call path and the fleet layer: the view,
//! the listeners and the settings in force.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::Sleep;

use crate::core::{now_nanos, Seed, Settings, Snapshot, State, TransitionReason, Version};
use crate::local::listeners::{Listener, Listeners, Transition};
use crate::local::permits::Permits;
use crate::local::reports::FailureReports;
use crate::local::retries::RetryBudget;
use crate::local::tally::Tally;
use crate::local::view::{Applied, Arm, View};

/// A breaker's per-process state. The call path reads it through a `Breaker`; the
/// fleet layer updates it from pub/sub and resyncs, without knowing the handle.
///
/// `B` is what a higher layer binds the breaker to (its store), typed there and opaque
/// here: the call path holds a `Cell<its binding>`, so that one `Arc` is the whole
/// breaker handle, and the fleet layer the same allocation as a `Cell` (its binding
/// unsized away), so that this layer names no higher one.
pub(crate) struct Cell<B: ?Sized = dyn Send + Sync> {
    pub(crate) service: &'static str,
    pub(crate) view: View,
    pub(crate) listeners: Listeners,
    /// Which measurements the call path makes ([`COUNT`], [`TIME`], [`CLOCK`], [`LISTEN`]),
    /// from the settings and the listeners.
    measure: AtomicU8,
    /// Serialises updates of `measure` (a listener added while the settings change).
    measuring: Mutex<()>,
    /// This process's counts since its last report (rate rules only).
    pub(crate) tally: Tally,
    /// The failure reports in flight to a remote store (consecutive rule only).
    pub(crate) failures: FailureReports,
    /// Calls this process rejected, ever: the fleet announces the rate (see
    /// `fleet/presence.rs`), so operators see how many calls a breaker turns away.
    pub(crate) rejected: AtomicU64,
    /// The retry budget of this process (see `core/retry_budget.rs`).
    pub(crate) retries: RetryBudget,
    /// This process's permits of the concurrency cap (`max_concurrent`).
    pub(crate) permits: Permits,
    /// The calls this process ran in shadow mode that the breaker would have rejected.
    pub(crate) would_reject: AtomicU64,
    /// The `shadow` setting in force (a copy: a rejection reads one atomic, no `ArcSwap`).
    shadow_setting: AtomicBool,
    settings: ArcSwap<Settings>,
    /// The timer of the current open period, if one is armed.
    timer: Mutex<Option<Pin<Box<Sleep>>>>,
    /// The newest version of the record read from the shared store itself (see
    /// [`Seed::confirmed`]); the fleet layer keeps it, never from its fallback.
    confirmed: Mutex<Option<Version>>,
    /// What the call path binds the breaker to (last: unsized away in a plain `Cell`).
    pub(crate) binding: B,
}

impl<B: Send + Sync + 'static> Cell<B> {
    pub(crate) fn new(service: &'static str, settings: Settings, binding: B) -> Arc<Cell<B>> {
        let view = View::new();
        view.set_slow_start(&settings);
        Arc::new(Cell {
            service,
            view,
            listeners: Listeners::default(),
            measure: AtomicU8::new(measure_of(&settings)),
            measuring: Mutex::new(()),
            tally: Tally::default(),
            failures: FailureReports::default(),
            rejected: AtomicU64::new(0),
            retries: RetryBudget::default(),
            permits: Permits::default(),
            would_reject: AtomicU64::new(0),
            shadow_setting: AtomicBool::new(settings.shadow),
            settings: ArcSwap::from_pointee(settings),
            timer: Mutex::new(None),
            confirmed: Mutex::new(None),
            binding,
        })
    }
}

impl<B: ?Sized + Send + Sync + 'static> Cell<B> {
    /// The thresholds in force.
    pub(crate) fn settings(&self) -> Settings {
        **self.settings.load()
    }

    /// Whether the breaker is in shadow mode: the operator's switch as last seen in the
    /// store, else the `shadow` setting. Read on rejection paths only.
    #[inline]
    pub(crate) fn shadow(&self) -> bool {
        self.view
            .shadow_switch()
            .unwrap_or_else(|| self.shadow_setting.load(Ordering::Relaxed))
    }

    pub(crate) fn set_settings(&self, settings: Settings) {
        self.shadow_setting
            .store(settings.shadow, Ordering::Relaxed);
        self.settings.store(Arc::new(settings));
        self.view.set_slow_start(&settings);
        self.update_measure();
    }

    /// Adds a listener; one that wants durations makes every call read the clock.
    pub(crate) fn add_listener(&self, listener: Arc<dyn Listener>) {
        self.listeners.add(listener);
        self.update_measure();
    }

    fn update_measure(&self) {
        let _measuring = self
            .measuring
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut measure = measure_of(&self.settings());
        if self.listeners.any() {
            measure |= LISTEN;
        }
        if self.listeners.timed() {
            measure |= CLOCK;
        }
        self.measure.store(measure, Ordering::Relaxed);
    }

    /// The measurements a call makes: 0 for pybreaker's rules alone and no listener (the
    /// fast path).
    #[inline(always)]
    pub(crate) fn measure(&self) -> u8 {
        self.measure.load(Ordering::Relaxed)
    }

    /// Opens the breaker for this process alone until `until` (fast-path clock), while
    /// the fleet's stays closed: see [`View::quarantine`].
    pub(crate) fn quarantine(self: &Arc<Self>, until: u64) {
        let applied = self.view.quarantine(until, timers_available());
        let generation = self.view.generation();
        self.settle(applied, generation, Some(TransitionReason::Tripped));
        // When it ends, the view shows the fleet's (closed) breaker again at once, and
        // listeners hear of it: not only at the next call (an idle breaker would show
        // open, in `infuse status` and metrics, until the next full resync).
        let left = Duration::from_nanos(until.saturating_sub(now_nanos()));
        let timer = sleep_until(tokio::time::Instant::now() + left);
        if let (Ok(runtime), Some(timer)) = (tokio::runtime::Handle::try_current(), timer) {
            let cell = Arc::downgrade(self);
            runtime.spawn(async move {
                timer.await;
                if let Some(cell) = cell.upgrade() {
                    let generation = cell.view.generation();
                    let applied = cell.view.end_quarantine(until, timers_available());
                    cell.settle(applied, generation, None);
                }
            });
        }
    }

    /// Notes that the shared store itself answered with `version` of the record: within
    /// one incarnation the newest seq is kept (a late answer does not move it back).
    pub(crate) fn confirm(&self, version: Version) {
        if version.incarnation == 0 {
            return; // no record
        }
        let mut confirmed = self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *confirmed {
            Some(seen) if seen.incarnation == version.incarnation && seen.seq >= version.seq => {}
            _ => *confirmed = Some(version),
        }
    }

    /// The newest version of the record read from the shared store (see
    /// [`confirm`](Cell::confirm)).
    pub(crate) fn confirmed(&self) -> Option<Version> {
        *self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What this process knows, to recreate a record a store lost, with the version it
    /// last read from the store (the evidence of a loss, see [`Seed::confirmed`]).
    pub(crate) fn seed(&self) -> Seed {
        let mut seed = Seed::of(&self.view.local_snapshot()).with_confirmed(self.confirmed());
        if self.view.quarantined() {
            // This process's own protection, not the fleet's state.
            seed.state = State::Closed;
            seed.open_remaining = None;
        }
        seed
    }

    /// Takes in a snapshot (a store answer, a pub/sub event, a resync) unless a newer
    /// one was seen, and tells listeners about the state change it shows. Notifying
    /// exactly when this process's view changes means a change is told once, whether
    /// the script's reply or the pub/sub echo of the same write arrives first.
    pub(crate) fn observe(self: &Arc<Self>, snapshot: &Snapshot) -> Option<(State, State)> {
        self.observe_because(snapshot, None)
    }

    /// Like [`observe`](Cell::observe), from the answer to this process's own command:
    /// `reason` is why a change it shows happened, if that command made it (see
    /// [`TransitionReason::resolve`]).
    pub(crate) fn observe_because(
        self: &Arc<Self>,
        snapshot: &Snapshot,
        reason: Option<TransitionReason>,
    ) -> Option<(State, State)> {
        tracing::trace!(service = self.service, ?snapshot, "observe");
        let generation = self.view.generation();
        let applied = self.view.apply(snapshot, timers_available());
        self.forget_counts_of(generation);
        self.settle(applied, snapshot.generation, reason)
    }

    /// Replaces the view with `snapshot` whatever its version (a store taking over).
    pub(crate) fn adopt(self: &Arc<Self>, snapshot: &Snapshot) {
        tracing::trace!(service = self.service, ?snapshot, "adopt");
        let generation = self.view.generation();
        let applied = self.view.force(snapshot, timers_available());
        self.forget_counts_of(generation);
        self.settle(applied, snapshot.generation, None);
    }

    /// Counts taken under `generation` belong to a period that has ended once the view
    /// moved on: they are dropped, not reported into the next one.
    fn forget_counts_of(&self, generation: u64) {
        if self.view.generation() != generation {
            self.tally.take();
            self.tally.set_known(None);
        }
    }

    fn settle(
        self: &Arc<Self>,
        applied: Applied,
        generation: u64,
        reason: Option<TransitionReason>,
    ) -> Option<(State, State)> {
        if let Some(arm) = applied.arm {
            self.arm(arm);
        }
        if let Some((from, to)) = applied.change {
            self.notify_change(from, to, generation, reason);
        }
        applied.change
    }

    /// Hands admission back to the clock shortly before the open time ends.
    ///
    /// No task is spawned: the timer's waker itself clears the bit, inside the runtime's
    /// timer driver, so the view is up to date before any task (or `block_on` future)
    /// runs again. A runtime that shuts down first fires its timers too.
    fn arm(self: &Arc<Self>, arm: Arm) {
        let waker = Waker::from(Arc::new(NearDeadline {
            cell: Arc::downgrade(self),
            arm,
        }));
        // Tokio panics where no timer can be armed (a runtime built without `enable_time`,
        // or shutting down): then admission simply keeps reading the clock.
        let armed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut sleep = Box::pin(tokio::time::sleep(arm.after));
            let pending = sleep
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending();
            pending.then_some(sleep)
        }));
        match armed {
            // Replacing the previous timer drops (and deregisters) it.
            Ok(Some(sleep)) => {
                *self.timer.lock().unwrap_or_else(PoisonError::into_inner) = Some(sleep);
            }
            Ok(None) => self.view.deadline_near(arm),
            Err(_) => {
                TIMERS_UNAVAILABLE.store(true, Ordering::Relaxed);
                self.view.deadline_near(arm);
            }
        }
    }

    /// Tells a change of state: one `tracing` event with stable fields (`service`,
    /// `from`, `to`, `generation`, `reason`; a warning when it opens), then the listeners.
    pub(crate) fn notify_change(
        &self,
        from: State,
        to: State,
        generation: u64,
        reason: Option<TransitionReason>,
    ) {
        let service = self.service;
        let reason = TransitionReason::resolve(reason, from, to);
        let (from_s, to_s, reason_s) = (from.as_str(), to.as_str(), reason.as_str());
        let shadow = self.shadow();
        match to {
            State::Open | State::ForcedOpen if shadow => tracing::warn!(
                service,
                from = from_s,
                to = to_s,
                generation,
                reason = reason_s,
                shadow,
                "circuit breaker would have opened (shadow mode: calls still run)"
            ),
            State::Open | State::ForcedOpen => tracing::warn!(
                service,
                from = from_s,
                to = to_s,
                generation,
                reason = reason_s,
                "circuit breaker opened"
            ),
            _ => tracing::info!(
                service,
                from = from_s,
                to = to_s,
                generation,
                reason = reason_s,
                shadow,
                "circuit breaker state changed"
            ),
        }
        let transition = Transition {
            service,
            from,
            to,
            generation,
            reason,
            shadow,
        };
        self.listeners.emit(service, |l, service| {
            l.on_state_change(service, from, to);
            l.on_transition(&transition);
        });
    }
}

/// The waker of an open period's timer: admission goes back to reading the clock.
struct NearDeadline<B: ?Sized> {
    cell: Weak<Cell<B>>,
    arm: Arm,
}

impl<B: ?Sized + Send + Sync + 'static> Wake for NearDeadline<B> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(cell) = self.cell.upgrade() {
            cell.view.deadline_near(self.arm);
        }
    }
}

/// A timer for `deadline`, where one can be armed (`None`: no runtime with timers).
pub(crate) fn sleep_until(deadline: tokio::time::Instant) -> Option<Pin<Box<Sleep>>> {
    if !timers_available() {
        return None;
    }
    // Tokio panics creating a timer on a runtime built without `enable_time`.
    match std::panic::catch_unwind(|| Box::pin(tokio::time::sleep_until(deadline))) {
        Ok(sleep) => Some(sleep),
        Err(_) => {
            TIMERS_UNAVAILABLE.store(true, Ordering::Relaxed);
            None
        }
    }
}

/// The call path counts calls into the [`Tally`] (a rate rule is set).
pub(crate) const COUNT: u8 = 1;
/// The call path times calls (a timeout or a slow-call rule is set).
pub(crate) const TIME: u8 = 2;
/// The call path measures how long calls take, for listeners (no timer, no allocation).
pub(crate) const CLOCK: u8 = 4;
/// The call path tells listeners of every call (one is registered).
pub(crate) const LISTEN: u8 = 8;
/// The call path takes a permit of the concurrency cap (`max_concurrent` is set).
pub(crate) const CAP: u8 = 16;

fn measure_of(settings: &Settings) -> u8 {
    let mut measure = 0;
    // min_instances needs every process's successes too (the consecutive rule's quorum
    // counts the reporters of a streak that only a success ends): reported in batches.
    if settings.has_rates() || settings.min_instances > 1 {
        measure |= COUNT;
    }
    if settings.timeout.is_some()
        || settings.trial_timeout.is_some()
        || settings.slow_call.is_some()
    {
        measure |= TIME;
    }
    if settings.max_concurrent.is_some() {
        measure |= CAP;
    }
    measure
}

/// Set once arming a timer failed (a runtime without timers): from then on rejections
/// read the clock, rather than retrying (and panicking inside tokio) on every trip.
static TIMERS_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// Whether a timer can be armed here (a tokio runtime with timers is running).
pub(crate) fn timers_available() -> bool {
    !TIMERS_UNAVAILABLE.load(Ordering::Relaxed) && tokio::runtime::Handle::try_current().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Changes(Mutex<Vec<(State, State)>>);

    impl Listener for Changes {
        fn on_state_change(&self, _service: &str, from: State, to: State) {
            self.0.lock().unwrap().push((from, to));
        }
    }

    /// Found by the fleet simulation: a process's own protection ended, yet its view
    /// (and its listeners) said open until its next call, or the next full resync.
    #[tokio::test(start_paused = true)]
    async fn a_process_own_protection_ends_on_time_without_a_call() {
        let cell = Cell::new("quarantined", Settings::DEFAULT, ());
        let changes = Arc::new(Changes::default());
        cell.add_listener(changes.clone());
        let mut closed = Snapshot::closed(Version {
            incarnation: 7,
            seq: 3,
        });
        closed.generation = 4;
        cell.observe(&closed);
        cell.quarantine(now_nanos() + 100_000_000);
        assert_eq!(cell.view.state(), State::Open);
        tokio::time::sleep(Duration::from_millis(99)).await;
        assert_eq!(cell.view.state(), State::Open, "protected for 100 ms");
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(cell.view.state(), State::Closed, "the protection is over");
        assert_eq!(
            cell.view.generation(),
            4,
            "the fleet's generation, unchanged"
        );
        assert!(!cell.view.quarantined());
        assert_eq!(
            *changes.0.lock().unwrap(),
            [(State::Closed, State::Open), (State::Open, State::Closed)]
        );
    }

    /// Found by the fleet simulation: the fleet's record was recreated open at the same
    /// generation (Redis lost it, a process's view re-seeded it) while this process's
    /// protection lasted; when the protection ends, the view shows the fleet's open
    /// breaker still.
    #[tokio::test(start_paused = true)]
    async fn the_end_of_a_protection_leaves_the_fleets_open_breaker_open() {
        let cell = Cell::new("reseeded", Settings::DEFAULT, ());
        let mut snapshot = Snapshot::closed(Version {
            incarnation: 7,
            seq: 3,
        });
        snapshot.generation = 3;
        cell.observe(&snapshot);
        cell.quarantine(now_nanos() + 100_000_000);
        snapshot.state = State::Open;
        snapshot.version = Version {
            incarnation: 8,
            seq: 1,
        };
        snapshot.open_remaining = Some(Duration::ZERO);
        cell.adopt(&snapshot);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            cell.view.state(),
            State::Open,
            "the fleet's breaker is open"
        );
    }

    /// Found by the fleet simulation: once the store's snapshot was taken in whole (the
    /// recovery adopts what Redis holds), a late answer or event of the same record,
    /// older, replaced it.
    #[tokio::test(start_paused = true)]
    async fn a_late_older_answer_does_not_undo_an_adopted_snapshot() {
        let cell = Cell::new("adopted", Settings::DEFAULT, ());
        let mut open = Snapshot::closed(Version {
            incarnation: 7,
            seq: 12,
        });
        open.state = State::Open;
        open.generation = 14;
        open.open_remaining = Some(Duration::from_secs(1));
        cell.adopt(&open);
        let mut late = Snapshot::closed(Version {
            incarnation: 7,
            seq: 10,
        });
        late.generation = 13;
        cell.observe(&late);
        assert_eq!(
            (cell.view.state(), cell.view.generation()),
            (State::Open, 14),
            "an older answer of the same record was taken in"
        );
    }

    /// The end of a protection that the fleet's breaker overtook changes nothing.
    #[tokio::test(start_paused = true)]
    async fn a_protection_the_fleet_moved_past_ends_silently() {
        let cell = Cell::new("overtaken", Settings::DEFAULT, ());
        let mut snapshot = Snapshot::closed(Version {
            incarnation: 7,
            seq: 3,
        });
        cell.observe(&snapshot);
        cell.quarantine(now_nanos() + 100_000_000);
        // The fleet trips meanwhile, for longer.
        snapshot.state = State::Open;
        snapshot.generation = 2;
        snapshot.version.seq = 4;
        snapshot.open_remaining = Some(Duration::from_secs(1));
        cell.observe(&snapshot);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            cell.view.state(),
            State::Open,
            "the fleet's open period goes on"
        );
        assert_eq!(cell.view.generation(), 2);
    }
}
