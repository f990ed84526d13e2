#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "users")]
async fn get_user(id: u64) -> Result<u64, ApiError> {
    if id == 0 {
        return Ok("none");
    }
    Ok(id)
}

fn main() {}
