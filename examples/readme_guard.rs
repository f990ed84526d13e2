use infuse::BreakerError;

#[derive(Debug)]
pub enum ApiError {
    NotFound,
    Unavailable,
    Breaker(BreakerError),
}

impl From<BreakerError> for ApiError {
    fn from(err: BreakerError) -> Self {
        ApiError::Breaker(err)
    }
}

fn is_not_found(err: &ApiError) -> bool {
    matches!(err, ApiError::NotFound)
}

#[infuse::circuit_breaker(service = "users", fail_max = 5, reset_timeout = "15s", exclude = is_not_found)]
async fn get_user(id: u64) -> Result<String, ApiError> {
    // The real request goes here; `?` and `return` work as usual.
    match id {
        0 => Err(ApiError::NotFound),
        13 => Err(ApiError::Unavailable),
        _ => Ok(format!("user-{id}")),
    }
}

#[tokio::main]
async fn main() {
    match get_user(7).await {
        Ok(user) => println!("{user}"),
        // Not sent: answer 503 with `err.retry_after()`, serve a cached copy, ...
        Err(ApiError::Breaker(err)) => println!("rejected: {err}"),
        Err(err) => println!("failed: {err:?}"),
    }
}
