//! Breaker state in Redis, shared by every process of the fleet: each [`Command`] is one
//! Lua script (atomic on the server) mirroring its arm of the state machine, timing comes
//! only from the server's key expiry, and what other processes must learn is published
//! so they learn of it at once: transitions, records created, the fail counter's 0 ↔
//! non-zero edge (counts alone reach the others with the next full resync). Transitions
//! and record creations are also noted in the namespace's change log, which a resync
//! reads (one script) to re-read only the breakers that changed, and which lists the
//! namespace's breakers for tools (`infuse status`) until their records expire.
//!
//! What each key holds, its bound and when it goes away: see [`keys`], the one place
//! the layout is written.
//!
//! Every script checks every key and field it reads before its first write (see
//! `scripts/prelude.lua`): the state hash's numbers are decimal integers in their ranges
//! (`gen` 1..=[`MAX_GENERATION`], `seq` below 2^53, `state`
//! a state code, `fail`/`succ`/`reo` at most `u32::MAX`, `inc` a non-zero `u64`: `nan`,
//! `inf`, `-1`, `1.5`, `1e400`, 2^63 are all garbage), the open and trial keys are strings
//! with an expiry, the window holds only bucket and instance fields of integers below 2^53
//! (checked by a rate rule's batch, its only reader), and the history is a list (checked
//! by the changes of state that append to it). Anything else fails the command with
//! [`StorageError::Corrupt`] naming the key and field, and the script writes nothing: no
//! half-applied command, no event. Until an operator forces the breaker (`close()`,
//! `open()`, `force_open()`, `disable()`: `scripts/force.lua` deletes whatever holds
//! garbage in all five keys and recreates the record in the same script, writing the
//! repair to the history), its calls follow the unavailable-policy and the fleet logs the
//! corruption once. A record at `MAX_GENERATION` cannot make a transition (`Corrupt`, as
//! in the memory store); force recreates it too. Counts saturate (the window's at 2^53 -
//! 1), and every time sent to a script is at most 2^53 - 1 ms.
//!
//! Every breaker script gets the five keys. The window's buckets are keyed by the server's
//! `TIME` (see `scripts/record_calls.lua`).
//!
//! Channel `infuse:events:<ns>` carries those writes as
//! `"<inc> <gen> <seq> <state> <fail> <succ> <open_pttl> <trial_pttl> <service>"`.

mod connection;
pub mod keys;
mod wire;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use redis::{RedisError, Script};

pub use connection::RedisConnection;
pub(crate) use connection::SentinelConnection;
use keys::Audit;
pub use wire::parse_event;
use wire::{outcome_from_reply, Reply, CORRUPT_TAG};

use super::lease::Grant;
use super::{Budgets, Command, Outcome, Store, Target};
use crate::core::retry_budget::MAX_COUNT as MAX_BUDGET_COUNT;
use crate::core::window::bucket_ms;
use crate::core::{
    fresh_incarnation, process_instance, saturating_millis, store_ms, Settings, State,
    StorageError, TripPolicy, MAX_GENERATION,
};

macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(
            include_str!("../../../scripts/prelude.lua"),
            include_str!(concat!("../../../scripts/", $name, ".lua"))
        ))
    };
}

/// The change log's scripts: `scripts/log.lua` (no breaker prelude: they touch no breaker).
macro_rules! log_script {
    ($name:literal) => {
        Script::new(concat!(
            include_str!("../../../scripts/log.lua"),
            include_str!(concat!("../../../scripts/", $name, ".lua"))
        ))
    };
}

/// One script per command, and the three of the namespace's change log.
struct Scripts {
    note_change: Script,
    touch: Script,
    changes: Script,
    register: Script,
    snapshot: Script,
    record_failure: Script,
    record_success: Script,
    record_calls: Script,
    acquire_trial: Script,
    record_trial: Script,
    release_trial: Script,
    force: Script,
    retry_budget: Script,
    lease_permits: Script,
    set_shadow: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            note_change: log_script!("note_change"),
            touch: log_script!("touch"),
            changes: log_script!("changes"),
            register: script!("register"),
            snapshot: script!("snapshot"),
            record_failure: script!("record_failure"),
            record_success: script!("record_success"),
            record_calls: script!("record_calls"),
            acquire_trial: script!("acquire_trial"),
            record_trial: script!("record_trial"),
            release_trial: script!("release_trial"),
            force: script!("force"),
            retry_budget: Script::new(include_str!("../../../scripts/retry_budget.lua")),
            lease_permits: Script::new(include_str!("../../../scripts/lease_permits.lua")),
            set_shadow: script!("set_shadow"),
        }
    }

    fn all(&self) -> [&Script; 15] {
        [
            &self.note_change,
            &self.touch,
            &self.changes,
            &self.register,
            &self.snapshot,
            &self.record_failure,
            &self.record_success,
            &self.record_calls,
            &self.acquire_trial,
            &self.record_trial,
            &self.release_trial,
            &self.force,
            &self.retry_budget,
            &self.lease_permits,
            &self.set_shadow,
        ]
    }
}

