//! `infuse explain SERVICE`: a breaker's state now, the processes that see it (and when
//! each was last seen), and its recent transitions with their reasons and the processes
//! that made them (for an operator's change, who asked and why).

use std::time::Duration;

use infuse::admin::Record;
use infuse::store::redis::keys::HISTORY_LEN;
use serde_json::{json, Value};

use crate::fleet::Fleet;
use crate::status::{human, state_text, transition_json, view};
use crate::term::{clean, clean_json};
use crate::Failure;

/// Prints `service`'s state, who sees it, and its history (newest first, at most the
/// [`HISTORY_LEN`] entries the scripts keep).
pub(crate) async fn run(fleet: &Fleet, service: &str, json: bool) -> Result<(), Failure> {
    let view = view(fleet, &[service.to_owned()]).await?;
    let row = &view.rows[0];
    let history = fleet.admin().history(service, HISTORY_LEN).await?;
    let ago = |at_ms: u64| human(Duration::from_millis(view.server_ms.saturating_sub(at_ms)));
    if json {
        let entries: Vec<Value> = history
            .iter()
            .map(|t| {
                let mut entry = transition_json(t);
                entry["by"] = Value::String(view.label_of(&t.process));
                entry
            })
            .collect();
        let document = json!({ "breaker": crate::status::to_json(&view, row), "history": entries });
        println!("{}", clean_json(&document.to_string()));
        return Ok(());
    }
    let mut now = format!("{}: {}", clean(service), clean(&state_text(&row.record)));
    if let Record::Ok(r) = &row.record {
        now.push_str(&format!(
            " (generation {}, {} consecutive failures",
            r.generation, r.fail_counter
        ));
        if let Some(left) = r.open_remaining.filter(|left| !left.is_zero()) {
            now.push_str(&format!(", open for {}", human(left)));
        }
        now.push(')');
    }
    println!("{now}");
    let would_reject = row.would_reject();
    if would_reject > 0 {
        let calls = if would_reject == 1 { "call" } else { "calls" };
        println!(
            "  shadow mode: would have rejected {would_reject} {calls} (the processes that see it, each since it started)"
        );
    }
    if let Some(p) = row.permits() {
        println!(
            "  concurrency cap {}: {} permits in use, {} held (the processes that see it)",
            p.cap, p.in_use, p.held
        );
    }
    if let Some(spent) = row.retries() {
        let retries = if spent == 1 { "retry" } else { "retries" };
        println!(
            "  retry budget: {spent} {retries} taken (the processes that see it, each since it started)"
        );
    }
    for (process, state) in view.seen_by(row) {
        let seen = match process.last_seen {
            Some(age) if process.is_stale() => {
                format!(", last seen {} ago (missed its renewals)", human(age))
            }
            Some(age) => format!(", last seen {} ago", human(age)),
            None => String::new(),
        };
        println!(
            "  seen {} by {}{seen}",
            clean(state),
            clean(&process.label())
        );
    }
    if history.is_empty() {
        println!(
            "no transitions recorded (the history keeps the last {HISTORY_LEN} of each breaker)"
        );
        return Ok(());
    }
    println!("recent transitions, newest first:");
    for t in &history {
        // An operator's change names who asked, and the tool's process after it.
        let by = match &t.who {
            Some(who) => format!("{} ({})", clean(who), clean(&view.label_of(&t.process))),
            None => clean(&view.label_of(&t.process)).into_owned(),
        };
        let why = t
            .why
            .as_deref()
            .map_or_else(String::new, |why| format!("  reason: {}", clean(why)));
        if t.is_shadow_switch() {
            let now = if t.reason == infuse::admin::SHADOW_ON {
                "on"
            } else {
                "off"
            };
            println!(
                "  {:>8} ago  shadow mode {now} (state {})  by {by}{why}",
                ago(t.at_ms),
                clean(&t.to),
            );
            continue;
        }
        if t.shadow {
            // Shadow mode: the transition is real, but nothing was rejected.
            let what = match t.to.as_str() {
                "open" => "would have opened".to_owned(),
                "forced-open" => "would have been held open".to_owned(),
                to => format!("would have gone {} -> {}", clean(&t.from), clean(to)),
            };
            println!(
                "  {:>8} ago  {what} at {} (shadow mode: no call rejected)  {} -> {}  {}  generation {}  by {by}{why}",
                ago(t.at_ms),
                clock(t.at_ms),
                clean(&t.from),
                clean(&t.to),
                clean(&t.reason),
                t.generation,
            );
            continue;
        }
        println!(
            "  {:>8} ago  {} -> {}  {}  generation {}  by {by}{why}",
            ago(t.at_ms),
            clean(&t.from),
            clean(&t.to),
            clean(&t.reason),
            t.generation,
        );
    }
    Ok(())
}

/// The time of day of a server time (unix ms), UTC: `10:02:03 UTC`.
fn clock(at_ms: u64) -> String {
    let secs = at_ms / 1000 % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_server_time_reads_as_its_time_of_day() {
        // 2025-12-01 00:46:40.123 UTC.
        assert_eq!(super::clock(1_764_550_000_123), "00:46:40 UTC");
        assert_eq!(super::clock(36_123_000), "10:02:03 UTC");
    }
}
