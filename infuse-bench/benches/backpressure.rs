//! The backpressure settings under load: how many Redis commands a process sends when a
//! rate rule counts its calls, and how many requests a slow downstream receives before
//! the breaker trips, with and without a `timeout`.
//!
//! ```text
//! cargo bench -p infuse-bench --bench backpressure              # ~40 s
//! cargo bench -p infuse-bench --bench backpressure -- commands  # part 1 only
//! cargo bench -p infuse-bench --bench backpressure -- slow      # part 2 only
//! ```
//!
//! # 1. Redis commands per second of one process (`commands`)
//!
//! Each case starts a fresh `redis-server` (its own free port, never the system one) and
//! one Redis-mode [`Registry`] on it in this process, with one declared breaker, makes
//! one call, sets `slowlog-log-slower-than 0` (the slow log then records every command,
//! with its arguments) and waits 300 ms (registration, subscription, first resync), then
//! resets the slow log, reads `INFO commandstats`, makes calls on **one task** of a
//! current-thread runtime for the measuring time (2 s), and reads `INFO commandstats`
//! again. The task yields to the runtime every 1 024 calls, so that the registry's
//! background tasks (the tally's flush) run, as they would between an application's
//! requests; it calls either **flat out** (as fast as it can) or **paced** at 1 M calls/s
//! (after each 1 024 calls it sleeps until the time 1 M calls/s would have taken, on
//! tokio's 1 ms timer). The figures:
//!
//! - **calls/s**: the calls the task made / the time between the two `INFO`s;
//! - **requests/s**: the commands this process sent to Redis, each a network request
//!   (`EVALSHA` of one of infuse's scripts, and anything else it sent: see
//!   [`sent_by_client`]) / that time. The bench's own `INFO` (one, counted by the second)
//!   is left out; nothing else talks to this server. The slow log names the script of
//!   each `EVALSHA` (by its SHA1), for the breakdown by script;
//! - **executed/s**: every command Redis executed, those the scripts run inside
//!   (`redis.call`) included (`INFO commandstats` counts both) / that time.
//!
//! The cases:
//!
//! - `idle`: a breaker with `failure_rate = 50`, no calls: the registry's own background
//!   traffic (the periodic resync), which every other case includes;
//! - `rate, healthy` / `rate, 50 % failures` (every other call fails), paced at 1 M
//!   calls/s and flat out: `failure_rate = 50`, `min_calls = 4294967295` (so that it
//!   never trips);
//! - `consecutive, healthy` / `consecutive, 50 % failures`, flat out: pybreaker's rule
//!   alone (`fail_max = 5`, which alternating failures never reach): every failure is a
//!   script (`record_failure`) awaited by its call, and a success after it sends a reset
//!   (`record_success`) in the background, unless one is in flight already.
//!
//! The bench panics if a call is rejected (the breaker tripped) or if infuse's calls
//! return an error other than their own.
//!
//! # 2. Requests reaching a slow downstream (`slow`)
//!
//! An in-process downstream answers every request successfully after 2 s (a tokio
//! sleep); it counts the requests that reach it (when its future is first polled), and
//! how many are in flight at once. 3 "gateways" × 10 tasks (30 callers) call it through
//! **one** in-memory breaker (`fail_max = 5`, `reset_timeout` 60 s: the default), in a
//! loop: call, then 20 ms of think time; caller `k` starts at `k`/30 s, so that traffic
//! ramps up over the first second (the gateways interleaved); calls start for 5 s (the
//! calls in flight at the end are awaited but start nothing). One multi-thread runtime,
//! 2 workers. A listener timestamps every transition to open. Configurations, in one run:
//!
//! - `no timeout`: `fail_max = 5` alone: a slow success is a success;
//! - `timeout = 200ms`: the same plus `timeout = 200ms` (a call still running after
//!   200 ms is dropped, counts as a failure and returns `BreakerError::Timeout`);
//! - `timeout = 200ms, reset_timeout = 1s`: the same with a 1 s open time, so that
//!   trial calls (one per open period) reach the downstream during the 5 s.
//!
//! Figures: requests that reached the downstream (all, and before the first trip), trips
//! (transitions to open), the callers' outcomes (success, timeout, rejected), the most
//! requests in flight at the downstream at once, and the time callers waited for
//! answers (the sum over all calls of all 30 callers, and the mean per call).
//!
//! Under `cargo test` (no `--bench` argument) both parts run a short smoke version.

