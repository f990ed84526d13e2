//! Fleet mode: the Redis store, plus what keeps calls fast and safe when Redis is not.
//!
//! - Each process keeps a local view of every breaker; Redis is only asked when
//!   something changes (a failure, a trial, a reset after failures).
//! - Other processes' writes arrive through pub/sub; a periodic resync repairs whatever
//!   pub/sub lost (it is at-most-once) or a reconnect missed.
//! - When Redis times out or is unreachable, the whole registry switches once (logged
//!   once) to the [`UnavailablePolicy`], so calls stop waiting on it; a health monitor
//!   pings with backoff and, on recovery, re-reads the fleet's state — a process never
//!   pushes its local opinion over the fleet's.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

use crate::breaker::Breaker;
use crate::store::memory::MemoryStore;
use crate::store::redis::{parse_event, timer_for, Deadlines, RedisStore};
use crate::store::{Outcome, Snapshot, Store, TrialToken, Version};
use crate::{InitError, Settings, State, StorageError};

pub(crate) type BreakerMap = RwLock<HashMap<&'static str, Breaker>>;

/// What calls do while Redis is unavailable (killed, hung, partitioned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnavailablePolicy {
    /// Each process runs its breakers in memory, seeded from the last shared view (an
    /// open breaker stays open for the time it had left). Losing Redis loses fleet-wide
    /// coordination, not protection. The default.
    #[default]
    LocalFallback,
    /// Calls go through unchecked, as if every breaker were closed.
    FailOpen,
    /// Calls are rejected, as if every breaker were open.
    FailClosed,
}

impl fmt::Display for UnavailablePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnavailablePolicy::LocalFallback => "local fallback breakers",
            UnavailablePolicy::FailOpen => "fail open (calls pass unchecked)",
            UnavailablePolicy::FailClosed => "fail closed (calls rejected)",
        })
    }
}

/// Settings of fleet mode (see [`Config::redis`](crate::Config::redis)).
#[derive(Clone)]
pub(crate) struct RedisOptions {
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) policy: UnavailablePolicy,
    pub(crate) call_timeout: Duration,
    pub(crate) admin_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) resync_interval: Duration,
    pub(crate) key_ttl: Duration,
    pub(crate) start_degraded: bool,
}

impl fmt::Debug for RedisOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisOptions")
            .field("url", &redact(&self.url))
            .field("namespace", &self.namespace)
            .field("policy", &self.policy)
            .field("call_timeout", &self.call_timeout)
            .field("resync_interval", &self.resync_interval)
            .field("key_ttl", &self.key_ttl)
            .field("start_degraded", &self.start_degraded)
            .finish()
    }
}

/// The URL with any password replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{}{masked}{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_owned(),
    }
}

