//! Breaker state in Redis, shared by every process of the fleet: each [`Command`] is one
//! Lua script (atomic on the server) mirroring its arm of the state machine, timing comes
//! only from the server's key expiry, and what other processes must learn is published
//! so they learn of it at once: transitions, records created, the fail counter's 0 ↔
//! non-zero edge (counts alone reach the others with the next full resync). Transitions
//! and record creations are also noted in the namespace's change log, which a resync
//! reads (one script) to re-read only the breakers that changed.
//!
//! Key layout, for breaker `<service>` in namespace `<ns>` (one Redis Cluster hash slot):
//!
//! | key | type | content | expiry |
//! |---|---|---|---|
//! | `infuse:{<ns>/<service>}:state` | hash | `inc gen seq state fail succ reo` (`reo`: re-opens, the backoff exponent; absent = 0) | `key_ttl`, renewed on writes; none in forced states |
//! | `infuse:{<ns>/<service>}:open` | string | generation that opened it | the open time |
//! | `infuse:{<ns>/<service>}:trial` | string | the trial holder's token | the trial lease |
//! | `infuse:{<ns>/<service>}:window` | hash | rate rules only: `b0`…`b9` = `"<bucket> <calls> <failures> <slow>"` per bucket slot, `i<instance>` = its last bucket with failures or slow calls; deleted by every transition | two windows, renewed on writes |
//!
//! The namespace's change log (written by `scripts/note_change.lua` after a breaker's
//! script, read by `scripts/changes.lua`; in Cluster, the slot of `{<ns>}`):
//!
//! | key | type | content | expiry |
//! |---|---|---|---|
//! | `infuse:{<ns>}:version` | string | the namespace version (`INCR`) | none |
//! | `infuse:{<ns>}:changes` | sorted set | service → version of its last noted change | none |
//!
//! Every breaker script gets the four keys. The window's buckets are keyed by the server's `TIME`
//! (see `scripts/record_calls.lua`).
//!
//! Channel `infuse:events:<ns>` carries those writes as
//! `"<inc> <gen> <seq> <state> <fail> <succ> <open_pttl> <trial_pttl> <service>"`.

mod connection;
mod presence;
mod wire;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use redis::{RedisError, Script};

pub use connection::RedisConnection;
pub(crate) use connection::SentinelConnection;
pub use presence::HISTORY_LEN;
pub use wire::parse_event;
use wire::{outcome_from_reply, Reply, CORRUPT_TAG};

use super::{Command, Outcome, Store, Target};
use crate::core::window::bucket_ms;
use crate::core::{
    fresh_incarnation, process_instance, saturating_millis, Settings, StorageError, TripPolicy,
};

macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(
            include_str!("../../../scripts/prelude.lua"),
            include_str!(concat!("../../../scripts/", $name, ".lua"))
        ))
    };
}

/// One script per command, and the two of the namespace's change log (no prelude: they
/// touch no breaker).
struct Scripts {
    note_change: Script,
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
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            note_change: Script::new(include_str!("../../../scripts/note_change.lua")),
            changes: Script::new(include_str!("../../../scripts/changes.lua")),
            register: script!("register"),
            snapshot: script!("snapshot"),
            record_failure: script!("record_failure"),
            record_success: script!("record_success"),
            record_calls: script!("record_calls"),
            acquire_trial: script!("acquire_trial"),
            record_trial: script!("record_trial"),
            release_trial: script!("release_trial"),
            force: script!("force"),
        }
    }

    fn all(&self) -> [&Script; 11] {
        [
            &self.note_change,
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
        ]
    }
}

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
            Command::Register { .. } | Command::Snapshot | Command::Force(_) => self.admin,
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

