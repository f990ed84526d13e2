#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

struct Client;

impl Client {
    #[infuse::circuit_breaker(service = "users", retries = 2)]
    async fn get_user(&mut self, id: u64) -> Result<u64, ApiError> {
        Ok(id)
    }

    #[infuse::circuit_breaker(service = "users", retries = 2)]
    async fn into_user(self, id: u64) -> Result<u64, ApiError> {
        Ok(id)
    }
}

fn main() {}