/// How long a breaker's retry budget outlives its last request: past its ten-second
/// window, nothing in it counts.
const BUDGET_KEY_TTL: Duration = Duration::from_secs(20);

/// Deadlines of the Redis store.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For what a guarded call awaits: recording a failure, a trial's acquisition and
    /// result.
    pub call: Duration,
    /// For inspection and control (`state()`, `open()`, registration, resync).
    pub admin: Duration,
}

impl Deadlines {
    /// The deadline of a command: calls wait at most `call`, operators `admin`.
    pub fn of(&self, command: &Command) -> Duration {
        match command {
            Command::Register { .. }
            | Command::Snapshot
            | Command::Force(_)
            | Command::SetShadow { .. } => self.admin,
            _ => self.call,
        }
    }
}

/// The raw Redis store: every command is one script under its own deadline. It reports
/// errors as they are; [`Config::redis`](crate::Config::redis) wraps it with the policy
/// for Redis being unavailable.
pub struct RedisStore {
    conn: RedisConnection,
    namespace: String,
    channel: String,
    key_ttl: Duration,
    deadlines: Deadlines,
    scripts: Arc<Scripts>,
    queue: Arc<Queue>,
    log: Arc<ChangeLog>,
}

/// The namespace's change log (`infuse:{<ns>}:version`, `:changes` and `:listed`, see
/// `scripts/log.lua`), and how far this store has read it.
#[derive(Debug)]
struct ChangeLog {
    keys: [String; 3],
    /// The version read last (`None`: never, or the log was gone).
    seen: std::sync::Mutex<Option<u64>>,
    /// The run id of the server the log was read on last: another one (a restart, a
    /// failover) may have lost changes and rebuilt the log up to the version seen.
    server: std::sync::Mutex<Option<String>>,
    /// Reads since the last full pass.
    since_full: AtomicU64,
    /// Reads so far (every [`PRUNE_EVERY`]-th prunes the log).
    reads: AtomicU64,
}

/// Every this many reads of the change log, the read also forgets the services whose
/// time in the log is up (see `scripts/changes.lua`); the other reads cost what they did
/// before the log was pruned. With every process of the fleet reading once per resync
/// interval, the log is pruned about `processes / PRUNE_EVERY` times per interval.
pub const PRUNE_EVERY: u64 = 10;

/// A touch (see [`RedisStore::touch`]) sends at most this many services per command, so
/// that no script holds Redis for long: a full pass over B breakers sends
/// `ceil(B / TOUCH_BATCH)` touches.
pub const TOUCH_BATCH: usize = 256;

/// How many of its full-pass periods a touched service stays listed at least (see
/// [`RedisStore::touch`]): the period is jittered, and a pass may be late.
pub const TOUCH_PERIODS: u32 = 3;

/// A process re-reads every breaker anyway every `max(FULL_RESYNC_EVERY, B)` reads of
/// the change log, B its number of breakers: at most one command per breaker per
/// `FULL_RESYNC_EVERY` intervals, and amortised at most one more command per interval
/// whatever B. This covers a change whose note was lost (the note is sent after the
/// breaker's script, without waiting; its event normally reaches the process anyway),
/// counter changes that are not noted, and keys written by something else than infuse.
pub const FULL_RESYNC_EVERY: u64 = 10;

/// What changed since the change log was last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Re-read every breaker: the first read, the log is gone or was recreated (Redis
    /// restarted, flushed), or a periodic full pass is due.
    All,
    /// The breakers changed since the last read (empty: nothing changed).
    Services(Vec<String>),
}

/// A process's announcement to the fleet's operators (`infuse status`), renewed by each
/// read of the change log: its key lives `ttl` after the last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The process's id (written in hex).
    pub instance: u64,
    /// How long the announcement lives after this read.
    pub ttl: Duration,
    /// What it says (JSON), when it changed since it was last written; `None` renews it.
    pub payload: Option<String>,
}

