//! The guide's tonic section as a complete program: a gRPC health check through the
//! breaker's layer, to 127.0.0.1:50051 (`cargo run -p infuse-integration-examples --example
//! tonic`; without a server there, the call fails with UNAVAILABLE and counts as a failure).

use infuse::tonic::{status_error, GrpcClassifier};
use infuse::tower::CircuitBreakerLayer;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let channel = tonic::transport::Channel::from_static("http://127.0.0.1:50051").connect_lazy();
    let channel = ServiceBuilder::new()
        .map_err(status_error) // a rejection becomes UNAVAILABLE with a retry-after
        .layer(CircuitBreakerLayer::new(infuse::breaker("health")).classify(GrpcClassifier))
        .service(channel);
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: String::new(),
    };
    match client.check(request).await {
        Ok(reply) => println!("{:?}", reply.into_inner().status()),
        Err(status) => println!("{:?}: {}", status.code(), status.message()),
    }
    Ok(())
}
