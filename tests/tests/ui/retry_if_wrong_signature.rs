#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

fn is_transient(_: &std::io::Error) -> bool {
    true
}

#[infuse::circuit_breaker(service = "users", retries = 1, retry_if = is_transient)]
async fn get_user(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
