//! The processes of a namespace, from their announcements (written by
//! `fleet/presence.rs` with each process's read of the change log): the index of live
//! processes read a page at a time, then the announcements in pipelines of a page.

use std::time::Duration;

use redis::Value;

use super::json::Json;
use super::{Admin, PAGE};
use crate::core::StorageError;
use crate::fleet::ANNOUNCEMENT_LIFETIME;
use crate::store::redis::bounded;
use crate::store::redis::keys;
use crate::State;

/// A process of the fleet, as it announced itself.
///
/// A process renews its announcement every few resync intervals and, when it shuts down
/// cleanly ([`Registry::shutdown`](crate::Registry::shutdown)), withdraws it. One that
/// died stays listed, with its [`last_seen`](Process::last_seen) age growing, until its
/// announcement expires (ten resync intervals after its last renewal).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Process {
    /// Its id (hex), as histories and trial holders name it.
    pub id: String,
    /// Its executable's name (`"?"` if unknown).
    pub name: String,
    /// Its machine's name (`"?"` if unknown).
    pub host: String,
    /// Its process id (0 if unknown).
    pub pid: u64,
    /// Its resync interval (`None` if unknown): it renews its announcement at least
    /// every five of them.
    pub resync_interval: Option<Duration>,
    /// How long ago it last wrote or renewed its announcement, on Redis's clock
    /// (`None` if its resync interval is unknown).
    pub last_seen: Option<Duration>,
    /// How long until its announcement expires.
    pub expires_in: Duration,
    /// How many breakers it has (it announces at most 1,000 of them, those not closed
    /// first).
    pub breakers_total: u64,
    /// The breakers it announced, each with the state it sees, by name.
    pub breakers: Vec<(String, String)>,
    /// The breakers that rejected calls in its last resync interval, by name, with how
    /// many (as of its last announcement: a process rewrites it when the counts change).
    pub rejections: Vec<(String, Rejections)>,
    /// The breakers in shadow mode that would have rejected calls, by name, with how
    /// many since the process started.
    pub would_reject: Vec<(String, u64)>,
    /// The breakers with `max_concurrent`, by name, with this process's permits.
    pub permits: Vec<(String, Permits)>,
    /// The breakers with `retries`, by name, with the retries it took from their budget
    /// since it started (retry tokens spent).
    pub retries: Vec<(String, u64)>,
    /// Why its announcement could not be read, if it could not (then only `id` and the
    /// times are known).
    pub corrupt: Option<String>,
}

/// One process's permits of a breaker's concurrency cap (`max_concurrent`), as it last
/// announced them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Permits {
    /// Permits its calls use.
    pub in_use: u32,
    /// Permits its lease of the fleet's cap holds.
    pub held: u32,
    /// The cap, as this process has it.
    pub cap: u32,
}

/// The calls one process's breaker rejected lately: `count` over the last `over` (its
/// resync interval, as measured by the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rejections {
    /// Calls rejected.
    pub count: u64,
    /// Over how long.
    pub over: Duration,
}

impl Rejections {
    /// Rejected calls per second (0 over no time).
    pub fn per_second(&self) -> f64 {
        if self.over.is_zero() {
            return 0.0;
        }
        self.count as f64 / self.over.as_secs_f64()
    }
}

impl Process {
    /// The calls `service` rejected lately in this process, if any.
    pub fn rejections_of(&self, service: &str) -> Option<Rejections> {
        named(&self.rejections, service).copied()
    }

    /// This process's permits of `service`'s concurrency cap, if it has one.
    pub fn permits_of(&self, service: &str) -> Option<Permits> {
        named(&self.permits, service).copied()
    }

    /// The retries this process took from `service`'s retry budget since it started, if
    /// the breaker has `retries`.
    pub fn retries_of(&self, service: &str) -> Option<u64> {
        named(&self.retries, service).copied()
    }

    /// The calls `service` would have rejected in shadow mode in this process, if any.
    pub fn would_reject_of(&self, service: &str) -> Option<u64> {
        named(&self.would_reject, service).copied()
    }

    /// `name@host (pid N)`.
    pub fn label(&self) -> String {
        format!("{}@{} (pid {})", self.name, self.host, self.pid)
    }

    /// Whether it missed renewals: not seen for more than six resync intervals (it
    /// renews at least every five), so it likely died and its announcement is waiting
    /// to expire.
    pub fn is_stale(&self) -> bool {
        match (self.last_seen, self.resync_interval) {
            (Some(seen), Some(interval)) => seen > interval.saturating_mul(6),
            _ => false,
        }
    }

    /// The state it sees `service` in, if it announced the breaker.
    pub fn sees(&self, service: &str) -> Option<State> {
        named(&self.breakers, service)?.parse().ok()
    }
}

