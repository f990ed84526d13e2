use infuse::reqwest::{breaker_error, CircuitBreakerMiddleware};
use reqwest_middleware::ClientBuilder;

#[tokio::main]
async fn main() {
    let client = ClientBuilder::new(reqwest::Client::new())
        // Outside any retry middleware: one outcome per logical call.
        .with(CircuitBreakerMiddleware::service("users"))
        .build();

    match client.get("http://127.0.0.1:8080/users/7").send().await {
        // 5xx and 429 count as failures; the response is still yours.
        Ok(response) => println!("users answered {}", response.status()),
        Err(err) => match breaker_error(&err) {
            // Not sent: answer 503 with `open.retry_after_secs()`, serve a cached copy, ...
            Some(open) => println!("rejected: {open}"),
            // Connection errors and timeouts count as failures.
            None => println!("failed: {err}"),
        },
    }
}
