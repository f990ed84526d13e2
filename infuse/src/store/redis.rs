//! Breaker state in Redis, shared by every process of the fleet: each transition is one
//! Lua script (atomic on the server), timing comes only from the server's key expiry, and
//! every write is published so other processes learn of it at once.
//!
//! Key layout, for breaker `<service>` in namespace `<ns>` (one Redis Cluster hash slot):
//!
//! | key | type | content | expiry |
//! |---|---|---|---|
//! | `infuse:{<ns>/<service>}:state` | hash | `inc gen seq state fail succ` | `key_ttl`, renewed on writes |
//! | `infuse:{<ns>/<service>}:open` | string | generation that opened it | `reset_timeout` |
//! | `infuse:{<ns>/<service>}:trial` | string | the trial holder's token | the trial lease |
//!
//! Channel `infuse:events:<ns>` carries every write as
//! `"<inc> <gen> <seq> <state> <fail> <succ> <open_pttl> <trial_pttl> <service>"`.

use std::future::Future;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{RedisError, Script};

use super::{Outcome, Snapshot, Store, TrialToken, Version};
use crate::{Settings, State, StorageError};

macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(
            include_str!("../../scripts/prelude.lua"),
            include_str!(concat!("../../scripts/", $name, ".lua"))
        ))
    };
}

