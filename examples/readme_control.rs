use std::time::Duration;

use infuse::{BreakerError, State};

#[tokio::main]
async fn main() -> Result<(), infuse::StorageError> {
    let payments = infuse::breaker("payments");
    assert_eq!(payments.state().await?, State::Closed);
    let snapshot = payments.snapshot().await?;
    println!("{} consecutive failures", snapshot.fail_counter);

    // A maintenance window: rejected for 30 minutes, then a trial call as usual.
    payments.open_for(Duration::from_secs(30 * 60)).await?;
    let rejected: Result<(), BreakerError> = payments.call(async { Ok(()) }).await;
    if let Err(err) = rejected {
        println!("{err}; retry after {:?}", err.retry_after());
    }

    payments.force_open().await?; // rejected until closed by hand, no trial
    assert_eq!(payments.state().await?, State::ForcedOpen);
    payments.disable().await?; // every call runs and counts, nothing trips
    assert_eq!(payments.state().await?, State::Disabled);
    payments.close().await?; // back to normal, counters reset
    Ok(())
}