use infuse_bench::AppError;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infuse::{Breaker, BreakerError, Config, Listener, Registry, ServiceOverride, State};
use infuse_tests::support::redis_server::RedisServer;

/// How long each part runs: full under `cargo bench`, a smoke test under `cargo test`.
struct Plan {
    commands_time: Duration,
    slow_period: Duration,
    parts: Vec<String>,
}

impl Plan {
    fn from_args() -> Plan {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let bench = args.iter().any(|a| a == "--bench");
        // Criterion-style filters: any other argument that is not a flag.
        let parts = args
            .iter()
            .filter(|a| !a.starts_with('-'))
            .cloned()
            .collect();
        Plan {
            commands_time: if bench {
                Duration::from_secs(2)
            } else {
                Duration::from_millis(300)
            },
            slow_period: if bench {
                Duration::from_secs(5)
            } else {
                Duration::from_millis(2_500)
            },
            parts,
        }
    }

    fn runs(&self, part: &str) -> bool {
        self.parts.is_empty() || self.parts.iter().any(|p| part.contains(p.as_str()))
    }
}

// ---------------------------------------------------------------------------------------
// 1. Redis commands per second.

/// Calls of the calling loop between two yields to the runtime.
const BATCH: u64 = 1_024;

/// Whether a command of `INFO commandstats` was sent by a client rather than run by a
/// script (`redis.call`): scripts cannot run these, and infuse sends nothing else (its
/// commands are its scripts, `EVALSHA`, plus `PING`, `SUBSCRIBE` and connection setup).
fn sent_by_client(command: &str) -> bool {
    const CLIENT: &[&str] = &[
        "eval",
        "evalsha",
        "eval_ro",
        "evalsha_ro",
        "fcall",
        "fcall_ro",
        "ping",
        "subscribe",
        "psubscribe",
        "unsubscribe",
        "punsubscribe",
        "hello",
        "select",
        "auth",
        "info",
    ];
    CLIENT.contains(&command)
        || ["script|", "client|", "command|", "function|"]
            .iter()
            .any(|prefix| command.starts_with(prefix))
}

#[derive(Clone, Copy)]
enum Calls {
    /// No calls at all.
    None,
    Healthy,
    /// Every other call fails.
    HalfFailing,
}

struct Case {
    name: &'static str,
    settings: ServiceOverride,
    calls: Calls,
    /// Calls per second to keep to (`None`: as fast as the task can).
    pace: Option<u64>,
}

struct Measured {
    name: &'static str,
    calls: u64,
    failures: u64,
    elapsed: Duration,
    /// Commands by name (the bench's own `INFO` left out).
    commands: BTreeMap<String, u64>,
    /// The requests this process sent, by infuse script (or command), from `SLOWLOG`.
    requests_by_script: BTreeMap<String, u64>,
}

impl Measured {
    fn requests(&self) -> u64 {
        self.commands
            .iter()
            .filter(|(name, _)| sent_by_client(name))
            .map(|(_, n)| n)
            .sum()
    }

    fn executed(&self) -> u64 {
        self.commands.values().sum()
    }

