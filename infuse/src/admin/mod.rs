//! The operator's view of a fleet, and its controls: what `infuse status`, `explain`,
//! `watch` and the dashboard show, for your own ops endpoint too.
//!
//! [`Admin`] reads the namespace's keys in Redis (the [key
//! layout](crate::guide::fleet#what-redis-holds)) and runs the library's own scripts for
//! the controls. It is a *tool*, not a fleet member: it never announces itself, so it
//! never shows up among the processes it lists, and it keeps no breaker of its own.
//!
//! - [`Admin::breakers`] lists every breaker of the namespace: its record (state,
//!   counters, the window's rates, open time and trial left), its last transition, and
//!   the processes that see it with the state each sees. One odd entry never fails the
//!   listing: a record that expired or holds garbage is a row saying so
//!   ([`Record::Missing`], [`Record::Corrupt`]). The cost is linear in breakers plus
//!   processes, in time and memory: keys are found with `ZRANGE` and `SCAN` in pages
//!   (never `KEYS`), each breaker is read with one pipeline, and only the newest entry of
//!   each history.
//! - [`Admin::history`] reads one breaker's transitions, newest first, at most `limit`.
//! - [`Admin::processes`] lists the announced processes with when each was last seen.
//! - [`Admin::changes`] follows the namespace's events, reconnecting by itself after
//!   Redis restarts and saying so ([`Change::Reconnected`]).
//! - [`Admin::force_open`], [`Admin::close`], [`Admin::disable`], [`Admin::open_for`]
//!   and [`Admin::half_open`] change a breaker for the whole fleet, as the
//!   [`Breaker`](crate::Breaker) controls do, without making the tool a fleet member.
//!   [`Admin::control`] does the same with an [`Audit`]: who asked (e.g. [`operator`])
//!   and why, kept in the breaker's history ([`HistoryEntry::who`], [`HistoryEntry::why`]).
//! - [`Admin::set_shadow`] switches a breaker in or out of shadow mode for the whole
//!   fleet (it trips and records, but rejects nothing), with an [`Audit`] too.
//!
//! ```no_run
//! # async fn ops() -> Result<(), Box<dyn std::error::Error>> {
//! use infuse::admin::{Admin, Record};
//!
//! let admin = Admin::connect(&infuse::Config::redis("redis://127.0.0.1/").namespace("shop")).await?;
//! let listing = admin.breakers().await?;
//! for row in &listing.breakers {
//!     match &row.record {
//!         Record::Ok(record) => println!("{}: {}", row.service, record.state),
//!         Record::Missing => println!("{}: no record (expired)", row.service),
//!         Record::Corrupt(reason) => println!("{}: corrupt ({reason})", row.service),
//!     }
//!     for seen in &row.seen_by {
//!         let process = &listing.processes[seen.process];
//!         println!("  seen {} by {}", seen.state, process.label());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Under the guide's [minimal ACL](crate::guide::fleet#minimal-acl) (which includes the
//! reads this module makes: `scan`, `zrange`, `lrange`).

mod json;
mod processes;
mod records;
mod stream;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use processes::{Permits, Process, Rejections};
pub use records::{BreakerRecord, BreakerRow, Listing, Record, Sighting, Trial, WindowRates};
pub use stream::{Change, ChangeStream};

pub use crate::breaker::Control;
pub use crate::store::redis::keys::{Audit, HistoryEntry, SHADOW_OFF, SHADOW_ON, WHO_MAX, WHY_MAX};

use crate::core::{Command, InitError, Settings, StorageError, Target};
use crate::fleet::{FleetConnection, Topology};
use crate::registry::Config;
use crate::store::redis::{keys, Deadlines, RedisStore};
use crate::State;

/// How many keys or members one page of `SCAN`/`ZRANGE` asks for: each page is one short
/// command, so Redis serves others between pages.
const PAGE: usize = 1_000;

/// How many breakers are read at once (one pipeline each, on one multiplexed connection).
const IN_FLIGHT: usize = 64;

