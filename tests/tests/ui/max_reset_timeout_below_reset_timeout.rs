#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "users", reset_timeout = "10m", max_reset_timeout = "5m")]
async fn get_user(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
