use infuse::{BreakerError, Config, Registry, ServiceOverride, State};
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn trip_reject_trial_recover() {
    let reg = Registry::new(
        Config::in_memory().service(
            "smoke",
            ServiceOverride::new()
                .fail_max(2)
                .reset_timeout(Duration::from_secs(10)),
        ),
    )
    .await
    .unwrap();
    let b = reg.breaker("smoke");
    let fail = || async { Err::<(), BreakerError>(BreakerError::Tripped { service: "x" }) };
    let _ = b.call(fail()).await;
    assert_eq!(b.fail_counter().await.unwrap(), 1);
    let _ = b.call(fail()).await;
    assert_eq!(b.state().await.unwrap(), State::Open);
    let r: Result<(), BreakerError> = b.call(async { panic!("must not run") }).await;
    assert!(
        matches!(r, Err(BreakerError::Open { retry_at: _, .. })),
        "{r:?}"
    );
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(
        b.snapshot().await.unwrap().open_remaining,
        Some(Duration::ZERO)
    );
    let r: Result<u8, BreakerError> = b.call(async { Ok(1) }).await;
    assert_eq!(r, Ok(1));
    assert_eq!(b.state().await.unwrap(), State::Closed);
}
