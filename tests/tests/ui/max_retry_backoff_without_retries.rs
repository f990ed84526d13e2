#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "users", max_retry_backoff = "2s")]
async fn get_user(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
