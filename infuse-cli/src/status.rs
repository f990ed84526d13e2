//! `infuse status`: a table (or JSON) of the namespace's breakers, from the library's
//! [`infuse::admin`] listing: a record that expired or holds garbage is a row saying so,
//! never a failure of the whole listing.

use std::time::Duration;

use infuse::admin::{BreakerRow, HistoryEntry, Permits, Process, Record};
use serde_json::{json, Value};

use crate::fleet::Fleet;
use crate::term::{clean, clean_json};
use crate::Failure;

/// The breakers shown, with the processes their sightings index and Redis's clock.
pub(crate) struct View {
    pub(crate) rows: Vec<BreakerRow>,
    pub(crate) processes: Vec<Process>,
    /// Redis's clock when read (unix ms): ages are measured from it.
    pub(crate) server_ms: u64,
}

impl View {
    /// The processes that see `row`'s breaker, with the state each sees.
    pub(crate) fn seen_by<'a>(
        &'a self,
        row: &'a BreakerRow,
    ) -> impl Iterator<Item = (&'a Process, &'a str)> + 'a {
        row.seen_by
            .iter()
            .filter_map(|seen| Some((self.processes.get(seen.process)?, seen.state.as_str())))
    }

    /// The label of process `id`, as the history and trials name it.
    pub(crate) fn label_of(&self, id: &str) -> String {
        self.processes
            .iter()
            .find(|p| p.id == id)
            .map(Process::label)
            .unwrap_or_else(|| {
                format!("process {id} (not announced: exited, or an operator's tool)")
            })
    }
}

/// The rows of `services` (every breaker of the namespace when empty); a name the
/// namespace has nothing of is an error.
/// Named breakers are read alone, whatever the namespace holds.
pub(crate) async fn view(fleet: &Fleet, services: &[String]) -> Result<View, Failure> {
    let listing = if services.is_empty() {
        fleet.admin().breakers().await?
    } else {
        let names: Vec<&str> = services.iter().map(String::as_str).collect();
        let listing = fleet.admin().breakers_named(&names).await?;
        fleet.check_known(&listing.breakers).await?;
        listing
    };
    Ok(View {
        rows: listing.breakers,
        processes: listing.processes,
        server_ms: listing.server_ms,
    })
}

