//! The breakers of a namespace as operators see them: each record read with one
//! pipeline, only the newest history entry, and the processes that see each breaker as
//! indices into one list of processes (no copy of a process per breaker).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::{stream, StreamExt, TryStreamExt};
use redis::Value;

use super::processes::{self, Permits, Process, Rejections};
use super::{Admin, HistoryEntry, IN_FLIGHT, PAGE};
use crate::core::StorageError;
use crate::store::redis::bounded;
use crate::store::redis::keys::{self, StateHash, STATE_FIELDS};
use crate::State;

/// The breakers of a namespace and the processes announced in it, read together.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Listing {
    /// Every breaker, by service name: those with a record, those the change log lists
    /// and those a process announces (the last two may have no record any more).
    pub breakers: Vec<BreakerRow>,
    /// The processes announced, as [`Admin::processes`] lists them;
    /// [`Sighting::process`] indexes this list.
    pub processes: Vec<Process>,
    /// Redis's clock when the listing was read (unix ms): ages are measured from it.
    pub server_ms: u64,
}

/// One breaker of a [`Listing`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BreakerRow {
    /// The target service.
    pub service: String,
    /// Its record, or why there is none to show.
    pub record: Record,
    /// Its newest transition (the history's first entry), if it has one that parses.
    pub last_transition: Option<HistoryEntry>,
    /// The processes that announced they use the breaker, with the state each sees.
    pub seen_by: Vec<Sighting>,
}

impl BreakerRow {
    /// The calls the fleet rejected per second lately: the sum over the processes that
    /// see the breaker, each over its last resync interval as it last announced (the
    /// rate is as fresh as the announcements: a resync interval or so).
    pub fn rejections_per_second(&self) -> f64 {
        self.seen_by
            .iter()
            .filter_map(|seen| seen.rejections)
            .fold(0.0, |sum, r| sum + r.per_second())
    }

    /// With `max_concurrent`: the fleet's permits in use and held (the sums over the
    /// processes that see the breaker, as they last announced) and the cap (the largest
    /// any of them has); `None` when no process announced a cap.
    pub fn permits(&self) -> Option<Permits> {
        let announced = self.seen_by.iter().filter_map(|seen| seen.permits);
        announced.reduce(|sum, p| Permits {
            in_use: sum.in_use.saturating_add(p.in_use),
            held: sum.held.saturating_add(p.held),
            cap: sum.cap.max(p.cap),
        })
    }

    /// With `retries`: the retries the fleet took from the breaker's retry budget (retry
    /// tokens spent), the sum over the live processes that see it, each since it started
    /// (as they last announced); `None` when no process announced `retries`.
    pub fn retries(&self) -> Option<u64> {
        let announced = self.seen_by.iter().filter_map(|seen| seen.retries);
        announced.reduce(u64::saturating_add)
    }

    /// In shadow mode, the calls the fleet would have rejected: the sum over the live
    /// processes that see the breaker, each since it started.
    pub fn would_reject(&self) -> u64 {
        self.seen_by
            .iter()
            .filter_map(|seen| seen.would_reject)
            .fold(0u64, u64::saturating_add)
    }
}

/// A breaker's record, as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The record, read.
    Ok(BreakerRecord),
    /// No record: it expired (no process used the breaker for `key_ttl`), was deleted,
    /// or Redis lost it. A process that uses the breaker recreates it.
    Missing,
    /// A record infuse did not write (a key of another type, a field that is no number,
    /// an unknown state): the scripts refuse it until an operator closes or forces the
    /// breaker, which repairs it.
    Corrupt(String),
}

