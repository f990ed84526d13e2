use infuse::{CallOutcome, Config, Listener, Transition};
use std::sync::Arc;
use std::time::Duration;

/// Your own listener, beside the metrics: how calls end, and why breakers change state.
struct Audit;

impl Listener for Audit {
    fn on_transition(&self, t: &Transition) {
        println!(
            "{}: {} -> {} ({}, generation {})",
            t.service, t.from, t.to, t.reason, t.generation
        );
    }
    fn on_call_end(&self, service: &str, outcome: CallOutcome, took: Option<Duration>) {
        println!("{service}: {outcome} in {took:?}");
    }
    fn wants_durations(&self) -> bool {
        true
    }
}

#[infuse::circuit_breaker(service = "users", fail_max = 5)]
async fn load_user(id: u64) -> Result<String, std::io::Error> {
    Ok(format!("user-{id}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Install the exporter first (e.g. metrics_exporter_prometheus::PrometheusBuilder).
    infuse::init(Config::in_memory().metrics().listener(Arc::new(Audit))).await?;
    println!("{}", load_user(7).await?);
    Ok(())
}
