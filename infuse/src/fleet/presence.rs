//! What the fleet tells its operators (`infuse status`, `infuse explain`, the dashboard):
//! each process announces itself once per `resync_interval`, and the process whose
//! command changed a breaker's state appends the transition to its history. Both are
//! background writes: no call waits on them.

use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::core::{process_instance, Command, Outcome, TransitionReason};
use crate::fleet::{jittered, Fleet};

/// How many resync intervals an announcement outlives its writer by.
const ANNOUNCEMENT_LIFETIME: u32 = 3;

/// Announces this process every `interval` until the fleet closes; the first time soon
/// after boot (within a second), once `init` has bound the declared breakers.
pub(crate) async fn announce_periodically(
    fleet: Weak<Fleet>,
    interval: Duration,
    mut closed: watch::Receiver<()>,
) {
    tokio::select! {
        _ = tokio::time::sleep(interval.min(Duration::from_secs(1))) => {}
        _ = closed.changed() => return,
    }
    loop {
        let Some(f) = fleet.upgrade() else { return };
        if f.is_healthy() {
            let payload = f.announcement(interval);
            let ttl = interval * ANNOUNCEMENT_LIFETIME;
            if let Err(error) = f.store.announce(process_instance(), payload, ttl).await {
                tracing::debug!(%error, "announcing this process failed");
            }
        }
        drop(f);
        tokio::select! {
            _ = tokio::time::sleep(jittered(interval)) => {}
            _ = closed.changed() => return,
        }
    }
}

impl Fleet {
    /// This process as JSON: `{"id","name","host","pid","at_ms","interval_ms","breakers":
    /// {service: state}}` (each breaker's state as this process sees it).
    fn announcement(&self, interval: Duration) -> String {
        let mut json = String::from("{");
        let _ = write!(
            json,
            "\"id\":\"{:x}\",\"name\":{},\"host\":{},\"pid\":{},\"at_ms\":{},\"interval_ms\":{},\"breakers\":{{",
            process_instance(),
            quoted(&process_name()),
            quoted(&host_name()),
            std::process::id(),
            unix_ms(),
            interval.as_millis(),
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

    /// Appends the transition `outcome` shows, if this process's `command` made one, to
    /// the breaker's history: `"<unix ms> <from> <to> <generation> <reason> <process id>"`.
    pub(crate) fn record_history(
        self: &Arc<Self>,
        service: &'static str,
        command: &Command,
        outcome: &Outcome,
    ) {
        if !outcome.applied || !outcome.changed_state() {
            return;
        }
        let hint = match command {
            Command::RecordFailure { .. } => Some(TransitionReason::ConsecutiveFailures),
            Command::RecordCalls { .. } => Some(TransitionReason::Tripped),
            Command::RecordTrial { success: true, .. } => Some(TransitionReason::TrialSucceeded),
            Command::RecordTrial { success: false, .. } => Some(TransitionReason::TrialFailed),
            Command::AcquireTrial { .. } => Some(TransitionReason::OpenElapsed),
            Command::Force(_) => Some(TransitionReason::Manual),
            _ => None,
        };
        let (from, to) = (outcome.from, outcome.snapshot.state);
        let reason = TransitionReason::resolve(hint, from, to);
        let entry = format!(
            "{} {from} {to} {} {reason} {:x}",
            unix_ms(),
            outcome.snapshot.generation,
            process_instance()
        );
        let fleet = self.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = fleet.store.append_history(service, entry).await {
                    tracing::debug!(service, %error, "recording a transition in the history failed");
                }
            });
        }
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