/// The value of `service` in `list`, sorted by name (as the announcement's JSON objects
/// are read).
fn named<'a, T>(list: &'a [(String, T)], service: &str) -> Option<&'a T> {
    let at = list
        .binary_search_by(|(name, _)| name.as_str().cmp(service))
        .ok()?;
    Some(&list[at].1)
}

/// Redis's clock (unix ms): announcements are scored on it.
pub(super) async fn server_ms(admin: &Admin) -> Result<u64, StorageError> {
    let mut conn = admin.connection.commands();
    let (secs, micros): (u64, u64) = bounded(
        "status",
        admin.deadline(),
        redis::cmd("TIME").query_async(&mut conn),
    )
    .await?;
    Ok(secs.saturating_mul(1000).saturating_add(micros / 1000))
}

/// The processes announced, by name, host, pid and id.
pub(super) async fn list(admin: &Admin) -> Result<Vec<Process>, StorageError> {
    let now = server_ms(admin).await?;
    list_at(admin, now).await
}

/// The processes whose announcement is alive at `now` (server ms).
pub(super) async fn list_at(admin: &Admin, now: u64) -> Result<Vec<Process>, StorageError> {
    let index = keys::processes_key(&admin.namespace);
    let mut processes = Vec::new();
    let mut start = 0;
    loop {
        let mut conn = admin.connection.commands();
        let page: Vec<(String, f64)> = match bounded(
            "processes",
            admin.deadline(),
            redis::cmd("ZRANGE")
                .arg(&index)
                .arg(start)
                .arg(start + PAGE - 1)
                .arg("WITHSCORES")
                .query_async(&mut conn),
        )
        .await
        {
            Ok(page) => page,
            // An index of another type: no process can be listed (each process's next
            // renewal fails until it is deleted).
            Err(StorageError::Corrupt(_)) => Vec::new(),
            Err(error) => return Err(error),
        };
        let done = page.len() < PAGE;
        start += page.len();
        let alive: Vec<(String, u64)> = page
            .into_iter()
            .filter(|(_, until)| until.is_finite() && *until > now as f64)
            .map(|(id, until)| (id, until as u64))
            .collect();
        if !alive.is_empty() {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (id, _) in &alive {
                pipe.cmd("GET").arg(keys::process_key(&admin.namespace, id));
            }
            let mut conn = admin.connection.commands();
            let texts: Vec<Value> =
                bounded("processes", admin.deadline(), pipe.query_async(&mut conn)).await?;
            for ((id, until), text) in alive.into_iter().zip(texts) {
                // Gone since the index was read (withdrawn, or expired): not listed.
                let text = match redis::from_redis_value::<Option<String>>(text) {
                    Ok(Some(text)) => Ok(text),
                    Ok(None) => continue,
                    Err(error) => Err(error.to_string()),
                };
                processes.push(process(id, until.saturating_sub(now), text));
            }
        }
        if done {
            break;
        }
    }
    processes
        .sort_by(|a, b| (&a.name, &a.host, a.pid, &a.id).cmp(&(&b.name, &b.host, b.pid, &b.id)));
    Ok(processes)
}

