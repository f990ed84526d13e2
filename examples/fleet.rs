//! A fleet sharing one breaker through Redis: three workers call a "users" HTTP service
//! that goes down for a few seconds. The first failures trip the breaker for *every*
//! worker at once, then the whole fleet sends one trial call per `reset_timeout`, and the
//! first trial that succeeds closes the breaker everywhere.
//!
//! ```text
//! redis-server --port 6379 --save ''      # or any Redis; REDIS_URL to point elsewhere
//! cargo run --example fleet
//! ```
//!
//! Each simulated process is its own `infuse::Registry` with its own Redis connections
//! and pub/sub subscription, exactly what separate processes have; they live in this one
//! process only to keep the example to one command. (`tests/fleet_processes.rs` runs real
//! separate processes.) Each run uses its own namespace, so reruns never meet, and its
//! keys expire a minute after the run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infuse::{BreakerError, Config, InitError, Listener, Registry, ServiceOverride, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const WORKERS: usize = 3;
const RUN_FOR: Duration = Duration::from_secs(10);
/// The users service's schedule: healthy, then down (503) for 4 s, then healthy again.
const OUTAGE_FROM: Duration = Duration::from_secs(2);
const OUTAGE_UNTIL: Duration = Duration::from_secs(6);
const CALL_EVERY: Duration = Duration::from_millis(50);
const FAIL_MAX: u32 = 5;
const RESET_TIMEOUT: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// The "users" service: a hand-rolled HTTP/1.1 server answering `200 OK` or `503`.

#[derive(Default)]
struct ServiceStats {
    before: AtomicU64,
    during: AtomicU64,
    after: AtomicU64,
}

async fn users_service(listener: TcpListener, start: Instant, stats: Arc<ServiceStats>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let _ = serve(stream, start, &stats).await;
        });
    }
}

async fn serve(mut stream: TcpStream, start: Instant, stats: &ServiceStats) -> std::io::Result<()> {
    // Read the request head (no body on a GET).
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 8192 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let worker = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Worker: "))
        .unwrap_or("?")
        .to_owned();
    let elapsed = start.elapsed();
    let down = (OUTAGE_FROM..OUTAGE_UNTIL).contains(&elapsed);
    let (status, body) = if down {
        let n = stats.during.fetch_add(1, Ordering::Relaxed) + 1;
        println!(
            "{:>6.2}s   users service: request #{n} of the outage, from worker {worker} -> 503",
            elapsed.as_secs_f64()
        );
        ("503 Service Unavailable", "{\"error\":\"overloaded\"}")
    } else {
        let counter = if elapsed < OUTAGE_FROM {
            &stats.before
        } else {
            &stats.after
        };
        counter.fetch_add(1, Ordering::Relaxed);
        ("200 OK", "{\"id\":42,\"name\":\"Ada\"}")
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await
}

// ---------------------------------------------------------------------------------------
// The client each worker runs, guarded by the fleet's "users" breaker.

#[derive(Debug)]
enum ApiError {
    Status(u16),
    Io(std::io::Error),
    Breaker(BreakerError),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Status(code) => write!(f, "users service answered {code}"),
            ApiError::Io(e) => write!(f, "users service unreachable: {e}"),
            ApiError::Breaker(e) => write!(f, "{e}"),
        }
    }
}

impl From<BreakerError> for ApiError {
    fn from(err: BreakerError) -> Self {
        ApiError::Breaker(err)
    }
}

