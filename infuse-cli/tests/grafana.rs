//! The Grafana board in `docs/grafana/` is valid JSON and queries only the metrics
//! infuse exports (`infuse::metrics`: the names are the guide's stable contract).

use serde_json::Value;

const BOARD: &str = include_str!("../../docs/grafana/infuse-dashboard.json");

/// `infuse::metrics::{CALLS_TOTAL, CALL_DURATION_SECONDS, STATE, TRANSITIONS_TOTAL}`, and
/// the bucket series a Prometheus exporter derives from the histogram.
const EXPORTED: [&str; 5] = [
    "infuse_calls_total",
    "infuse_call_duration_seconds",
    "infuse_call_duration_seconds_bucket",
    "infuse_state",
    "infuse_transitions_total",
];

fn exprs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => found.push(expr.clone()),
                    _ => exprs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| exprs(item, found)),
        _ => {}
    }
}

#[test]
fn the_board_queries_only_exported_metrics() {
    let board: Value = serde_json::from_str(BOARD).expect("valid JSON");
    assert_eq!(board["uid"], "infuse-breakers");
    let mut found = Vec::new();
    exprs(&board, &mut found);
    assert!(found.len() >= 6, "{found:?}");
    let mut used = std::collections::BTreeSet::new();
    for expr in &found {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("infuse_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(EXPORTED.contains(&name.as_str()), "{name} in {expr}");
            used.insert(name.clone());
            rest = &rest[at + name.len()..];
        }
    }
    for name in [
        "infuse_calls_total",
        "infuse_state",
        "infuse_transitions_total",
    ] {
        assert!(used.contains(name), "no panel uses {name}");
    }
}
