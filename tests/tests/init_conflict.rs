//! Two functions declaring one service with different settings: `init` must refuse,
//! naming both. (Its own binary: declarations are collected binary-wide.)

use infuse::{BreakerError, Config, InitError, Registry};

#[derive(Debug)]
struct ApiError;

impl From<BreakerError> for ApiError {
    fn from(_: BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "conflicted", fail_max = 3)]
async fn first_caller() -> Result<(), ApiError> {
    Ok(())
}

#[infuse::circuit_breaker(service = "conflicted", fail_max = 4)]
async fn second_caller() -> Result<(), ApiError> {
    Ok(())
}

/// The by-hand form of the attribute (public API): agrees with `first_caller`.
async fn by_hand_caller() -> Result<(), ApiError> {
    static SPEC: infuse::__private::BreakerSpec = infuse::__private::BreakerSpec::new(
        "agreeing",
        infuse::Settings::DEFAULT.fail_max(3),
        concat!(module_path!(), "::by_hand_caller"),
        file!(),
        line!(),
    );
    infuse::__private::register!(SPEC);
    static BREAKER: infuse::__private::StaticBreaker = infuse::__private::StaticBreaker::new(&SPEC);
    BREAKER.get().call(async { Ok::<(), ApiError>(()) }).await
}

#[infuse::circuit_breaker(service = "agreeing", fail_max = 3)]
async fn agreeing_caller() -> Result<(), ApiError> {
    Ok(())
}

fn assert_conflict(err: InitError) {
    let message = err.to_string();
    match err {
        InitError::ConflictingSettings {
            service,
            first,
            second,
            first_settings,
            second_settings,
        } => {
            assert_eq!(service, "conflicted");
            assert!(first.contains("first_caller"), "{first}");
            assert!(second.contains("second_caller"), "{second}");
            assert!(first_settings.contains("fail_max = 3"), "{first_settings}");
            assert!(
                second_settings.contains("fail_max = 4"),
                "{second_settings}"
            );
        }
        other => panic!("expected ConflictingSettings, got {other:?}"),
    }
    for needle in [
        "conflicted",
        "init_conflict::first_caller",
        "init_conflict::second_caller",
        "tests/init_conflict.rs",
        "fail_max = 3",
        "fail_max = 4",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
}

#[tokio::test]
async fn conflicting_declarations_fail_init_naming_both_functions() {
    // Agreeing declarations of one service (attribute and by-hand) are no conflict:
    // only "conflicted" is reported.
    let services: Vec<_> = infuse::__private::declarations()
        .map(|d| d.service)
        .collect();
    assert_eq!(services.iter().filter(|s| **s == "agreeing").count(), 2);
    assert_eq!(services.iter().filter(|s| **s == "conflicted").count(), 2);

    assert_conflict(infuse::init(Config::in_memory()).await.unwrap_err());
    // A failed init can be retried (it is not "already initialised"), and fails again.
    assert_conflict(infuse::init(Config::in_memory()).await.unwrap_err());
    // A registry checks the same declarations.
    match Registry::new(Config::in_memory()).await {
        Err(err) => assert_conflict(err),
        Ok(_) => panic!("Registry::new accepted conflicting declarations"),
    }

    // Without init, the functions still run (each on the global breaker of its service).
    first_caller().await.unwrap();
    second_caller().await.unwrap();
    by_hand_caller().await.unwrap();
    agreeing_caller().await.unwrap();
}