    fn per_second(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(name, n)| {
            let was = before.get(name).copied().unwrap_or(0);
            (*n > was).then(|| (name.clone(), n - was))
        })
        .collect()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

const SERVICE: &str = "backpressure";

async fn one_call(breaker: &Breaker, fail: bool, i: u64) -> Result<u64, AppError> {
    if fail {
        breaker.call(async { Err(AppError::Failed) }).await
    } else {
        breaker.call(async { Ok(black_box(i)) }).await
    }
}

/// The SHA1 of each of infuse's scripts as its Redis store loads them (the prelude, then
/// the script), to name the `EVALSHA`s of the slow log.
fn script_names() -> BTreeMap<String, &'static str> {
    macro_rules! script {
        ($name:literal) => {
            (
                redis::Script::new(concat!(
                    include_str!("../../infuse/scripts/prelude.lua"),
                    include_str!(concat!("../../infuse/scripts/", $name, ".lua"))
                ))
                .get_hash()
                .to_owned(),
                $name,
            )
        };
    }
    [
        script!("register"),
        script!("snapshot"),
        script!("record_failure"),
        script!("record_success"),
        script!("record_calls"),
        script!("acquire_trial"),
        script!("record_trial"),
        script!("release_trial"),
        script!("force"),
    ]
    .into_iter()
    .collect()
}

/// The requests clients sent since the last `SLOWLOG RESET` (with
/// `slowlog-log-slower-than 0` the slow log records every command, those scripts run
/// included, which are left out here), by script name for `EVALSHA`, by command
/// otherwise; without the bench's own commands.
async fn requests_by_script(conn: &mut redis::aio::ConnectionManager) -> BTreeMap<String, u64> {
    let names = script_names();
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query_async(conn)
        .await
        .expect("SLOWLOG GET");
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        other => format!("{other:?}"),
    };
    let mut counts = BTreeMap::new();
    for entry in entries {
        let redis::Value::Array(fields) = entry else {
            panic!("SLOWLOG entry: {entry:?}")
        };
        let Some(redis::Value::Array(args)) = fields.get(3) else {
            panic!("SLOWLOG entry without arguments: {fields:?}")
        };
        let command = args.first().map(text).unwrap_or_default().to_lowercase();
        let name = match command.as_str() {
            "evalsha" => {
                let sha = args.get(1).map(text).unwrap_or_default();
                names
                    .get(&sha)
                    .map_or_else(|| format!("EVALSHA {sha}"), |name| name.to_string())
            }
            // The bench's own (`SLOWLOG RESET` is logged once it ran).
            "info" | "slowlog" => continue,
            // What the scripts ran (Redis 7 logs those too).
            _ if !sent_by_client(&command) => continue,
            _ => command,
        };
        *counts.entry(name).or_default() += 1;
    }
    counts
}

fn measure_commands(case: &Case, time: Duration) -> Measured {
    let server = RedisServer::start();
    let rt = current_thread();
    rt.block_on(async {
        let config = Config::redis(server.url())
            .namespace("bench-backpressure")
            .env_overrides(false)
            .service(SERVICE, case.settings);
        let registry = Registry::new(config).await.expect("Redis registry");
        let breaker = registry.breaker(SERVICE);
        one_call(&breaker, false, 0).await.expect("first call");
        // The bench's own connection, for the slow log (its commands come before the
        // first INFO and after the second).
        let client = redis::Client::open(server.url()).expect("redis url");
        // (`SLOWLOG GET` can take longer than the default response timeout.)
        let slow_reply = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(60)));
        let mut conn = redis::aio::ConnectionManager::new_with_config(client, slow_reply)
            .await
            .expect("connect");
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0)
            .arg("slowlog-max-len")
            .arg(10_000_000)
            .query_async::<()>(&mut conn)
            .await
            .expect("CONFIG SET");
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis::cmd("SLOWLOG")
            .arg("RESET")
            .query_async::<()>(&mut conn)
            .await
            .expect("SLOWLOG RESET");

        let before = server.command_stats();
        let start = Instant::now();
        let (mut calls, mut failures) = (0u64, 0u64);
        match case.calls {
            Calls::None => tokio::time::sleep(time).await,
            Calls::Healthy | Calls::HalfFailing => {
                let half = matches!(case.calls, Calls::HalfFailing);
                let tokio_start = tokio::time::Instant::from_std(start);
                while start.elapsed() < time {
                    for _ in 0..BATCH {
                        let fail = half && calls % 2 == 1;
                        match one_call(&breaker, fail, calls).await {
                            Ok(_) if !fail => {}
                            Err(AppError::Failed) if fail => failures += 1,
                            other => panic!("{}: call {calls}: {other:?}", case.name),
                        }
                        calls += 1;
                    }
                    // Let the registry's background tasks (the tally's flush) run, and
                    // keep to the pace if there is one.
                    match case.pace {
                        Some(pace) => {
                            let due = Duration::from_nanos(calls * 1_000_000_000 / pace);
                            if start.elapsed() < due {
                                tokio::time::sleep_until(tokio_start + due).await;
                            } else {
                                tokio::task::yield_now().await;
                            }
                        }
                        None => tokio::task::yield_now().await,
                    }
                }
            }
        }
        let after = server.command_stats();
        let elapsed = start.elapsed();
        let mut commands = delta(&after, &before);
        assert_eq!(
            commands.remove("info"),
            Some(1),
            "only the bench sends INFO (the first of the two is counted by the second)"
        );
        let requests_by_script = requests_by_script(&mut conn).await;
        drop(registry);
        Measured {
            name: case.name,
            calls,
            failures,
            elapsed,
            commands,
            requests_by_script,
        }
    })
}

