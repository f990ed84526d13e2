//! Fleet mode at scale: what M processes × B breakers cost one Redis.
//!
//! ```text
//! cargo bench -p infuse-bench --bench scale                   # M × B = 200 × 1000
//! INFUSE_SCALE=50x200 INFUSE_SCALE_SECS=5 cargo bench -p infuse-bench --bench scale
//! ```
//!
//! The binary starts its own `redis-server` (never the system one). The M "processes" are
//! M registries in this one process, each with its own Redis connections (a command
//! connection and a pub/sub subscription, as a process has), all on one 2-thread tokio
//! runtime; the client side therefore shares two cores, Redis gets its own single thread.
//! Every registry has the same B breakers, each loaded from Redis (one record each).
//!
//! 1. **Script cost**: one registry, 5,000 failures in a row on one breaker
//!    (`fail_max` out of reach): Redis CPU per `record_failure` (`INFO commandstats`,
//!    `usec_per_call` of `evalsha`).
//! 2. **Steady state**: M × B registered, nothing failing, `resync_interval` 1 s: the
//!    commands/s clients send (`evalsha` + `eval` + `ping`, from `INFO commandstats`;
//!    the commands scripts run are counted apart), the messages published, and Redis CPU
//!    (`used_cpu_sys + used_cpu_user` deltas) over `INFUSE_SCALE_SECS` seconds.
//! 3. **One target fails fleet-wide**: in every registry, 4 tasks call breaker `svc-0`
//!    in a loop and every call fails after 10 ms (`fail_max` 5, `reset_timeout` 500 ms:
//!    it trips, re-opens after failed trials, and so on); same measures, plus the `PING`s
//!    of health monitors (a registry that switched to its fallback pings until it
//!    recovers).
//!
//! `INFUSE_SCALE=MxB` chooses M and B (default 200x1000); under `cargo test` (no
//! `--bench`) it runs 4x20 for 1 s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use infuse::{BreakerError, Config, Registry, ServiceOverride, State};
use infuse_tests::support::redis_server::RedisServer;

/// Concurrent callers of the failing target per registry (each call fails after 10 ms;
/// while open, a rejected caller waits 10 ms before its next call). The client side of
/// all M registries shares two cores: more callers would starve the runtime, and calls
/// would miss the 25 ms deadline for want of CPU, not of Redis.
const CALLERS: usize = 4;

/// `INFO <section>` as field → value.
fn info(server: &RedisServer, section: &str) -> BTreeMap<String, String> {
    server
        .cli(&["INFO", section])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// `INFO commandstats`: command → (calls, usec).
fn commandstats(server: &RedisServer) -> BTreeMap<String, (u64, u64)> {
    info(server, "commandstats")
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("cmdstat_")?.to_owned();
            let field = |f: &str| -> Option<u64> {
                v.split(',')
                    .find_map(|p| p.strip_prefix(f))
                    .and_then(|n| n.parse().ok())
            };
            Some((name, (field("calls=")?, field("usec=")?)))
        })
        .collect()
}