/// The Redis store with its failure policy and background tasks.
pub(crate) struct Fleet {
    store: RedisStore,
    policy: UnavailablePolicy,
    address: String,
    healthy: AtomicBool,
    fallback: ArcSwap<MemoryStore>,
    seeded: Mutex<HashSet<&'static str>>,
    corrupt_reported: Mutex<HashSet<&'static str>>,
    monitoring: AtomicBool,
    breakers: Weak<BreakerMap>,
    me: Weak<Fleet>,
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

fn jittered(d: Duration) -> Duration {
    // ±20%, so a fleet's processes do not move in lockstep.
    let r = (TrialToken::new().0 % 401) as u64; // 0..=400
    d * (800 + r as u32) / 1000
}

impl Fleet {
    /// Connects, loads the scripts and starts the subscriber and resync tasks.
    pub(crate) async fn connect(
        options: &RedisOptions,
        breakers: Weak<BreakerMap>,
    ) -> Result<Arc<Fleet>, InitError> {
        validate(options)?;
        let client =
            redis::Client::open(options.url.as_str()).map_err(|e| InitError::InvalidSetting {
                origin: format!("Config::redis({:?})", redact(&options.url)),
                reason: format!("{e}; expected redis://[user:password@]host:port/db"),
            })?;
        let info = client.get_connection_info();
        let address = format!("{}/{}", info.addr(), info.redis_settings().db());
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.admin_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connected = tokio::time::timeout(
            options.connect_timeout,
            ConnectionManager::new_with_config(client.clone(), manager_config.clone()),
        )
        .await;
        let (conn, healthy) = match connected {
            Ok(Ok(conn)) => (conn, true),
            failed => {
                let reason = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {:?}", options.connect_timeout),
                };
                if !options.start_degraded {
                    return Err(InitError::Storage(StorageError::Unavailable(format!(
                        "cannot reach Redis at {address}: {reason}"
                    ))));
                }
                tracing::warn!(%address, %reason, policy = %options.policy,
                    "Redis unreachable at boot; starting degraded");
                let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
                    .map_err(|e| StorageError::Unavailable(format!("Redis at {address}: {e}")))?;
                (conn, false)
            }
        };
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
            store.load_scripts().await.map_err(|e| {
                StorageError::Unavailable(format!("loading scripts into Redis at {address}: {e}"))
            })?;
        }
        let (closing, closed) = watch::channel(());
        let fleet = Arc::new_cyclic(|me| Fleet {
            store,
            policy: options.policy,
            address,
            healthy: AtomicBool::new(healthy),
            fallback: ArcSwap::from_pointee(MemoryStore::new()),
            seeded: Mutex::new(HashSet::new()),
            corrupt_reported: Mutex::new(HashSet::new()),
            monitoring: AtomicBool::new(false),
            breakers,
            me: me.clone(),
            closing,
        });
        if !healthy {
            fleet.start_monitor();
        }
        tokio::spawn(subscribe(
            Arc::downgrade(&fleet),
            client,
            fleet.store.channel().to_owned(),
            closed.clone(),
        ));
        tokio::spawn(resync_periodically(
            Arc::downgrade(&fleet),
            options.resync_interval,
            closed,
        ));
        Ok(fleet)
    }

    /// Whether calls currently use Redis (false while degraded).
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn breaker(&self, service: &str) -> Option<Breaker> {
        let map = self.breakers.upgrade()?;
        let map = map.read().unwrap_or_else(|e| e.into_inner());
        map.get(service).cloned()
    }

    fn all_breakers(&self) -> Vec<Breaker> {
        self.breakers.upgrade().map_or_else(Vec::new, |map| {
            map.read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect()
        })
    }

    /// Reacts to a failed Redis operation: unreachable or slow Redis degrades the whole
    /// registry (once); garbage in one breaker's keys affects only that breaker's call.
    fn on_error(&self, service: &'static str, error: &StorageError) {
        match error {
            StorageError::Corrupt(detail) => {
                let first = self
                    .corrupt_reported
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(service);
                if first {
                    tracing::error!(service, %detail, policy = %self.policy,
                        "unexpected data in this breaker's Redis keys; its calls follow the policy (`close()` repairs the keys)");
                }
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
        match self.policy {
            UnavailablePolicy::LocalFallback => {}
            UnavailablePolicy::FailOpen | UnavailablePolicy::FailClosed => {
                for breaker in self.all_breakers() {
                    let generation = breaker.inner.view.generation();
                    breaker.adopt_snapshot(&self.policy_snapshot(generation));
                }
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

    /// Back to shared state: drop the local fallback and re-read every breaker.
    async fn recover(&self) -> bool {
        if self.store.load_scripts().await.is_err() {
            return false;
        }
        let snapshots =
            futures_util::future::join_all(self.all_breakers().into_iter().map(|b| async move {
                let settings = b.settings();
                let snapshot = self.store.register(b.service(), &settings).await;
                (b, snapshot)
            }))
            .await;
        if snapshots.iter().any(|(_, s)| s.is_err()) {
            return false;
        }
        self.fallback.store(Arc::new(MemoryStore::new()));
        self.seeded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.healthy.store(true, Ordering::Release);
        for (breaker, snapshot) in snapshots {
            if let Ok(snapshot) = snapshot {
                breaker.adopt_snapshot(&snapshot);
            }
        }
        tracing::info!(address = %self.address, "Redis available again; breakers follow the fleet state");
        true
    }

    /// Re-reads every breaker and applies what changed (repairs lost pub/sub messages).
    pub(crate) async fn resync(&self) {
        if !self.is_healthy() {
            return;
        }
        let results =
            futures_util::future::join_all(self.all_breakers().into_iter().map(|b| async move {
                let settings = b.settings();
                (self.store.snapshot(b.service(), &settings).await, b)
            }))
            .await;
        for (result, breaker) in results {
            match result {
                Ok(snapshot) => breaker.observe_snapshot(&snapshot),
                Err(e) => {
                    self.on_error(breaker.service(), &e);
                    if !self.is_healthy() {
                        return;
                    }
                }
            }
        }
    }

    /// Loads (or creates) a breaker's shared state for a call, under the call deadline;
    /// the policy answers if Redis cannot.
    pub(crate) async fn sync_on_call(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> Snapshot {
        if self.is_healthy() {
            let deadline = self.store.deadlines().call;
            let result = match tokio::time::timeout(
                timer_for(deadline),
                self.store.register(service, settings),
            )
            .await
            {
                Ok(result) => result,
                Err(_) => Err(StorageError::Timeout {
                    operation: "register",
                    after: deadline,
                }),
            };
            match result {
                Ok(snapshot) => return snapshot,
                Err(error) => self.on_error(service, &error),
            }
        }
        match self.policy {
            UnavailablePolicy::LocalFallback => self.local(service).snapshot_now(service),
            _ => self.policy_snapshot(self.current_generation(service)),
        }
    }

    fn on_event(&self, payload: &str) {
        match parse_event(payload) {
            Some((service, snapshot)) => {
                if let Some(breaker) = self.breaker(service) {
                    breaker.observe_snapshot(&snapshot);
                }
            }
            None => tracing::debug!(payload, "ignoring an unparseable infuse event"),
        }
    }

    /// The local fallback store, seeded from this process's last view of the breaker.
    fn local(&self, service: &'static str) -> Arc<MemoryStore> {
        let store = self.fallback.load_full();
        let first = self
            .seeded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service);
        if first {
            if let Some(breaker) = self.breaker(service) {
                store.seed(service, &breaker.inner.view.local_snapshot());
            }
        }
        store
    }

    /// What FailOpen / FailClosed answer: a synthetic state that lets every call through
    /// or rejects every call.
    fn policy_snapshot(&self, generation: u64) -> Snapshot {
        let version = Version {
            incarnation: u64::MAX,
            seq: 0,
        };
        let mut snapshot = Snapshot::closed(version);
        snapshot.generation = generation;
        if self.policy == UnavailablePolicy::FailClosed {
            snapshot.state = State::Open;
            snapshot.open_remaining = Some(Duration::from_millis(100));
        }
        snapshot
    }

    fn policy_outcome(&self, generation: u64) -> Outcome {
        let snapshot = self.policy_snapshot(generation);
        Outcome {
            applied: false,
            from: snapshot.state,
            snapshot,
        }
    }

    fn current_generation(&self, service: &str) -> u64 {
        self.breaker(service)
            .map_or(1, |b| b.inner.view.generation())
    }
}

/// Runs a call-path operation on Redis when healthy; otherwise (or when it fails) the
/// policy answers, without waiting on Redis again.
macro_rules! call_path {
    ($self:ident, $service:ident, $generation:expr, $redis:expr, $local:expr) => {{
        if $self.is_healthy() {
            match $redis.await {
                Ok(outcome) => return Ok(outcome),
                Err(error) => $self.on_error($service, &error),
            }
        }
        match $self.policy {
            UnavailablePolicy::LocalFallback => {
                let local = $self.local($service);
                $local(local).await
            }
            _ => Ok($self.policy_outcome($generation)),
        }
    }};
}

/// Runs an inspection or control operation: errors are returned (and degrade the
/// registry when Redis is unreachable).
macro_rules! admin {
    ($self:ident, $service:ident, $redis:expr) => {{
        let result = $redis.await;
        if let Err(error) = &result {
            $self.on_error($service, error);
        }
        result
    }};
}

impl Store for Fleet {
    async fn register(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> Result<Snapshot, StorageError> {
        admin!(self, service, self.store.register(service, settings))
    }

    async fn snapshot(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> Result<Snapshot, StorageError> {
        admin!(self, service, self.store.snapshot(service, settings))
    }

    async fn record_failure(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> Result<Outcome, StorageError> {
        call_path!(
            self,
            service,
            generation,
            self.store.record_failure(service, settings, generation),
            |local: Arc<MemoryStore>| async move {
                local.record_failure(service, settings, generation).await
            }
        )
    }

    async fn record_success(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> Result<Outcome, StorageError> {
        call_path!(
            self,
            service,
            generation,
            self.store.record_success(service, settings, generation),
            |local: Arc<MemoryStore>| async move {
                local.record_success(service, settings, generation).await
            }
        )
    }

    async fn acquire_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        lease: Duration,
    ) -> Result<Outcome, StorageError> {
        call_path!(
            self,
            service,
            self.current_generation(service), // evaluated only if the policy answers
            async {
                let result = self
                    .store
                    .acquire_trial(service, settings, token, lease)
                    .await;
                if result.is_err() {
                    // The script may still run once Redis answers, handing the fleet's
                    // trial slot to a token nobody will report: release it right behind
                    // (same connection, so it runs after; token-fenced, so it is safe).
                    self.store.release_trial(service, token);
                }
                result
            },
            |local: Arc<MemoryStore>| async move {
                local.acquire_trial(service, settings, token, lease).await
            }
        )
    }

    async fn record_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        success: bool,
    ) -> Result<Outcome, StorageError> {
        call_path!(
            self,
            service,
            self.current_generation(service), // evaluated only if the policy answers
            async {
                let result = self
                    .store
                    .record_trial(service, settings, token, success)
                    .await;
                if result.is_err() {
                    self.store.release_trial(service, token); // as in `acquire_trial`
                }
                result
            },
            |local: Arc<MemoryStore>| async move {
                local.record_trial(service, settings, token, success).await
            }
        )
    }

    fn release_trial(&self, service: &'static str, token: TrialToken) {
        if self.is_healthy() {
            self.store.release_trial(service, token);
        } else {
            self.fallback.load().release_trial(service, token);
        }
    }

    async fn force(
        &self,
        service: &'static str,
        settings: &Settings,
        to: State,
    ) -> Result<Outcome, StorageError> {
        admin!(self, service, self.store.force(service, settings, to))
    }
}

fn validate(options: &RedisOptions) -> Result<(), InitError> {
    let invalid = |origin: &str, reason: &str| InitError::InvalidSetting {
        origin: origin.to_owned(),
        reason: reason.to_owned(),
    };
    if options.namespace.is_empty() || options.namespace.contains(['{', '}']) {
        return Err(invalid(
            "Config::namespace",
            "the namespace must be non-empty and must not contain `{` or `}` (reserved for Redis Cluster hash tags)",
        ));
    }
    for (name, value) in [
        ("Config::redis_call_timeout", options.call_timeout),
        ("Config::resync_interval", options.resync_interval),
        ("Config::key_ttl", options.key_ttl),
    ] {
        if value.is_zero() {
            return Err(invalid(name, "must be greater than zero"));
        }
    }
    Ok(())
}

/// Keeps a subscription to the namespace's events, reconnecting with backoff and
/// resyncing after every (re)subscribe.
async fn subscribe(
    fleet: Weak<Fleet>,
    client: redis::Client,
    channel: String,
    mut closed: watch::Receiver<()>,
) {
    let mut delay = Duration::from_millis(100);
    let mut lost = false;
    loop {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        if let Ok(Ok(pubsub)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            delay = Duration::from_millis(100);
            if std::mem::take(&mut lost) {
                tracing::info!(%channel, "infuse event subscription restored");
            }
            let Some(f) = fleet.upgrade() else { return };
            tokio::spawn(async move { f.resync().await });
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => {
                            let Some(f) = fleet.upgrade() else { return };
                            if let Ok(payload) = message.get_payload::<String>() {
                                f.on_event(&payload);
                            }
                        }
                        None => break,
                    },
                    _ = closed.changed() => return,
                }
            }
        }
        if !std::mem::replace(&mut lost, true) {
            tracing::warn!(%channel, "infuse event subscription lost; reconnecting (periodic resync goes on)");
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(delay)) => {}
            _ = closed.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn resync_periodically(
    fleet: Weak<Fleet>,
    interval: Duration,
    mut closed: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(jittered(interval)) => {}
            _ = closed.changed() => return,
        }
        let Some(f) = fleet.upgrade() else { return };
        f.resync().await;
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://:secret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(
            redact("redis://user:secret@host/1"),
            "redis://user:***@host/1"
        );
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
    }
}