/// A process from its announcement (`fleet/presence.rs`: `json`), `expires_in_ms` after
/// now.
fn process(id: String, expires_in_ms: u64, text: Result<String, String>) -> Process {
    let expires_in = Duration::from_millis(expires_in_ms);
    let mut process = Process {
        id,
        name: "?".to_owned(),
        host: "?".to_owned(),
        pid: 0,
        resync_interval: None,
        last_seen: None,
        expires_in,
        breakers_total: 0,
        breakers: Vec::new(),
        rejections: Vec::new(),
        would_reject: Vec::new(),
        permits: Vec::new(),
        retries: Vec::new(),
        corrupt: None,
    };
    let json = match text.and_then(|text| Json::parse(&text)) {
        Ok(json @ Json::Object(_)) => json,
        Ok(_) => {
            process.corrupt = Some("the announcement is not a JSON object".to_owned());
            return process;
        }
        Err(reason) => {
            process.corrupt = Some(format!("the announcement does not parse: {reason}"));
            return process;
        }
    };
    let text = |key: &str| json.get(key).and_then(Json::as_str).map(str::to_owned);
    process.name = text("name").unwrap_or(process.name);
    process.host = text("host").unwrap_or(process.host);
    process.pid = json.get("pid").and_then(Json::as_u64).unwrap_or(0);
    process.resync_interval = json
        .get("interval_ms")
        .and_then(Json::as_u64)
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    // It lives ANNOUNCEMENT_LIFETIME intervals after its last renewal.
    process.last_seen = process.resync_interval.map(|interval| {
        interval
            .saturating_mul(ANNOUNCEMENT_LIFETIME)
            .saturating_sub(expires_in)
    });
    if let Some(Json::Object(breakers)) = json.get("breakers") {
        // A BTreeMap: sorted by name, as `Process::sees` searches it.
        process.breakers = breakers
            .iter()
            .map(|(service, state)| (service.clone(), state.as_str().unwrap_or("?").to_owned()))
            .collect();
    }
    if let Some(Json::Object(rejections)) = json.get("rejections") {
        // `[count, over_ms]` each; an entry of another shape is left out.
        process.rejections = rejections
            .iter()
            .filter_map(|(service, entry)| {
                let Json::Array(pair) = entry else {
                    return None;
                };
                let [count, over_ms] = &pair[..] else {
                    return None;
                };
                let rejections = Rejections {
                    count: count.as_u64()?,
                    over: Duration::from_millis(over_ms.as_u64()?),
                };
                Some((service.clone(), rejections))
            })
            .collect();
    }
    if let Some(Json::Object(counts)) = json.get("would_reject") {
        process.would_reject = counts
            .iter()
            .filter_map(|(service, count)| Some((service.clone(), count.as_u64()?)))
            .collect();
    }
    if let Some(Json::Object(entries)) = json.get("permits") {
        // `[in_use, held, cap]` each; an entry of another shape is left out.
        process.permits = entries
            .iter()
            .filter_map(|(service, entry)| {
                let Json::Array(numbers) = entry else {
                    return None;
                };
                let number =
                    |at: usize| -> Option<u32> { u32::try_from(numbers.get(at)?.as_u64()?).ok() };
                let permits = Permits {
                    in_use: number(0)?,
                    held: number(1)?,
                    cap: number(2)?,
                };
                Some((service.clone(), permits))
            })
            .collect();
    }
    if let Some(Json::Object(counts)) = json.get("retries") {
        process.retries = counts
            .iter()
            .filter_map(|(service, spent)| Some((service.clone(), spent.as_u64()?)))
            .collect();
    }
    process.breakers_total = json
        .get("breakers_total")
        .and_then(Json::as_u64)
        .unwrap_or(process.breakers.len() as u64);
    process
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_reads_with_its_age() {
        let text = r#"{"at_ms":1,"id":"1f2e","name":"api","host":"web-1","pid":42,"interval_ms":1000,"breakers_total":3,"breakers_omitted":1,"breakers":{"users":"open","b":"closed"}}"#;
        let p = process("1f2e".into(), 7_000, Ok(text.into()));
        assert_eq!(p.label(), "api@web-1 (pid 42)");
        assert_eq!(p.last_seen, Some(Duration::from_secs(3)));
        assert_eq!(p.sees("users"), Some(State::Open));
        assert_eq!(p.sees("b"), Some(State::Closed));
        assert_eq!(p.sees("c"), None);
        assert_eq!(p.breakers_total, 3);
        assert!(!p.is_stale());
        let old = process("1f2e".into(), 3_000, Ok(text.into()));
        assert!(old.is_stale(), "seen 7 intervals ago");
        assert_eq!(p.rejections_of("users"), None);
        let rejecting = r#"{"interval_ms":1000,"breakers":{"users":"open"},"rejections":{"users":[250,500],"odd":[1],"neg":[-1,5]}}"#;
        let p = process("2".into(), 9_000, Ok(rejecting.into()));
        let users = p.rejections_of("users").unwrap();
        assert_eq!((users.count, users.per_second()), (250, 500.0));
        assert_eq!(p.rejections.len(), 1, "malformed entries are left out");
        let shadowed = r#"{"interval_ms":1000,"breakers":{"users":"open"},"would_reject":{"users":1234,"bad":"x"}}"#;
        let p = process("3".into(), 9_000, Ok(shadowed.into()));
        assert_eq!(p.would_reject_of("users"), Some(1234));
        assert_eq!(p.would_reject_of("bad"), None);
        let capped = r#"{"interval_ms":1000,"breakers":{"users":"closed"},"permits":{"users":[3,8,20],"odd":[1,2]}}"#;
        let p = process("4".into(), 9_000, Ok(capped.into()));
        let users = p.permits_of("users").unwrap();
        assert_eq!((users.in_use, users.held, users.cap), (3, 8, 20));
        assert_eq!(p.permits_of("odd"), None, "malformed: left out");
        let retried =
            r#"{"interval_ms":1000,"breakers":{"users":"closed"},"retries":{"users":42,"bad":-1}}"#;
        let p = process("5".into(), 9_000, Ok(retried.into()));
        assert_eq!(p.retries_of("users"), Some(42));
        assert_eq!(p.retries_of("bad"), None, "malformed: left out");
        let bad = process("9".into(), 1, Ok("{\"name\":".into()));
        assert!(bad.corrupt.is_some());
        assert_eq!(bad.id, "9");
    }
}
