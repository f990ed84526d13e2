//! Invalid `INFUSE_<SERVICE>_*` environment values make `init` fail with
//! `InitError::InvalidSetting` naming the variable. (Its own binary: the environment is
//! process-wide and `init` validates every declared service.)

use infuse::{BreakerError, Config, InitError, Registry};

#[derive(Debug)]
struct ApiError;

impl From<BreakerError> for ApiError {
    fn from(_: BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "bad-env", fail_max = 2)]
async fn guarded() -> Result<(), ApiError> {
    Ok(())
}

/// The environment is shared by the tests of this binary: one at a time.
static ENV: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const VARS: [&str; 3] = [
    "INFUSE_BAD_ENV_FAIL_MAX",
    "INFUSE_BAD_ENV_RESET_TIMEOUT",
    "INFUSE_BAD_ENV_SUCCESS_THRESHOLD",
];

fn clear_env() {
    for var in VARS {
        std::env::remove_var(var);
    }
}

/// Sets one variable (edition 2021: `set_var` is safe), runs `init`, and returns its
/// error, which must be `InvalidSetting`.
async fn init_with(var: &str, value: &str) -> (String, String, String) {
    clear_env();
    std::env::set_var(var, value);
    let err = infuse::init(Config::in_memory())
        .await
        .expect_err("init accepted an invalid environment value");
    let message = err.to_string();
    match err {
        InitError::InvalidSetting { origin, reason } => (origin, reason, message),
        other => panic!("{var}={value:?}: expected InvalidSetting, got {other:?}"),
    }
}

#[tokio::test]
async fn unparsable_values_fail_init_naming_the_variable() {
    let _env = ENV.lock().await;
    for (var, value) in [
        ("INFUSE_BAD_ENV_FAIL_MAX", "abc"),
        ("INFUSE_BAD_ENV_FAIL_MAX", "-1"),
        ("INFUSE_BAD_ENV_FAIL_MAX", "3.5"),
        ("INFUSE_BAD_ENV_FAIL_MAX", ""),
        ("INFUSE_BAD_ENV_FAIL_MAX", "99999999999"),
        ("INFUSE_BAD_ENV_SUCCESS_THRESHOLD", "two"),
        ("INFUSE_BAD_ENV_RESET_TIMEOUT", "soon"),
        ("INFUSE_BAD_ENV_RESET_TIMEOUT", "10h"),
        ("INFUSE_BAD_ENV_RESET_TIMEOUT", "-5s"),
        ("INFUSE_BAD_ENV_RESET_TIMEOUT", "1.5s"),
    ] {
        let (origin, reason, message) = init_with(var, value).await;
        assert!(message.contains(var), "{var}={value:?}: {message:?}");
        assert!(origin.contains("bad-env"), "{var}={value:?}: {origin:?}");
        assert!(origin.contains(var), "{var}={value:?}: {origin:?}");
        assert!(!reason.is_empty());
    }
    // Values that parse but break an invariant are refused too.
    for (var, value, setting) in [
        ("INFUSE_BAD_ENV_FAIL_MAX", "0", "fail_max"),
        ("INFUSE_BAD_ENV_SUCCESS_THRESHOLD", "0", "success_threshold"),
        ("INFUSE_BAD_ENV_RESET_TIMEOUT", "0ms", "reset_timeout"),
    ] {
        let (_, _, message) = init_with(var, value).await;
        assert!(message.contains(setting), "{var}={value:?}: {message:?}");
        assert!(message.contains("bad-env"), "{var}={value:?}: {message:?}");
    }

    // Registries read the environment the same way, unless told not to.
    clear_env();
    std::env::set_var("INFUSE_BAD_ENV_FAIL_MAX", "many");
    assert!(matches!(
        Registry::new(Config::in_memory()).await,
        Err(InitError::InvalidSetting { .. })
    ));
    let registry = Registry::new(Config::in_memory().env_overrides(false))
        .await
        .expect("environment ignored");
    assert_eq!(registry.breaker("bad-env").settings().fail_max, 2);

    // Valid values (surrounding spaces allowed for numbers) are accepted.
    clear_env();
    std::env::set_var("INFUSE_BAD_ENV_FAIL_MAX", " 8 ");
    std::env::set_var("INFUSE_BAD_ENV_RESET_TIMEOUT", "2m");
    let registry = Registry::new(Config::in_memory()).await.expect("valid");
    let settings = registry.breaker("bad-env").settings();
    assert_eq!(
        (settings.fail_max, settings.reset_timeout.as_secs()),
        (8, 120)
    );
    clear_env();
    guarded().await.unwrap();
}

/// Zero parses as a number but is no valid `fail_max` / `success_threshold`: the error
/// should name the variable it came from, like a parse error does. It names only the
/// setting today (the check runs after the overrides are merged, in `config.rs`).
#[tokio::test]
async fn zero_values_fail_init_naming_the_variable() {
    let _env = ENV.lock().await;
    for var in VARS {
        let value = if var.ends_with("RESET_TIMEOUT") {
            "0s"
        } else {
            "0"
        };
        let (_, _, message) = init_with(var, value).await;
        assert!(message.contains(var), "{var}={value:?}: {message:?}");
    }
    clear_env();
}
