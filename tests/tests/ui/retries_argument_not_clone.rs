#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

struct Session;

#[infuse::circuit_breaker(service = "users", retries = 2)]
async fn get_user(session: Session, id: u64) -> Result<u64, ApiError> {
    let _ = session;
    Ok(id)
}

fn main() {}
