//! `infuse explain SERVICE`: a breaker's state now, and its recent transitions with
//! their reasons and the processes that made them.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fleet::Fleet;
use crate::status::{human, rows, transition_json, unix_ms};
use crate::term::{clean, clean_json};
use crate::Failure;

/// Prints `service`'s state and history (newest first).
pub(crate) async fn run(fleet: &Fleet, service: &str, json: bool) -> Result<(), Failure> {
    let row = rows(fleet, &[service.to_owned()]).await?.remove(0);
    let history = fleet.history(service).await?;
    let processes = fleet.processes().await?;
    let by = |id: &str| {
        processes
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.label())
            .unwrap_or_else(|| format!("process {id} (no longer announced)"))
    };
    if json {
        let entries: Vec<Value> = history
            .iter()
            .map(|t| {
                let mut entry = transition_json(t);
                entry["by"] = Value::String(by(&t.process));
                entry
            })
            .collect();
        let document = json!({ "breaker": crate::status::to_json(&row), "history": entries });
        println!("{}", clean_json(&document.to_string()));
        return Ok(());
    }
    let r = &row.record;
    let mut now = format!(
        "{}: {} (generation {}, {} consecutive failures",
        clean(service),
        r.state,
        r.generation,
        r.fail_counter
    );
    if let Some(left) = r.open_remaining {
        now.push_str(&format!(", open for {}", human(left)));
    }
    now.push(')');
    println!("{now}");
    for (process, state) in &row.seen_by {
        println!("  seen {} by {}", clean(state), clean(&process.label()));
    }
    if history.is_empty() {
        println!(
            "no transitions recorded (the history keeps the last {} of each breaker)",
            infuse::store::redis::keys::HISTORY_LEN
        );
        return Ok(());
    }
    println!("recent transitions, newest first:");
    let now_ms = unix_ms();
    for t in &history {
        let ago = human(Duration::from_millis(now_ms.saturating_sub(t.at_ms)));
        println!(
            "  {ago:>8} ago  {} -> {}  {}  generation {}  by {}",
            clean(&t.from),
            clean(&t.to),
            clean(&t.reason),
            t.generation,
            clean(&by(&t.process))
        );
    }
    Ok(())
}