fn part_commands(plan: &Plan) -> Vec<Measured> {
    let rate = ServiceOverride::new().failure_rate(50).min_calls(u32::MAX);
    let consecutive = ServiceOverride::new().fail_max(5);
    const MILLION: Option<u64> = Some(1_000_000);
    let cases = [
        Case {
            name: "idle (failure_rate = 50, no calls)",
            settings: rate,
            calls: Calls::None,
            pace: None,
        },
        Case {
            name: "rate, healthy, 1 M calls/s",
            settings: rate,
            calls: Calls::Healthy,
            pace: MILLION,
        },
        Case {
            name: "rate, 50 % failures, 1 M calls/s",
            settings: rate,
            calls: Calls::HalfFailing,
            pace: MILLION,
        },
        Case {
            name: "rate, healthy, flat out",
            settings: rate,
            calls: Calls::Healthy,
            pace: None,
        },
        Case {
            name: "rate, 50 % failures, flat out",
            settings: rate,
            calls: Calls::HalfFailing,
            pace: None,
        },
        Case {
            name: "consecutive, healthy, flat out",
            settings: consecutive,
            calls: Calls::Healthy,
            pace: None,
        },
        Case {
            name: "consecutive, 50 % failures, flat out",
            settings: consecutive,
            calls: Calls::HalfFailing,
            pace: None,
        },
    ];
    cases
        .iter()
        .map(|case| {
            let measured = measure_commands(case, plan.commands_time);
            let logged: u64 = measured.requests_by_script.values().sum();
            if logged != measured.requests() {
                println!(
                    "warning: {}: SLOWLOG has {logged} requests, INFO commandstats {}",
                    measured.name,
                    measured.requests()
                );
            }
            println!(
                "commands: {:<36} {:>12.0} calls/s ({} calls, {} failed) {:>10.1} requests/s {:>10.1} executed/s  over {:.3} s",
                measured.name,
                measured.per_second(measured.calls),
                measured.calls,
                measured.failures,
                measured.per_second(measured.requests()),
                measured.per_second(measured.executed()),
                measured.elapsed.as_secs_f64(),
            );
            measured
        })
        .collect()
}

fn print_commands(results: &[Measured]) {
    println!();
    println!("## 1. Redis commands per second of this one process (one task calling)");
    println!();
    println!("| case | calls/s | requests to Redis/s | requests per 1 M calls | commands executed by Redis/s |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for m in results {
        let per_million = if m.calls == 0 {
            "—".to_owned()
        } else {
            format!("{:.2}", m.requests() as f64 * 1e6 / m.calls as f64)
        };
        println!(
            "| {} | {:.0} | {:.1} | {} | {:.1} |",
            m.name,
            m.per_second(m.calls),
            m.per_second(m.requests()),
            per_million,
            m.per_second(m.executed()),
        );
    }
    println!();
    println!("Requests by script (from SLOWLOG; count over the case's measuring time):");
    println!();
    for m in results {
        let list: Vec<String> = m
            .requests_by_script
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        println!("- {}: {}", m.name, list.join(", "));
    }
    println!();
    println!("Commands by name (INFO commandstats; count over the case's measuring time):");
    println!();
    for m in results {
        let list: Vec<String> = m
            .commands
            .iter()
            .map(|(name, n)| {
                let inside = if sent_by_client(name) {
                    ""
                } else {
                    " (in scripts)"
                };
                format!("{name} {n}{inside}")
            })
            .collect();
        println!("- {}: {}", m.name, list.join(", "));
    }
}