/// What a read of the change log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    /// What to re-read.
    pub changes: Changes,
    /// Whether the announcement was written or renewed (`false` with a `None` payload:
    /// its key had expired or was lost; send it whole next time).
    pub announced: bool,
}

/// This process's commands in flight on the connection, and the replies it got: a
/// timeout counts as Redis being down only when it is not this process's own queue.
#[derive(Debug, Default)]
struct Queue {
    in_flight: AtomicUsize,
    replies: AtomicU64,
}

/// A command sent behind at least this many commands of this process that times out
/// while Redis answers others is [`StorageError::Congested`], not a timeout: at ~10 µs
/// of Redis time per script this many fill well under a millisecond of Redis's time, so
/// a queue this deep that misses a call deadline is the client's own backlog (a burst of
/// calls on a busy process), which switching the registry to its fallback would not cure.
pub(crate) const CONGESTED_QUEUE: usize = 16;

impl Queue {
    /// Runs `command`; a timeout behind a deep queue while replies came is `Congested`.
    async fn run<T>(
        &self,
        future: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let ahead = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let replies = self.replies.load(Ordering::Acquire);
        let _sent = Sent(&self.in_flight);
        match future.await {
            Ok(value) => {
                self.replies.fetch_add(1, Ordering::AcqRel);
                Ok(value)
            }
            // Behind its own queue, or with one built up behind it meanwhile (thousands
            // of calls starting at once keep the process's two cores from reading even
            // the first replies in time), while Redis answered others: the process's
            // own backlog.
            Err(StorageError::Timeout { operation, after })
                if ahead.max(self.in_flight.load(Ordering::Acquire)) >= CONGESTED_QUEUE
                    && self.replies.load(Ordering::Acquire) > replies =>
            {
                Err(StorageError::Congested {
                    operation,
                    after,
                    queued: ahead,
                })
            }
            Err(error) => Err(error),
        }
    }
}

