// `min_instances` also holds the consecutive rule (`fail_max`) to a quorum of processes:
// it needs no rate rule.
#[derive(Debug)]
struct ApiError;

impl From<infuse::BreakerError> for ApiError {
    fn from(_: infuse::BreakerError) -> Self {
        ApiError
    }
}

#[infuse::circuit_breaker(service = "users", min_instances = 2)]
async fn get_user(id: u64) -> Result<u64, ApiError> {
    Ok(id)
}

fn main() {}
