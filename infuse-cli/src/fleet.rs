//! The fleet's Redis, as the command sees it: the namespace's breakers and their records
//! (read with plain commands, following the library's key layout, `keys`), and a registry
//! for the changes (the library's own scripts).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use infuse::store::redis::keys::{self, BreakerKey, StateHash};
use infuse::{Config, FleetConnection, Registry, State};
use redis::AsyncCommands;

use crate::Failure;

/// How long any Redis command may take before the command gives up.
const DEADLINE: Duration = Duration::from_secs(5);

/// A connection to the fleet's Redis, for one namespace.
pub(crate) struct Fleet {
    config: Config,
    link: FleetConnection,
    /// A Redis Cluster: no `SCAN` (it would see one node's keys).
    cluster: bool,
    pub(crate) namespace: String,
}

/// One breaker's record, as stored.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) service: String,
    pub(crate) state: State,
    pub(crate) generation: u64,
    pub(crate) fail_counter: u64,
    pub(crate) success_counter: u64,
    /// Consecutive failed trials (the backoff exponent).
    pub(crate) reopens: u64,
    pub(crate) open_remaining: Option<Duration>,
    /// The trial in flight: the time left on its lease.
    pub(crate) trial_remaining: Option<Duration>,
    /// The process holding the trial (its id, as it announces itself): a trial token
    /// starts with its process's id.
    pub(crate) trial_holder: Option<String>,
    /// The rate rules' window, summed over its live buckets: calls, failures, slow.
    pub(crate) window: Option<(u64, u64, u64)>,
    /// How long until the record expires (`None`: never, as in a forced state).
    pub(crate) expires_in: Option<Duration>,
}

impl Fleet {
    /// Connects (within [`DEADLINE`]) to the Redis `config` names, for its namespace.
    pub(crate) async fn connect(
        config: Config,
        namespace: String,
        cluster: bool,
    ) -> Result<Fleet, Failure> {
        let config = config
            .redis_connect_timeout(DEADLINE)
            .redis_admin_timeout(DEADLINE)
            .env_overrides(false)
            .allow_undeclared_overrides(true);
        let link = config
            .redis_connection()
            .await
            .map_err(|error| match error {
                // Without the library's advice to boot degraded: a command has nothing to boot.
                infuse::InitError::Unreachable { address, reason } => {
                    Failure(format!("cannot reach Redis at {address}: {reason}"))
                }
                other => Failure::from(other),
            })?;
        Ok(Fleet {
            namespace,
            config,
            link,
            cluster,
        })
    }

    /// The pub/sub channel of the namespace.
    pub(crate) fn channel(&self) -> String {
        keys::events_channel(&self.namespace)
    }

    /// Every service with a record in the namespace, sorted: the namespace's change log
    /// names every breaker created or changed, and (but in a cluster, whose keys are
    /// spread over its nodes) a `SCAN` finds any whose note was lost.
    pub(crate) async fn services(&self) -> Result<Vec<String>, Failure> {
        let changes = keys::changes_key(&self.namespace);
        let mut conn = self.link.commands();
        let mut services: Vec<String> =
            within(async move { conn.zrange(changes, 0, -1).await }).await?;
        if !self.cluster {
            let pattern = keys::state_keys_pattern(&self.namespace);
            let mut conn = self.link.commands();
            let scan = async {
                let mut keys: Vec<String> = Vec::new();
                let mut iter = conn.scan_match::<_, String>(&pattern).await?;
                while let Some(key) = iter.next().await {
                    keys.push(key?);
                }
                Ok::<_, redis::RedisError>(keys)
            };
            services.extend(within(scan).await?.iter().filter_map(|key| {
                keys::service_of_state_key(&self.namespace, key).map(str::to_owned)
            }));
        }
        services.sort();
        services.dedup();
        Ok(services)
    }

    /// The record of `service`, or `None` when the namespace has none.
    pub(crate) async fn record(&self, service: &str) -> Result<Option<Record>, Failure> {
        let [state_key, open_key, trial_key, window_key, _] =
            keys::breaker_keys(&self.namespace, service);
        let mut conn = self.link.commands();
        let read = async {
            redis::pipe()
                .hgetall(&state_key)
                .pttl(&state_key)
                .pttl(&open_key)
                .pttl(&trial_key)
                .hgetall(&window_key)
                .get(&trial_key)
                .query_async::<(
                    HashMap<String, String>,
                    i64,
                    i64,
                    i64,
                    HashMap<String, String>,
                    Option<String>,
                )>(&mut conn)
                .await
        };
        let (hash, state_ttl, open_ttl, trial_ttl, window, token) = within(read).await?;
        if hash.is_empty() {
            return Ok(None);
        }
        let record = StateHash::parse(&hash).map_err(|unknown| {
            Failure(format!(
                "{service}: the record holds an {unknown} (infuse close {service} repairs it)"
            ))
        })?;
        let state = record.state;
        Ok(Some(Record {
            service: service.to_owned(),
            state,
            generation: record.generation,
            fail_counter: record.fail_counter,
            success_counter: record.success_counter,
            reopens: record.reopens,
            open_remaining: (state == State::Open).then(|| pttl(open_ttl).unwrap_or_default()),
            trial_remaining: pttl(trial_ttl),
            trial_holder: token
                .as_deref()
                .and_then(keys::trial_holder)
                .map(keys::process_id),
            window: keys::window_totals(&window).map(|t| (t.calls, t.failures, t.slow)),
            expires_in: pttl(state_ttl),
        }))
    }