fn cpu_seconds(server: &RedisServer) -> f64 {
    let cpu = info(server, "cpu");
    let get = |k: &str| {
        cpu.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    get("used_cpu_sys") + get("used_cpu_user")
}

/// What Redis did over a measured period.
struct Period {
    secs: f64,
    cpu: f64,
    stats: BTreeMap<String, (u64, u64)>,
}

impl Period {
    fn start(server: &RedisServer) -> (Instant, f64) {
        server.cli(&["CONFIG", "RESETSTAT"]).unwrap();
        (Instant::now(), cpu_seconds(server))
    }

    fn end(server: &RedisServer, (start, cpu): (Instant, f64)) -> Period {
        Period {
            secs: start.elapsed().as_secs_f64(),
            cpu: cpu_seconds(server) - cpu,
            stats: commandstats(server),
        }
    }

    fn calls(&self, command: &str) -> u64 {
        self.stats.get(command).map_or(0, |c| c.0)
    }

    fn usec_per_call(&self, command: &str) -> f64 {
        self.stats
            .get(command)
            .map_or(0.0, |&(calls, usec)| usec as f64 / calls.max(1) as f64)
    }

    /// Commands clients sent (`INFO commandstats` also counts the commands scripts run;
    /// infuse sends only scripts, `PING` and `SCRIPT LOAD`).
    fn sent(&self) -> u64 {
        ["evalsha", "eval", "ping", "script|load"]
            .iter()
            .map(|c| self.calls(c))
            .sum()
    }

    fn report(&self, what: &str, m: usize, b: usize) {
        let sent = self.sent();
        println!(
            "| {what} | {m} × {b} | {:.0} | {:.1} µs | {:.0} | {:.1} % |",
            sent as f64 / self.secs,
            self.usec_per_call("evalsha"),
            self.calls("publish") as f64 / self.secs,
            100.0 * self.cpu / self.secs,
        );
    }
}

fn scale() -> (usize, usize, f64) {
    let bench = std::env::args().any(|a| a == "--bench");
    let (m, b) = std::env::var("INFUSE_SCALE")
        .ok()
        .and_then(|s| {
            let (m, b) = s.split_once(['x', 'X'])?;
            Some((m.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .unwrap_or(if bench { (200, 1000) } else { (4, 20) });
    let secs = std::env::var("INFUSE_SCALE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench { 10.0 } else { 1.0 });
    (m, b, secs)
}

fn config(server: &RedisServer) -> Config {
    Config::redis(server.url())
        .namespace("scale")
        .env_overrides(false)
        .resync_interval(Duration::from_secs(1))
        .redis_admin_timeout(Duration::from_secs(5))
        .service(
            "svc-0",
            ServiceOverride::new()
                .fail_max(5)
                .reset_timeout(Duration::from_millis(500)),
        )
        .service(
            "cost",
            ServiceOverride::new()
                .fail_max(1_000_000_000)
                .reset_timeout(Duration::from_secs(60)),
        )
}

async fn failing() -> Result<(), BreakerError> {
    Err(BreakerError::Tripped { service: "down" })
}

/// A downstream call that fails after 10 ms.
async fn failing_slowly() -> Result<(), BreakerError> {
    tokio::time::sleep(Duration::from_millis(10)).await;
    failing().await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (m, b, secs) = scale();
    let server = RedisServer::start();
    println!("infuse scale bench: M = {m} registries × B = {b} breakers, {secs} s per period");

    // 1. Script cost.
    let one = Registry::new(config(&server)).await.unwrap();
    let cost = one.breaker("cost");
    assert_eq!(cost.state().await.unwrap(), State::Closed);
    let period = Period::start(&server);
    for _ in 0..5_000 {
        let _ = cost.call(failing()).await;
    }
    let p = Period::end(&server, period);
    println!(
        "record_failure: {:.2} µs of Redis CPU per script ({} scripts, {} published)",
        p.usec_per_call("evalsha"),
        p.calls("evalsha"),
        p.calls("publish")
    );
    drop(one);

    // 2. Steady state.
    let names: Vec<String> = (0..b).map(|i| format!("svc-{i}")).collect();
    let started = Instant::now();
    let registries = futures::future::join_all((0..m).map(|_| {
        let (server, names) = (&server, &names);
        async move {
            let registry = Registry::new(config(server)).await.unwrap();
            for name in names {
                registry.breaker(name).state().await.unwrap();
            }
            registry
        }
    }))
    .await;
    println!(
        "{} breaker handles registered in {:.1?}",
        m * b,
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // first resyncs behind us
    println!();
    println!(
        "| period | M × B | commands/s sent | Redis CPU per script | published/s | Redis CPU |"
    );
    println!("|---|---|---|---|---|---|");
    let period = Period::start(&server);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    Period::end(&server, period).report("steady state", m, b);

    // 3. One target fails fleet-wide.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for registry in &registries {
        for _ in 0..CALLERS {
            let breaker = registry.breaker("svc-0");
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut calls = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if breaker
                        .call(failing_slowly())
                        .await
                        .is_err_and(|e| e.is_rejection())
                    {
                        // Rejected at once: a caller does not retry in a tight loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    calls += 1;
                }
                calls
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let period = Period::start(&server);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let p = Period::end(&server, period);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut calls = 0;
    for task in tasks {
        calls += task.await.unwrap();
    }
    p.report("svc-0 failing everywhere", m, b);
    println!();
    println!(
        "({calls} failing calls, {} health-monitor pings; scripts' own commands in the period: {})",
        p.calls("ping"),
        p.stats
            .iter()
            .filter(
                |(c, _)| !["evalsha", "eval", "ping", "info", "config|resetstat"]
                    .contains(&c.as_str())
            )
            .map(|(c, (n, _))| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(registries);
}
