#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "users")]
async fn ping(id: u64) {
    let _ = id;
}

fn main() {}
