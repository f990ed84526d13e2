#[infuse::circuit_breaker(service = "users")]
async fn get_user(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
