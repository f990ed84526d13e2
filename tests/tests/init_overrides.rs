//! Defect 6: "An override for a service that nothing declares (`INFUSE_USER_FAIL_MAX` when
//! the service is `users`; `Config::service("user", ..)`) was silently ignored." Now
//! `infuse::init` fails with `InitError::UnknownService`, naming the override and the
//! closest declared service; `Config::allow_undeclared_overrides(true)` accepts it.
//!
//! The backpressure settings are overrides like the others: every one is accepted through
//! `ServiceOverride` and through its `INFUSE_<SERVICE>_*` variable, and an invalid one
//! fails with `InitError::InvalidSetting` naming the setting.
//!
//! One sequential test of `init` in its own binary: `infuse::init` is once per process (it
//! may be called again after it failed) and the environment is process-wide. The
//! `ServiceOverride` test builds registries that do not read the environment.

use std::time::Duration;

use infuse::{BreakerError, Config, InitError, Registry, ServiceOverride, Settings, State};

#[infuse::circuit_breaker(service = "users")]
async fn get_user() -> Result<(), BreakerError> {
    Ok(())
}

#[infuse::circuit_breaker(service = "backpressure", timeout = "1s", failure_rate = 20)]
async fn get_backpressure() -> Result<(), BreakerError> {
    Ok(())
}

const VAR: &str = "INFUSE_USER_FAIL_MAX";

/// One valid value for every `INFUSE_USERS_*` variable, as a whole.
const USERS_VARS: [(&str, &str); 12] = [
    ("INFUSE_USERS_FAIL_MAX", "10"),
    ("INFUSE_USERS_RESET_TIMEOUT", "10s"),
    ("INFUSE_USERS_SUCCESS_THRESHOLD", "2"),
    ("INFUSE_USERS_TIMEOUT", "2s"),
    ("INFUSE_USERS_TRIAL_TIMEOUT", "5s"),
    ("INFUSE_USERS_SLOW_CALL", "500ms"),
    ("INFUSE_USERS_SLOW_CALL_RATE", "50"),
    ("INFUSE_USERS_FAILURE_RATE", "50"),
    ("INFUSE_USERS_WINDOW", "10s"),
    ("INFUSE_USERS_MIN_CALLS", "20"),
    ("INFUSE_USERS_MIN_INSTANCES", "2"),
    ("INFUSE_USERS_MAX_RESET_TIMEOUT", "5m"),
];

/// A registry of `config` that ignores the environment (which the other test changes).
async fn without_env(config: Config) -> Result<Registry, InitError> {
    Registry::new(config.env_overrides(false)).await
}

