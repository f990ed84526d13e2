//! One member of a fleet whose breaker has slow start, as its own OS process:
//! `tests/slow_start_processes.rs` starts several, opens and closes their breaker from
//! outside (an operator's commands through Redis), and counts what the downstream
//! receives afterwards.
//!
//! ```text
//! infuse-slow-start-worker <redis_url> <namespace> <downstream 127.0.0.1:port> <run_ms> \
//!     <slow_start_ms (0: off)> <slow_start_min> <id>
//! ```
//!
//! Every ~4 ms (a fixed rate: a rejection does not make it call sooner) it calls the
//! downstream through `infuse::breaker("users")`: one TCP connection per call, sending
//! its id as one line and reading one line back (`ok` is a success). On stdout:
//!
//! - `READY <id>` once `infuse::init` succeeded (the calls start right after);
//! - `SUMMARY <id> ok=<n> failed=<n> open=<n> recovering=<n> other=<n>` at the end: the
//!   calls that succeeded, failed downstream, were rejected while open (or forced open),
//!   were turned away by slow start, or were rejected otherwise.
//!
//! Exits 0 unless the arguments are wrong (2) or `init` fails (1).

use std::time::Duration;

use infuse::{BreakerError, Config, ServiceOverride};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

const SERVICE: &str = "users";
const CALL_EVERY: Duration = Duration::from_millis(4);
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a call failed: the breaker refused it, or the downstream did.
#[derive(Debug)]
enum CallError {
    Breaker(BreakerError),
    Downstream,
}

impl From<BreakerError> for CallError {
    fn from(err: BreakerError) -> Self {
        CallError::Breaker(err)
    }
}

/// One request: connect, send our id, read the verdict line.
async fn request(downstream: &str, id: &str) -> Result<(), CallError> {
    let exchange = async {
        let mut stream = TcpStream::connect(downstream).await?;
        stream.write_all(format!("{id}\n").as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await?;
        Ok::<_, std::io::Error>(line)
    };
    match tokio::time::timeout(CALL_TIMEOUT, exchange).await {
        Ok(Ok(line)) if line.trim() == "ok" => Ok(()),
        _ => Err(CallError::Downstream),
    }
}

fn usage(problem: &str) -> ! {
    eprintln!("infuse-slow-start-worker: {problem}");
    eprintln!(
        "usage: infuse-slow-start-worker <redis_url> <namespace> <downstream host:port> \
         <run_ms> <slow_start_ms> <slow_start_min> <id>"
    );
    std::process::exit(2);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [redis, namespace, downstream, run_ms, slow_ms, slow_min, id] = args.as_slice() else {
        usage(&format!("expected 7 arguments, got {}", args.len()));
    };
    let number = |name: &str, value: &str| {
        value
            .parse::<u64>()
            .unwrap_or_else(|_| usage(&format!("{name}: expected a whole number, got {value:?}")))
    };
    let run = Duration::from_millis(number("run_ms", run_ms));
    let slow_start = number("slow_start_ms", slow_ms);
    let slow_start_min = u32::try_from(number("slow_start_min", slow_min))
        .unwrap_or_else(|_| usage("slow_start_min: too large"));
    let mut settings = ServiceOverride::new().slow_start_min(slow_start_min);
    if slow_start > 0 {
        settings = settings.slow_start(Duration::from_millis(slow_start));
    }
    let config = Config::redis(redis.as_str())
        .namespace(namespace.as_str())
        .service(SERVICE, settings)
        .allow_undeclared_overrides(true)
        .env_overrides(false)
        // Room for a loaded test machine (see infuse-fleet-worker).
        .redis_call_timeout(Duration::from_millis(500));
    if let Err(e) = infuse::init(config).await {
        eprintln!("infuse-slow-start-worker {id}: init failed: {e}");
        std::process::exit(1);
    }
    let breaker = infuse::breaker(SERVICE);
    println!("READY {id}");

    let (mut ok, mut failed, mut open, mut recovering, mut other) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let deadline = Instant::now() + run;
    let mut ticks = tokio::time::interval(CALL_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        ticks.tick().await;
        match breaker.call(request(downstream, id)).await {
            Ok(()) => ok += 1,
            Err(CallError::Downstream) => failed += 1,
            Err(CallError::Breaker(BreakerError::Recovering { .. })) => recovering += 1,
            Err(CallError::Breaker(
                BreakerError::Open { .. } | BreakerError::ForcedOpen { .. },
            )) => open += 1,
            Err(CallError::Breaker(_)) => other += 1,
        }
    }
    println!(
        "SUMMARY {id} ok={ok} failed={failed} open={open} recovering={recovering} other={other}"
    );
}
