//! infuse in one screen: a flaky "users" service, a client guarded by a circuit breaker,
//! and a loop that shows the breaker trip, reject, try again and recover.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Needs nothing installed: breaker state lives in this process's memory.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use infuse::{BreakerError, Config, Listener, State};

// ---------------------------------------------------------------------------------------
// The remote "users" service, simulated: every request takes a few milliseconds, and
// requests #4 to #6 fail, as if the service had a short outage.

static REQUESTS_SEEN: AtomicU32 = AtomicU32::new(0);
const OUTAGE: std::ops::RangeInclusive<u32> = 4..=6;

#[derive(Debug)]
struct User {
    id: u64,
    name: String,
}

async fn users_service(id: u64) -> Result<User, ApiError> {
    let n = REQUESTS_SEEN.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(15)).await;
    if OUTAGE.contains(&n) {
        println!("           users service: request #{n} -> 503");
        Err(ApiError::Unavailable(503))
    } else {
        println!("           users service: request #{n} -> 200");
        Ok(User {
            id,
            name: format!("user-{id}"),
        })
    }
}

// ---------------------------------------------------------------------------------------
// The client: one attribute puts the call behind the "users" breaker.

/// The client's error type. `From<BreakerError>` is what lets the breaker answer
/// `Err(ApiError::Breaker(..))` without running the body.
#[derive(Debug)]
enum ApiError {
    Unavailable(u16),
    Breaker(BreakerError),
}

impl From<BreakerError> for ApiError {
    fn from(err: BreakerError) -> Self {
        ApiError::Breaker(err)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unavailable(status) => write!(f, "users service answered {status}"),
            ApiError::Breaker(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for ApiError {}

#[infuse::circuit_breaker(service = "users", fail_max = 3, reset_timeout = "2s")]
async fn get_user(id: u64) -> Result<User, ApiError> {
    users_service(id).await
}

// ---------------------------------------------------------------------------------------
// A listener: told of every state change of every breaker.

struct PrintStateChanges {
    start: Instant,
}

impl Listener for PrintStateChanges {
    fn on_state_change(&self, service: &str, from: State, to: State) {
        let t = self.start.elapsed().as_secs_f64();
        let what = match to {
            State::Open => "tripped: calls are now rejected without running",
            State::HalfOpen => "reset timeout passed: the next call is a trial",
            State::Closed => "trial succeeded: calls flow again",
            _ => "changed by an operator",
        };
        println!("  {t:5.2}s  ** breaker {service}: {from} -> {to} ({what})");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    // Optional with the in-memory store; with Redis this is where the fleet connects.
    infuse::init(Config::in_memory().listener(Arc::new(PrintStateChanges { start }))).await?;
    let users = infuse::breaker("users");
    println!(
        "breaker {:?}: {} consecutive failures open it for {:?}\n",
        users.service(),
        users.settings().fail_max,
        users.settings().reset_timeout,
    );

    let mut call = 0;
    let mut recovered_calls = 0;
    while recovered_calls < 3 {
        call += 1;
        let seen_before = REQUESTS_SEEN.load(Ordering::SeqCst);
        let began = Instant::now();
        let result = get_user(call).await;
        let took = began.elapsed();
        let ran = REQUESTS_SEEN.load(Ordering::SeqCst) != seen_before;
        let t = start.elapsed().as_secs_f64();
        match &result {
            Ok(user) => println!(
                "  {t:5.2}s  call {call:2}: ok      {} (#{}) in {took:.1?}",
                user.name, user.id
            ),
            Err(ApiError::Breaker(err)) => println!(
                "  {t:5.2}s  call {call:2}: REJECTED in {took:.1?}, body ran: {ran} ({err})"
            ),
            Err(err) => println!("  {t:5.2}s  call {call:2}: failed  {err} in {took:.1?}"),
        }
        if result.is_ok() && call > 6 {
            recovered_calls += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    println!(
        "\n{call} calls, {} reached the users service; breaker is {}, {} failures counted",
        REQUESTS_SEEN.load(Ordering::SeqCst),
        users.state().await?,
        users.fail_counter().await?,
    );
    Ok(())
}