/// The namespace's change log (`infuse:{<ns>}:version` and `:changes`, see
/// `scripts/note_change.lua`), and how far this store has read it.
#[derive(Debug)]
struct ChangeLog {
    keys: [String; 2],
    /// The version read last (`None`: never, or the log was gone).
    seen: std::sync::Mutex<Option<u64>>,
    /// Reads since the last full pass.
    since_full: AtomicU64,
}

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
pub const CONGESTED_QUEUE: usize = 16;

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
            Err(StorageError::Timeout { operation, after })
                if ahead >= CONGESTED_QUEUE && self.replies.load(Ordering::Acquire) > replies =>
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
            channel: events_channel(namespace),
            key_ttl,
            deadlines,
            scripts: Arc::new(Scripts::new()),
            queue: Arc::default(),
            log: Arc::new(ChangeLog {
                keys: [
                    format!("infuse:{{{namespace}}}:version"),
                    format!("infuse:{{{namespace}}}:changes"),
                ],
                seen: std::sync::Mutex::new(None),
                since_full: AtomicU64::new(0),
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
    /// (see `scripts/changes.lua`). Under the admin deadline.
    pub async fn changes(
        &self,
        breakers: usize,
        announcement: Option<&Announcement>,
    ) -> Result<LogRead, StorageError> {
        let log = &self.log;
        let period = FULL_RESYNC_EVERY.max(breakers as u64);
        let due = log.since_full.fetch_add(1, Ordering::AcqRel) + 1 >= period;
        let last = *log.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut invocation = self.scripts.changes.prepare_invoke();
        invocation
            .key(&log.keys[0])
            .key(&log.keys[1])
            .arg(last.unwrap_or(0));
        match announcement {
            Some(a) => invocation
                .key(self.process_key(a.instance))
                .key(self.processes_key())
                .arg(format!("{:x}", a.instance))
                .arg(saturating_millis(a.ttl).max(1))
                .arg(a.payload.as_deref().unwrap_or("")),
            // No announcement: the script reads neither KEYS[3..4] nor ARGV[3..4].
            None => invocation.arg(""),
        };
        let mut conn = self.conn.clone();
        let (version, services, announced): (i64, Vec<String>, i64) = self
            .queue
            .run(bounded("changes", self.deadlines.admin, async move {
                invocation.invoke_async(&mut conn).await
            }))
            .await?;
        let version = u64::try_from(version).ok();
        *log.seen.lock().unwrap_or_else(PoisonError::into_inner) = version;
        let changes = match (last, version) {
            (Some(last), Some(version)) if version >= last && !due => Changes::Services(services),
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

    /// Notes in the change log that `service` changed, without waiting (see
    /// `scripts/note_change.lua`). A note that fails (Redis unreachable, the connection
    /// broke) is sent again (see [`note_until_noted`]) until it is noted or the store is
    /// dropped: a change missing from the log would reach a process that also missed
    /// its event (its subscription lost, or it was degraded meanwhile and recovered from
    /// the log) only with the next full resync.
    fn note_change(&self, service: &'static str) -> impl FnOnce() + Send + 'static {
        let (scripts, log) = (Arc::clone(&self.scripts), Arc::downgrade(&self.log));
        let conn = self.conn.clone();
        let deadline = self.deadlines.admin;
        move || {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            runtime.spawn(note_until_noted(move || {
                let (scripts, mut conn, log) = (Arc::clone(&scripts), conn.clone(), log.upgrade());
                async move {
                    let log = log?; // the store is gone
                    let mut invocation = scripts.note_change.prepare_invoke();
                    invocation.key(&log.keys[0]).key(&log.keys[1]).arg(service);
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

    /// The five keys of a breaker (state, open, trial, window, history), sharing one hash
    /// tag.
    pub fn keys(&self, service: &str) -> [String; 5] {
        let tag = format!("infuse:{{{}/{}}}", self.namespace, service);
        [
            format!("{tag}:state"),
            format!("{tag}:open"),
            format!("{tag}:trial"),
            format!("{tag}:window"),
            format!("{tag}:history"),
        ]
    }

    /// How long the record lives after a write: `key_ttl`, and at least twice the
    /// longest open time the command may set (a backed-off re-open lasts up to
    /// `max_reset_timeout`).
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
        saturating_millis(self.key_ttl.max(open.saturating_mul(2)))
    }

    /// The script and arguments of a command (see each script's header).
    fn encode(
        &self,
        service: &str,
        settings: &Settings,
        command: &Command,
    ) -> (&Script, Vec<String>) {
        let ttl = self.ttl_ms(settings, command).to_string();
        let channel = self.channel.clone();
        let service = service.to_owned();
        let reset = saturating_millis(settings.reset_timeout).to_string();
        // Who made a change, in the breaker's history (scripts/prelude.lua: remember).
        let process = format!("{:x}", process_instance());
        let s = &self.scripts;
        match *command {
            Command::Register { seed } => {
                let mut args = vec![fresh_incarnation().to_string(), ttl, channel, service];
                match seed {
                    Some(seed) => args.extend([
                        "1".to_owned(),
                        seed.state.code().to_string(),
                        seed.generation.to_string(),
                        seed.fail_counter.to_string(),
                        seed.open_remaining.map_or(0, saturating_millis).to_string(),
                        seed.confirmed
                            .map_or_else(String::new, |v| v.incarnation.to_string()),
                        seed.confirmed.map_or(0, |v| v.seq).to_string(),
                    ]),
                    None => args.extend(["0", "0", "0", "0", "0", "", "0"].map(String::from)),
                }
                args.push(process);
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
                    ],
                )
            }
            Command::AcquireTrial { token, lease } => (
                &s.acquire_trial,
                vec![
                    token.to_string(),
                    saturating_millis(lease).max(1).to_string(),
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
                    // max_reset_timeout_ms, 0 = no backoff (a set bound below 1 ms is
                    // sent as 1: Settings::open_ms raises it to reset_timeout anyway).
                    settings
                        .max_reset_timeout
                        .map_or(0, |max| saturating_millis(max).max(1))
                        .to_string(),
                    token.jitter().to_string(),
                    ttl,
                    channel,
                    service,
                    process,
                ],
            ),
            Command::ReleaseTrial { token } => (
                &s.release_trial,
                vec![token.to_string(), ttl, channel, service],
            ),
            Command::Force(target) => {
                let open_ms = match target {
                    Target::Open(open_for) => saturating_millis(open_for).max(1),
                    _ => 0,
                };
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
    }
}

impl Store for RedisStore {
    fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send {
        let (script, args) = self.encode(service, settings, &command);
        let mut invocation = script.prepare_invoke();
        for key in self.keys(service) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let deadline = self.deadlines.of(&command);
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
            if noted(&command, outcome.as_ref().ok()) || (unanswered && noted(&command, None)) {
                note();
            }
            outcome
        }
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
                    || matches!(command, Command::Register { .. } | Command::Force(_)))
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

/// The events channel of a namespace.
pub fn events_channel(namespace: &str) -> String {
    format!("infuse:events:{namespace}")
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
