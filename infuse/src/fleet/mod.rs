//! Fleet mode: the Redis store, plus what keeps calls fast and safe when Redis is not.
//!
//! - Each process keeps a local view of every breaker; Redis is only asked when
//!   something changes (a failure, a trial, a reset after failures).
//! - Other processes' writes arrive through pub/sub; a periodic resync repairs whatever
//!   pub/sub lost (it is at-most-once) or a reconnect missed.
//! - When Redis times out or is unreachable, the whole registry switches once (logged
//!   once) to the [`UnavailablePolicy`], so calls stop waiting on it; a health monitor
//!   pings with backoff and, on recovery, reconciles every breaker with the fleet.
//! - Redis's record is the fleet's authority. What a process decides on its local
//!   fallback (a trip, a trial's verdict, counts) protects that process only: after the
//!   outage it keeps its own open period locally ([`Cell::quarantine`]) and takes in the
//!   record; it never writes its decisions over the record. Only when Redis lost history
//!   does a view replace it: a record missing (Redis restarted empty, flushed, evicted)
//!   is recreated from the first writer's view, and a record older than what this
//!   process read from Redis before (a restart from an old snapshot, a failover to a
//!   lagging replica) is replaced by the first process to notice: see
//!   [`Command::Register`].
//!
//! The fleet is a [`Store`]: it applies commands to Redis, or to the policy when Redis
//! cannot answer. It keeps each bound breaker's [`Cell`] up to date, never naming the
//! breaker handle.

mod connection;
mod options;
mod presence;
#[cfg(test)]
mod sim;
mod sync;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use connection::FleetConnection;
pub use options::UnavailablePolicy;
pub(crate) use options::{RedisOptions, Topology};

use crate::core::random::random_u64;
use crate::core::window::{bucket_ms, Window};
use crate::core::{
    now_nanos, saturating_nanos, store_millis, Command, Counts, InitError, Outcome, Settings,
    Snapshot, State, StorageError, TrialToken, TripPolicy, Version,
};
use crate::local::Cell;
use crate::store::memory::MemoryStore;
use crate::store::redis::{parse_event, Announcement, Changes, Deadlines, LogRead, RedisStore};
use crate::store::Store;

/// A boxed answer of the [`Remote`] store.
pub(crate) type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// What the fleet asks of its shared store: [`RedisStore`] (the simulation in this
/// crate's tests puts a store of its own, with a fault injector, behind it). Only the
/// slow path goes through it (a call in the closed state never reaches the fleet), so
/// one boxed future per command costs nothing that matters.
pub(crate) trait Remote: Send + Sync + 'static {
    /// Applies one command (see [`Store::apply`]), under its deadline.
    fn apply<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        command: Command,
    ) -> Answer<'a, Outcome>;
    /// Reads the namespace's change log (see [`RedisStore::changes`]).
    fn changes<'a>(
        &'a self,
        breakers: usize,
        announcement: Option<&'a Announcement>,
    ) -> Answer<'a, LogRead>;
    /// Checks that the store answers (see [`RedisStore::ping`]).
    fn ping(&self) -> Answer<'_, ()>;
    /// Readies the store after a reconnect (see [`RedisStore::load_scripts`]).
    fn load_scripts(&self) -> Answer<'_, ()>;
    /// The deadlines in force.
    fn deadlines(&self) -> Deadlines;
    /// [`apply`](Remote::apply) under `deadline` instead of the command's own (see
    /// [`RedisStore::apply_within`]). A store that times commands some other way may
    /// keep its own deadline.
    fn apply_within<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        command: Command,
        deadline: Duration,
    ) -> Answer<'a, Outcome> {
        let _ = deadline;
        self.apply(service, settings, command)
    }
    /// Keeps `services` listed in the namespace's change log (see
    /// [`RedisStore::touch`]); a store without a listing has nothing to do.
    fn touch<'a>(&'a self, services: &'a [&'a str], every: Duration) -> Answer<'a, ()> {
        let _ = (services, every);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Remote for RedisStore {
    fn apply<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        command: Command,
    ) -> Answer<'a, Outcome> {
        Box::pin(Store::apply(self, service, settings, command))
    }

    fn changes<'a>(
        &'a self,
        breakers: usize,
        announcement: Option<&'a Announcement>,
    ) -> Answer<'a, LogRead> {
        Box::pin(RedisStore::changes(self, breakers, announcement))
    }

    fn ping(&self) -> Answer<'_, ()> {
        Box::pin(RedisStore::ping(self))
    }

    fn load_scripts(&self) -> Answer<'_, ()> {
        Box::pin(RedisStore::load_scripts(self))
    }

    fn deadlines(&self) -> Deadlines {
        RedisStore::deadlines(self)
    }

    fn apply_within<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        command: Command,
        deadline: Duration,
    ) -> Answer<'a, Outcome> {
        Box::pin(RedisStore::apply_within(
            self, service, settings, command, deadline,
        ))
    }

    fn touch<'a>(&'a self, services: &'a [&'a str], every: Duration) -> Answer<'a, ()> {
        Box::pin(RedisStore::touch(self, services, every))
    }
}

