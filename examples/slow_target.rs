//! A target that slows down, then hangs — and how a timeout and a slow-call rule keep
//! the callers' tasks from piling up behind it.
//!
//! ```text
//! cargo run --example slow_target
//! ```
//!
//! Needs nothing installed: breaker state lives in this process's memory.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use infuse::{circuit_breaker, BreakerError};

// ---------------------------------------------------------------------------------------
// The remote "users" service, simulated: it answers in 20 ms, then in 150 ms (slow, but
// still answering), then not at all within any reasonable time (2 s).

static REQUESTS_SEEN: AtomicU32 = AtomicU32::new(0);

async fn users_service(id: u32, latency: Duration) -> Result<String, ApiError> {
    REQUESTS_SEEN.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(latency).await;
    Ok(format!("user-{id}"))
}

#[derive(Debug)]
enum ApiError {
    Breaker(BreakerError),
}

impl From<BreakerError> for ApiError {
    fn from(error: BreakerError) -> Self {
        ApiError::Breaker(error)
    }
}

// ---------------------------------------------------------------------------------------
// The client. A call still running after 200 ms is cancelled and counts as a failure;
// one slower than 100 ms counts as slow (it keeps its result). Once at least 10 calls
// are in the 10 s window and half of them were slow, the breaker opens for 5 s.

#[circuit_breaker(
    service = "users",
    timeout = "200ms",
    slow_call = "100ms",
    slow_call_rate = 50,
    min_calls = 10,
    reset_timeout = "5s"
)]
async fn get_user(id: u32, latency: Duration) -> Result<String, ApiError> {
    users_service(id, latency).await
}

#[tokio::main]
async fn main() {
    let phases = [
        ("healthy", Duration::from_millis(20), 8),
        ("slow", Duration::from_millis(150), 4),
        ("hanging", Duration::from_secs(2), 7),
    ];
    let mut id = 0;
    for (phase, latency, calls) in phases {
        println!("-- users answers in {latency:?} ({phase})");
        for _ in 0..calls {
            id += 1;
            let started = Instant::now();
            let outcome = get_user(id, latency).await;
            let took = started.elapsed().as_millis();
            match outcome {
                Ok(user) if took >= 100 => println!("call {id:2}: {user} in {took} ms (slow)"),
                Ok(user) => println!("call {id:2}: {user} in {took} ms"),
                Err(ApiError::Breaker(error)) => println!("call {id:2}: {error} ({took} ms)"),
            }
            // The breaker reports its counts every 100 ms at most: give it a moment, as
            // real traffic spread over time would.
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
    let reached = REQUESTS_SEEN.load(Ordering::SeqCst);
    println!("-- {id} calls, {reached} reached the users service; none waited more than 200 ms");
}
