//! Breakers used from several runtimes with paused clocks in one process (what
//! `#[tokio::test(start_paused = true)]` tests do): each runtime's clock starts near the
//! real time but moves only when advanced, so one runtime's "now" can lie far behind
//! another's. A breaker's timeout must still be measured on its caller's clock.
//!
//! Its own binary: the process-wide clock epoch must be set by the runtime that is ahead.

use std::time::Duration;

use infuse::{BreakerError, Config, Registry, ServiceOverride};
use tokio::runtime::{Builder, Runtime};

fn paused_runtime() -> Runtime {
    let rt = Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async { tokio::time::pause() });
    rt
}

async fn trip_and_recover(service: &'static str) {
    let reset = Duration::from_secs(10);
    let registry = Registry::new(
        Config::in_memory().service(service, ServiceOverride::new().reset_timeout(reset)),
    )
    .await
    .unwrap();
    let breaker = registry.breaker(service);
    breaker.open().await.unwrap();
    let rejected: Result<(), BreakerError> = breaker.call(async { Ok(()) }).await;
    assert_eq!(
        rejected.unwrap_err().retry_after(),
        Some(reset),
        "{service}: retry_after right after opening"
    );
    tokio::time::advance(reset).await;
    let trial: Result<(), BreakerError> = breaker.call(async { Ok(()) }).await;
    assert_eq!(trial, Ok(()), "{service}: no trial after reset_timeout");
}

#[test]
fn a_runtime_behind_another_still_times_out() {
    // Created first: its clock stays at (about) the real time of its creation.
    let behind = paused_runtime();
    // Created next and moved an hour ahead before any breaker was used in the process.
    let ahead = paused_runtime();
    ahead.block_on(async {
        tokio::time::advance(Duration::from_secs(3600)).await;
        trip_and_recover("ahead").await;
    });
    behind.block_on(trip_and_recover("behind"));
}