/// A breaker's record, read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerRecord {
    /// The fleet's state of the breaker.
    pub state: State,
    /// Bumped by every transition.
    pub generation: u64,
    /// Consecutive failures.
    pub fail_counter: u64,
    /// Successful trials in a row (toward `success_threshold`).
    pub success_counter: u64,
    /// Consecutive failed trials (the exponent of the open time's backoff).
    pub reopens: u64,
    /// The operator's shadow switch (`infuse shadow`, [`Admin::set_shadow`](super::Admin::set_shadow)):
    /// `None` when never switched (each process follows its `shadow` setting).
    pub shadow: Option<bool>,
    /// While open: the time left before a trial may start (zero: a trial is due; the
    /// next call makes it).
    pub open_remaining: Option<Duration>,
    /// The trial in flight, if any.
    pub trial: Option<Trial>,
    /// The failure-rate window's totals over its live buckets (rate rules only).
    pub window: Option<WindowRates>,
    /// How long until the record expires (`None`: it does not, as in a forced state).
    pub expires_in: Option<Duration>,
    /// While closed after a recovery: the time since the close (Redis's clock; see
    /// [`Snapshot::since_close`](crate::store::Snapshot::since_close)).
    pub since_close: Option<Duration>,
    /// While closed and in slow start: the share of calls admitted, in percent, as the
    /// settings this `Admin` resolves for the service say (`slow_start`,
    /// `slow_start_min`; see [`Settings::slow_start_share`](crate::Settings::slow_start_share)).
    pub slow_start: Option<u8>,
    /// The breaker's other keys that hold what infuse did not write (the record itself
    /// is fine; the next transition or an operator's close repairs them).
    pub anomalies: Vec<String>,
}

impl BreakerRecord {
    /// Open with no time left: the next call is a trial ("half-open, trial due" rather
    /// than "open, 0 ms").
    pub fn trial_due(&self) -> bool {
        self.state == State::Open && self.open_remaining.is_some_and(|left| left.is_zero())
    }
}

/// A trial in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Trial {
    /// The time left on its lease (`None`: the lease has no expiry).
    pub remaining: Option<Duration>,
    /// The process holding it (its id, as [`Process::id`] writes it).
    pub holder: Option<String>,
}

/// The calls a rate rule's window counts, over its live buckets (the whole fleet's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct WindowRates {
    /// Calls counted.
    pub calls: u64,
    /// Of which failed.
    pub failures: u64,
    /// Of which slow.
    pub slow: u64,
}

/// A process that announced it uses a breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sighting {
    /// The process: an index into [`Listing::processes`].
    pub process: usize,
    /// The state it sees the breaker in, as it announced it (`"open"`, `"closed"`…).
    pub state: String,
    /// The calls it rejected lately, if any.
    pub rejections: Option<Rejections>,
    /// In shadow mode, the calls it would have rejected since it started, if any.
    pub would_reject: Option<u64>,
    /// With `max_concurrent`: its permits in use and held, and the cap.
    pub permits: Option<Permits>,
    /// With `retries`: the retries it took from the budget since it started.
    pub retries: Option<u64>,
}

/// Lists `only` (these services, sorted, each once), or every breaker of the namespace.
pub(super) async fn list(admin: &Admin, only: Option<&[&str]>) -> Result<Listing, StorageError> {
    let server_ms = processes::server_ms(admin).await?;
    let processes = processes::list_at(admin, server_ms).await?;
    let mut services: Vec<String> = match only {
        Some(only) => only.iter().map(|service| (*service).to_owned()).collect(),
        None => {
            let mut services = logged_services(admin).await?;
            if !admin.cluster {
                services.extend(scanned_services(admin).await?);
            }
            for process in &processes {
                services.extend(process.breakers.iter().map(|(service, _)| service.clone()));
            }
            services
        }
    };
    services.sort_unstable();
    services.dedup();
    // Who sees what: one entry per announced (process, breaker), grouped by breaker.
    let wanted: Option<HashSet<&str>> = only.map(|only| only.iter().copied().collect());
    let mut seen: HashMap<&str, Vec<Sighting>> = HashMap::new();
    for (index, process) in processes.iter().enumerate() {
        for (service, state) in &process.breakers {
            if wanted
                .as_ref()
                .is_none_or(|wanted| wanted.contains(service.as_str()))
            {
                seen.entry(service).or_default().push(Sighting {
                    process: index,
                    state: state.clone(),
                    rejections: process.rejections_of(service),
                    would_reject: process.would_reject_of(service),
                    permits: process.permits_of(service),
                    retries: process.retries_of(service),
                });
            }
        }
    }
    // By index: a closure taking `&String` is generic over its lifetime, and rustc then
    // cannot prove the listing's future `Send` (rust-lang/rust#102211), which a web
    // handler needs.
    let read: Vec<(Record, Option<HistoryEntry>)> = stream::iter(0..services.len())
        .map(|at| read_one(admin, &services[at], server_ms))
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    let breakers = services
        .iter()
        .zip(read)
        .map(|(service, (record, last_transition))| BreakerRow {
            seen_by: seen.remove(service.as_str()).unwrap_or_default(),
            service: service.clone(),
            record,
            last_transition,
        })
        .collect();
    Ok(Listing {
        breakers,
        processes,
        server_ms,
    })
}

