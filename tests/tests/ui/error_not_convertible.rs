#[derive(Debug)]
struct MyErr;

#[infuse::circuit_breaker(service = "users")]
async fn get_user(id: u64) -> Result<u64, MyErr> {
    Ok(id)
}

fn main() {}
