//! Invalid `INFUSE_<SERVICE>_*` environment values make `init` fail with
//! `InitError::InvalidSetting` naming the variable. (Its own binary: the environment is
//! process-wide and `init` validates every declared service.)

use std::time::Duration;

use infuse::{BreakerError, Config, InitError, Registry, Settings};

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

const VARS: [&str; 12] = [
    "INFUSE_BAD_ENV_FAIL_MAX",
    "INFUSE_BAD_ENV_RESET_TIMEOUT",
    "INFUSE_BAD_ENV_SUCCESS_THRESHOLD",
    "INFUSE_BAD_ENV_TIMEOUT",
    "INFUSE_BAD_ENV_TRIAL_TIMEOUT",
    "INFUSE_BAD_ENV_SLOW_CALL",
    "INFUSE_BAD_ENV_SLOW_CALL_RATE",
    "INFUSE_BAD_ENV_FAILURE_RATE",
    "INFUSE_BAD_ENV_WINDOW",
    "INFUSE_BAD_ENV_MIN_CALLS",
    "INFUSE_BAD_ENV_MIN_INSTANCES",
    "INFUSE_BAD_ENV_MAX_RESET_TIMEOUT",
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
        ("INFUSE_BAD_ENV_TIMEOUT", "2 seconds"),
        ("INFUSE_BAD_ENV_TRIAL_TIMEOUT", "1h"),
        ("INFUSE_BAD_ENV_SLOW_CALL", "fast"),
        ("INFUSE_BAD_ENV_SLOW_CALL_RATE", "50%"),
        ("INFUSE_BAD_ENV_FAILURE_RATE", "0.5"),
        ("INFUSE_BAD_ENV_WINDOW", "-10s"),
        ("INFUSE_BAD_ENV_MIN_CALLS", "twenty"),
        ("INFUSE_BAD_ENV_MIN_INSTANCES", "-2"),
        ("INFUSE_BAD_ENV_MAX_RESET_TIMEOUT", "5 min"),
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
        ("INFUSE_BAD_ENV_TIMEOUT", "61m", "timeout"),
        ("INFUSE_BAD_ENV_TRIAL_TIMEOUT", "3601", "trial_timeout"),
        ("INFUSE_BAD_ENV_SLOW_CALL", "500ms", "slow_call"),
        ("INFUSE_BAD_ENV_SLOW_CALL_RATE", "50", "slow_call_rate"),
        ("INFUSE_BAD_ENV_SLOW_CALL_RATE", "101", "slow_call_rate"),
        ("INFUSE_BAD_ENV_FAILURE_RATE", "101", "failure_rate"),
        ("INFUSE_BAD_ENV_WINDOW", "999ms", "window"),
        ("INFUSE_BAD_ENV_WINDOW", "61m", "window"),
        ("INFUSE_BAD_ENV_MIN_CALLS", "0", "min_calls"),
        ("INFUSE_BAD_ENV_MIN_INSTANCES", "0", "min_instances"),
        (
            "INFUSE_BAD_ENV_MAX_RESET_TIMEOUT",
            "30s",
            "max_reset_timeout",
        ),
        (
            "INFUSE_BAD_ENV_MAX_RESET_TIMEOUT",
            "1441m",
            "max_reset_timeout",
        ),
    ] {
        let (origin, reason, message) = init_with(var, value).await;
        let named = format!("`{setting}");
        assert!(reason.starts_with(&named), "{var}={value:?}: {message:?}");
        assert_eq!(
            origin,
            format!("{var} (service `bad-env`)"),
            "{var}={value:?}: {message:?}"
        );
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

/// Zero parses as a number (or a duration) but is no valid setting: the error names the
/// variable it came from, like a parse error does.
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

/// Every backpressure setting is accepted from its variable, and a service's variables
/// are checked together: a rule that joins two settings (`SLOW_CALL` needs
/// `SLOW_CALL_RATE`) may be met by two variables, and when two variables break one, the
/// error names both (and only those).
#[tokio::test]
async fn backpressure_variables_are_accepted_and_checked_together() {
    let _env = ENV.lock().await;
    clear_env();
    for (var, value) in [
        ("INFUSE_BAD_ENV_RESET_TIMEOUT", "10s"),
        ("INFUSE_BAD_ENV_TIMEOUT", "2s"),
        ("INFUSE_BAD_ENV_TRIAL_TIMEOUT", "5"),
        ("INFUSE_BAD_ENV_SLOW_CALL", "500ms"),
        ("INFUSE_BAD_ENV_SLOW_CALL_RATE", " 40 "),
        ("INFUSE_BAD_ENV_FAILURE_RATE", "50"),
        ("INFUSE_BAD_ENV_WINDOW", "30s"),
        ("INFUSE_BAD_ENV_MIN_CALLS", "10"),
        ("INFUSE_BAD_ENV_MIN_INSTANCES", "2"),
        ("INFUSE_BAD_ENV_MAX_RESET_TIMEOUT", "5m"),
    ] {
        std::env::set_var(var, value);
    }
    let registry = Registry::new(Config::in_memory())
        .await
        .expect("valid together");
    let secs = Duration::from_secs;
    assert_eq!(
        registry.breaker("bad-env").settings(),
        Settings::DEFAULT
            .fail_max(2)
            .reset_timeout(secs(10))
            .timeout(secs(2))
            .trial_timeout(secs(5))
            .slow_call(Duration::from_millis(500))
            .slow_call_rate(40)
            .failure_rate(50)
            .window(secs(30))
            .min_calls(10)
            .min_instances(2)
            .max_reset_timeout(secs(300))
    );

    // A timeout at the slow-call duration breaks a rule of two variables: both are named,
    // SLOW_CALL_RATE is not.
    std::env::set_var("INFUSE_BAD_ENV_TIMEOUT", "500ms");
    let err = infuse::init(Config::in_memory())
        .await
        .expect_err("slow_call = timeout accepted");
    let InitError::InvalidSetting { origin, reason } = err else {
        panic!("expected InvalidSetting, got {err:?}");
    };
    assert!(
        reason.starts_with("`slow_call = \"500ms\"` must be shorter than `timeout = \"500ms\"`"),
        "{reason}"
    );
    assert_eq!(
        origin,
        "INFUSE_BAD_ENV_TIMEOUT, INFUSE_BAD_ENV_SLOW_CALL (service `bad-env`)"
    );

    // MAX_RESET_TIMEOUT below the RESET_TIMEOUT of another variable.
    std::env::set_var("INFUSE_BAD_ENV_TIMEOUT", "2s");
    std::env::set_var("INFUSE_BAD_ENV_MAX_RESET_TIMEOUT", "5s");
    let err = infuse::init(Config::in_memory())
        .await
        .expect_err("max_reset_timeout < reset_timeout accepted");
    let InitError::InvalidSetting { origin, reason } = err else {
        panic!("expected InvalidSetting, got {err:?}");
    };
    assert!(
        reason
            .starts_with("`max_reset_timeout = \"5s\"` is shorter than `reset_timeout = \"10s\"`"),
        "{reason}"
    );
    assert_eq!(
        origin,
        "INFUSE_BAD_ENV_RESET_TIMEOUT, INFUSE_BAD_ENV_MAX_RESET_TIMEOUT (service `bad-env`)"
    );
    clear_env();
    guarded().await.unwrap();
}
