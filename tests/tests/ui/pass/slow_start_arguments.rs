//! The slow-start arguments, alone and together, at the extremes of their ranges.

use std::time::Duration;

use infuse::Settings;

#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "users", slow_start = "30s", slow_start_min = 25)]
async fn get_user(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

#[infuse::circuit_breaker(service = "default-min", slow_start = 45)]
async fn default_min() -> Result<(), ApiError> {
    Ok(())
}

#[infuse::circuit_breaker(service = "bounds", slow_start = "60m", slow_start_min = 100)]
async fn bounds() -> Result<(), ApiError> {
    Ok(())
}

#[infuse::circuit_breaker(service = "low", slow_start = "1ms", slow_start_min = 1)]
async fn low() -> Result<(), ApiError> {
    Ok(())
}

fn main() {
    let _ = (get_user(1), default_min(), bounds(), low());
    let settings = |service| infuse::breaker(service).settings();
    assert_eq!(
        settings("users"),
        Settings::DEFAULT
            .slow_start(Duration::from_secs(30))
            .slow_start_min(25)
    );
    assert_eq!(
        settings("default-min"),
        Settings::DEFAULT.slow_start(Duration::from_secs(45))
    );
    assert_eq!(settings("default-min").slow_start_min, 10);
    assert_eq!(settings("bounds").validate(), Ok(()));
    assert_eq!(settings("low").validate(), Ok(()));
}
