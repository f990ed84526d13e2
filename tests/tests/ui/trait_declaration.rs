#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

trait Users {
    #[infuse::circuit_breaker(service = "users")]
    async fn get_user(&self, id: u64) -> Result<u64, ApiError>;
}

fn main() {}
