//! What the fleet tells its operators (`infuse status`, the dashboard): each process
//! announces itself with the read of the change log it makes every `resync_interval`
//! anyway (no command of its own); the announcement is sent whole only when what it says
//! changed. (A breaker's history, for `infuse explain`, is written by the scripts that
//! change it.)

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{lock, Fleet};
use crate::core::{process_instance, State};
use crate::local::Cell;
use crate::store::redis::{Announcement, LogRead, FULL_RESYNC_EVERY};

/// The most breakers an announcement lists, and the most bytes their list takes: a
/// process with more lists those not closed first (what operators look for), then
/// closed ones, by name, and says how many it left out (`breakers_omitted`). Without a
/// cap, 10,000 breakers would make each rewrite (at most one per resync interval, when
/// a state changes) about 250 KB, and up to 2.6 MB with 256-byte names.
pub(crate) const ANNOUNCED_BREAKERS: usize = 1_000;

/// See [`ANNOUNCED_BREAKERS`]: the list of breakers stops before this many bytes.
pub(crate) const ANNOUNCED_BYTES: usize = 64 * 1024;

/// How many resync intervals an announcement outlives its last renewal by (a process
/// that died stays listed this long, `infuse::admin` telling its age).
pub(crate) const ANNOUNCEMENT_LIFETIME: u32 = 10;

/// An unchanged announcement is renewed with every this many reads of the change log
/// (renewing costs the read about as much again in Redis: every read would double the
/// idle fleet's Redis time).
const RENEW_EVERY: u32 = 5;

/// What this process sends of its announcement with one read of the change log, and a
/// digest of what it says (to tell a change).
pub(crate) struct Pending {
    pub(crate) announcement: Option<Announcement>,
    digest: u64,
}

/// What Redis holds of this process's announcement, as far as this process knows.
#[derive(Debug, Default)]
pub(crate) struct Announced {
    /// The digest of what it says (`None`: nothing, or unknown).
    digest: Option<u64>,
    /// Reads of the change log since it was last written or renewed.
    reads: u32,
    /// Withdrawn for good (see [`Fleet::withdraw`]): never announced again.
    withdrawn: bool,
    /// Each breaker's rejected calls when last counted (breakers that rejected any),
    /// and when that was: the announcement says how many each rejected since.
    rejected: HashMap<&'static str, u64>,
    counted_at: Option<Instant>,
}

/// The calls a breaker rejected over the last resync interval: `count` over `over_ms`.
struct Rejecting {
    service: &'static str,
    count: u64,
}

/// Keeps `cells`' breakers listed in the namespace's change log (`infuse status`
/// lists breakers from it) although nothing is noted about them, in the background:
/// called with each full resync, which registers every one of them anyway. The log
/// forgets a breaker no process uses once its record has expired (see
/// `scripts/log.lua`). `ceil(B / TOUCH_BATCH)` commands per full pass over B
/// breakers, which comes every `max(FULL_RESYNC_EVERY, B)` resyncs: far less than one
/// more command per resync interval, amortised.
pub(super) fn touch(fleet: &Fleet, cells: &[Arc<Cell>]) {
    let (Some(fleet), Ok(runtime)) = (fleet.me.upgrade(), tokio::runtime::Handle::try_current())
    else {
        return;
    };
    let services: Vec<&'static str> = cells.iter().map(|cell| cell.service).collect();
    if services.is_empty() {
        return;
    }
    // How often this process touches them: its full-pass period, jitter included.
    let passes = FULL_RESYNC_EVERY.max(services.len() as u64);
    let every = fleet
        .resync_interval
        .mul_f64(1.2)
        .saturating_mul(u32::try_from(passes).unwrap_or(u32::MAX));
    runtime.spawn(async move {
        // Lost: the next full pass touches them again; their records' own notes and
        // the log's margin (3 periods) keep them listed meanwhile.
        let _ = fleet.store.touch(&services, every).await;
    });
}

/// What to send of the announcement with this resync's read of the change log: the
/// whole of it when what it says changed since it was last written (or may be gone),
/// a renewal every [`RENEW_EVERY`] reads, else nothing. An unchanged announcement
/// costs a pass over the breakers' states, no allocation.
pub(super) fn pending(fleet: &Fleet) -> Pending {
    let interval = fleet.resync_interval;
    let mut announced = lock(&fleet.announced);
    let counted = count_rejections(fleet, &mut announced);
    let digest = digest(fleet, &counted);
    let changed = announced.digest != Some(digest);
    let due = changed || announced.reads + 1 >= RENEW_EVERY;
    let announcement = (due && !announced.withdrawn).then(|| Announcement {
        instance: process_instance(),
        ttl: interval.saturating_mul(ANNOUNCEMENT_LIFETIME),
        payload: changed.then(|| json(fleet, &counted)),
    });
    Pending {
        announcement,
        digest,
    }
}