struct Scripts {
    register: Script,
    snapshot: Script,
    record_failure: Script,
    record_success: Script,
    acquire_trial: Script,
    record_trial: Script,
    release_trial: Script,
    force: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            register: script!("register"),
            snapshot: script!("snapshot"),
            record_failure: script!("record_failure"),
            record_success: script!("record_success"),
            acquire_trial: script!("acquire_trial"),
            record_trial: script!("record_trial"),
            release_trial: script!("release_trial"),
            force: script!("force"),
        }
    }

    fn all(&self) -> [&Script; 8] {
        [
            &self.register,
            &self.snapshot,
            &self.record_failure,
            &self.record_success,
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

/// The raw Redis store: every method is one script with its own deadline. It reports
/// errors as they are; [`Config::redis`](crate::Config::redis) wraps it with the policy
/// for Redis being unavailable.
pub struct RedisStore {
    conn: ConnectionManager,
    namespace: String,
    channel: String,
    key_ttl: Duration,
    deadlines: Deadlines,
    scripts: Scripts,
}

/// The reply every script gives (see `scripts/prelude.lua`).
type Reply = (i64, i64, String, i64, i64, i64, i64, i64, i64, i64);

impl RedisStore {
    /// A store on `conn` for `namespace`. Keys expire `key_ttl` after their last write
    /// (at least twice the reset timeout).
    pub fn new(
        conn: ConnectionManager,
        namespace: &str,
        key_ttl: Duration,
        deadlines: Deadlines,
    ) -> RedisStore {
        RedisStore {
            conn,
            namespace: namespace.to_owned(),
            channel: events_channel(namespace),
            key_ttl,
            deadlines,
            scripts: Scripts::new(),
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

    /// Checks the connection with a `PING` under the call deadline.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.conn.clone();
        bounded("PING", self.deadlines.call, async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// The three keys of a breaker, sharing one hash tag.
    pub fn keys(&self, service: &str) -> [String; 3] {
        let tag = format!("infuse:{{{}/{}}}", self.namespace, service);
        [
            format!("{tag}:state"),
            format!("{tag}:open"),
            format!("{tag}:trial"),
        ]
    }

    fn ttl_ms(&self, settings: &Settings) -> u64 {
        self.key_ttl.max(settings.reset_timeout * 2).as_millis() as u64
    }

    async fn run(
        &self,
        operation: &'static str,
        deadline: Duration,
        script: &Script,
        service: &str,
        args: &[String],
    ) -> Result<Reply, StorageError> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys(service) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        bounded(operation, deadline, async move {
            invocation.invoke_async::<Reply>(&mut conn).await
        })
        .await
    }

    async fn outcome(
        &self,
        operation: &'static str,
        deadline: Duration,
        script: &Script,
        service: &str,
        args: &[String],
    ) -> Result<Outcome, StorageError> {
        let reply = self.run(operation, deadline, script, service, args).await?;
        outcome_from_reply(reply)
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

/// Tokio's timers fire on a 1 ms tick after their deadline: arm them 1 ms early so that
/// no call waits past the configured deadline.
pub(crate) fn timer_for(deadline: Duration) -> Duration {
    let tick = Duration::from_millis(1);
    if deadline > tick * 2 {
        deadline - tick
    } else {
        deadline
    }
}

fn classify(operation: &'static str, error: &RedisError) -> StorageError {
    let text = error.to_string();
    if text.contains("INFUSE_CORRUPT") || text.contains("WRONGTYPE") {
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

fn state_from(code: i64) -> Result<State, StorageError> {
    match code {
        0 => Ok(State::Closed),
        1 => Ok(State::Open),
        2 => Ok(State::HalfOpen),
        other => Err(StorageError::Corrupt(format!("unknown state code {other}"))),
    }
}

fn pttl(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Builds a snapshot from the fields every script and event carries.
pub(crate) fn snapshot_from(inc: &str, fields: [i64; 7]) -> Result<Snapshot, StorageError> {
    let [generation, seq, state, fail, succ, open_pttl, trial_pttl] = fields;
    let state = state_from(state)?;
    Ok(Snapshot {
        state,
        generation: u64::try_from(generation).unwrap_or(0),
        fail_counter: count(fail),
        success_counter: count(succ),
        open_remaining: if state == State::Open {
            Some(pttl(open_pttl).unwrap_or(Duration::ZERO))
        } else {
            None
        },
        trial_remaining: pttl(trial_pttl),
        version: Version {
            incarnation: inc
                .parse()
                .map_err(|_| StorageError::Corrupt(format!("bad incarnation {inc:?}")))?,
            seq: u64::try_from(seq).unwrap_or(0),
        },
    })
}

fn outcome_from_reply(reply: Reply) -> Result<Outcome, StorageError> {
    let (applied, from, inc, generation, seq, state, fail, succ, open_pttl, trial_pttl) = reply;
    Ok(Outcome {
        applied: applied == 1,
        from: state_from(from)?,
        snapshot: snapshot_from(
            &inc,
            [generation, seq, state, fail, succ, open_pttl, trial_pttl],
        )?,
    })
}

/// Parses an event published on the namespace channel into `(service, snapshot)`.
pub(crate) fn parse_event(payload: &str) -> Option<(&str, Snapshot)> {
    let mut parts = payload.splitn(9, ' ');
    let inc = parts.next()?;
    let mut fields = [0i64; 7];
    for field in &mut fields {
        *field = parts.next()?.parse().ok()?;
    }
    let service = parts.next()?;
    Some((service, snapshot_from(inc, fields).ok()?))
}

/// A random incarnation for a record this call may create.
fn fresh_incarnation() -> String {
    // 53 bits, so Lua (doubles) never rounds it.
    ((TrialToken::new().0 as u64) & ((1 << 53) - 1))
        .max(1)
        .to_string()
}

fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

impl Store for RedisStore {
    async fn register(
        &self,
        service: &'static str,
        settings: &Settings,
    ) -> Result<Snapshot, StorageError> {
        let args = [fresh_incarnation(), self.ttl_ms(settings).to_string()];
        Ok(self
            .outcome(
                "register",
                self.deadlines.admin,
                &self.scripts.register,
                service,
                &args,
            )
            .await?
            .snapshot)
    }

    async fn snapshot(
        &self,
        service: &'static str,
        _settings: &Settings,
    ) -> Result<Snapshot, StorageError> {
        Ok(self
            .outcome(
                "snapshot",
                self.deadlines.admin,
                &self.scripts.snapshot,
                service,
                &[],
            )
            .await?
            .snapshot)
    }

    async fn record_failure(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> Result<Outcome, StorageError> {
        let args = [
            generation.to_string(),
            settings.fail_max.to_string(),
            ms(settings.reset_timeout),
            self.ttl_ms(settings).to_string(),
            self.channel.clone(),
            service.to_owned(),
            fresh_incarnation(),
        ];
        self.outcome(
            "record_failure",
            self.deadlines.call,
            &self.scripts.record_failure,
            service,
            &args,
        )
        .await
    }

    async fn record_success(
        &self,
        service: &'static str,
        settings: &Settings,
        generation: u64,
    ) -> Result<Outcome, StorageError> {
        let args = [
            generation.to_string(),
            self.ttl_ms(settings).to_string(),
            self.channel.clone(),
            service.to_owned(),
        ];
        self.outcome(
            "record_success",
            self.deadlines.call,
            &self.scripts.record_success,
            service,
            &args,
        )
        .await
    }

    async fn acquire_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        lease: Duration,
    ) -> Result<Outcome, StorageError> {
        let args = [
            token.to_string(),
            ms(lease),
            self.ttl_ms(settings).to_string(),
            self.channel.clone(),
            service.to_owned(),
            fresh_incarnation(),
        ];
        self.outcome(
            "acquire_trial",
            self.deadlines.call,
            &self.scripts.acquire_trial,
            service,
            &args,
        )
        .await
    }

    async fn record_trial(
        &self,
        service: &'static str,
        settings: &Settings,
        token: TrialToken,
        success: bool,
    ) -> Result<Outcome, StorageError> {
        let args = [
            token.to_string(),
            if success { "1" } else { "0" }.to_owned(),
            settings.success_threshold.to_string(),
            ms(settings.reset_timeout),
            self.ttl_ms(settings).to_string(),
            self.channel.clone(),
            service.to_owned(),
        ];
        self.outcome(
            "record_trial",
            self.deadlines.call,
            &self.scripts.record_trial,
            service,
            &args,
        )
        .await
    }

    fn release_trial(&self, service: &'static str, token: TrialToken) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the lease expires on its own
        };
        let script = self.scripts.release_trial.clone();
        let keys = self.keys(service);
        let ttl = self.key_ttl.as_millis() as u64;
        let mut conn = self.conn.clone();
        let deadline = self.deadlines.call;
        // Sent detached: this runs from a permit's `Drop`.
        runtime.spawn(async move {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            invocation.arg(token.to_string()).arg(ttl);
            let _ = bounded("release_trial", deadline, async move {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await;
        });
    }

    async fn force(
        &self,
        service: &'static str,
        settings: &Settings,
        to: State,
    ) -> Result<Outcome, StorageError> {
        let code = match to {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        };
        let args = [
            code.to_string(),
            ms(settings.reset_timeout),
            self.ttl_ms(settings).to_string(),
            self.channel.clone(),
            service.to_owned(),
            fresh_incarnation(),
        ];
        self.outcome(
            "force",
            self.deadlines.admin,
            &self.scripts.force,
            service,
            &args,
        )
        .await
    }
}
