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
//! The fleet is a store of its own ([`FleetStore`]): it applies commands to Redis, or to
//! the policy when Redis cannot answer. It keeps each bound breaker's [`Cell`] up to
//! date, never naming the breaker handle. One file per job:
//!
//! | file | job |
//! |---|---|
//! | `routing.rs` | where a command goes: Redis, or what answers without it; a record Redis lost is recreated from the view |
//! | `fallback.rs` | what answers without Redis: the policy's state, or the local fallback |
//! | `health.rs` | switching to the policy when Redis fails, and back when it answers again |
//! | `resync.rs` | keeping the views on the fleet's records: events, periodic resync |
//! | `reseed.rs` | a view as the seed of its record: recreating what Redis lost |
//! | `presence.rs` | what the fleet tells its operators (`infuse status`) |
//! | `cells.rs` | the breakers bound to the fleet |
//! | `remote.rs` | the shared store as a trait, for the simulation (`sim/`) |
//! | `connection.rs`, `options.rs` | connecting (one server, Sentinel, Cluster; TLS) and the options |

mod budget;
mod cells;
mod connection;
mod fallback;
mod health;
mod lease;
mod options;
pub(crate) mod presence;
mod remote;
mod reseed;
mod resync;
mod routing;
#[cfg(test)]
mod sim;
mod tls;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::watch;

pub use connection::FleetConnection;
pub use options::UnavailablePolicy;
pub(crate) use options::{RedisOptions, Topology};
pub(crate) use presence::ANNOUNCEMENT_LIFETIME;
pub use routing::FleetStore;

use crate::core::local_trip::OwnCounts;
use crate::core::random::random_u64;
use crate::core::{Command, InitError, Outcome, Settings, Snapshot, StorageError, Target};
use crate::local::Cell;
use crate::store::redis::keys::Audit;
use crate::store::redis::{Deadlines, RedisStore};
use cells::Cells;
use fallback::Fallback;
use health::Health;
use remote::Remote;

/// The Redis store with its failure policy and background tasks.
pub(crate) struct Fleet {
    store: Box<dyn Remote>,
    /// Where Redis is, for logs and errors (never with a password).
    address: String,
    /// Whether commands go to Redis, else to the fallback (see `health.rs`).
    health: Health,
    /// What answers while Redis cannot (see `fallback.rs`).
    fallback: Fallback,
    /// Breakers a failed recovery or resync meant to reconcile (the next attempt does).
    unreconciled: Mutex<HashSet<&'static str>>,
    /// This process's own counts of the breakers with `min_instances > 1`: when its
    /// calls alone trip a rule that the fleet does not (too few processes report
    /// failures), it protects itself (see `core/local_trip.rs`, [`Cell::quarantine`]).
    own_counts: Mutex<HashMap<&'static str, OwnCounts>>,
    /// The breakers bound to this fleet.
    cells: Cells,
    /// Breakers bound since the last resync: the next one keeps them listed in the change
    /// log at once (one script for them all), not only from the next full pass on, when
    /// the note of their creation may have lapsed (a short `key_ttl`).
    fresh: Mutex<Vec<&'static str>>,
    me: Weak<Fleet>,
    resync_interval: Duration,
    /// What Redis holds of this process's announcement, as far as this process knows:
    /// sent whole again only when it changes (see `presence.rs`).
    announced: Mutex<presence::Announced>,
    /// Dropped with the fleet: background tasks end when it closes.
    closing: watch::Sender<()>,
}

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("address", &self.address)
            .field("healthy", &self.health.is_healthy())
            .field("policy", &self.fallback.policy())
            .finish()
    }
}

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
        tokio::spawn(resync::subscribe(
            Arc::downgrade(&fleet),
            events,
            channel,
            closed.clone(),
        ));
        tokio::spawn(resync::resync_periodically(
            Arc::downgrade(&fleet),
            options.resync_interval,
            closed,
        ));
        Ok(fleet)
    }

    /// A fleet over any [`Remote`] store, without the subscriber and the periodic resync
    /// (what [`Fleet::connect`] adds; the simulation drives `resync::on_event` and
    /// `resync::resync` itself). Degraded (`healthy` false), it starts its health
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
            address,
            health: Health::new(healthy),
            fallback: Fallback::new(policy),
            unreconciled: Mutex::default(),
            own_counts: Mutex::default(),
            cells: Cells::default(),
            fresh: Mutex::default(),
            me: me.clone(),
            resync_interval,
            announced: Mutex::default(),
            closing,
        });
        if !healthy {
            health::start_monitor(&fleet);
        }
        fleet
    }

    /// Applies one command: to Redis, or to what answers without it (see `routing.rs`).
    pub(crate) async fn apply_command(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        routing::apply(self, service, settings, command).await
    }

    /// Forces a breaker's record, with who asked and why for its history (see
    /// `routing.rs`).
    pub(crate) async fn force(
        &self,
        service: &'static str,
        settings: &Settings,
        target: Target,
        audit: &Audit,
    ) -> Result<Outcome, StorageError> {
        // A reason with nobody named: this process asked.
        let audit = audit.naming(presence::process_label);
        routing::apply_audited(
            self,
            service,
            settings,
            Command::Force(target),
            Some(&audit),
        )
        .await
    }

    /// Loads (or creates) a breaker's shared state for its first call (see `routing.rs`).
    pub(crate) async fn load(&self, service: &'static str, settings: &Settings) -> Snapshot {
        routing::load(self, service, settings).await
    }

    /// Keeps `cell` up to date from now on (pub/sub, resync, recovery).
    pub(crate) fn track(&self, cell: &Arc<Cell>) {
        self.cells.track(cell);
        lock(&self.fresh).push(cell.service);
    }

    /// Whether commands go to Redis (else the unavailable-policy answers).
    pub(crate) fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }

    /// How long a call waits on Redis at most.
    pub(crate) fn call_deadline(&self) -> Duration {
        self.store.deadlines().call
    }
}
