//! What the fleet tells its operators (`infuse status`, the dashboard): each process
//! announces itself with the read of the change log it makes every `resync_interval`
//! anyway (no command of its own); the announcement is sent whole only when what it says
//! changed. (A breaker's history, for `infuse explain`, is written by the scripts that
//! change it.)

use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::PoisonError;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::process_instance;
use crate::fleet::{lock, Fleet};
use crate::store::redis::{Announcement, LogRead};

/// How many resync intervals an announcement outlives its last renewal by.
const ANNOUNCEMENT_LIFETIME: u32 = 10;

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
}

impl Fleet {
    /// What to send of the announcement with this resync's read of the change log: the
    /// whole of it when what it says changed since it was last written (or may be gone),
    /// a renewal every [`RENEW_EVERY`] reads, else nothing. An unchanged announcement
    /// costs a pass over the breakers' states, no allocation.
    pub(crate) fn pending_announcement(&self) -> Pending {
        let interval = self.resync_interval;
        let digest = self.announcement_digest();
        let announced = lock(&self.announced);
        let changed = announced.digest != Some(digest);
        let announcement = (changed || announced.reads + 1 >= RENEW_EVERY).then(|| Announcement {
            instance: process_instance(),
            ttl: interval.saturating_mul(ANNOUNCEMENT_LIFETIME),
            payload: changed.then(|| self.announcement_json()),
        });
        Pending {
            announcement,
            digest,
        }
    }

    /// Remembers what Redis now holds of this process's announcement, after `read`
    /// (`None`: the read failed; the next one sends it whole).
    pub(crate) fn announced(&self, pending: Pending, read: Option<&LogRead>) {
        let mut announced = lock(&self.announced);
        match (read, pending.announcement) {
            (Some(read), Some(_)) if read.announced => {
                *announced = Announced {
                    digest: Some(pending.digest),
                    reads: 0,
                };
            }
            (Some(_), None) => announced.reads += 1,
            _ => *announced = Announced::default(),
        }
    }

    /// The breakers and the state this process sees each in, as one number (order
    /// independent: the sum of each pair's hash).
    fn announcement_digest(&self) -> u64 {
        let cells = self.cells.read().unwrap_or_else(PoisonError::into_inner);
        cells
            .iter()
            .filter_map(|(service, cell)| Some((service, cell.upgrade()?.view.state())))
            .fold(cells.len() as u64, |sum, pair| {
                let mut hasher = DefaultHasher::new();
                pair.hash(&mut hasher);
                sum.wrapping_add(hasher.finish())
            })
    }

    /// This process as JSON: `{"at_ms","id","name","host","pid","interval_ms","breakers":
    /// {service: state}}` (`at_ms`: now, when written; each breaker's state as this
    /// process sees it).
    fn announcement_json(&self) -> String {
        let mut json = String::from("{");
        let _ = write!(
            json,
            "\"at_ms\":{},\"id\":\"{:x}\",\"name\":{},\"host\":{},\"pid\":{},\"interval_ms\":{},\"breakers\":{{",
            unix_ms(),
            process_instance(),
            quoted(&process_name()),
            quoted(&host_name()),
            std::process::id(),
            self.resync_interval.as_millis(),
        );
        let mut cells = self.cells();
        cells.sort_by_key(|cell| cell.service);
        for (i, cell) in cells.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            let _ = write!(
                json,
                "{comma}{}:\"{}\"",
                quoted(cell.service),
                cell.view.state()
            );
        }
        json.push_str("}}");
        json
    }
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
fn host_name() -> String {
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
