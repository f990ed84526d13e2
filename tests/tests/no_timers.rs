//! A runtime built without timers (`enable_time` not called) still gets correct breakers:
//! infuse cannot arm the timer that lets rejections skip the clock, so admission reads
//! the clock instead — no panic reaches the caller, and the open time still ends.

use std::time::Duration;

use infuse::{BreakerError, Config, Registry, ServiceOverride, State};

#[test]
fn breakers_work_on_a_runtime_without_timers() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime without timers");
    runtime.block_on(async {
        let registry = Registry::new(
            Config::in_memory().env_overrides(false).service(
                "no-timers",
                ServiceOverride::new()
                    .fail_max(1)
                    // Long enough for the panic message tokio's refusal prints (with a
                    // backtrace under RUST_BACKTRACE) not to use it up.
                    .reset_timeout(Duration::from_secs(2)),
            ),
        )
        .await
        .unwrap();
        let breaker = registry.breaker("no-timers");
        let failed: Result<(), BreakerError> = breaker
            .call(async { Err(BreakerError::Tripped { service: "x" }) })
            .await;
        assert!(failed.is_err());
        assert_eq!(breaker.state().await.unwrap(), State::Open);
        let rejected: Result<(), BreakerError> = breaker.call(async { Ok(()) }).await;
        assert!(
            matches!(rejected, Err(BreakerError::Open { .. })),
            "{rejected:?}"
        );
        std::thread::sleep(Duration::from_millis(2_100));
        let trial: Result<(), BreakerError> = breaker.call(async { Ok(()) }).await;
        assert_eq!(trial, Ok(()), "the open time ended");
        assert_eq!(breaker.state().await.unwrap(), State::Closed);
    });
}
