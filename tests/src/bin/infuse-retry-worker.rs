//! One member of a fleet that retries failing calls, as its own OS process:
//! `tests/fleet_retries.rs` starts several and checks that the retry budget holds for
//! the whole fleet.
//!
//! ```text
//! infuse-retry-worker <redis://...|memory> <namespace> <id> <calls_per_sec> <seconds> \
//!     <retries> <retry_budget> <retry_min_per_sec>
//! ```
//!
//! Once `init` succeeded it prints `READY <id>` and waits for a line on stdin (`go`), so
//! that the workers start together. Then it makes `calls_per_sec × seconds` calls of the
//! breaker `"users"` at a fixed rate (open loop: a call is started on schedule whether or
//! not the earlier ones ended), each through `Breaker::call_retrying` with a future that
//! always fails (a dead downstream: `fail_max` is too high to trip), and prints
//! `DONE <id> first=<n> attempts=<n> retries=<n> exhausted=<n>`: first attempts, attempts
//! made (first attempts and retries), the retries listeners were told of, and the
//! failures not retried for want of budget. Exits 0, or 2 on wrong arguments, 1 if `init`
//! fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use infuse::{Config, Listener, Registry, ServiceOverride};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Default)]
struct Counts {
    retries: AtomicU64,
    exhausted: AtomicU64,
}

impl Listener for Counts {
    fn on_retry(&self, _: &str, _: u32) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    fn on_retry_budget_exhausted(&self, _: &str) {
        self.exhausted.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u32>().ok());
    let (Some(rate), Some(seconds), Some(retries), Some(budget), Some(floor)) =
        (number(3), number(4), number(5), number(6), number(7))
    else {
        eprintln!("usage: infuse-retry-worker <redis://...|memory> <namespace> <id> <calls_per_sec> <seconds> <retries> <retry_budget> <retry_min_per_sec>");
        std::process::exit(2);
    };
    let id = args[2].clone();
    let settings = ServiceOverride::new()
        .fail_max(u32::MAX)
        .retries(retries)
        .retry_budget(budget)
        .retry_min_per_sec(floor)
        .retry_backoff(Duration::from_millis(5))
        .max_retry_backoff(Duration::from_millis(20));
    let config = match args[0].as_str() {
        "memory" => Config::in_memory(),
        url => Config::redis(url).namespace(&args[1]),
    };
    let registry = match Registry::new(config.service("users", settings)).await {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("init failed: {error}");
            std::process::exit(1);
        }
    };
    let users = registry.breaker("users");
    let counts = Arc::new(Counts::default());
    users.add_listener(counts.clone());
    println!("READY {id}");
    let mut line = String::new();
    let _ = BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await;

    let attempts = Arc::new(AtomicU64::new(0));
    let total = u64::from(rate) * u64::from(seconds);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..total {
        tick.tick().await;
        let (users, attempts) = (users.clone(), attempts.clone());
        calls.spawn(async move {
            let _ = users
                .call_retrying(|| async {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    Err::<(), _>(std::io::Error::other("503 from a dead downstream"))
                })
                .await;
        });
    }
    calls.join_all().await;
    println!(
        "DONE {id} first={total} attempts={} retries={} exhausted={}",
        attempts.load(Ordering::Relaxed),
        counts.retries.load(Ordering::Relaxed),
        counts.exhausted.load(Ordering::Relaxed),
    );
    registry.shutdown().await.ok();
}
