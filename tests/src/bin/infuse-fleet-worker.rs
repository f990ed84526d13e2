//! One member of a breaker fleet, as its own OS process: `tests/fleet_processes.rs`
//! starts several and checks, from the downstream service's point of view, that they
//! share one breaker through Redis.
//!
//! ```text
//! infuse-fleet-worker <redis> <namespace> <downstream 127.0.0.1:port> <run_ms> \
//!     <fail_max> <reset_timeout_ms> <id>
//! ```
//!
//! `<redis>` is a URL (`Config::redis`), `cluster:<url>,<url>,…` (`Config::redis_cluster`)
//! or `sentinel:<master>@<url>,<url>,…` (`Config::redis_sentinel`).
//!
//! Every ~3 ms it calls the downstream through `infuse::breaker("users")`: one TCP
//! connection per call, sending its id as one line and reading one line back (`ok` or
//! anything else, which is a failure), within 1 s. On stdout, line by line:
//!
//! - `READY <id> <unix_ms>` once `infuse::init` succeeded (the calls start right after);
//! - `EVENT <unix_ms> <id> <from> <to>` for every state change of its breaker;
//! - `SUMMARY <id> ok=<n> failed=<n> rejected=<n> final=<state>` at the end, `<state>`
//!   being `breaker.state()` read once more after the last call.
//!
//! Exits 0 unless the arguments are wrong (2) or `init` fails (1).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infuse::{BreakerError, Config, Listener, ServiceOverride, State};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

const SERVICE: &str = "users";
const CALL_EVERY: Duration = Duration::from_millis(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

struct Args {
    redis_url: String,
    namespace: String,
    downstream: String,
    run: Duration,
    fail_max: u32,
    reset_timeout: Duration,
    id: String,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [redis_url, namespace, downstream, run_ms, fail_max, reset_ms, id] = args.as_slice() else {
        return Err(format!("expected 7 arguments, got {}", args.len()));
    };
    let number = |name: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| format!("{name}: expected a whole number, got {value:?}"))
    };
    Ok(Args {
        redis_url: redis_url.clone(),
        namespace: namespace.clone(),
        downstream: downstream.clone(),
        run: Duration::from_millis(number("run_ms", run_ms)?),
        fail_max: u32::try_from(number("fail_max", fail_max)?)
            .map_err(|_| "fail_max: too large".to_owned())?,
        reset_timeout: Duration::from_millis(number("reset_timeout_ms", reset_ms)?),
        id: id.clone(),
    })
}

/// Prints every state change of this process's breaker.
struct PrintEvents {
    id: String,
}

impl Listener for PrintEvents {
    fn on_state_change(&self, _service: &str, from: State, to: State) {
        println!("EVENT {} {} {from} {to}", unix_ms(), self.id);
    }
}

/// Why a call failed: the breaker refused it, or the downstream did.
#[derive(Debug)]
enum CallError {
    Breaker(BreakerError),
    Downstream(String),
}

impl From<BreakerError> for CallError {
    fn from(err: BreakerError) -> Self {
        CallError::Breaker(err)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Breaker(e) => write!(f, "{e}"),
            CallError::Downstream(e) => write!(f, "downstream: {e}"),
        }
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
        Err(_) => Err(CallError::Downstream("timed out".to_owned())),
        Ok(Err(e)) => Err(CallError::Downstream(e.to_string())),
        Ok(Ok(line)) if line.trim() == "ok" => Ok(()),
        Ok(Ok(line)) => Err(CallError::Downstream(format!("answered {:?}", line.trim()))),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("infuse-fleet-worker: {e}");
            eprintln!(
                "usage: infuse-fleet-worker <redis_url> <namespace> <downstream host:port> \
                 <run_ms> <fail_max> <reset_timeout_ms> <id>"
            );
            std::process::exit(2);
        }
    };
    let config = if let Some(nodes) = args.redis_url.strip_prefix("cluster:") {
        Config::redis_cluster(nodes.split(','))
    } else if let Some((master, sentinels)) = args
        .redis_url
        .strip_prefix("sentinel:")
        .and_then(|rest| rest.split_once('@'))
    {
        Config::redis_sentinel(sentinels.split(','), master)
    } else {
        Config::redis(args.redis_url.as_str())
    };
    let config = config
        .namespace(args.namespace.as_str())
        .service(
            SERVICE,
            ServiceOverride::new()
                .fail_max(args.fail_max)
                .reset_timeout(args.reset_timeout),
        )
        // `users` is created at run time with `infuse::breaker`, not declared.
        .allow_undeclared_overrides(true)
        .env_overrides(false)
        // The default 25 ms deadline on Redis is meant for production latency budgets; on
        // a loaded test machine it can pass, which (correctly) switches this process to
        // its local fallback breaker and takes it out of the fleet. What this worker
        // demonstrates is fleet coordination, so it gives Redis more room.
        .redis_call_timeout(Duration::from_millis(500))
        .listener(Arc::new(PrintEvents {
            id: args.id.clone(),
        }));
    if let Err(e) = infuse::init(config).await {
        eprintln!("infuse-fleet-worker {}: init failed: {e}", args.id);
        std::process::exit(1);
    }
    let breaker = infuse::breaker(SERVICE);
    println!("READY {} {}", args.id, unix_ms());

    let (mut ok, mut failed, mut rejected) = (0u64, 0u64, 0u64);
    let deadline = Instant::now() + args.run;
    let mut ticks = tokio::time::interval(CALL_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        ticks.tick().await;
        match breaker.call(request(&args.downstream, &args.id)).await {
            Ok(()) => ok += 1,
            Err(CallError::Breaker(_)) => rejected += 1,
            Err(CallError::Downstream(_)) => failed += 1,
        }
    }

    let state = match breaker.state().await {
        Ok(state) => state.to_string(),
        Err(e) => format!("error({})", e.to_string().replace(' ', "_")),
    };
    println!(
        "SUMMARY {} ok={ok} failed={failed} rejected={rejected} final={state}",
        args.id
    );
}
