use infuse::{Config, UnavailablePolicy};

#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or("redis://127.0.0.1:6379/0".into());
    let config = Config::redis(url)
        .namespace("prod")
        .on_redis_unavailable(UnavailablePolicy::LocalFallback);
    if let Err(err) = infuse::init(config).await {
        eprintln!("{err}"); // "cannot reach Redis at …: Connection refused …; to boot anyway, …"
        std::process::exit(1);
    }
    let users = infuse::breaker("users"); // now shared by every process of the fleet
    match users.state().await {
        Ok(state) => println!("users is {state}"),
        Err(err) => eprintln!("users: {err}"),
    }
}