/// The Redis store with its failure policy and background tasks.
pub(crate) struct Fleet {
    store: Box<dyn Remote>,
    policy: UnavailablePolicy,
    address: String,
    healthy: AtomicBool,
    /// The local fallback: replaced by a fresh one at every recovery.
    fallback: ArcSwap<MemoryStore>,
    /// Services whose fallback record was seeded from the view.
    seeded: Mutex<HashSet<&'static str>>,
    /// Breakers a failed recovery meant to reconcile (the next attempt does).
    unreconciled: Mutex<HashSet<&'static str>>,
    /// Trials the fallback granted: their results and releases go to it, not to Redis.
    local_trials: Mutex<HashSet<TrialToken>>,
    /// Breakers the fallback opened (a trip, a failed trial), and until when on the
    /// fast-path clock: after recovery that protection stays this process's own.
    local_trips: Mutex<HashMap<&'static str, u64>>,
    corrupt_reported: Mutex<HashSet<&'static str>>,
    /// This process's own window and failure streak, for breakers with
    /// `min_instances > 1`: when its calls alone trip a rule that the fleet does not (too
    /// few processes report failures), it protects itself (see [`Cell::quarantine`]).
    own_windows: Mutex<HashMap<&'static str, (Window, u32)>>,
    monitoring: AtomicBool,
    /// The cells of the breakers bound to this fleet, held weakly: a breaker keeps
    /// following the fleet as long as any handle of it lives (even past its registry),
    /// and the fleet never keeps a breaker alive.
    cells: RwLock<HashMap<&'static str, Weak<Cell>>>,
    me: Weak<Fleet>,
    resync_interval: Duration,
    /// What Redis holds of this process's announcement, as far as this process knows:
    /// sent whole again only when it changes.
    announced: Mutex<presence::Announced>,
    /// Dropped with the fleet: background tasks end when it closes.
    closing: watch::Sender<()>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("address", &self.address)
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .field("policy", &self.policy)
            .finish()
    }
}

/// How many breakers a recovery or a full resync re-reads at once.
const RECONCILE_AT_ONCE: usize = 256;