/// Counts a command out of the queue however it ends (answered, failed or dropped).
struct Sent<'a>(&'a AtomicUsize);

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RedisStore {
    /// A store on `conn` (a `ConnectionManager`, a `ClusterConnection`, or any
    /// [`RedisConnection`]) for `namespace`. Keys expire `key_ttl` after their last write
    /// (at least twice the open time).
    pub fn new(
        conn: impl Into<RedisConnection>,
        namespace: &str,
        key_ttl: Duration,
        deadlines: Deadlines,
    ) -> RedisStore {
        RedisStore {
            conn: conn.into(),
            namespace: namespace.to_owned(),
            channel: keys::events_channel(namespace),
            key_ttl,
            deadlines,
            scripts: Arc::new(Scripts::new()),
            queue: Arc::default(),
            log: Arc::new(ChangeLog {
                keys: keys::log_keys(namespace),
                seen: std::sync::Mutex::new(None),
                server: std::sync::Mutex::new(None),
                since_full: AtomicU64::new(0),
                reads: AtomicU64::new(0),
            }),
        }
    }

    /// The pub/sub channel of this store's namespace.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The deadlines in force.
    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// Loads every script into the server's script cache (they reload themselves on
    /// `NOSCRIPT` anyway).
    pub async fn load_scripts(&self) -> Result<(), StorageError> {
        for script in self.scripts.all() {
            let mut conn = self.conn.clone();
            bounded("SCRIPT LOAD", self.deadlines.admin, async move {
                script.load_async(&mut conn).await
            })
            .await?;
        }
        Ok(())
    }

    /// Reads the namespace's change log: one script, whatever the number of breakers
    /// (`breakers`: how many this process has, which sets how often a full pass is due,
    /// see [`FULL_RESYNC_EVERY`]), which also renews this process's `announcement`
    /// and, every [`PRUNE_EVERY`] reads, forgets the services whose time in the log is
    /// up (see `scripts/changes.lua`). Under the admin deadline.
    pub async fn changes(
        &self,
        breakers: usize,
        announcement: Option<&Announcement>,
    ) -> Result<LogRead, StorageError> {
        let log = &self.log;
        let period = FULL_RESYNC_EVERY.max(breakers as u64);
        let due = log.since_full.fetch_add(1, Ordering::AcqRel) + 1 >= period;
        let prune = log.reads.fetch_add(1, Ordering::AcqRel) % PRUNE_EVERY == 0;
        let last = *log.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut invocation = self.scripts.changes.prepare_invoke();
        invocation
            .key(&log.keys[0])
            .key(&log.keys[1])
            .key(&log.keys[2])
            .arg(last.unwrap_or(0))
            .arg(saturating_millis(self.key_ttl).max(1))
            .arg(if prune { "1" } else { "0" });
        match announcement {
            Some(a) => invocation
                .key(keys::process_key(
                    &self.namespace,
                    &keys::process_id(a.instance),
                ))
                .key(keys::processes_key(&self.namespace))
                .arg(keys::process_id(a.instance))
                .arg(saturating_millis(a.ttl).max(1))
                .arg(a.payload.as_deref().unwrap_or("")),
            // No announcement: the script reads neither KEYS[4..5] nor ARGV[5..6].
            None => invocation.arg(""),
        };
        let mut conn = self.conn.clone();
        let (version, services, announced, server): (i64, Vec<String>, i64, String) = self
            .queue
            .run(bounded("changes", self.deadlines.admin, async move {
                invocation.invoke_async(&mut conn).await
            }))
            .await?;
        let version = u64::try_from(version).ok();
        *log.seen.lock().unwrap_or_else(PoisonError::into_inner) = version;
        let before = log
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(server.clone());
        let same_server = before.is_none_or(|before| before == server);
        let changes = match (last, version) {
            (Some(last), Some(version)) if version >= last && !due && same_server => {
                Changes::Services(services)
            }
            _ => {
                log.since_full.store(0, Ordering::Release);
                Changes::All
            }
        };
        Ok(LogRead {
            changes,
            announced: announced == 1,
        })
    }

    /// Deletes the announcement of process `instance` and its entry in the index of
    /// processes (both of the namespace's hash tag): a process leaving cleanly. Under
    /// the admin deadline.
    pub async fn withdraw(&self, instance: u64) -> Result<(), StorageError> {
        let id = keys::process_id(instance);
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(keys::process_key(&self.namespace, &id))
            .ignore()
            .cmd("ZREM")
            .arg(keys::processes_key(&self.namespace))
            .arg(&id)
            .ignore();
        let mut conn = self.conn.clone();
        bounded("withdraw", self.deadlines.admin, async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }

    /// Keeps `services` listed in the change log for at least `max(key_ttl,`
    /// [`TOUCH_PERIODS`]` × every)` more, `every` being how often this process touches
    /// them (its full-pass period), and lists those that are missing (see
    /// `scripts/touch.lua`): a breaker in use stays listed although nothing is noted
    /// about it. One command per [`TOUCH_BATCH`] services, under the admin deadline.
    pub async fn touch(&self, services: &[&str], every: Duration) -> Result<(), StorageError> {
        let keep = self.key_ttl.max(every.saturating_mul(TOUCH_PERIODS));
        let keep = saturating_millis(keep).max(1);
        for batch in services.chunks(TOUCH_BATCH) {
            let mut invocation = self.scripts.touch.prepare_invoke();
            for key in &self.log.keys {
                invocation.key(key);
            }
            invocation.arg(keep);
            for service in batch {
                invocation.arg(*service);
            }
            let mut conn = self.conn.clone();
            self.queue
                .run(bounded("touch", self.deadlines.admin, async move {
                    invocation.invoke_async::<i64>(&mut conn).await
                }))
                .await?;
        }
        Ok(())
    }

    /// Reports `first_attempts` of `service`'s calls to the fleet's retry budget and asks
    /// for `wanted` retry tokens (see `scripts/retry_budget.lua`): answers how many the
    /// budget granted, under the call deadline.
    pub(crate) async fn retry_tokens(
        &self,
        service: &str,
        settings: &Settings,
        first_attempts: u64,
        wanted: u64,
    ) -> Result<u64, StorageError> {
        let mut invocation = self.scripts.retry_budget.prepare_invoke();
        invocation
            .key(keys::budget_key(&self.namespace, service))
            .arg(first_attempts.min(MAX_BUDGET_COUNT))
            .arg(wanted.min(MAX_BUDGET_COUNT))
            .arg(settings.retry_budget)
            .arg(settings.retry_min_per_sec)
            .arg(saturating_millis(BUDGET_KEY_TTL));
        let mut conn = self.conn.clone();
        let (granted, _, _): (u64, u64, u64) = self
            .queue
            .run(bounded("retry budget", self.deadlines.call, async move {
                invocation.invoke_async(&mut conn).await
            }))
            .await?;
        Ok(granted)
    }

    /// Asks to hold `want` of `service`'s `cap` concurrency permits for `lease` (keeping
    /// `keep`, the calls it may still admit), as process `process` (see
    /// `scripts/lease_permits.lua`): answers how many this process may use for new calls
    /// and how many its lease holds, under the admin deadline (the calls do not wait on
    /// it: a background task renews leases).
    pub(crate) async fn lease_permits(
        &self,
        service: &str,
        process: u64,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
    ) -> Result<Grant, StorageError> {
        let mut invocation = self.scripts.lease_permits.prepare_invoke();
        invocation
            .key(keys::permits_key(&self.namespace, service))
            .arg(process)
            .arg(keep)
            .arg(want)
            .arg(cap)
            .arg(store_ms(lease).max(1));
        let mut conn = self.conn.clone();
        let (target, held, _, _): (u32, u32, u32, u32) = self
            .queue
            .run(bounded("lease permits", self.deadlines.admin, async move {
                invocation.invoke_async(&mut conn).await
            }))
            .await?;
        Ok(Grant { target, held })
    }

    /// Notes in the change log that `service` changed, without waiting (see
    /// `scripts/note_change.lua`), keeping it listed as long as its record lives after
    /// the change (`None`: for good, a forced state). A note that fails (Redis
    /// unreachable, the connection broke) is sent again (see [`note_until_noted`]) until
    /// it is noted or the store is dropped: a change missing from the log would reach a
    /// process that also missed its event (its subscription lost, or it was degraded
    /// meanwhile and recovered from the log) only with the next full resync.
    fn note_change(&self, service: &'static str) -> impl FnOnce(Option<u64>) + Send + 'static {
        let (scripts, log) = (Arc::clone(&self.scripts), Arc::downgrade(&self.log));
        let conn = self.conn.clone();
        let deadline = self.deadlines.admin;
        move |keep_ms| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let keep = keep_ms.map_or_else(String::new, |ms| ms.to_string());
            runtime.spawn(note_until_noted(move || {
                let (scripts, mut conn, log) = (Arc::clone(&scripts), conn.clone(), log.upgrade());
                let keep = keep.clone();
                async move {
                    let log = log?; // the store is gone
                    let mut invocation = scripts.note_change.prepare_invoke();
                    for key in &log.keys {
                        invocation.key(key);
                    }
                    invocation.arg(service).arg(keep);
                    let noted = bounded("note_change", deadline, async move {
                        invocation.invoke_async::<i64>(&mut conn).await
                    })
                    .await;
                    match noted {
                        Ok(_) => Some(true),
                        // Garbage in the log's keys: readers re-read everything anyway.
                        Err(StorageError::Corrupt(_)) => None,
                        Err(_) => Some(false),
                    }
                }
            }));
        }
    }

    /// Checks the connection with a `PING` under the call deadline.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.conn.clone();
        bounded("PING", self.deadlines.call, async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// The five keys of a breaker, in script order (see [`keys::breaker_keys`]).
    pub fn keys(&self, service: &str) -> [String; 5] {
        keys::breaker_keys(&self.namespace, service)
    }

    /// How long the record lives after a write: `key_ttl`, and at least twice the
    /// longest open time the command may set (a backed-off re-open lasts up to
    /// `max_reset_timeout`). Every time sent to a script is at most 2^53 - 1 ms
    /// (`store_ms`), as the memory store takes it.
    fn ttl_ms(&self, settings: &Settings, command: &Command) -> u64 {
        let longest = settings
            .max_reset_timeout
            .map_or(settings.reset_timeout, |max| {
                max.max(settings.reset_timeout)
            });
        let open = match command {
            Command::Force(Target::Open(open_for)) => (*open_for).max(longest),
            _ => longest,
        };
        store_ms(self.key_ttl.max(open.saturating_mul(2)))
    }

    /// The script and arguments of a command (see each script's header), then the
    /// `shadow` setting, which every breaker script takes last (scripts/prelude.lua:
    /// SHADOW_SETTING).
    fn encode(
        &self,
        service: &str,
        settings: &Settings,
        command: &Command,
        audit: Option<&Audit>,
    ) -> (&Script, Vec<String>) {
        let (script, mut args) = self.encode_command(service, settings, command, audit);
        args.push(if settings.shadow { "1" } else { "0" }.to_owned());
        (script, args)
    }

    /// The script and the arguments its header lists.
    fn encode_command(
        &self,
        service: &str,
        settings: &Settings,
        command: &Command,
        audit: Option<&Audit>,
    ) -> (&Script, Vec<String>) {
        let ttl = self.ttl_ms(settings, command).to_string();
        let channel = self.channel.clone();
        let service = service.to_owned();
        let reset = store_ms(settings.reset_timeout).to_string();
        // max_reset_timeout_ms, 0 = no backoff (a set bound below 1 ms is sent as 1:
        // Settings::open_ms raises it to reset_timeout anyway).
        let max_reset = settings
            .max_reset_timeout
            .map_or(0, |max| store_ms(max).max(1))
            .to_string();
        // slow_start_ms, 0 = off.
        let slow_start = settings
            .slow_start
            .map_or(0, |ramp| store_ms(ramp).max(1))
            .to_string();
        // Who made a change, in the breaker's history (scripts/prelude.lua: remember).
        let process = keys::process_id(process_instance());
        let s = &self.scripts;
        match *command {
            Command::Register { seed } => {
                let mut args = vec![fresh_incarnation().to_string(), ttl, channel, service];
                match seed {
                    // As machine.rs takes a seed: a generation of at most MAX_GENERATION.
                    Some(seed) => args.extend([
                        "1".to_owned(),
                        seed.state.code().to_string(),
                        seed.generation.min(MAX_GENERATION).to_string(),
                        seed.fail_counter.to_string(),
                        seed.open_remaining.map_or(0, store_ms).to_string(),
                        seed.confirmed
                            .map_or_else(String::new, |v| v.incarnation.to_string()),
                        seed.confirmed.map_or(0, |v| v.seq).to_string(),
                    ]),
                    None => args.extend(["0", "0", "0", "0", "0", "", "0"].map(String::from)),
                }
                args.push(process);
                let trial = seed.and_then(|seed| seed.trial_remaining);
                args.push(trial.map_or(0, store_ms).to_string());
                let switch = seed.and_then(|seed| seed.shadow);
                args.push(
                    switch
                        .map_or("", |on| if on { "1" } else { "0" })
                        .to_owned(),
                );
                let since_close = seed.and_then(|seed| seed.since_close);
                args.push(
                    since_close.map_or_else(String::new, |since| store_ms(since).to_string()),
                );
                (&s.register, args)
            }
            Command::Snapshot => (&s.snapshot, Vec::new()),
            Command::RecordFailure {
                generation,
                count,
                instance,
            } => {
                let policy = TripPolicy::of(settings);
                (
                    &s.record_failure,
                    vec![
                        generation.to_string(),
                        count.to_string(),
                        policy.fail_max.to_string(),
                        reset,
                        ttl,
                        channel,
                        service,
                        process,
                        instance.to_string(),
                        policy.min_instances.to_string(),
                        max_reset,
                        slow_start,
                    ],
                )
            }
            Command::RecordSuccess { generation } => (
                &s.record_success,
                vec![generation.to_string(), ttl, channel, service],
            ),
            Command::RecordCalls {
                generation,
                counts,
                instance,
            } => {
                // As the machine reads them (TripPolicy::of, window::bucket_ms); an unset
                // rate is an empty argument.
                let policy = TripPolicy::of(settings);
                let rate =
                    |percent: Option<u32>| percent.map_or_else(String::new, |p| p.to_string());
                (
                    &s.record_calls,
                    vec![
                        generation.to_string(),
                        counts.calls.to_string(),
                        counts.failures.to_string(),
                        counts.slow.to_string(),
                        counts.tail.to_string(),
                        instance.to_string(),
                        policy.fail_max.to_string(),
                        rate(policy.failure_rate),
                        rate(policy.slow_call_rate),
                        policy.min_calls.to_string(),
                        policy.min_instances.to_string(),
                        bucket_ms(settings.window).to_string(),
                        reset,
                        ttl,
                        channel,
                        service,
                        process,
                        max_reset,
                        slow_start,
                    ],
                )
            }
            Command::AcquireTrial { token, lease } => (
                &s.acquire_trial,
                vec![
                    token.to_string(),
                    store_ms(lease).max(1).to_string(),
                    ttl,
                    channel,
                    service,
                    process,
                ],
            ),
            Command::RecordTrial { token, success } => (
                &s.record_trial,
                vec![
                    token.to_string(),
                    if success { "1" } else { "0" }.to_owned(),
                    settings.success_threshold.to_string(),
                    reset,
                    max_reset,
                    token.jitter().to_string(),
                    ttl,
                    channel,
                    service,
                    process,
                    slow_start,
                ],
            ),
            Command::ReleaseTrial { token } => (
                &s.release_trial,
                vec![token.to_string(), ttl, channel, service],
            ),
            Command::Force(target) => {
                let open_ms = match target {
                    Target::Open(open_for) => store_ms(open_for).max(1),
                    _ => 0,
                };
                let [who, why] = audit.map(Audit::script_args).unwrap_or_default();
                (
                    &s.force,
                    vec![
                        target.state().code().to_string(),
                        open_ms.to_string(),
                        ttl,
                        channel,
                        service,
                        fresh_incarnation().to_string(),
                        process,
                        who,
                        why,
                        slow_start,
                    ],
                )
            }
            Command::SetShadow { on } => {
                let [who, why] = audit.map(Audit::script_args).unwrap_or_default();
                (
                    &s.set_shadow,
                    vec![
                        if on { "1" } else { "0" }.to_owned(),
                        fresh_incarnation().to_string(),
                        ttl,
                        channel,
                        service,
                        process,
                        who,
                        why,
                    ],
                )
            }
        }
    }
}

/// The name of a command in errors and logs.
pub(crate) fn operation(command: &Command) -> &'static str {
    match command {
        Command::Register { .. } => "register",
        Command::Snapshot => "snapshot",
        Command::RecordFailure { .. } => "record_failure",
        Command::RecordSuccess { .. } => "record_success",
        Command::RecordCalls { .. } => "record_calls",
        Command::AcquireTrial { .. } => "acquire_trial",
        Command::RecordTrial { .. } => "record_trial",
        Command::ReleaseTrial { .. } => "release_trial",
        Command::Force(_) => "force",
        Command::SetShadow { .. } => "set_shadow",
    }
}

impl RedisStore {
    /// [`Store::apply`] under `deadline` instead of the command's own (a first call
    /// loading its breaker waits at most the call deadline): a timeout behind this
    /// process's own backlog is still [`StorageError::Congested`].
    pub(crate) fn apply_within(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
        deadline: Duration,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + '_ {
        self.apply_audited(service, settings, command, deadline, None)
    }

    /// [`Store::apply`] of an operator's `Force`, with who asked and why written to the
    /// breaker's history.
    pub(crate) fn force_audited(
        &self,
        service: &'static str,
        settings: &Settings,
        target: Target,
        audit: &Audit,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + '_ {
        self.command_audited(service, settings, Command::Force(target), audit)
    }

    /// [`Store::apply`] of an operator's command (`Force`, `SetShadow`), with who asked
    /// and why written to the breaker's history.
    pub(crate) fn command_audited(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
        audit: &Audit,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + '_ {
        let deadline = self.deadlines.of(&command);
        self.apply_audited(service, settings, command, deadline, Some(audit))
    }

    fn apply_audited(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
        deadline: Duration,
        audit: Option<&Audit>,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send + '_ {
        let (script, args) = self.encode(service, settings, &command, audit);
        let ttl_ms = self.ttl_ms(settings, &command);
        let mut invocation = script.prepare_invoke();
        for key in self.keys(service) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let queue = Arc::clone(&self.queue);
        let note = self.note_change(service);
        async move {
            let outcome = queue
                .run(bounded(operation(&command), deadline, async move {
                    invocation.invoke_async::<Reply>(&mut conn).await
                }))
                .await
                .and_then(outcome_from_reply);
            let unanswered = matches!(
                outcome,
                Err(StorageError::Timeout { .. }
                    | StorageError::Congested { .. }
                    | StorageError::Unavailable(_))
            );
            // A refused command (garbage in the keys) changed nothing: no note.
            let note_it = match &outcome {
                Ok(outcome) => noted(&command, Some(outcome)),
                Err(_) => unanswered && noted(&command, None),
            };
            if note_it {
                // How long the record lives now (see `save` in scripts/prelude.lua):
                // for good in a forced state.
                let forced = match &outcome {
                    Ok(outcome) => {
                        matches!(outcome.snapshot.state, State::ForcedOpen | State::Disabled)
                    }
                    Err(_) => matches!(
                        command,
                        Command::Force(target)
                            if matches!(target.state(), State::ForcedOpen | State::Disabled)
                    ),
                };
                note((!forced).then_some(ttl_ms));
            }
            outcome
        }
    }
}

impl Budgets for RedisStore {
    async fn lease_permits(
        &self,
        service: &str,
        process: u64,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
    ) -> Result<Grant, StorageError> {
        RedisStore::lease_permits(self, service, process, keep, want, cap, lease).await
    }

    async fn retry_tokens(
        &self,
        service: &str,
        settings: &Settings,
        first_attempts: u64,
        wanted: u64,
    ) -> Result<u64, StorageError> {
        RedisStore::retry_tokens(self, service, settings, first_attempts, wanted).await
    }
}

impl Store for RedisStore {
    fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send {
        let deadline = self.deadlines.of(&command);
        self.apply_within(service, settings, command, deadline)
    }
}

/// Whether the change log notes a command's change (`outcome`: its answer; `None`: it
/// went unanswered). An answer is noted when it shows a transition, a record created or
/// replaced, or an operator's command (a new generation). Counter changes (the fail
/// counter's zero-ness, a trial's success below the threshold) are published but not
/// noted: they reach a process that missed the event with the next full resync. A
/// command that could make such a change but whose answer never came (a timeout, a
/// broken connection) is noted anyway: its script may have run, and a transition
/// missing from the log would reach a process that also missed its event only with the
/// next full resync (a spurious note costs a re-read).
pub(crate) fn noted(command: &Command, outcome: Option<&Outcome>) -> bool {
    match outcome {
        Some(outcome) => {
            outcome.applied
                && (outcome.changed_state()
                    || matches!(
                        command,
                        Command::Register { .. } | Command::Force(_) | Command::SetShadow { .. }
                    ))
        }
        None => !matches!(
            command,
            Command::Snapshot | Command::RecordSuccess { .. } | Command::ReleaseTrial { .. }
        ),
    }
}

/// The longest wait between two attempts of a note that failed.
pub(crate) const NOTE_RETRY_CAP: Duration = Duration::from_millis(250);

/// Runs `attempt` until it answers `Some(true)` (noted) or `None` (give up: the store
/// is gone, or the log's keys hold garbage):
/// after a failure, waits 50 ms, doubling up to [`NOTE_RETRY_CAP`] (about the fleet's
/// health monitor's pace: a note lands soon after Redis answers again).
pub(crate) async fn note_until_noted<F, A>(mut attempt: F)
where
    F: FnMut() -> A,
    A: Future<Output = Option<bool>>,
{
    let mut delay = Duration::from_millis(50);
    while attempt().await == Some(false) {
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(NOTE_RETRY_CAP);
    }
}

/// Runs one Redis operation under its own deadline (the client's own can block for
/// seconds), classifying failures.
pub(crate) async fn bounded<T>(
    operation: &'static str,
    deadline: Duration,
    future: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, StorageError> {
    match tokio::time::timeout(timer_for(deadline), future).await {
        Err(_) => Err(StorageError::Timeout {
            operation,
            after: deadline,
        }),
        Ok(Ok(value)) => Ok(value),
        // The client's own response timeout: a timeout like ours, so that one behind this
        // process's own backlog is told apart (`Queue::run`) instead of degrading the
        // registry.
        Ok(Err(error)) if error.is_timeout() => Err(StorageError::Timeout {
            operation,
            after: deadline,
        }),
        Ok(Err(error)) => Err(classify(operation, &error)),
    }
}

/// Tokio's timers fire on a 1 ms tick after their deadline, and the woken task then has
/// to be scheduled: arm them early (2 ms, or an eighth of a short deadline) so that no
/// call waits past the configured deadline, even on a busy machine.
pub(crate) fn timer_for(deadline: Duration) -> Duration {
    deadline - (deadline / 8).min(Duration::from_millis(2))
}

fn classify(operation: &'static str, error: &RedisError) -> StorageError {
    let text = error.to_string();
    if text.contains(CORRUPT_TAG) || text.contains("WRONGTYPE") {
        StorageError::Corrupt(format!("{operation}: {text}"))
    } else if error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
    {
        StorageError::Unavailable(format!("{operation}: {text}"))
    } else if text.contains("user_script") || text.contains("Script") {
        StorageError::Corrupt(format!("{operation}: {text}"))
    } else {
        StorageError::Unavailable(format!("{operation}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::timer_for;
    use std::time::Duration;

    #[test]
    fn timers_are_armed_early() {
        assert_eq!(
            timer_for(Duration::from_millis(25)),
            Duration::from_millis(23)
        );
        assert_eq!(
            timer_for(Duration::from_secs(1)),
            Duration::from_millis(998)
        );
        assert_eq!(
            timer_for(Duration::from_millis(8)),
            Duration::from_millis(7)
        );
        assert_eq!(timer_for(Duration::ZERO), Duration::ZERO);
    }
}
