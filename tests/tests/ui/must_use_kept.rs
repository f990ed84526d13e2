#![deny(unused_must_use)]

#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "users")]
#[must_use = "the user may not exist"]
async fn get_user(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

async fn caller() {
    get_user(1).await;
}

fn main() {
    let _ = caller();
}