// ---------------------------------------------------------------------------------------
// 2. Requests reaching a slow downstream.

const GATEWAYS: usize = 3;
const TASKS_PER_GATEWAY: usize = 10;
const DOWNSTREAM_DELAY: Duration = Duration::from_secs(2);
const THINK_TIME: Duration = Duration::from_millis(20);
const RAMP_UP: Duration = Duration::from_secs(1);

/// The slow downstream: answers every request after [`DOWNSTREAM_DELAY`].
#[derive(Default)]
struct Downstream {
    /// When each request reached it.
    arrivals: Mutex<Vec<Instant>>,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// Counts a request out of the downstream, whether it was answered or dropped.
struct InFlight<'a>(&'a Downstream);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Downstream {
    async fn request(&self) -> Result<(), AppError> {
        self.arrivals.lock().unwrap().push(Instant::now());
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        let _in_flight = InFlight(self);
        tokio::time::sleep(DOWNSTREAM_DELAY).await;
        Ok(())
    }
}

/// Timestamps every transition to open.
#[derive(Default)]
struct Trips(Mutex<Vec<Instant>>);

impl Listener for Trips {
    fn on_state_change(&self, _service: &str, _from: State, to: State) {
        if to == State::Open {
            self.0.lock().unwrap().push(Instant::now());
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Outcomes {
    success: u64,
    timeout: u64,
    /// Rejected without running (`Open`, `TrialInFlight`).
    rejected: u64,
    other: u64,
    /// Total time callers waited for an answer.
    waited: Duration,
}

impl Outcomes {
    fn calls(&self) -> u64 {
        self.success + self.timeout + self.rejected + self.other
    }

    fn add(&mut self, other: &Outcomes) {
        self.success += other.success;
        self.timeout += other.timeout;
        self.rejected += other.rejected;
        self.other += other.other;
        self.waited += other.waited;
    }
}

struct SlowResult {
    name: &'static str,
    reached: u64,
    reached_before_trip: u64,
    first_trip: Option<Duration>,
    trips: usize,
    outcomes: Outcomes,
    max_in_flight: u64,
}

async fn caller(
    breaker: Breaker,
    downstream: Arc<Downstream>,
    start: tokio::time::Instant,
    offset: Duration,
    period: Duration,
) -> Outcomes {
    let mut outcomes = Outcomes::default();
    tokio::time::sleep_until(start + offset).await;
    while start.elapsed() < period {
        let began = Instant::now();
        let result = breaker.call(downstream.request()).await;
        outcomes.waited += began.elapsed();
        match result {
            Ok(()) => outcomes.success += 1,
            Err(AppError::Breaker(BreakerError::Timeout { .. })) => outcomes.timeout += 1,
            // `Open`, or `TrialInFlight` while another caller makes the trial.
            Err(AppError::Breaker(error)) if error.is_rejection() => outcomes.rejected += 1,
            Err(_) => outcomes.other += 1,
        }
        tokio::time::sleep(THINK_TIME).await;
    }
    outcomes
}

fn slow_downstream(name: &'static str, settings: ServiceOverride, period: Duration) -> SlowResult {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let config = Config::in_memory()
            .env_overrides(false)
            .service("slow-downstream", settings);
        let registry = Registry::new(config).await.expect("registry");
        let breaker = registry.breaker("slow-downstream");
        let trips = Arc::new(Trips::default());
        breaker.add_listener(trips.clone());
        let downstream = Arc::new(Downstream::default());

        let callers = GATEWAYS * TASKS_PER_GATEWAY;
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for task in 0..TASKS_PER_GATEWAY {
            for gateway in 0..GATEWAYS {
                let k = task * GATEWAYS + gateway;
                let offset = RAMP_UP * k as u32 / callers as u32;
                tasks.push(tokio::spawn(caller(
                    breaker.clone(),
                    downstream.clone(),
                    start,
                    offset,
                    period,
                )));
            }
        }
        let mut outcomes = Outcomes::default();
        for task in tasks {
            outcomes.add(&task.await.expect("caller panicked"));
        }
        let start = start.into_std();
        let arrivals = downstream.arrivals.lock().unwrap().clone();
        let trips = trips.0.lock().unwrap().clone();
        let first_trip = trips.first().copied();
        let reached_before_trip = arrivals
            .iter()
            .filter(|&&at| first_trip.is_none_or(|trip| at < trip))
            .count() as u64;
        SlowResult {
            name,
            reached: arrivals.len() as u64,
            reached_before_trip,
            first_trip: first_trip.map(|trip| trip - start),
            trips: trips.len(),
            outcomes,
            max_in_flight: downstream.max_in_flight.load(Ordering::Relaxed),
        }
    })
}

fn part_slow(plan: &Plan) -> Vec<SlowResult> {
    let base = ServiceOverride::new().fail_max(5);
    let timeout = Duration::from_millis(200);
    [
        ("no timeout", base),
        ("timeout = 200ms", base.timeout(timeout)),
        (
            "timeout = 200ms, reset_timeout = 1s",
            base.timeout(timeout).reset_timeout(Duration::from_secs(1)),
        ),
    ]
    .into_iter()
    .map(|(name, settings)| {
        let result = slow_downstream(name, settings, plan.slow_period);
        println!(
            "slow: {:<36} reached {:>4} (before the first trip {:>4}), trips {}, first at {}, calls {} (ok {}, timeout {}, rejected {}, other {}), max in flight {}",
            result.name,
            result.reached,
            result.reached_before_trip,
            result.trips,
            result
                .first_trip
                .map_or("—".to_owned(), |t| format!("{:.0} ms", t.as_secs_f64() * 1e3)),
            result.outcomes.calls(),
            result.outcomes.success,
            result.outcomes.timeout,
            result.outcomes.rejected,
            result.outcomes.other,
            result.max_in_flight,
        );
        result
    })
    .collect()
}

fn print_slow(results: &[SlowResult], period: Duration) {
    println!();
    println!(
        "## 2. A downstream answering after {} s: {} callers ({GATEWAYS} gateways × {TASKS_PER_GATEWAY} tasks), calls started for {} s, one in-memory breaker, fail_max = 5",
        DOWNSTREAM_DELAY.as_secs(),
        GATEWAYS * TASKS_PER_GATEWAY,
        period.as_secs_f64()
    );
    println!();
    println!("| configuration | requests reaching the downstream | … before the first trip | trips | first trip at | calls: ok / timeout / rejected | most in flight at the downstream | callers' time waiting for answers (sum) | mean wait per call |");
    println!("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |");
    for r in results {
        let o = &r.outcomes;
        println!(
            "| {} | {} | {} | {} | {} | {} / {} / {} | {} | {:.1} s | {:.1} ms |",
            r.name,
            r.reached,
            r.reached_before_trip,
            r.trips,
            r.first_trip.map_or("—".to_owned(), |t| format!(
                "{:.0} ms",
                t.as_secs_f64() * 1e3
            )),
            o.success,
            o.timeout,
            o.rejected,
            r.max_in_flight,
            o.waited.as_secs_f64(),
            o.waited.as_secs_f64() * 1e3 / o.calls().max(1) as f64,
        );
        assert_eq!(o.other, 0, "{}: unexpected errors", r.name);
    }
}

fn main() {
    let plan = Plan::from_args();
    let commands = plan.runs("commands").then(|| part_commands(&plan));
    let slow = plan.runs("slow").then(|| part_slow(&plan));
    if let Some(results) = &commands {
        print_commands(results);
    }
    if let Some(results) = &slow {
        print_slow(results, plan.slow_period);
    }
}
