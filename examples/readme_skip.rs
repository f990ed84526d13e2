async fn ping_users() -> Result<(), infuse::BreakerError> {
    Ok(())
}

#[tokio::main]
async fn main() {
    // Health checks must reach the service even while its breaker is open.
    let healthy = infuse::skip_breaker(ping_users()).await.is_ok();
    println!("users healthy: {healthy}");
}
