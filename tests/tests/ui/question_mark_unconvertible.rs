#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "users")]
async fn parse_id(text: &str) -> Result<u64, ApiError> {
    let id: u64 = text.parse()?;
    Ok(id)
}

fn main() {}
