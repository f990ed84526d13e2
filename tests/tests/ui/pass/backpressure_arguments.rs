//! Every backpressure argument at once, with values of both duration syntaxes.

use std::time::Duration;

use infuse::Settings;

#[derive(Debug)]
#[allow(dead_code)]
enum ApiError {
    Cancelled,
    NotFound,
    Breaker,
}

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError::Breaker
    }
}

mod errors {
    pub fn is_cancelled(error: &super::ApiError) -> bool {
        matches!(error, super::ApiError::Cancelled)
    }
}

fn is_not_found(error: &ApiError) -> bool {
    matches!(error, ApiError::NotFound)
}

#[infuse::circuit_breaker(
    service = "users",
    fail_max = 10,
    reset_timeout = "10s",
    timeout = "2s",
    trial_timeout = 5,
    slow_call = "500ms",
    slow_call_rate = 50,
    failure_rate = 50,
    window = "10s",
    min_calls = 20,
    min_instances = 2,
    max_reset_timeout = "5m",
    exclude = is_not_found,
    ignore = errors::is_cancelled,
    error_on_trip = true
)]
async fn get_user(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

// The extremes of every range.
#[infuse::circuit_breaker(
    service = "bounds",
    reset_timeout = "1ms",
    timeout = "60m",
    trial_timeout = "1ms",
    slow_call = "3599999ms",
    slow_call_rate = 100,
    failure_rate = 1,
    window = "1s",
    min_calls = 1,
    min_instances = 4294967295,
    max_reset_timeout = 86400
)]
async fn bounds() -> Result<(), ApiError> {
    Ok(())
}

fn main() {
    let _ = (get_user(1), bounds());
    assert_eq!(
        infuse::breaker("users").settings(),
        Settings::DEFAULT
            .fail_max(10)
            .reset_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(2))
            .trial_timeout(Duration::from_secs(5))
            .slow_call(Duration::from_millis(500))
            .slow_call_rate(50)
            .failure_rate(50)
            .window(Duration::from_secs(10))
            .min_calls(20)
            .min_instances(2)
            .max_reset_timeout(Duration::from_secs(300))
    );
    assert_eq!(infuse::breaker("bounds").settings().validate(), Ok(()));
}
