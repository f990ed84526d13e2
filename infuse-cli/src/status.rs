//! `infuse status`: a table (or JSON) of the namespace's breakers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fleet::{Fleet, Record};
use crate::Failure;

/// Prints the breakers of `services` (every breaker of the namespace when empty).
pub(crate) async fn run(fleet: &Fleet, services: &[String], json: bool) -> Result<(), Failure> {
    let known = fleet.services().await?;
    let wanted: Vec<String> = if services.is_empty() {
        known.clone()
    } else {
        services.to_vec()
    };
    let mut records = Vec::with_capacity(wanted.len());
    for service in &wanted {
        match fleet.record(service).await? {
            Some(record) => records.push(record),
            None => return Err(unknown(fleet, service, &known)),
        }
    }
    if json {
        let array: Vec<Value> = records.iter().map(to_json).collect();
        println!("{}", Value::Array(array));
    } else if records.is_empty() {
        println!("no breakers in namespace {:?}", fleet.namespace);
    } else {
        print_table(&records);
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
        format!("known: {}", known.join(", "))
    };
    Failure(format!(
        "no breaker {service:?} in namespace {:?}; {hint}",
        fleet.namespace
    ))
}

/// One breaker as JSON (`status --json`, the dashboard's API).
pub(crate) fn to_json(r: &Record) -> Value {
    let window = r.window.map(
        |(calls, failures, slow)| json!({ "calls": calls, "failures": failures, "slow": slow }),
    );
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
        "window": window,
        "expires_in_ms": r.expires_in.map(|d| d.as_millis() as u64),
    })
}

fn print_table(records: &[Record]) {
    let header = [
        "SERVICE",
        "STATE",
        "FAILS",
        "WINDOW (calls/fail/slow)",
        "OPEN FOR",
        "TRIAL",
        "GEN",
    ];
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
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
                    .map(|d| format!("in flight ({} left)", human(d)))
                    .unwrap_or_else(|| "-".to_owned()),
                r.generation.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
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
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `1h02m`, `4m05s`, `12.3s`, `250ms`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", d.as_secs_f64()),
        60_000..=3_599_999 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
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
    }
}