    /// The processes announced in the namespace (alive within their announcement's TTL),
    /// from the namespace's index of processes.
    pub(crate) async fn processes(&self) -> Result<Vec<Process>, Failure> {
        let index = keys::processes_key(&self.namespace);
        let mut conn = self.link.commands();
        let ids: Vec<String> = within(async move { conn.zrange(index, 0, -1).await }).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let announcements: Vec<String> = ids
            .iter()
            .map(|id| keys::process_key(&self.namespace, id))
            .collect();
        let mut conn = self.link.commands();
        let values: Vec<Option<String>> =
            within(async move { conn.mget(announcements).await }).await?;
        let mut processes: Vec<Process> = values
            .into_iter()
            .flatten()
            .filter_map(|text| Process::parse(&text))
            .collect();
        processes.sort_by(|a, b| (&a.name, &a.host, a.pid).cmp(&(&b.name, &b.host, b.pid)));
        Ok(processes)
    }

    /// `service`'s recent transitions, newest first.
    pub(crate) async fn history(&self, service: &str) -> Result<Vec<Transition>, Failure> {
        let key = keys::breaker_key(&self.namespace, service, BreakerKey::History);
        let mut conn = self.link.commands();
        let entries: Vec<String> = within(async move { conn.lrange(key, 0, -1).await }).await?;
        Ok(entries
            .iter()
            .filter_map(|e| Transition::parse(e))
            .collect())
    }

    /// A registry bound to the fleet, for changes through the library's scripts.
    pub(crate) async fn registry(&self) -> Result<Registry, Failure> {
        Registry::new(self.config.clone())
            .await
            .map_err(Failure::from)
    }

    /// Where Redis is (no password), for messages.
    pub(crate) fn address(&self) -> &str {
        self.link.address()
    }

    /// Subscribes to the namespace's events.
    pub(crate) async fn subscribe(&self) -> Result<redis::aio::PubSub, Failure> {
        let mut pubsub = within(self.link.pubsub()).await?;
        within(pubsub.subscribe(self.channel())).await?;
        Ok(pubsub)
    }
}

/// Runs a Redis request under the command's deadline.
async fn within<T>(
    request: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(DEADLINE, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Failure(format!("Redis: {error}"))),
        Err(_) => Err(Failure(format!("Redis did not answer within {DEADLINE:?}"))),
    }
}

/// A `PTTL` answer as a duration (`None`: no key, or no expiry).
fn pttl(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

/// A process of the fleet, as it announced itself.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) pid: u64,
    pub(crate) at_ms: u64,
    /// Each breaker it uses, with the state it sees.
    pub(crate) breakers: BTreeMap<String, String>,
}

impl Process {
    fn parse(text: &str) -> Option<Process> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let breakers = value["breakers"]
            .as_object()?
            .iter()
            .map(|(service, state)| (service.clone(), state.as_str().unwrap_or("?").to_owned()))
            .collect();
        Some(Process {
            id: value["id"].as_str()?.to_owned(),
            name: value["name"].as_str().unwrap_or("?").to_owned(),
            host: value["host"].as_str().unwrap_or("?").to_owned(),
            pid: value["pid"].as_u64().unwrap_or(0),
            at_ms: value["at_ms"].as_u64().unwrap_or(0),
            breakers,
        })
    }

    /// `name@host (pid N)`.
    pub(crate) fn label(&self) -> String {
        format!("{}@{} (pid {})", self.name, self.host, self.pid)
    }
}

/// One entry of a breaker's history, as the library writes it.
pub(crate) use keys::HistoryEntry as Transition;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_parse() {
        let p = Process::parse(r#"{"id":"1f2e","name":"api","host":"web-1","pid":42,"at_ms":1,"interval_ms":30000,"breakers":{"users":"open"}}"#).unwrap();
        assert_eq!(p.label(), "api@web-1 (pid 42)");
        assert_eq!(p.breakers["users"], "open");
    }
}
