//! The guide's tower section as a complete program: hyper's client under the breaker's
//! layer, asking 127.0.0.1:8080 (`cargo run -p infuse-integration-examples --example tower`;
//! without a server there, the request fails and counts as a failure).

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use infuse::tower::CircuitBreakerLayer;
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    // 5xx and 429 count as failures; while open, requests fail fast and are never sent.
    let mut users = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(infuse::breaker("users")))
        .service(client);
    let request = http::Request::get("http://127.0.0.1:8080/users/1").body(Empty::new())?;
    match users.ready().await?.call(request).await {
        Ok(response) => println!("users answered {}", response.status()),
        Err(error) if error.is_rejection() => println!("users is down, not calling: {error}"),
        Err(error) => println!("request failed: {error}"),
    }
    Ok(())
}
