//! One member of a fleet whose breaker has `max_concurrent`, as its own OS process:
//! `tests/fleet_concurrency.rs` starts several against one downstream that counts how
//! many requests it holds at once.
//!
//! ```text
//! infuse-cap-worker <redis_url> <namespace> <downstream 127.0.0.1:port> <callers> \
//!     <run_ms> <max_concurrent> <max_wait_ms> <id>
//! ```
//!
//! `callers` tasks each call the downstream through `infuse::breaker("users")` in a loop
//! for `run_ms` (after a rejection, 5 ms later): one TCP connection per call, sending its
//! id as one line and reading one line back. Prints `READY <id>` once `init` succeeded
//! (the calls start right after), then `SUMMARY <id> ok=<n> saturated=<n> other=<n>`.
//! Exits 0 unless the arguments are wrong (2) or `init` fails (1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use infuse::{BreakerError, Config, ServiceOverride};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Debug)]
enum CallError {
    Breaker(BreakerError),
    Downstream,
}

impl From<BreakerError> for CallError {
    fn from(error: BreakerError) -> Self {
        CallError::Breaker(error)
    }
}

async fn request(downstream: &str, id: &str) -> Result<(), CallError> {
    let stream = TcpStream::connect(downstream)
        .await
        .map_err(|_| CallError::Downstream)?;
    let (read, mut write) = stream.into_split();
    write
        .write_all(format!("{id}\n").as_bytes())
        .await
        .map_err(|_| CallError::Downstream)?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(|_| CallError::Downstream)?;
    match line.trim() {
        "ok" => Ok(()),
        _ => Err(CallError::Downstream),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (Some(callers), Some(run_ms), Some(cap), Some(max_wait_ms), Some(id)) =
        (number(3), number(4), number(5), number(6), args.get(7))
    else {
        eprintln!("usage: infuse-cap-worker <redis_url> <namespace> <downstream> <callers> <run_ms> <max_concurrent> <max_wait_ms> <id>");
        std::process::exit(2);
    };
    let settings = ServiceOverride::new()
        .fail_max(u32::MAX)
        .max_concurrent(cap as u32)
        .max_wait(Duration::from_millis(max_wait_ms));
    let config = Config::redis(&args[0])
        .namespace(&args[1])
        .env_overrides(false)
        .allow_undeclared_overrides(true)
        .service("users", settings);
    if let Err(error) = infuse::init(config).await {
        eprintln!("init failed: {error}");
        std::process::exit(1);
    }
    println!("READY {id}");
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let end = Instant::now() + Duration::from_millis(run_ms);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (counts, downstream, id) = (counts.clone(), args[2].clone(), id.clone());
        tasks.spawn(async move {
            let users = infuse::breaker("users");
            while Instant::now() < end {
                let result = users.call(request(&downstream, &id)).await;
                let slot = match result {
                    Ok(()) => 0,
                    Err(CallError::Breaker(BreakerError::Saturated { .. })) => 1,
                    Err(_) => 2,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
                if slot != 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
    }
    tasks.join_all().await;
    println!(
        "SUMMARY {id} ok={} saturated={} other={}",
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
        counts[2].load(Ordering::Relaxed)
    );
    let _ = infuse::shutdown().await;
}
