use infuse::{Config, UnavailablePolicy};

#[tokio::main]
async fn main() -> Result<(), infuse::InitError> {
    let url = std::env::var("REDIS_URL").unwrap_or("redis://127.0.0.1:6379/0".into());
    infuse::init(
        Config::redis(url)
            .namespace("prod")
            .on_redis_unavailable(UnavailablePolicy::LocalFallback),
    )
    .await?;
    let users = infuse::breaker("users"); // now shared by every process of the fleet
    println!("{:?}", users.state().await);
    Ok(())
}