/// The services the namespace's change log lists, a page at a time.
async fn logged_services(admin: &Admin) -> Result<Vec<String>, StorageError> {
    let key = keys::changes_key(&admin.namespace);
    let mut services = Vec::new();
    loop {
        let start = services.len();
        let mut conn = admin.connection.commands();
        let page: Vec<String> = bounded(
            "status",
            admin.deadline(),
            redis::cmd("ZRANGE")
                .arg(&key)
                .arg(start)
                .arg(start + PAGE - 1)
                .query_async(&mut conn),
        )
        .await
        .or_else(|error| wrong_type(error, Vec::new()))?;
        let done = page.len() < PAGE;
        services.extend(page);
        if done {
            return Ok(services);
        }
    }
}

/// The services with a state key (whose note in the log may be lost): `SCAN`, a page at
/// a time.
async fn scanned_services(admin: &Admin) -> Result<Vec<String>, StorageError> {
    let pattern = keys::state_keys_pattern(&admin.namespace);
    let mut seen = HashSet::new();
    let mut cursor: u64 = 0;
    loop {
        let mut conn = admin.connection.commands();
        let (next, page): (u64, Vec<String>) = bounded(
            "status",
            admin.deadline(),
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut conn),
        )
        .await?;
        seen.extend(
            page.iter()
                .filter_map(|key| keys::service_of_state_key(&admin.namespace, key))
                .map(str::to_owned),
        );
        if next == 0 {
            return Ok(seen.into_iter().collect());
        }
        cursor = next;
    }
}

/// A log key of another type reads as empty (the next process's read deletes it).
fn wrong_type<T>(error: StorageError, empty: T) -> Result<T, StorageError> {
    match error {
        StorageError::Corrupt(_) => Ok(empty),
        error => Err(error),
    }
}

