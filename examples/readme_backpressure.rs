use std::time::Duration;

use infuse::{BreakerError, Config, ServiceOverride};

#[derive(Debug)]
enum ApiError {
    NotFound,
    Unavailable,
    Breaker(BreakerError),
}

impl From<BreakerError> for ApiError {
    fn from(error: BreakerError) -> Self {
        ApiError::Breaker(error)
    }
}

/// A 404 says nothing about the health of `users`.
fn is_not_found(error: &ApiError) -> bool {
    matches!(error, ApiError::NotFound)
}

// Cancel a call after 2 s. Open when, over the last 10 s and at least 20 calls, half of
// the calls failed or half took longer than 500 ms. After each failed trial, double the
// open time, up to 5 minutes.
#[infuse::circuit_breaker(
    service = "users",
    timeout = "2s",
    slow_call = "500ms",
    slow_call_rate = 50,
    failure_rate = 50,
    window = "10s",
    min_calls = 20,
    max_reset_timeout = "5m",
    ignore = is_not_found
)]
async fn get_user(id: u64) -> Result<String, ApiError> {
    match id {
        0 => Err(ApiError::NotFound),
        13 => Err(ApiError::Unavailable),
        _ => Ok(format!("user-{id}")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The same settings can be tuned per service at boot (or by INFUSE_USERS_TIMEOUT=1s).
    let users = ServiceOverride::new().timeout(Duration::from_secs(1));
    infuse::init(Config::in_memory().service("users", users)).await?;

    assert_eq!(get_user(7).await.unwrap(), "user-7");
    assert!(matches!(get_user(0).await, Err(ApiError::NotFound))); // not counted
    assert!(matches!(get_user(13).await, Err(ApiError::Unavailable))); // counted

    // A rejection, or a call cancelled at its timeout, carries the breaker's error.
    if let Err(ApiError::Breaker(error)) = get_user(1).await {
        eprintln!("users: {error} (HTTP {})", error.status_code());
    }

    let settings = infuse::breaker("users").settings();
    assert_eq!(settings.timeout, Some(Duration::from_secs(1)));
    assert_eq!(settings.failure_rate, Some(50));
    Ok(())
}