/// Remembers what Redis now holds of this process's announcement, after `read`
/// (`None`: the read failed; the next one sends it whole).
pub(super) fn announced(fleet: &Fleet, pending: Pending, read: Option<&LogRead>) {
    let mut announced = lock(&fleet.announced);
    let withdrawn = announced.withdrawn;
    if withdrawn && pending.announcement.is_some() && read.is_some_and(|read| read.announced) {
        // A read already under way when the process withdrew renewed it: withdraw again.
        if let (Some(fleet), Ok(runtime)) =
            (fleet.me.upgrade(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(async move { fleet.store.withdraw(process_instance()).await });
        }
    }
    match (read, pending.announcement) {
        (Some(read), Some(_)) if read.announced => {
            announced.digest = Some(pending.digest);
            announced.reads = 0;
        }
        (Some(_), None) => announced.reads += 1,
        _ => {
            announced.digest = None;
            announced.reads = 0;
        }
    }
}

impl Fleet {
    /// Withdraws this process's announcement, for good: a process shutting down cleanly
    /// leaves the fleet's list of processes at once instead of lingering until its
    /// announcement expires. Its breakers keep working; it is just no longer listed.
    /// A read of the change log already under way may renew it once more; then it
    /// expires as a dead process's would.
    pub(crate) async fn withdraw(&self) -> Result<(), crate::core::StorageError> {
        lock(&self.announced).withdrawn = true;
        self.store.withdraw(process_instance()).await
    }
}

/// The calls each breaker rejected since the last count (those that rejected any, by
/// service), and over how long: nothing on the first count. No allocation while no
/// breaker rejects.
fn count_rejections(fleet: &Fleet, announced: &mut Announced) -> Counted {
    let now = Instant::now();
    let since = announced.counted_at.replace(now);
    let mut rejecting = Vec::new();
    let mut would_reject = Vec::new();
    let mut permits = Vec::new();
    let mut retries = Vec::new();
    let last = &mut announced.rejected;
    fleet.cells.for_each_cell(|service, cell| {
        let total = cell.rejected.load(Ordering::Relaxed);
        let shadowed = cell.would_reject.load(Ordering::Relaxed);
        if shadowed > 0 {
            would_reject.push((service, shadowed));
        }
        let settings = cell.settings();
        if let Some(cap) = settings.max_concurrent {
            let (held, in_use, _) = cell.permits.counts();
            permits.push((service, [in_use, held.min(cap), cap]));
        }
        if settings.retries.is_some() {
            retries.push((service, cell.retries.spent()));
        }
        if total == 0 {
            return;
        }
        let before = last.insert(service, total);
        let count = total.saturating_sub(before.unwrap_or(0));
        if since.is_some() && count > 0 {
            rejecting.push(Rejecting { service, count });
        }
    });
    // Forget dropped breakers now and then.
    if last.len() > 2 * fleet.cells.len() + 16 {
        last.clear();
        announced.counted_at = None;
    }
    rejecting.sort_unstable_by_key(|r| r.service);
    would_reject.sort_unstable();
    permits.sort_unstable();
    retries.sort_unstable();
    Counted {
        rejecting,
        over: since.map_or(Duration::ZERO, |since| now - since),
        would_reject,
        permits,
        retries,
    }
}

/// What an announcement says of rejections: each breaker's over the last interval, and
/// in shadow mode, each one's calls it would have rejected since the process started.
struct Counted {
    rejecting: Vec<Rejecting>,
    over: Duration,
    would_reject: Vec<(&'static str, u64)>,
    /// With `max_concurrent`: the permits in use, held (this process's lease) and the cap.
    permits: Vec<(&'static str, [u32; 3])>,
    /// With `retries`: the retries taken from the budget since the process started.
    retries: Vec<(&'static str, u64)>,
}

/// The breakers, the state this process sees each in and the calls each rejected
/// lately, as one number (order independent: the sum of each entry's hash).
fn digest(fleet: &Fleet, counted: &Counted) -> u64 {
    let mut sum = fleet.cells.len() as u64;
    fleet.cells.for_each_state(|service, state| {
        let mut hasher = DefaultHasher::new();
        (service, state).hash(&mut hasher);
        sum = sum.wrapping_add(hasher.finish());
    });
    for r in &counted.rejecting {
        let mut hasher = DefaultHasher::new();
        (r.service, r.count).hash(&mut hasher);
        sum = sum.wrapping_add(hasher.finish());
    }
    for entry in &counted.would_reject {
        let mut hasher = DefaultHasher::new();
        ("would_reject", entry).hash(&mut hasher);
        sum = sum.wrapping_add(hasher.finish());
    }
    for entry in &counted.permits {
        let mut hasher = DefaultHasher::new();
        ("permits", entry).hash(&mut hasher);
        sum = sum.wrapping_add(hasher.finish());
    }
    for entry in &counted.retries {
        let mut hasher = DefaultHasher::new();
        ("retries", entry).hash(&mut hasher);
        sum = sum.wrapping_add(hasher.finish());
    }
    sum
}

/// This process as JSON: `{"at_ms","id","name","host","pid","interval_ms",
/// "breakers_total","breakers_omitted","breakers":{service: state},
/// "rejections":{service: [count, over_ms]},"would_reject":{service: count},
/// "permits":{service: [in_use, held, cap]},"retries":{service: spent}}` (`at_ms`: now, when written; each
/// breaker's state as this process sees it; at most [`ANNOUNCED_BREAKERS`] of them in at
/// most [`ANNOUNCED_BYTES`], those not closed first; the calls each breaker that rejected
/// any turned away over the last `over_ms`, as many entries and bytes at most; in shadow
/// mode, the calls each breaker would have rejected since the process started; with
/// `max_concurrent`, each breaker's permits in use, held and its cap; with `retries`, the
/// retries each breaker took from its budget since the process started).
fn json(fleet: &Fleet, counted: &Counted) -> String {
    let mut json = String::from("{");
    let _ = write!(
        json,
        "\"at_ms\":{},\"id\":\"{:x}\",\"name\":{},\"host\":{},\"pid\":{},\"interval_ms\":{},",
        unix_ms(),
        process_instance(),
        quoted(&process_name()),
        quoted(&host_name()),
        std::process::id(),
        fleet.resync_interval.as_millis(),
    );
    let mut cells: Vec<(&'static str, State)> = Vec::new();
    fleet
        .cells
        .for_each_state(|service, state| cells.push((service, state)));
    // Not closed first, then by name.
    cells.sort_by_key(|&(service, state)| (state == State::Closed, service));
    let (listed, count) = bounded_object(
        cells
            .iter()
            .map(|(service, state)| format!("{}:\"{state}\"", quoted(service))),
    );
    let _ = write!(
        json,
        "\"breakers_total\":{},\"breakers_omitted\":{},\"breakers\":{{{listed}}},",
        cells.len(),
        cells.len() - count
    );
    let over_ms = counted.over.as_millis();
    let (listed, _) = bounded_object(
        counted
            .rejecting
            .iter()
            .map(|r| format!("{}:[{},{over_ms}]", quoted(r.service), r.count)),
    );
    let _ = write!(json, "\"rejections\":{{{listed}}},");
    let (listed, _) = bounded_object(
        counted
            .would_reject
            .iter()
            .map(|(service, count)| format!("{}:{count}", quoted(service))),
    );
    let _ = write!(json, "\"would_reject\":{{{listed}}},");
    let (listed, _) = bounded_object(counted.permits.iter().map(
        |(service, [in_use, held, cap])| format!("{}:[{in_use},{held},{cap}]", quoted(service)),
    ));
    let _ = write!(json, "\"permits\":{{{listed}}},");
    let (listed, _) = bounded_object(
        counted
            .retries
            .iter()
            .map(|(service, spent)| format!("{}:{spent}", quoted(service))),
    );
    let _ = write!(json, "\"retries\":{{{listed}}}}}");
    json
}

/// The members of a JSON object (without its braces), comma-separated, as many of
/// `entries` as fit in [`ANNOUNCED_BREAKERS`] entries and [`ANNOUNCED_BYTES`] bytes, and
/// how many that is.
fn bounded_object(entries: impl Iterator<Item = String>) -> (String, usize) {
    let mut listed = String::new();
    let mut count = 0;
    for entry in entries {
        if count == ANNOUNCED_BREAKERS || listed.len() + entry.len() + 1 > ANNOUNCED_BYTES {
            break;
        }
        if count > 0 {
            listed.push(',');
        }
        listed.push_str(&entry);
        count += 1;
    }
    (listed, count)
}

/// `text` as a JSON string (service names hold no control characters).
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// This process as the history names who made a change when nobody else is named:
/// `name@host (pid N)`, as `infuse status` lists processes.
pub(crate) fn process_label() -> String {
    format!(
        "{}@{} (pid {})",
        process_name(),
        host_name(),
        std::process::id()
    )
}

/// The executable's file name.
fn process_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// The machine's name (Linux: the kernel's hostname; else `$HOSTNAME`).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(quoted("users"), "\"users\"");
        assert_eq!(quoted("a \"b\" \\c"), "\"a \\\"b\\\" \\\\c\"");
    }
}
