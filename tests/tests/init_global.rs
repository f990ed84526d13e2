//! The successful `infuse::init`: a breaker for every declared service, `Config::service`
//! and environment overrides (environment first), the attribute's breaker being the one
//! `infuse::breaker(name)` returns, and `AlreadyInitialized` on a second call.
//!
//! One test only: `init` is once per process and the environment is process-wide.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infuse::{BreakerError, Config, InitError, Listener, ServiceOverride, Settings, State};

#[derive(Debug, PartialEq)]
enum ApiError {
    Down,
    Breaker(BreakerError),
}

impl From<BreakerError> for ApiError {
    fn from(err: BreakerError) -> Self {
        ApiError::Breaker(err)
    }
}

#[infuse::circuit_breaker(service = "users", fail_max = 2, reset_timeout = "10s")]
async fn get_user(fail: bool) -> Result<u32, ApiError> {
    if fail {
        return Err(ApiError::Down);
    }
    Ok(1)
}

#[infuse::circuit_breaker(service = "users", fail_max = 2, reset_timeout = "10s")]
async fn list_users() -> Result<u32, ApiError> {
    Ok(2)
}

#[infuse::circuit_breaker(service = "plain", fail_max = 3, success_threshold = 2)]
async fn plain(fail: bool) -> Result<(), ApiError> {
    if fail {
        Err(ApiError::Down)
    } else {
        Ok(())
    }
}

#[infuse::circuit_breaker(service = "env-tuned", fail_max = 2)]
async fn env_tuned() -> Result<(), ApiError> {
    Ok(())
}

/// The by-hand declaration (public API), for a service only it declares.
async fn by_hand() -> Result<(), ApiError> {
    static SPEC: infuse::__private::BreakerSpec = infuse::__private::BreakerSpec::new(
        "by-hand",
        Settings::DEFAULT
            .fail_max(6)
            .reset_timeout(Duration::from_millis(2500)),
        concat!(module_path!(), "::by_hand"),
        file!(),
        line!(),
    );
    infuse::__private::register!(SPEC);
    static BREAKER: infuse::__private::StaticBreaker = infuse::__private::StaticBreaker::new(&SPEC);
    BREAKER.get().call(async { Ok::<(), ApiError>(()) }).await
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl Listener for Recorder {
    fn before_call(&self, service: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{service}: before_call"));
    }
    fn on_failure(&self, service: &str, error: &dyn Debug) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{service}: failure({error:?})"));
    }
}

fn triple(s: Settings) -> (u32, Duration, u32) {
    (s.fail_max, s.reset_timeout, s.success_threshold)
}

#[tokio::test]
async fn init_sets_up_declared_services_with_overrides() {
    assert_eq!(infuse::env_prefix("env-tuned"), "INFUSE_ENV_TUNED_");
    // Set before init, in the only test of this binary (edition 2021: `set_var` is safe).
    std::env::set_var("INFUSE_ENV_TUNED_FAIL_MAX", "7");
    std::env::set_var("INFUSE_ENV_TUNED_RESET_TIMEOUT", "1500ms");
    std::env::set_var("INFUSE_ENV_TUNED_SUCCESS_THRESHOLD", " 2 ");
    std::env::set_var("INFUSE_USERS_SUCCESS_THRESHOLD", "3");

    // Used before init: the breaker exists already, with the declared settings.
    assert_eq!(plain(true).await, Err(ApiError::Down));
    assert_eq!(triple(infuse::breaker("plain").settings()).0, 3);
    let early = infuse::breaker("early");
    assert_eq!(triple(early.settings()), (5, Duration::from_secs(60), 1));

    let recorder = Arc::new(Recorder::default());
    infuse::init(
        Config::in_memory()
            .service(
                "users",
                ServiceOverride::new().reset_timeout(Duration::from_secs(20)),
            )
            // The environment wins over Config::service.
            .service("env-tuned", ServiceOverride::new().fail_max(9))
            .service("early", ServiceOverride::new().fail_max(4))
            .listener(recorder.clone()),
    )
    .await
    .expect("init");

    // Every declared service has a breaker, with its settings resolved.
    let mut services: Vec<_> = infuse::__private::global()
        .breakers()
        .iter()
        .map(|b| b.service())
        .collect();
    services.sort();
    for declared in ["by-hand", "env-tuned", "plain", "users"] {
        assert!(
            services.contains(&declared),
            "{declared} missing from {services:?}"
        );
    }
    assert_eq!(
        triple(infuse::breaker("users").settings()),
        (2, Duration::from_secs(20), 3),
        "declared fail_max, Config reset_timeout, env success_threshold"
    );
    assert_eq!(
        triple(infuse::breaker("env-tuned").settings()),
        (7, Duration::from_millis(1500), 2),
        "the environment wins"
    );
    assert_eq!(
        triple(infuse::breaker("plain").settings()),
        (3, Duration::from_secs(60), 2)
    );
    assert_eq!(
        triple(infuse::breaker("by-hand").settings()),
        (6, Duration::from_millis(2500), 1)
    );
    // A breaker created before init is reconfigured too, and gets Config's listeners.
    assert_eq!(triple(early.settings()).0, 4);
    assert_eq!(
        early.call(async { Err::<(), _>(ApiError::Down) }).await,
        Err(ApiError::Down)
    );
    // Its state moved to the store set up by init (in memory: a fresh start).
    assert_eq!(infuse::breaker("plain").fail_counter().await.unwrap(), 0);

    // The attribute's breaker is the one `infuse::breaker` returns, shared by every
    // function naming the service.
    let users = infuse::breaker("users");
    assert_eq!(get_user(true).await, Err(ApiError::Down));
    assert_eq!(users.fail_counter().await.unwrap(), 1);
    assert_eq!(get_user(true).await, Err(ApiError::Down));
    assert_eq!(users.state().await.unwrap(), State::Open);
    let rejected = list_users().await;
    match rejected {
        Err(ApiError::Breaker(BreakerError::Open { service, retry_at })) => {
            assert_eq!(service, "users");
            assert!(retry_at.remaining() <= Duration::from_secs(20));
        }
        other => panic!("expected Open, got {other:?}"),
    }
    users.close().await.unwrap();
    assert_eq!(list_users().await, Ok(2));
    assert_eq!(get_user(false).await, Ok(1));
    infuse::breaker("by-hand").open().await.unwrap();
    assert!(matches!(
        by_hand().await,
        Err(ApiError::Breaker(BreakerError::Open { .. }))
    ));
    env_tuned().await.unwrap();

    let events = recorder.0.lock().unwrap().clone();
    assert!(
        events.contains(&"early: failure(Down)".to_string()),
        "{events:?}"
    );
    assert!(
        events.contains(&"users: before_call".to_string()),
        "{events:?}"
    );

    // Once only.
    let again = infuse::init(Config::in_memory()).await;
    assert!(
        matches!(again, Err(InitError::AlreadyInitialized)),
        "{again:?}"
    );
    assert_eq!(
        infuse::init(Config::in_memory())
            .await
            .unwrap_err()
            .to_string(),
        "infuse::init was already called in this process"
    );
    // The first configuration stays in force.
    assert_eq!(
        triple(infuse::breaker("users").settings()).1,
        Duration::from_secs(20)
    );
}