async fn get_user(address: &str, worker: usize) -> Result<String, ApiError> {
    let exchange = async {
        let mut stream = TcpStream::connect(address).await?;
        let request = format!(
            "GET /users/42 HTTP/1.1\r\nHost: users\r\nX-Worker: {worker}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .map_err(|_| ApiError::Io(std::io::ErrorKind::TimedOut.into()))?
        .map_err(ApiError::Io)?;
    let status: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match status {
        200 => Ok(response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned()),
        other => Err(ApiError::Status(other)),
    }
}

/// Prints every state change of one worker's breaker.
struct PrintChanges {
    worker: usize,
    start: Instant,
}

impl Listener for PrintChanges {
    fn on_state_change(&self, service: &str, from: State, to: State) {
        println!(
            "{:>6.2}s [worker {}] {service}: {from} -> {to}",
            self.start.elapsed().as_secs_f64(),
            self.worker
        );
    }
}

#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    failed: u64,
    rejected: u64,
}

async fn worker(registry: Registry, n: usize, address: String, until: Instant) -> Tally {
    let users = registry.breaker("users");
    let mut tally = Tally::default();
    let mut ticks = tokio::time::interval(CALL_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        ticks.tick().await;
        match users.call(get_user(&address, n)).await {
            Ok(_) => tally.ok += 1,
            Err(ApiError::Breaker(_)) => tally.rejected += 1,
            Err(ApiError::Status(_) | ApiError::Io(_)) => tally.failed += 1,
        }
    }
    tally
}

/// The URL with any password hidden, for printing.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[tokio::main]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let namespace = format!("example-fleet-{}-{run_id}", std::process::id());
    let start = Instant::now();
    let config = |n: usize| {
        Config::redis(url.as_str())
            .namespace(namespace.as_str())
            .service(
                "users",
                ServiceOverride::new()
                    .fail_max(FAIL_MAX)
                    .reset_timeout(RESET_TIMEOUT),
            )
            .key_ttl(Duration::from_secs(60))
            .redis_connect_timeout(Duration::from_secs(1))
            .env_overrides(false)
            .listener(Arc::new(PrintChanges { worker: n, start }))
    };

    // One registry per simulated process.
    let mut registries = Vec::new();
    for n in 1..=WORKERS {
        match Registry::new(config(n)).await {
            Ok(registry) => registries.push(registry),
            Err(InitError::Unreachable { address, reason }) => {
                eprintln!(
                    "This example needs a Redis server, and none answered at {address}: {reason}"
                );
                eprintln!();
                eprintln!("Start one, then run the example again:");
                eprintln!(
                    "  redis-server --port 6379 --save ''       (or: apt-get install redis-server)"
                );
                eprintln!("or point REDIS_URL at one: REDIS_URL=redis://host:6379/0 cargo run --example fleet");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("cannot set up infuse for {}: {e}", redacted(&url));
                std::process::exit(2);
            }
        }
    }

    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cannot start the users service on a free port of 127.0.0.1: {e}");
            std::process::exit(2);
        }
    };
    let address = match listener.local_addr() {
        Ok(address) => address.to_string(),
        Err(e) => {
            eprintln!("the users service has no address: {e}");
            std::process::exit(2);
        }
    };
    let stats = Arc::new(ServiceStats::default());
    tokio::spawn(users_service(listener, start, stats.clone()));

    println!(
        "{WORKERS} workers share the \"users\" breaker (fail_max = {FAIL_MAX}, reset_timeout = {} s) \
         through Redis at {} (namespace {namespace}).",
        RESET_TIMEOUT.as_secs(),
        redacted(&url)
    );
    println!(
        "Each calls http://{address}/users/42 every {} ms; the service is down from {} s to {} s.\n",
        CALL_EVERY.as_millis(),
        OUTAGE_FROM.as_secs(),
        OUTAGE_UNTIL.as_secs()
    );

    let until = start + RUN_FOR;
    let outage_banner = tokio::spawn(async move {
        tokio::time::sleep_until(start + OUTAGE_FROM).await;
        println!(
            "{:>6.2}s   users service: DOWN (answers 503)",
            start.elapsed().as_secs_f64()
        );
        tokio::time::sleep_until(start + OUTAGE_UNTIL).await;
        println!(
            "{:>6.2}s   users service: back UP",
            start.elapsed().as_secs_f64()
        );
    });
    let handles: Vec<_> = registries
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, registry)| tokio::spawn(worker(registry, i + 1, address.clone(), until)))
        .collect();
    let mut tallies = Vec::new();
    for handle in handles {
        tallies.push(handle.await.expect("a worker panicked"));
    }
    let _ = outage_banner.await;

    println!("\nSummary after {:.1} s:", start.elapsed().as_secs_f64());
    for (i, (tally, registry)) in tallies.iter().zip(&registries).enumerate() {
        let state = match registry.breaker("users").state().await {
            Ok(state) => state.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        println!(
            "  worker {}: {} ok, {} failed, {} rejected by the breaker; breaker now {state}",
            i + 1,
            tally.ok,
            tally.failed,
            tally.rejected
        );
    }
    let during = stats.during.load(Ordering::Relaxed);
    let outage = OUTAGE_UNTIL - OUTAGE_FROM;
    let unguarded = WORKERS as u128 * outage.as_millis() / CALL_EVERY.as_millis();
    println!(
        "  users service: {} requests before the outage, {} after it, and {during} during its \
         {} s outage: the burst that tripped the breaker, then one trial per reset_timeout for \
         the whole fleet (without breakers: about {unguarded}).",
        stats.before.load(Ordering::Relaxed),
        stats.after.load(Ordering::Relaxed),
        outage.as_secs()
    );
}