/// The `UnknownService` error of a failed `init`, with its text.
async fn unknown_service(config: Config, what: &str) -> (String, String, Option<String>, String) {
    let error = match infuse::init(config).await {
        Err(error) => error,
        Ok(()) => panic!("{what}: init accepted an override of an undeclared service"),
    };
    let text = error.to_string();
    match error {
        InitError::UnknownService {
            origin,
            service,
            suggestion,
        } => (origin, service, suggestion, text),
        other => panic!("{what}: expected UnknownService, got {other:?} ({text})"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_of_undeclared_services_fail_init_until_allowed() {
    std::env::remove_var(VAR);

    // A typo in Config::service: the error names the override and suggests `users`.
    let config = Config::in_memory().service("user", ServiceOverride::new().fail_max(3));
    let (origin, service, suggestion, text) = unknown_service(config, "Config::service").await;
    assert_eq!(origin, "Config::service(\"user\")");
    assert_eq!(service, "user");
    assert_eq!(suggestion.as_deref(), Some("users"));
    assert!(text.contains("Config::service(\"user\")"), "{text}");
    assert!(text.contains("did you mean `users`?"), "{text}");
    assert!(text.contains("allow_undeclared_overrides(true)"), "{text}");

    // Nothing close: no suggestion.
    let config = Config::in_memory().service("zzzzzzzz", ServiceOverride::new().fail_max(3));
    let (_, service, suggestion, text) = unknown_service(config, "far from any").await;
    assert_eq!(service, "zzzzzzzz");
    assert_eq!(suggestion, None, "{text}");
    assert!(!text.contains("did you mean"), "{text}");

    // A breaker created at run time before init is known: its override is accepted, and
    // only the typo is reported.
    let _runtime = infuse::breaker("made-at-run-time");
    let config = Config::in_memory()
        .service("made-at-run-time", ServiceOverride::new().fail_max(7))
        .service("user", ServiceOverride::new().fail_max(3));
    let (_, service, _, text) = unknown_service(config, "run-time breaker").await;
    assert_eq!(service, "user", "{text}");

    // Every setting has its variable, and a variable means the longest setting name that
    // fits: INFUSE_USERS_MAX_RESET_TIMEOUT is the MAX_RESET_TIMEOUT of `users`, not an
    // override of an undeclared `users-max-reset` (TIMEOUT) or `users-max`
    // (RESET_TIMEOUT). With all twelve set (and valid together), init passes the override
    // checks and fails only later, on the closed Redis port.
    for (var, value) in USERS_VARS {
        std::env::set_var(var, value);
    }
    let result = infuse::init(
        Config::redis("redis://127.0.0.1:1/0").redis_connect_timeout(Duration::from_millis(500)),
    )
    .await;
    for (var, _) in USERS_VARS {
        std::env::remove_var(var);
    }
    match result {
        Err(InitError::Unreachable { .. }) => {}
        other => panic!("expected Unreachable past the override checks, got {other:?}"),
    }

    // A typo in an environment variable: the error names the variable and suggests
    // `users`.
    std::env::set_var(VAR, "3");
    let (origin, _, suggestion, text) = unknown_service(Config::in_memory(), VAR).await;
    assert!(origin.contains(VAR), "{origin}");
    assert_eq!(suggestion.as_deref(), Some("users"));
    assert!(text.contains(VAR), "{text}");
    assert!(text.contains("did you mean `users`?"), "{text}");

    // Accepted with allow_undeclared_overrides(true) — the variable still set. This init
    // succeeds, so it comes last.
    let result = infuse::init(
        Config::in_memory()
            .service("user", ServiceOverride::new().fail_max(2))
            .allow_undeclared_overrides(true),
    )
    .await;
    std::env::remove_var(VAR);
    result.expect("allow_undeclared_overrides(true) accepts the overrides");

    // The declared service is untouched; the undeclared one gets its override when it is
    // created (the variable is gone by then).
    assert_eq!(get_user().await, Ok(()));
    let users = infuse::breaker("users");
    assert_eq!(users.state().await.unwrap(), State::Closed);
    assert_eq!(users.settings().fail_max, 5);
    assert_eq!(users.settings().reset_timeout, Duration::from_secs(60));
    assert_eq!(infuse::breaker("user").settings().fail_max, 2);
    assert!(matches!(
        infuse::init(Config::in_memory()).await,
        Err(InitError::AlreadyInitialized)
    ));
}

/// Every backpressure setting through `ServiceOverride`: applied over the declared ones,
/// and an invalid value (or combination) makes the registry fail naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_settings_through_service_override() {
    let d = Duration::from_millis;
    let all = ServiceOverride::new()
        .timeout(d(2_000))
        .trial_timeout(d(5_000))
        .slow_call(d(500))
        .slow_call_rate(50)
        .failure_rate(50)
        .window(d(10_000))
        .min_calls(20)
        .min_instances(2)
        .max_reset_timeout(d(300_000));
    let expected = Settings::DEFAULT
        .timeout(d(2_000))
        .trial_timeout(d(5_000))
        .slow_call(d(500))
        .slow_call_rate(50)
        .failure_rate(50)
        .window(d(10_000))
        .min_calls(20)
        .min_instances(2)
        .max_reset_timeout(d(300_000));
    // A declared service, and one created at run time.
    let registry = without_env(
        Config::in_memory()
            .service("backpressure", all)
            .service("backpressure-later", all),
    )
    .await
    .expect("valid overrides");
    assert_eq!(registry.breaker("backpressure").settings(), expected);
    assert_eq!(registry.breaker("backpressure-later").settings(), expected);

    // Only what is set is replaced: the declared timeout and failure rate stay.
    let registry = without_env(
        Config::in_memory().service("backpressure", ServiceOverride::new().min_calls(5)),
    )
    .await
    .expect("valid override");
    assert_eq!(
        registry.breaker("backpressure").settings(),
        Settings::DEFAULT
            .timeout(d(1_000))
            .failure_rate(20)
            .min_calls(5)
    );
    assert_eq!(get_backpressure().await, Ok(()));

    let invalid: [(ServiceOverride, &str); 14] = [
        (ServiceOverride::new().timeout(Duration::ZERO), "timeout"),
        (
            ServiceOverride::new().timeout(Settings::MAX_CALL_TIMEOUT + d(1)),
            "timeout",
        ),
        (
            ServiceOverride::new().trial_timeout(Duration::ZERO),
            "trial_timeout",
        ),
        (
            ServiceOverride::new()
                .slow_call(Duration::ZERO)
                .slow_call_rate(50),
            "slow_call",
        ),
        (ServiceOverride::new().slow_call(d(500)), "slow_call"),
        (
            ServiceOverride::new().slow_call_rate(101).slow_call(d(500)),
            "slow_call_rate",
        ),
        (ServiceOverride::new().slow_call_rate(50), "slow_call_rate"),
        // The declared timeout is 1 s: a slow call must be shorter.
        (
            ServiceOverride::new()
                .slow_call(d(1_000))
                .slow_call_rate(50),
            "slow_call",
        ),
        (ServiceOverride::new().failure_rate(0), "failure_rate"),
        (ServiceOverride::new().window(d(999)), "window"),
        (
            ServiceOverride::new().window(Settings::MAX_WINDOW + d(1)),
            "window",
        ),
        (ServiceOverride::new().min_calls(0), "min_calls"),
        (ServiceOverride::new().min_instances(0), "min_instances"),
        (
            ServiceOverride::new().max_reset_timeout(d(30_000)),
            "max_reset_timeout",
        ),
    ];
    for (service_override, setting) in invalid {
        let error = without_env(Config::in_memory().service("backpressure", service_override))
            .await
            .err()
            .unwrap_or_else(|| panic!("{service_override:?} accepted"));
        let text = error.to_string();
        match error {
            InitError::InvalidSetting { origin, reason } => {
                assert_eq!(origin, "Config::service(\"backpressure\")", "{text}");
                let named = format!("`{setting}");
                assert!(reason.starts_with(&named), "{setting}: {reason}");
            }
            other => panic!("{setting}: expected InvalidSetting, got {other:?}"),
        }
    }
    // Above 24 h, and below reset_timeout, for a service without declaration too.
    for service_override in [
        ServiceOverride::new().max_reset_timeout(Settings::MAX_RESET_TIMEOUT + d(1)),
        ServiceOverride::new()
            .reset_timeout(d(10_000))
            .max_reset_timeout(d(9_999)),
    ] {
        let error =
            without_env(Config::in_memory().service("backpressure-later", service_override))
                .await
                .err()
                .unwrap_or_else(|| panic!("{service_override:?} accepted"));
        assert!(
            matches!(&error, InitError::InvalidSetting { reason, .. } if reason.starts_with("`max_reset_timeout")),
            "{error}"
        );
    }
}
