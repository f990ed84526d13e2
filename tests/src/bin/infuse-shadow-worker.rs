//! One member of a breaker fleet in shadow mode, as its own OS process: `tests/shadow.rs`
//! starts several against a downstream that always fails.
//!
//! ```text
//! infuse-shadow-worker <redis_url> <namespace> <downstream 127.0.0.1:port> <id>
//! ```
//!
//! Its breaker `users` has `shadow = true`, `fail_max = 3` and `reset_timeout = 300ms`.
//! Every ~3 ms it calls the downstream through it (one TCP connection per call, its id
//! as one line, `ok` back or a failure), until its stdin closes. On stdout, line by line:
//!
//! - `READY <id>` once `infuse::init` succeeded;
//! - `TRANSITION <id> <from> <to> shadow=<bool>` for every state change (a listener);
//! - `SHADOW <id> <bool> <unix_ms>` when `Breaker::shadow()` changes (checked every 5 ms);
//! - `STATUS <id> shadow=<bool> would_reject=<n> told=<n> ok=<n> failed=<n> rejected=<n>`
//!   every 100 ms (`would_reject`: `Breaker::would_reject()`; `told`: the listener's
//!   `on_shadow_rejected` calls);
//! - the same as `SUMMARY …` when stdin closes, then it exits 0.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infuse::{BreakerError, Config, Listener, ServiceOverride, Transition};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;

const SERVICE: &str = "users";

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Prints transitions and counts the shadow rejections it is told of.
struct Watch {
    id: String,
    told: AtomicU64,
}

impl Listener for Watch {
    fn on_transition(&self, t: &Transition) {
        println!(
            "TRANSITION {} {} {} shadow={}",
            self.id, t.from, t.to, t.shadow
        );
    }

    fn on_shadow_rejected(&self, _service: &str, _rejection: &BreakerError) {
        self.told.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
enum CallError {
    Breaker,
    Downstream,
}

impl From<BreakerError> for CallError {
    fn from(_: BreakerError) -> Self {
        CallError::Breaker
    }
}

async fn request(downstream: &str, id: &str) -> Result<(), CallError> {
    let exchange = async {
        let mut stream = TcpStream::connect(downstream).await?;
        stream.write_all(format!("{id}\n").as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await?;
        Ok::<_, std::io::Error>(line)
    };
    match tokio::time::timeout(Duration::from_secs(1), exchange).await {
        Ok(Ok(line)) if line.trim() == "ok" => Ok(()),
        _ => Err(CallError::Downstream),
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [redis, namespace, downstream, id] = args.as_slice() else {
        eprintln!("usage: infuse-shadow-worker <redis_url> <namespace> <downstream> <id>");
        std::process::exit(2);
    };
    let watch = Arc::new(Watch {
        id: id.clone(),
        told: AtomicU64::new(0),
    });
    let config = Config::redis(redis.as_str())
        .namespace(namespace.as_str())
        .service(
            SERVICE,
            ServiceOverride::new()
                .shadow(true)
                .fail_max(3)
                .reset_timeout(Duration::from_millis(300)),
        )
        .allow_undeclared_overrides(true)
        .env_overrides(false)
        .redis_call_timeout(Duration::from_millis(500))
        .listener(watch.clone());
    if let Err(e) = infuse::init(config).await {
        eprintln!("infuse-shadow-worker {id}: init failed: {e}");
        std::process::exit(1);
    }
    let breaker = infuse::breaker(SERVICE);
    println!("READY {id}");

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let status = {
        let (breaker, counts, watch, id) =
            (breaker.clone(), counts.clone(), watch.clone(), id.clone());
        move |word: &str| {
            println!(
                "{word} {id} shadow={} would_reject={} told={} ok={} failed={} rejected={}",
                breaker.shadow(),
                breaker.would_reject(),
                watch.told.load(Ordering::Relaxed),
                counts.ok.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed),
                counts.rejected.load(Ordering::Relaxed),
            );
        }
    };
    // Calls, every ~3 ms.
    let calls = {
        let (breaker, counts, downstream, id, stop) = (
            breaker.clone(),
            counts.clone(),
            downstream.clone(),
            id.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(3));
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            // Stops between calls, so that every call that ran is counted.
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let counter = match breaker.call(request(&downstream, &id)).await {
                    Ok(()) => &counts.ok,
                    Err(CallError::Breaker) => &counts.rejected,
                    Err(CallError::Downstream) => &counts.failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // The switch as this process sees it, and a status line every 100 ms.
    let watcher = {
        let (breaker, id, status) = (breaker.clone(), id.clone(), status.clone());
        tokio::spawn(async move {
            let mut shadow = breaker.shadow();
            println!("SHADOW {id} {shadow} {}", unix_ms());
            let mut n = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if breaker.shadow() != shadow {
                    shadow = !shadow;
                    println!("SHADOW {id} {shadow} {}", unix_ms());
                }
                n += 1;
                if n.is_multiple_of(20) {
                    status("STATUS");
                }
            }
        })
    };
    // Until stdin closes.
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    stop.store(true, Ordering::Relaxed);
    watcher.abort();
    let _ = calls.await;
    status("SUMMARY");
}