/// ±20%, so a fleet's processes do not move in lockstep.
pub(crate) fn jittered(d: Duration) -> Duration {
    let r = (random_u64(0) % 401) as u32; // 0..=400
    d * (800 + r) / 1000
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fleet {
    /// Connects, loads the scripts and starts the subscriber and resync tasks.
    pub(crate) async fn connect(options: &RedisOptions) -> Result<Arc<Fleet>, InitError> {
        options.validate()?;
        let connection::Connected {
            conn,
            healthy,
            address,
            events,
        } = connection::connect(options).await?;
        let store = RedisStore::new(
            conn,
            &options.namespace,
            options.key_ttl,
            Deadlines {
                call: options.call_timeout,
                admin: options.admin_timeout,
            },
        );
        if healthy {
            store
                .load_scripts()
                .await
                .map_err(|e| InitError::Unreachable {
                    address: address.clone(),
                    reason: format!("loading the scripts failed: {e}"),
                })?;
        }
        let channel = store.channel().to_owned();
        let fleet = Fleet::over(
            Box::new(store),
            options.policy,
            address,
            healthy,
            options.resync_interval,
        );
        let closed = fleet.closing.subscribe();
        tokio::spawn(sync::subscribe(
            Arc::downgrade(&fleet),
            events,
            channel,
            closed.clone(),
        ));
        tokio::spawn(sync::resync_periodically(
            Arc::downgrade(&fleet),
            options.resync_interval,
            closed,
        ));
        Ok(fleet)
    }

    /// A fleet over any [`Remote`] store, without the subscriber and the periodic resync
    /// (what [`Fleet::connect`] adds; the simulation drives [`Fleet::on_event`] and
    /// [`Fleet::resync`] itself). Degraded (`healthy` false), it starts its health
    /// monitor.
    pub(crate) fn over(
        store: Box<dyn Remote>,
        policy: UnavailablePolicy,
        address: String,
        healthy: bool,
        resync_interval: Duration,
    ) -> Arc<Fleet> {
        let (closing, _) = watch::channel(());
        let fleet = Arc::new_cyclic(|me| Fleet {
            store,
            policy,
            address,
            healthy: AtomicBool::new(healthy),
            fallback: ArcSwap::from_pointee(MemoryStore::new()),
            seeded: Mutex::default(),
            unreconciled: Mutex::default(),
            local_trials: Mutex::default(),
            local_trips: Mutex::default(),
            own_windows: Mutex::default(),
            corrupt_reported: Mutex::default(),
            monitoring: AtomicBool::new(false),
            cells: RwLock::default(),
            me: me.clone(),
            resync_interval,
            announced: Mutex::default(),
            closing,
        });
        if !healthy {
            fleet.start_monitor();
        }
        fleet
    }

    /// How long a call waits on Redis at most.
    pub(crate) fn call_deadline(&self) -> Duration {
        self.store.deadlines().call
    }

    /// Whether calls currently use Redis (false while degraded).
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Keeps `cell` up to date from now on (pub/sub, resync, recovery).
    pub(crate) fn track(&self, cell: &Arc<Cell>) {
        let mut cells = self.cells.write().unwrap_or_else(PoisonError::into_inner);
        // Forget dropped breakers at every doubling: amortised O(1) per breaker (a pass
        // per insertion made registering B breakers cost B²).
        if cells.len().is_power_of_two() {
            cells.retain(|_, cell| cell.strong_count() > 0);
        }
        cells.insert(cell.service, Arc::downgrade(cell));
    }

    fn cell(&self, service: &str) -> Option<Arc<Cell>> {
        let cells = self.cells.read().unwrap_or_else(PoisonError::into_inner);
        cells.get(service).and_then(Weak::upgrade)
    }

    /// The live cells, by service: every pass over the breakers (recovery, resync) sends
    /// its commands in one order, so that a seeded simulation replays exactly.
    fn cells(&self) -> Vec<Arc<Cell>> {
        let cells = self.cells.read().unwrap_or_else(PoisonError::into_inner);
        let mut cells: Vec<Arc<Cell>> = cells.values().filter_map(Weak::upgrade).collect();
        cells.sort_unstable_by_key(|cell| cell.service);
        cells
    }

    /// Applies a command to Redis; when Redis cannot answer, calls follow the policy.
    ///
    /// - A trial granted by the local fallback is recorded and released there.
    /// - A command about a record Redis lost recreates it from this process's view
    ///   first (the first writer's view wins), then runs again.
    /// - Inspection and control (`Register`, `Snapshot`, `Force`) return Redis's error
    ///   while Redis is thought healthy; once degraded, the local fallback answers them
    ///   too (under `LocalFallback`).
    pub(crate) async fn apply_command(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        if let Some(token) = trial_token(&command) {
            if lock(&self.local_trials).contains(&token) {
                return self.apply_locally(service, settings, command);
            }
        }
        if self.is_healthy() {
            match self.apply_to_redis(service, settings, command).await {
                // Degraded meanwhile (another operation timed out): the views follow the
                // policy now, and this late answer would overwrite them. A trial Redis
                // granted meanwhile is given back, or the fleet would wait out its lease.
                Ok(outcome) if !self.is_healthy() => {
                    if let Command::AcquireTrial { token, .. } = command {
                        if outcome.applied {
                            self.release_in_redis(service, settings, token);
                        }
                    }
                }
                Ok(outcome) => {
                    if let Command::RecordCalls { counts, .. } = command {
                        self.protect_locally(service, settings, &counts, &outcome);
                    }
                    return Ok(outcome);
                }
                // This process's own backlog, not Redis being down: this command's
                // outcome is unknown (a call reports it as not counted), the registry
                // stays on Redis.
                Err(error @ StorageError::Congested { .. }) => {
                    tracing::debug!(service, %error, "a Redis command waited behind this process's own queue");
                    if let Command::AcquireTrial { token, .. }
                    | Command::RecordTrial { token, .. } = command
                    {
                        self.release_in_redis(service, settings, token);
                    }
                    return Err(error);
                }
                Err(error) => {
                    self.on_error(service, &error);
                    if let Command::AcquireTrial { token, .. }
                    | Command::RecordTrial { token, .. } = command
                    {
                        // The script may still run once Redis answers, handing the fleet's
                        // trial slot to a token nobody will report: release it right behind
                        // (same connection, so it runs after; token-fenced, so it is safe).
                        self.release_in_redis(service, settings, token);
                    }
                    if is_admin(&command) {
                        return Err(error);
                    }
                }
            }
        }
        match self.policy {
            UnavailablePolicy::LocalFallback => {
                let outcome = self.apply_locally(service, settings, command)?;
                if let Command::RecordCalls { counts, .. } = command {
                    self.protect_locally(service, settings, &counts, &outcome);
                }
                Ok(outcome)
            }
            _ if is_admin(&command) => Err(StorageError::Unavailable(format!(
                "Redis at {} is unavailable (calls follow the policy: {})",
                self.address, self.policy
            ))),
            _ => Ok(self.policy_outcome(service)),
        }
    }

    async fn apply_to_redis(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        let cell = self.cell(service);
        let outcome = self.store.apply(service, settings, command).await?;
        if outcome.snapshot.exists() || matches!(command, Command::Register { .. }) {
            if let Some(cell) = &cell {
                cell.confirm(outcome.snapshot.version);
            }
            return Ok(outcome);
        }
        // The record is gone (Redis restarted empty, flushed, evicted): recreate it from
        // what this process's breaker knows, then run the command on it. Without a
        // breaker (a `FleetStore` driven by hand) there is no view: absent stays absent.
        let Some(cell) = cell else {
            return Ok(outcome);
        };
        let seed = Some(cell.seed());
        let reseeded = self
            .store
            .apply(service, settings, Command::Register { seed })
            .await?;
        self.tell_reseeded(&cell, &reseeded);
        let outcome = self.store.apply(service, settings, command).await?;
        cell.confirm(outcome.snapshot.version);
        Ok(outcome)
    }

    /// Logs a record this process (re)created from its view: Redis had lost it.
    fn tell_reseeded(&self, cell: &Cell, outcome: &Outcome) {
        if !outcome.applied {
            return;
        }
        if outcome.from == outcome.snapshot.state {
            tracing::info!(service = cell.service, state = %outcome.snapshot.state,
                generation = outcome.snapshot.generation,
                "Redis had lost this breaker's record: recreated it from this process's view");
        } else {
            tracing::warn!(service = cell.service, from = %outcome.from, to = %outcome.snapshot.state,
                generation = outcome.snapshot.generation,
                "Redis's record of this breaker was older than what this process had read from it (a restart from an old snapshot, or a failover to a lagging replica): replaced it with this process's view");
        }
    }

    /// Adds a batch to this process's own window and failure streak; when the fleet's
    /// breaker stays closed although these counts alone trip a rule (`min_instances` not
    /// met), opens the breaker for this process only, for `reset_timeout`.
    fn protect_locally(
        &self,
        service: &'static str,
        settings: &Settings,
        counts: &Counts,
        outcome: &Outcome,
    ) {
        if settings.min_instances <= 1 {
            return;
        }
        let bucket = store_millis(tokio::time::Instant::now()) / bucket_ms(settings.window);
        let mut windows = lock(&self.own_windows);
        let (window, streak) = windows.entry(service).or_default();
        if !outcome.applied || outcome.snapshot.state != State::Closed {
            // The fleet's period ended: start afresh.
            (*window, *streak) = (Window::default(), 0);
            return;
        }
        if counts.has_success() {
            *streak = 0;
        }
        *streak = streak.saturating_add(counts.tail);
        let policy = TripPolicy::of(&settings.alone());
        let trips = policy.trips(*streak)
            || (settings.has_rates() && {
                window.add(bucket, counts, 0);
                policy.trips_on(&window.totals(bucket), 1).is_some()
            });
        if !trips {
            return;
        }
        (*window, *streak) = (Window::default(), 0);
        drop(windows);
        tracing::warn!(
            service,
            min_instances = settings.min_instances,
            "this process's calls alone trip the breaker, but too few processes report failures for a fleet-wide trip: open for this process only"
        );
        if let Some(cell) = self.cell(service) {
            cell.quarantine(now_nanos().saturating_add(saturating_nanos(settings.reset_timeout)));
        }
    }

    /// Sends a trial release to Redis without waiting for it.
    fn release_in_redis(&self, service: &'static str, settings: &Settings, token: TrialToken) {
        let (Some(fleet), Ok(runtime)) = (self.me.upgrade(), tokio::runtime::Handle::try_current())
        else {
            return; // the lease expires on its own
        };
        let settings = *settings;
        runtime.spawn(async move {
            let release = Command::ReleaseTrial { token };
            let _ = fleet.store.apply(service, &settings, release).await;
        });
    }

    /// The local fallback answers, seeded once from this process's view of the breaker
    /// (if it has one).
    fn apply_locally(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        let local = self.fallback.load_full();
        if lock(&self.seeded).insert(service) {
            if let Some(cell) = self.cell(service) {
                let seed = Some(cell.seed());
                local.apply_now(service, settings, Command::Register { seed });
            }
        }
        let outcome = local.apply_now(service, settings, command);
        if outcome.applied && outcome.from != State::Open && outcome.snapshot.state == State::Open {
            // This process's own decision: it protects this process, never the fleet.
            let open_for = outcome.snapshot.open_remaining.unwrap_or_default();
            let until = now_nanos().saturating_add(saturating_nanos(open_for));
            lock(&self.local_trips).insert(service, until);
        }
        match command {
            Command::AcquireTrial { token, .. } if outcome.applied => {
                lock(&self.local_trials).insert(token);
            }
            Command::RecordTrial { token, .. } | Command::ReleaseTrial { token } => {
                lock(&self.local_trials).remove(&token);
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Reacts to a failed Redis operation: unreachable or slow Redis degrades the whole
    /// registry (once); garbage in one breaker's keys affects only that breaker.
    fn on_error(&self, service: &'static str, error: &StorageError) {
        match error {
            StorageError::Corrupt(detail) => {
                if lock(&self.corrupt_reported).insert(service) {
                    tracing::error!(service, %detail, policy = %self.policy,
                        "unexpected data in this breaker's Redis keys; its calls follow the policy (`close()` repairs the keys)");
                }
            }
            // This process's own backlog, not Redis being down (see RedisStore).
            StorageError::Congested { .. } => {
                tracing::debug!(service, %error, "a Redis command waited behind this process's own queue");
            }
            _ => self.degrade(error),
        }
    }

    fn degrade(&self, error: &StorageError) {
        if !self.healthy.swap(false, Ordering::AcqRel) {
            return;
        }
        tracing::warn!(address = %self.address, %error, policy = %self.policy,
            "Redis unavailable; breakers switch to the policy until it answers again");
        if self.policy != UnavailablePolicy::LocalFallback {
            for cell in self.cells() {
                cell.adopt(&self.policy_snapshot(cell.view.generation()));
            }
        }
        self.start_monitor();
    }

    fn start_monitor(&self) {
        if self.monitoring.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.me.clone();
        let mut closed = self.closing.subscribe();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(50);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(jittered(delay)) => {}
                    _ = closed.changed() => return,
                }
                // Capped low: while Redis is down this is the only traffic to it, and a
                // short cap brings the fleet state back soon after Redis returns.
                delay = (delay * 2).min(Duration::from_millis(250));
                let Some(fleet) = me.upgrade() else { return };
                if fleet.store.ping().await.is_ok() && fleet.recover().await {
                    fleet.monitoring.store(false, Ordering::Release);
                    return;
                }
            }
        });
    }

    /// How many breakers this fleet tracks (which sets how often a full resync is due).
    fn tracked(&self) -> usize {
        self.cells
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Back to shared state: reconcile the breakers that may differ from their records
    /// (a record older than this process's view is replaced by the view; see
    /// [`Command::Register`]), then adopt what Redis holds and drop the local fallback.
    ///
    /// Under the local fallback those are the breakers this process used on its own
    /// meanwhile and the ones the change log says changed since its last read: a short
    /// outage costs a few scripts, not one per breaker (with every process recovering at
    /// once, that would be processes × breakers scripts on a Redis that just came back).
    /// Every breaker is reconciled when the log is gone or went back (Redis restarted
    /// empty or was flushed: lost records are recreated from the views), when a full
    /// pass is due, and under the other policies (every view holds the policy's state).
    async fn recover(&self) -> bool {
        if self.store.load_scripts().await.is_err() {
            return false;
        }
        let mut cells = if self.policy == UnavailablePolicy::LocalFallback {
            match self.store.changes(self.tracked(), None).await {
                Ok(LogRead {
                    changes: Changes::Services(changed),
                    ..
                }) => {
                    let mut wanted: HashSet<&str> = changed.iter().map(String::as_str).collect();
                    wanted.extend(lock(&self.seeded).iter());
                    wanted.extend(lock(&self.unreconciled).iter());
                    self.cells()
                        .into_iter()
                        .filter(|cell| wanted.contains(cell.service))
                        .collect()
                }
                Ok(_) => self.cells(),
                Err(_) => return false,
            }
        } else {
            self.cells()
        };
        let mut answers = self.reconcile(&cells).await;
        loop {
            // Redis down or slow again: the next attempt. A breaker's own garbage, or a
            // script behind this process's own backlog, is no reason to stay degraded:
            // the first follows the policy, the second is owed to the next resync.
            let down = |answer: &Result<Outcome, StorageError>| matches!(answer, Err(e) if !matches!(e, StorageError::Congested { .. } | StorageError::Corrupt(_)));
            if answers.iter().any(down) {
                // The change log was read past these: the next attempt must not forget
                // them.
                lock(&self.unreconciled).extend(cells.iter().map(|cell| cell.service));
                return false;
            }
            // Breakers first used on the fallback while those were reconciled: theirs
            // too, or their views would keep the fallback's state (its decisions) as if
            // it were the fleet's once healthy. (No await from the last check to the
            // switch below.)
            let late: Vec<Arc<Cell>> = {
                let seeded = lock(&self.seeded);
                self.cells()
                    .into_iter()
                    .filter(|cell| seeded.contains(cell.service))
                    .filter(|cell| !cells.iter().any(|done| done.service == cell.service))
                    .collect()
            };
            if late.is_empty() {
                break;
            }
            answers.extend(self.reconcile(&late).await);
            cells.extend(late);
        }
        self.fallback.store(Arc::new(MemoryStore::new()));
        lock(&self.seeded).clear();
        lock(&self.unreconciled).clear();
        lock(&self.local_trials).clear();
        let local_trips = std::mem::take(&mut *lock(&self.local_trips));
        self.healthy.store(true, Ordering::Release);
        let now = now_nanos();
        let mut behind = Vec::new();
        for (cell, answer) in cells.iter().zip(answers) {
            let outcome = match answer {
                Ok(outcome) => outcome,
                Err(StorageError::Congested { .. }) => {
                    behind.push(cell.service);
                    continue;
                }
                Err(error) => {
                    self.on_error(cell.service, &error);
                    self.follow_policy(cell);
                    continue;
                }
            };
            self.tell_reseeded(cell, &outcome);
            cell.confirm(outcome.snapshot.version);
            cell.adopt(&outcome.snapshot);
            // A trip of the fallback's that the fleet did not make: it keeps protecting
            // this process until its own open period ends (or the fleet's record moves
            // on), and the record stays the fleet's.
            let tripped_here = local_trips.get(cell.service).copied();
            if let Some(until) = tripped_here.filter(|&until| until > now) {
                if !outcome.applied && outcome.snapshot.state == State::Closed {
                    tracing::info!(service = cell.service,
                        "Redis is back and the fleet's breaker is closed: the trip this process made on its fallback protects this process alone until its open time ends");
                    cell.quarantine(until);
                }
            }
        }
        lock(&self.unreconciled).extend(behind); // for the next resync
        tracing::info!(address = %self.address, reconciled = cells.len(),
            "Redis available again; breakers follow the fleet state");
        true
    }

    /// Re-reads the breakers that changed since the last resync and applies what they
    /// hold (repairs lost pub/sub messages): one read of the namespace's change log, then
    /// one script per breaker that changed. Every breaker is re-read (recreating records
    /// Redis lost, from this process's view) the first time, when the log is gone (Redis
    /// restarted empty, flushed), or every `max(`[`FULL_RESYNC_EVERY`]`, B)` resyncs
    /// (B breakers: at most one more command per resync, amortised).
    ///
    /// [`FULL_RESYNC_EVERY`]: crate::store::redis::FULL_RESYNC_EVERY
    pub(crate) async fn resync(&self) {
        if !self.is_healthy() {
            return;
        }
        let pending = self.pending_announcement();
        let read = self
            .store
            .changes(self.tracked(), pending.announcement.as_ref())
            .await;
        self.announced(pending, read.as_ref().ok());
        let cells = match read.map(|read| read.changes) {
            Ok(Changes::All) => {
                let cells = self.cells();
                self.touch(&cells); // keeps them listed in the change log (presence.rs)
                cells
            }
            Ok(Changes::Services(services)) => {
                // The breakers an earlier pass read the log past but could not re-read.
                let owed = lock(&self.unreconciled).clone();
                if services.is_empty() && owed.is_empty() {
                    return;
                }
                let mut changed: HashSet<&str> = services.iter().map(String::as_str).collect();
                changed.extend(owed);
                let mut cells: Vec<Arc<Cell>> = {
                    let cells = self.cells.read().unwrap_or_else(PoisonError::into_inner);
                    cells
                        .iter()
                        .filter(|(service, _)| changed.contains(*service))
                        .filter_map(|(_, cell)| cell.upgrade())
                        .collect()
                };
                cells.sort_unstable_by_key(|cell| cell.service);
                cells
            }
            // Garbage in the log's keys: read everything (the log is not the record).
            Err(StorageError::Corrupt(_)) => self.cells(),
            Err(StorageError::Congested { .. }) => return,
            Err(error) => return self.degrade(&error),
        };
        let answers = self.reconcile(&cells).await;
        for (i, (cell, answer)) in cells.iter().zip(answers).enumerate() {
            match answer {
                Ok(outcome) => {
                    lock(&self.unreconciled).remove(cell.service);
                    self.tell_reseeded(cell, &outcome);
                    cell.confirm(outcome.snapshot.version);
                    cell.observe(&outcome.snapshot);
                }
                // Behind this process's own backlog. The log was read past its change:
                // the breaker is owed to the next resync (or the recovery), or its view
                // would stay stale until a full pass.
                Err(StorageError::Congested { .. }) => {
                    lock(&self.unreconciled).insert(cell.service);
                }
                Err(error) => {
                    self.on_error(cell.service, &error);
                    if !self.is_healthy() {
                        // These are owed to the recovery, as above.
                        let owed = cells[i..].iter().map(|cell| cell.service);
                        lock(&self.unreconciled).extend(owed);
                        return;
                    }
                    // Garbage in this breaker's keys: its calls follow the policy (a
                    // closed breaker's healthy calls never ask Redis, so tell the view).
                    self.follow_policy(cell);
                }
            }
        }
    }

    /// Registers `cells`' breakers with this process's view as the seed.
    /// At most [`RECONCILE_AT_ONCE`] scripts in flight: thousands sent at once would wait
    /// behind each other past the deadline, fail the recovery and start it over.
    async fn reconcile(&self, cells: &[Arc<Cell>]) -> Vec<Result<Outcome, StorageError>> {
        let mut answers = Vec::with_capacity(cells.len());
        for chunk in cells.chunks(RECONCILE_AT_ONCE) {
            answers.extend(
                futures_util::future::join_all(chunk.iter().map(|cell| {
                    let command = Command::Register {
                        seed: Some(cell.seed()),
                    };
                    let settings = cell.settings();
                    async move { self.store.apply(cell.service, &settings, command).await }
                }))
                .await,
            );
        }
        answers
    }

    /// Loads (or creates) a breaker's shared state for its first call, under the call
    /// deadline; the policy answers if Redis cannot.
    pub(crate) async fn load(&self, service: &'static str, settings: &Settings) -> Snapshot {
        if self.is_healthy() {
            let deadline = self.store.deadlines().call;
            // Under the call deadline, timed by the store itself: behind this process's
            // own backlog (thousands of breakers loading at once) a timeout is
            // `Congested`, not Redis being down.
            let register = Command::Register { seed: None };
            let result = self
                .store
                .apply_within(service, settings, register, deadline)
                .await;
            match result {
                Ok(outcome) => {
                    if let Some(cell) = self.cell(service) {
                        cell.confirm(outcome.snapshot.version);
                    }
                    return outcome.snapshot;
                }
                Err(error) => self.on_error(service, &error),
            }
        }
        match self.policy {
            UnavailablePolicy::LocalFallback => self
                .apply_locally(service, settings, Command::Snapshot)
                .map_or_else(|_| Snapshot::absent(), |outcome| outcome.snapshot),
            _ => self.policy_outcome(service).snapshot,
        }
    }

    pub(crate) fn on_event(&self, payload: &str) {
        if !self.is_healthy() {
            // While degraded the views follow the policy; recovery re-reads every breaker.
            // (An event now may come from a script that timed out and ran late.)
            return;
        }
        match parse_event(payload) {
            Some((service, snapshot)) => {
                if let Some(cell) = self.cell(service) {
                    cell.confirm(snapshot.version);
                    cell.observe(&snapshot);
                }
            }
            None => tracing::debug!(payload, "ignoring an unparseable infuse event"),
        }
    }

    /// Puts one breaker's view under the policy (its record cannot be used).
    fn follow_policy(&self, cell: &Arc<Cell>) {
        let snapshot = match self.policy {
            UnavailablePolicy::LocalFallback => {
                match self.apply_locally(cell.service, &cell.settings(), Command::Snapshot) {
                    Ok(outcome) => outcome.snapshot,
                    Err(_) => return,
                }
            }
            _ => self.policy_snapshot(cell.view.generation()),
        };
        cell.adopt(&snapshot);
    }

    /// What FailOpen / FailClosed answer: a synthetic state that lets every call through
    /// or rejects every call.
    fn policy_snapshot(&self, generation: u64) -> Snapshot {
        let mut snapshot = Snapshot::closed(Version {
            incarnation: u64::MAX,
            seq: 0,
        });
        snapshot.generation = generation;
        if self.policy == UnavailablePolicy::FailClosed {
            snapshot.state = State::Open;
            snapshot.open_remaining = Some(Duration::from_millis(100));
        }
        snapshot
    }

    fn policy_outcome(&self, service: &str) -> Outcome {
        let generation = self.cell(service).map_or(1, |cell| cell.view.generation());
        let snapshot = self.policy_snapshot(generation);
        Outcome {
            applied: false,
            from: snapshot.state,
            snapshot,
            window: None,
        }
    }
}

/// The fleet layer as a [`Store`] of its own: the Redis store behind the health gate,
/// the unavailable-policy and the local fallback — what [`Config::redis`] gives the
/// breakers of a registry. Built by [`Config::fleet_store`]; useful to run a store
/// conformance suite, or to drive breaker records by hand.
///
/// [`Config::redis`]: crate::Config::redis
/// [`Config::fleet_store`]: crate::Config::fleet_store
#[derive(Debug, Clone)]
pub struct FleetStore {
    fleet: Arc<Fleet>,
}

impl FleetStore {
    pub(crate) async fn connect(options: &RedisOptions) -> Result<FleetStore, InitError> {
        Ok(FleetStore {
            fleet: Fleet::connect(options).await?,
        })
    }

    /// Whether commands currently go to Redis (`false` while the policy answers).
    pub fn is_healthy(&self) -> bool {
        self.fleet.is_healthy()
    }
}

impl Store for FleetStore {
    async fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        self.fleet.apply_command(service, settings, command).await
    }
}

/// The trial token a command reports on, if any.
fn trial_token(command: &Command) -> Option<TrialToken> {
    match *command {
        Command::RecordTrial { token, .. } | Command::ReleaseTrial { token } => Some(token),
        _ => None,
    }
}

/// Inspection and control: errors go back to the caller instead of to the policy.
fn is_admin(command: &Command) -> bool {
    matches!(
        command,
        Command::Register { .. } | Command::Snapshot | Command::Force(_)
    )
}