/// Prints the breakers of `services` (every breaker of the namespace when empty).
pub(crate) async fn run(fleet: &Fleet, services: &[String], json: bool) -> Result<(), Failure> {
    let view = view(fleet, services).await?;
    if json {
        let array: Vec<Value> = view.rows.iter().map(|row| to_json(&view, row)).collect();
        println!("{}", clean_json(&Value::Array(array).to_string()));
    } else if view.rows.is_empty() {
        println!("no breakers in namespace {:?}", fleet.namespace);
    } else {
        print_table(&view);
    }
    Ok(())
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A rate as shown: one decimal.
fn rate(per_second: f64) -> f64 {
    (per_second * 10.0).round() / 10.0
}

/// One breaker as JSON (`status --json`, the dashboard's API). A row without a readable
/// record has `record` `"missing"` or `"corrupt"` (with `corrupt_reason`), `state` the
/// same word, and null counters.
pub(crate) fn to_json(view: &View, row: &BreakerRow) -> Value {
    let processes: Vec<Value> = view
        .seen_by(row)
        .map(|(p, state)| {
            let rejected = p.rejections_of(&row.service).map(|r| rate(r.per_second()));
            json!({
                "id": p.id, "name": p.name, "host": p.host, "pid": p.pid, "state": state,
                "last_seen_ms": p.last_seen.map(ms), "stale": p.is_stale(),
                "rejected_per_sec": rejected,
                "permits": p.permits_of(&row.service).map(permits_json),
                "retries_spent": p.retries_of(&row.service),
            })
        })
        .collect();
    let mut value = json!({
        "service": row.service,
        "processes": processes,
        "last_transition": row.last_transition.as_ref().map(transition_json),
        "rejected_per_sec": rate(row.rejections_per_second()),
        "would_reject": row.would_reject(),
        "permits": row.permits().map(permits_json),
        "retries_spent": row.retries(),
    });
    let fields = match &row.record {
        Record::Ok(r) => json!({
            "record": "ok",
            "state": r.state.as_str(),
            "trial_due": r.trial_due(),
            "fail_counter": r.fail_counter,
            "success_counter": r.success_counter,
            "generation": r.generation,
            "reopens": r.reopens,
            "shadow": r.shadow,
            "open_remaining_ms": r.open_remaining.map(ms),
            "trial_in_flight": r.trial.is_some(),
            "trial_remaining_ms": r.trial.as_ref().and_then(|t| t.remaining).map(ms),
            "trial_holder": r.trial.as_ref().and_then(|t| t.holder.clone()),
            "window": r.window.map(|w| json!({ "calls": w.calls, "failures": w.failures, "slow": w.slow })),
            "expires_in_ms": r.expires_in.map(ms),
            "since_close_ms": r.since_close.map(ms),
            "slow_start_percent": r.slow_start,
            "anomalies": r.anomalies,
        }),
        Record::Missing => json!({ "record": "missing", "state": "missing" }),
        Record::Corrupt(reason) => {
            json!({ "record": "corrupt", "state": "corrupt", "corrupt_reason": reason })
        }
    };
    if let (Value::Object(value), Value::Object(fields)) = (&mut value, fields) {
        value.extend(fields);
    }
    value
}

fn permits_json(p: Permits) -> Value {
    json!({ "in_use": p.in_use, "held": p.held, "cap": p.cap })
}

/// `in use/held/cap` of the fleet's permits, or "-" without `max_concurrent`.
fn permits_text(row: &BreakerRow) -> String {
    row.permits()
        .map(|p| format!("{}/{}/{}", p.in_use, p.held, p.cap))
        .unwrap_or_else(|| "-".to_owned())
}

/// A history entry as JSON (`who` and `why`: null unless an operator's change noted them).
pub(crate) fn transition_json(t: &HistoryEntry) -> Value {
    json!({ "at_ms": t.at_ms, "from": t.from, "to": t.to, "generation": t.generation, "reason": t.reason, "process": t.process, "who": t.who, "why": t.why, "shadow": t.shadow })
}

/// The state as an operator reads it: a trial that is due is "half-open, trial due", not
/// "open, 0 ms"; a row without a record says why.
pub(crate) fn state_text(record: &Record) -> String {
    let text = match record {
        Record::Ok(r) if r.trial_due() => "half-open, trial due".to_owned(),
        Record::Ok(r) => match r.slow_start {
            Some(share) => format!("{} (slow start {share}%)", r.state),
            None => r.state.to_string(),
        },
        Record::Missing => "no record (expired)".to_owned(),
        Record::Corrupt(reason) => format!("corrupt ({reason}; infuse close repairs it)"),
    };
    // Switched into shadow mode by an operator: the state is real, but nothing is rejected.
    match record {
        Record::Ok(r) if r.shadow == Some(true) => format!("{text} (shadow mode: rejects nothing)"),
        _ => text,
    }
}

/// "2 processes (1 open: api@web-1 (pid 7))", or "-".
pub(crate) fn seen_text(view: &View, row: &BreakerRow) -> String {
    let n = row.seen_by.len();
    if n == 0 {
        return "-".to_owned();
    }
    let open: Vec<String> = view
        .seen_by(row)
        .filter(|(_, state)| *state == "open" || *state == "forced-open")
        .map(|(p, _)| p.label())
        .collect();
    let plural = if n == 1 { "" } else { "es" };
    if open.is_empty() {
        format!("{n} process{plural} (0 open)")
    } else {
        format!(
            "{n} process{plural} ({} open: {})",
            open.len(),
            open.join(", ")
        )
    }
}

/// The table; the fleet budgets' columns (PERMITS, RETRIES) only when a breaker has one.
fn print_table(view: &View) {
    let permits = view.rows.iter().any(|row| row.permits().is_some());
    let retries = view.rows.iter().any(|row| row.retries().is_some());
    let mut header = vec![
        "SERVICE",
        "STATE",
        "FAILS",
        "WINDOW (calls/fail/slow)",
        "REJECTED/S",
    ];
    if permits {
        header.push("PERMITS (use/held/cap)");
    }
    if retries {
        header.push("RETRIES");
    }
    header.extend(["OPEN FOR", "TRIAL", "GEN", "SEEN BY", "LAST CHANGE"]);
    let dash = || "-".to_owned();
    let cells: Vec<Vec<String>> = view
        .rows
        .iter()
        .map(|row| {
            let last = row
                .last_transition
                .as_ref()
                .map(|t| {
                    format!(
                        "{} -> {} ({}), {} ago",
                        t.from,
                        t.to,
                        t.reason,
                        human(Duration::from_millis(
                            view.server_ms.saturating_sub(t.at_ms)
                        ))
                    )
                })
                .unwrap_or_else(dash);
            let (fails, window, open_for, trial, generation) = match &row.record {
                Record::Ok(r) => (
                    r.fail_counter.to_string(),
                    r.window
                        .map(|w| format!("{}/{}/{}", w.calls, w.failures, w.slow))
                        .unwrap_or_else(dash),
                    r.open_remaining
                        .filter(|left| !left.is_zero())
                        .map(human)
                        .unwrap_or_else(dash),
                    r.trial
                        .as_ref()
                        .map(|t| {
                            let left = t
                                .remaining
                                .map(|d| format!(" ({} left)", human(d)))
                                .unwrap_or_default();
                            match &t.holder {
                                Some(id) => format!("in flight by {}{left}", view.label_of(id)),
                                None => format!("in flight{left}"),
                            }
                        })
                        .unwrap_or_else(dash),
                    r.generation.to_string(),
                ),
                _ => (dash(), dash(), dash(), dash(), dash()),
            };
            let rejected = match rate(row.rejections_per_second()) {
                0.0 => dash(),
                rejected => rejected.to_string(),
            };
            let mut cells = vec![
                row.service.clone(),
                state_text(&row.record),
                fails,
                window,
                rejected,
            ];
            if permits {
                cells.push(permits_text(row));
            }
            if retries {
                cells.push(row.retries().map_or_else(dash, |spent| spent.to_string()));
            }
            cells.extend([open_for, trial, generation, seen_text(view, row), last]);
            // Every cell may quote Redis: escaped before its width is measured.
            cells
                .into_iter()
                .map(|cell| clean(&cell).into_owned())
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header);
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
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
