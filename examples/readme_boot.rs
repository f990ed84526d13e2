use std::time::Duration;

use infuse::{Config, ServiceOverride};

#[infuse::circuit_breaker(service = "users")]
async fn get_user(id: u64) -> Result<String, infuse::BreakerError> {
    Ok(format!("user-{id}"))
}

#[tokio::main]
async fn main() -> Result<(), infuse::InitError> {
    infuse::init(
        Config::in_memory()
            // Operator overrides, without recompiling (environment variables win).
            .service(
                "users",
                ServiceOverride::new()
                    .fail_max(10)
                    .reset_timeout(Duration::from_secs(30)),
            ),
    )
    .await?;
    println!("{:?}", get_user(1).await);
    Ok(())
}