/// A handle on one namespace of a fleet's Redis, for operators' tools: reads and controls
/// that never make the tool a member of the fleet (see the [module docs](self)).
pub struct Admin {
    connection: Arc<FleetConnection>,
    config: Config,
    namespace: String,
    /// A Redis Cluster: no `SCAN` (it would see one node's keys only); breakers are found
    /// through the change log and the announcements.
    cluster: bool,
    /// Runs the controls' scripts (no fleet, no announcement, no background task).
    store: RedisStore,
    /// Service names interned for the store (it takes `&'static str`): each name once.
    names: Mutex<HashSet<&'static str>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("address", &self.connection.address())
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Connects to the Redis `config` names (one server, Sentinel or Cluster, TLS,
    /// credentials), for its namespace. Its timeouts bound each request
    /// ([`Config::redis_admin_timeout`]), its overrides give the settings a control
    /// uses (the open time of [`Admin::open`], the record's TTL). Unreachable is an
    /// error, whatever `start_degraded` says.
    pub async fn connect(config: &Config) -> Result<Admin, InitError> {
        let connection = config.redis_connection().await?;
        let options = &config.redis;
        let store = RedisStore::new(
            connection.commands(),
            &options.namespace,
            options.key_ttl,
            Deadlines {
                call: options.admin_timeout,
                admin: options.admin_timeout,
            },
        );
        Ok(Admin {
            connection: Arc::new(connection),
            config: config.clone(),
            namespace: options.namespace.clone(),
            cluster: matches!(options.topology, Topology::Cluster { .. }),
            store,
            names: Mutex::default(),
        })
    }

    /// The connection underneath, for reads of your own.
    pub fn connection(&self) -> &FleetConnection {
        &self.connection
    }

    /// The namespace this handle reads.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// How long one request may take.
    fn deadline(&self) -> Duration {
        self.config.redis.admin_timeout
    }

    /// Every breaker of the namespace, sorted by name, with the processes announced (see
    /// [`Listing`]).
    pub async fn breakers(&self) -> Result<Listing, StorageError> {
        records::list(self, None).await
    }

    /// The breakers named (sorted, each once), as [`Admin::breakers`] lists them: a
    /// name the namespace has nothing of is a [`Record::Missing`] row. The cost is that
    /// of these breakers plus the processes, whatever the namespace holds.
    pub async fn breakers_named(&self, services: &[&str]) -> Result<Listing, StorageError> {
        records::list(self, Some(services)).await
    }

    /// The row of `service` as [`Admin::breakers`] lists it ([`Record::Missing`] when
    /// the namespace has no record of it).
    pub async fn breaker(&self, service: &str) -> Result<BreakerRow, StorageError> {
        let mut listing = records::list(self, Some(&[service])).await?;
        Ok(listing
            .breakers
            .pop()
            .expect("a listing of one service has its row"))
    }

    /// `service`'s last transitions, newest first, at most `limit` of them (the scripts
    /// keep [`HISTORY_LEN`](crate::store::redis::keys::HISTORY_LEN)). Entries that do not
    /// parse are left out; a history of the wrong type is an error.
    pub async fn history(
        &self,
        service: &str,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = keys::breaker_key(&self.namespace, service, keys::BreakerKey::History);
        let stop = isize::try_from(limit - 1).unwrap_or(isize::MAX);
        let mut conn = self.connection.commands();
        let entries: Vec<String> = crate::store::redis::bounded(
            "history",
            self.deadline(),
            redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(stop)
                .query_async(&mut conn),
        )
        .await?;
        Ok(entries
            .iter()
            .filter_map(|entry| HistoryEntry::parse(entry))
            .collect())
    }

    /// The processes announced in the namespace, by name, host and pid.
    pub async fn processes(&self) -> Result<Vec<Process>, StorageError> {
        processes::list(self).await
    }

    /// Follows the namespace's events from now on (see [`ChangeStream`]); fails only if
    /// the first subscription does.
    pub async fn changes(&self) -> Result<ChangeStream, StorageError> {
        ChangeStream::new(
            Arc::clone(&self.connection),
            keys::events_channel(&self.namespace),
            self.deadline(),
        )
        .await
    }

    /// Opens `service`'s breaker for its `reset_timeout` (as the configuration this handle
    /// was built from resolves it), for the whole fleet. Answers with the state after.
    pub async fn open(&self, service: &str) -> Result<State, StorageError> {
        self.control(service, Control::Open, &Audit::default())
            .await
    }

    /// Opens `service`'s breaker for `duration` (at most [`MAX_OPEN_FOR`](crate::MAX_OPEN_FOR)), for the whole
    /// fleet; then a trial decides as usual.
    pub async fn open_for(&self, service: &str, duration: Duration) -> Result<State, StorageError> {
        self.control(service, Control::OpenFor(duration), &Audit::default())
            .await
    }

    /// Moves `service`'s breaker to half-open: the next call is a trial.
    pub async fn half_open(&self, service: &str) -> Result<State, StorageError> {
        self.control(service, Control::HalfOpen, &Audit::default())
            .await
    }

    /// Closes `service`'s breaker, resets its counters, ends a forced state and repairs
    /// a record holding garbage.
    pub async fn close(&self, service: &str) -> Result<State, StorageError> {
        self.control(service, Control::Close, &Audit::default())
            .await
    }

    /// Holds `service`'s breaker open for the whole fleet until [`Admin::close`].
    pub async fn force_open(&self, service: &str) -> Result<State, StorageError> {
        self.control(service, Control::ForceOpen, &Audit::default())
            .await
    }

    /// Disables `service`'s breaker (calls run, nothing trips) until [`Admin::close`].
    pub async fn disable(&self, service: &str) -> Result<State, StorageError> {
        self.control(service, Control::Disable, &Audit::default())
            .await
    }

    /// Applies `control` to `service`'s breaker as the methods of the same names do, and
    /// writes who asked and why (`audit`, each part cut to its bound at a character
    /// boundary) to the breaker's history; an empty `audit` writes the plain entry.
    pub async fn control(
        &self,
        service: &str,
        control: Control,
        audit: &Audit,
    ) -> Result<State, StorageError> {
        let target = control.target(self.settings(service)?.reset_timeout)?;
        self.force(service, target, audit).await
    }

    /// Switches `service`'s breaker in (`on`) or out of shadow mode for the whole fleet,
    /// as [`Breaker::set_shadow`](crate::Breaker::set_shadow) does, overriding every
    /// process's `shadow` setting; writes the switch, who asked and why (`audit`) to the
    /// breaker's history (reason [`SHADOW_ON`] or [`SHADOW_OFF`]). Every process follows
    /// within a second. A breaker without a record gets one, closed. Answers the
    /// breaker's state, which the switch does not change.
    pub async fn set_shadow(
        &self,
        service: &str,
        on: bool,
        audit: &Audit,
    ) -> Result<State, StorageError> {
        let settings = self.settings(service)?;
        let service = self.intern(service);
        let outcome = self
            .store
            .command_audited(service, &settings, Command::SetShadow { on }, audit)
            .await?;
        Ok(outcome.snapshot.state)
    }

    /// The settings a control uses for `service`: the configuration's override, else
    /// the defaults (what a registry built from the same configuration would use).
    fn settings(&self, service: &str) -> Result<Settings, StorageError> {
        crate::registry::validate_name(service)
            .map_err(|error| StorageError::InvalidInput(error.to_string()))?;
        self.config
            .resolve(service, Settings::DEFAULT)
            .map_err(|error| StorageError::InvalidInput(error.to_string()))
    }

    /// Runs the force script on `service`'s keys: the same script as the breakers'
    /// controls, published and noted in the change log the same way.
    async fn force(
        &self,
        service: &str,
        target: Target,
        audit: &Audit,
    ) -> Result<State, StorageError> {
        let settings = self.settings(service)?;
        let service = self.intern(service);
        // A reason with nobody named: the operator running this tool asked.
        let audit = audit.naming(operator);
        let outcome = self
            .store
            .force_audited(service, &settings, target, &audit)
            .await?;
        Ok(outcome.snapshot.state)
    }

    fn intern(&self, service: &str) -> &'static str {
        let mut names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(name) = names.get(service) {
            return name;
        }
        let name: &'static str = Box::leak(service.to_owned().into_boxed_str());
        names.insert(name);
        name
    }
}

/// Who this process's user is, for an [`Audit`]: `user@host`, the user from `$USER`
/// (else `$LOGNAME`, else `?`), the host the machine's name (as processes announce it).
pub fn operator() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|user| !user.is_empty())
        .unwrap_or_else(|| "?".to_owned());
    format!("{user}@{}", crate::fleet::presence::host_name())
}
