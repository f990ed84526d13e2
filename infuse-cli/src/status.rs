//! `infuse status`: a table (or JSON) of the namespace's breakers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fleet::{Fleet, Process, Record, Transition};
use crate::term::{clean, clean_json};
use crate::Failure;

/// One breaker as `status` shows it: its record, the processes that use it, and its last
/// transition.
pub(crate) struct Row {
    pub(crate) record: Record,
    /// Each process that announced it uses the breaker, with the state it sees.
    pub(crate) seen_by: Vec<(Process, String)>,
    pub(crate) last: Option<Transition>,
}

/// The rows of `services` (every breaker of the namespace when empty).
pub(crate) async fn rows(fleet: &Fleet, services: &[String]) -> Result<Vec<Row>, Failure> {
    let known = fleet.services().await?;
    let wanted: Vec<String> = if services.is_empty() {
        known.clone()
    } else {
        services.to_vec()
    };
    let processes = fleet.processes().await?;
    let mut rows = Vec::with_capacity(wanted.len());
    for service in &wanted {
        let Some(record) = fleet.record(service).await? else {
            return Err(unknown(fleet, service, &known));
        };
        let seen_by = processes
            .iter()
            .filter_map(|p| {
                p.breakers
                    .get(service)
                    .map(|state| (p.clone(), state.clone()))
            })
            .collect();
        let last = fleet.history(service).await?.into_iter().next();
        rows.push(Row {
            record,
            seen_by,
            last,
        });
    }
    Ok(rows)
}

/// Prints the breakers of `services` (every breaker of the namespace when empty).
pub(crate) async fn run(fleet: &Fleet, services: &[String], json: bool) -> Result<(), Failure> {
    let rows = rows(fleet, services).await?;
    if json {
        let array: Vec<Value> = rows.iter().map(to_json).collect();
        println!("{}", clean_json(&Value::Array(array).to_string()));
    } else if rows.is_empty() {
        println!("no breakers in namespace {:?}", fleet.namespace);
    } else {
        print_table(&rows);
    }
    Ok(())
}

/// The error for a service the namespace has no record of.
pub(crate) fn unknown(fleet: &Fleet, service: &str, known: &[String]) -> Failure {
    let hint = if known.is_empty() {
        format!(
            "namespace {:?} has no breakers (check --namespace and --redis)",
            fleet.namespace
        )
    } else {
        let known: Vec<_> = known.iter().map(|name| clean(name)).collect();
        format!("known: {}", known.join(", "))
    };
    Failure(format!(
        "no breaker \"{}\" in namespace {:?}; {hint}",
        clean(service),
        fleet.namespace
    ))
}

/// One breaker as JSON (`status --json`, the dashboard's API).
pub(crate) fn to_json(row: &Row) -> Value {
    let r = &row.record;
    let window = r.window.map(
        |(calls, failures, slow)| json!({ "calls": calls, "failures": failures, "slow": slow }),
    );
    let processes: Vec<Value> = row
        .seen_by
        .iter()
        .map(|(p, state)| {
            json!({ "id": p.id, "name": p.name, "host": p.host, "pid": p.pid, "state": state, "announced_at_ms": p.at_ms })
        })
        .collect();
    json!({
        "service": r.service,
        "state": r.state.as_str(),
        "fail_counter": r.fail_counter,
        "success_counter": r.success_counter,
        "generation": r.generation,
        "reopens": r.reopens,
        "open_remaining_ms": r.open_remaining.map(|d| d.as_millis() as u64),
        "trial_in_flight": r.trial_remaining.is_some(),
        "trial_remaining_ms": r.trial_remaining.map(|d| d.as_millis() as u64),
        "trial_holder": r.trial_holder,
        "window": window,
        "expires_in_ms": r.expires_in.map(|d| d.as_millis() as u64),
        "processes": processes,
        "last_transition": row.last.as_ref().map(transition_json),
    })
}

/// A history entry as JSON.
pub(crate) fn transition_json(t: &Transition) -> Value {
    json!({ "at_ms": t.at_ms, "from": t.from, "to": t.to, "generation": t.generation, "reason": t.reason, "process": t.process })
}

fn print_table(rows: &[Row]) {
    let header = [
        "SERVICE",
        "STATE",
        "FAILS",
        "WINDOW (calls/fail/slow)",
        "OPEN FOR",
        "TRIAL",
        "GEN",
        "SEEN BY",
        "LAST CHANGE",
    ];
    let now = unix_ms();
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|row| {
            let r = &row.record;
            let open_here = row
                .seen_by
                .iter()
                .filter(|(_, s)| s == "open" || s == "forced-open")
                .count();
            let seen_by = match row.seen_by.len() {
                0 => "-".to_owned(),
                n => format!(
                    "{n} process{} ({open_here} open)",
                    if n == 1 { "" } else { "es" }
                ),
            };
            let last = row
                .last
                .as_ref()
                .map(|t| {
                    format!(
                        "{} -> {} ({}), {} ago",
                        t.from,
                        t.to,
                        t.reason,
                        human(Duration::from_millis(now.saturating_sub(t.at_ms)))
                    )
                })
                .unwrap_or_else(|| "-".to_owned());
            [
                r.service.clone(),
                r.state.as_str().to_owned(),
                r.fail_counter.to_string(),
                r.window
                    .map(|(c, f, s)| format!("{c}/{f}/{s}"))
                    .unwrap_or_else(|| "-".to_owned()),
                r.open_remaining
                    .map(human)
                    .unwrap_or_else(|| "-".to_owned()),
                r.trial_remaining
                    .map(|d| {
                        let by = r.trial_holder.as_ref().map(|id| {
                            row.seen_by
                                .iter()
                                .find(|(p, _)| &p.id == id)
                                .map(|(p, _)| p.label())
                                .unwrap_or_else(|| format!("process {id}"))
                        });
                        match by {
                            Some(by) => format!("in flight by {by} ({} left)", human(d)),
                            None => format!("in flight ({} left)", human(d)),
                        }
                    })
                    .unwrap_or_else(|| "-".to_owned()),
                r.generation.to_string(),
                seen_by,
                last,
            ]
            // Every cell may quote Redis: escaped before its width is measured.
            .map(|cell| clean(&cell).into_owned())
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// `2h`, `1h02m`, `10m`, `4m05s`, `12.3s`, `250ms`: rounded to the last unit shown, so a
/// breaker just opened for 10 minutes (599,998 ms left) reads `10m`, not `9m59s`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 59_950 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let seconds = (ms + 500) / 1_000;
    if seconds < 3_600 {
        return match (seconds / 60, seconds % 60) {
            (m, 0) => format!("{m}m"),
            (m, s) => format!("{m}m{s:02}s"),
        };
    }
    match ((ms + 30_000) / 60_000 / 60, (ms + 30_000) / 60_000 % 60) {
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(245)), "4m05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
        assert_eq!(human(Duration::from_millis(599_998)), "10m");
        assert_eq!(human(Duration::from_millis(59_960)), "1m");
        assert_eq!(human(Duration::from_millis(59_940)), "59.9s");
        assert_eq!(human(Duration::from_millis(3_599_600)), "1h");
        assert_eq!(human(Duration::from_secs(7_199)), "2h");
        assert_eq!(human(Duration::from_secs(30 * 86_400)), "720h");
    }
}