/// One breaker's record and newest history entry: one pipeline of seven reads on its
/// keys (one hash slot). A key holding garbage is shown as such; only a failure to
/// reach Redis is an error.
async fn read_one(
    admin: &Admin,
    service: &str,
    server_ms: u64,
) -> Result<(Record, Option<HistoryEntry>), StorageError> {
    let [state, open, trial, window, history] = keys::breaker_keys(&admin.namespace, service);
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    pipe.cmd("HGETALL").arg(&state);
    pipe.cmd("PTTL").arg(&state);
    pipe.cmd("PTTL").arg(&open);
    pipe.cmd("PTTL").arg(&trial);
    pipe.cmd("GET").arg(&trial);
    pipe.cmd("HGETALL").arg(&window);
    pipe.cmd("LRANGE").arg(&history).arg(0).arg(0);
    let mut conn = admin.connection.commands();
    let values: Vec<Value> =
        bounded("status", admin.deadline(), pipe.query_async(&mut conn)).await?;
    let Ok([state_hash, state_ttl, open_ttl, trial_ttl, token, window_hash, newest]) =
        <[Value; 7]>::try_from(values)
    else {
        return Err(StorageError::Corrupt(format!(
            "{service}: Redis answered a pipeline of 7 reads with another number of replies"
        )));
    };
    let mut anomalies = Vec::new();
    let last_transition = match read::<Vec<String>>(newest) {
        Ok(entries) => entries.first().and_then(|entry| HistoryEntry::parse(entry)),
        Err(error) => {
            anomalies.push(format!("{history}: {error}"));
            None
        }
    };
    let hash = match read::<HashMap<String, String>>(state_hash) {
        Ok(hash) if hash.is_empty() => return Ok((Record::Missing, last_transition)),
        Ok(hash) => hash,
        Err(error) => {
            return Ok((
                Record::Corrupt(format!("{state}: {error}")),
                last_transition,
            ))
        }
    };
    let parsed = match check_fields(&hash).and_then(|()| {
        StateHash::parse(&hash).map_err(|unknown| format!("field state holds an {unknown}"))
    }) {
        Ok(parsed) => parsed,
        Err(reason) => {
            return Ok((
                Record::Corrupt(format!("{state}: {reason}")),
                last_transition,
            ));
        }
    };
    let window = match read::<HashMap<String, String>>(window_hash) {
        Ok(hash) => keys::window_totals(&hash).map(|totals| WindowRates {
            calls: totals.calls,
            failures: totals.failures,
            slow: totals.slow,
        }),
        Err(error) => {
            anomalies.push(format!("{window}: {error}"));
            None
        }
    };
    let trial = match read::<Option<String>>(token) {
        Ok(token) => token.map(|token| Trial {
            remaining: pttl(trial_ttl),
            holder: keys::trial_holder(&token).map(keys::process_id),
        }),
        Err(error) => {
            anomalies.push(format!("{trial}: {error}"));
            None
        }
    };
    let open_remaining =
        (parsed.state == State::Open).then(|| pttl(open_ttl).unwrap_or(Duration::ZERO));
    let since_close = parsed
        .closed_at_ms
        .filter(|_| parsed.state == State::Closed)
        .map(|at| Duration::from_millis(server_ms.saturating_sub(at)));
    let slow_start = since_close.and_then(|since| {
        let settings = admin.settings(service).ok()?;
        settings.slow_start_share(since)
    });
    Ok((
        Record::Ok(BreakerRecord {
            state: parsed.state,
            generation: parsed.generation,
            fail_counter: parsed.fail_counter,
            success_counter: parsed.success_counter,
            reopens: parsed.reopens,
            shadow: parsed.shadow,
            open_remaining,
            trial,
            window,
            expires_in: pttl(state_ttl),
            since_close,
            slow_start,
            anomalies,
        }),
        last_transition,
    ))
}

/// The fields the scripts require (`parse` in `scripts/prelude.lua`), each a decimal
/// number; `reo` and `cls` may be absent (records written before they existed).
fn check_fields(hash: &HashMap<String, String>) -> Result<(), String> {
    let [inc, generation, seq, state, fail, succ, reo, _, cls] = STATE_FIELDS;
    for field in [inc, generation, seq, state, fail, succ, reo, cls] {
        match hash.get(field) {
            None if field == reo || field == cls => {}
            None => return Err(format!("no field {field}")),
            Some(value) if value.parse::<u64>().is_err() => {
                return Err(format!("field {field} is {value:?}, not a count"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// One reply of a pipeline, as `T`; an error reply (a key of the wrong type) as its text.
fn read<T: redis::FromRedisValue>(value: Value) -> Result<T, String> {
    redis::from_redis_value(value).map_err(|error| error.to_string())
}

/// A `PTTL` reply as a duration (`None`: no key, no expiry, or not a number).
fn pttl(value: Value) -> Option<Duration> {
    read::<i64>(value)
        .ok()
        .and_then(|ms| u64::try_from(ms).ok())
        .map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_the_scripts_require_are_checked() {
        let mut hash: HashMap<String, String> = STATE_FIELDS
            .iter()
            .zip(["7", "1", "1", "0", "0", "0", "0", "", "0"])
            .map(|(field, value)| (field.to_string(), value.to_string()))
            .collect();
        assert_eq!(check_fields(&hash), Ok(()));
        hash.remove("reo");
        hash.remove("cls");
        assert_eq!(check_fields(&hash), Ok(()));
        hash.insert("fail".into(), "lots".into());
        assert_eq!(
            check_fields(&hash),
            Err("field fail is \"lots\", not a count".into())
        );
        hash.remove("gen");
        assert_eq!(check_fields(&hash), Err("no field gen".into()));
    }
}
