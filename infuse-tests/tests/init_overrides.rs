//! Defect 6: "An override for a service that nothing declares (`INFUSE_USER_FAIL_MAX` when
//! the service is `users`; `Config::service("user", ..)`) was silently ignored." Now
//! `infuse::init` fails with `InitError::UnknownService`, naming the override and the
//! closest declared service; `Config::allow_undeclared_overrides(true)` accepts it.
//!
//! One sequential test in its own binary: `infuse::init` is once per process (it may be
//! called again after it failed) and the environment is process-wide.

use std::time::Duration;

use infuse::{BreakerError, Config, InitError, ServiceOverride, State};

#[infuse::circuit_breaker(service = "users")]
async fn get_user() -> Result<(), BreakerError> {
    Ok(())
}

const VAR: &str = "INFUSE_USER_FAIL_MAX";

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
