//! The incident benchmark: what a breaker does for a fleet of callers while their
//! downstream fails and recovers, against no breaker and a breaker per process.
//!
//! ```text
//! cargo bench -p infuse-bench --bench incident               # full length (≈ 4 min of running)
//! cargo bench -p infuse-bench --bench incident -- --quick    # smoke run (≈ 1 min 20 s)
//! INCIDENT_WORKERS=8 INCIDENT_RATE=100 INCIDENT_SCALE=0.5 cargo bench … --bench incident
//! INCIDENT_ROWS=budgets cargo bench … --bench incident        # the slowdown and the outage only
//! ```
//!
//! (`cargo test -p infuse-bench --bench incident`, without `--bench`, is the smoke run.)
//!
//! One downstream HTTP/1.1 server on loopback (in this process, a few lines of tokio) and
//! `workers` caller processes (`infuse-incident-worker`, `src/bin/`), each sending an
//! **open-loop** load of `rate` GETs per second (scheduled by time, never waiting for an
//! earlier answer; late and dropped sends are counted) with a 2 s client deadline. The
//! downstream follows one schedule, the same for every row:
//!
//! 1. healthy (5 s): answers 200 at once;
//! 2. failing fast (5 s): answers 503 at once;
//! 3. hanging (5 s): holds every request until the phase ends (then 503) — callers give
//!    up at their deadline, or at the breaker's `timeout`;
//! 4. recovering (10 s): healthy again, but cold for its first 3 s: it serves at full
//!    speed only a rate growing from 20 % to 100 % of the fleet's load, and answers the
//!    requests above that rate after 1 s.
//!
//! Rows, one after the other in one run, with the same schedule (`INCIDENT_SCALE`
//! multiplies every phase): no breaker; one in-memory breaker per process (what a
//! per-process library gives); the infuse fleet on Redis (a `redis-server` this bench
//! starts on a free port); the fleet with `slow_start` (skipped, with a note, by a build
//! of infuse that does not know the setting yet); the fleet with `timeout` and
//! `failure_rate`. Every breaker: `fail_max = 5`, `reset_timeout = 1 s` (scaled).
//!
//! Two more scenarios, for the fleet budgets (issue 20), with rows of their own
//! (`INCIDENT_ROWS=incident` runs only the rows above, `INCIDENT_ROWS=budgets` only these):
//!
//! - **slowdown** (healthy 4 s, slow 8 s, healthy 4 s): in the slow phase the downstream
//!   answers every request 200 after [`SLOW_DELAY`], so calls pile up in flight (load ×
//!   delay without a cap). Rows: no cap (no breaker); `max_concurrent = cap` in each
//!   process's in-memory breaker (the processes' caps add up: cap × workers); the same
//!   setting on the fleet's breaker (Redis: the cap holds across the processes). `cap` =
//!   load × delay ÷ 8 (50 for the full run). The downstream counts the requests it holds
//!   at once (from arrival until its answer is written): the peak is the column to read.
//! - **outage** (healthy 4 s, 503 at once for 8 s, healthy 4 s), with retries: a client's
//!   own retry loop (2 retries, infuse's default backoff, no breaker, no budget);
//!   `retries = 2` with a retry budget per process (in-memory breakers); the same with the
//!   fleet's retry budget (Redis). The breakers of these rows have `fail_max =
//!   1,000,000`, so that they stay closed and only the budget limits the retries (with
//!   `fail_max = 5` a breaker stops the retries a few ms into the outage, as the rows
//!   above show). Default budget: `retry_budget = 20` %, `retry_min_per_sec = 10`.
//!
//! Output: a markdown table on stdout and in `target/tmp/incident.md`, and an SVG timeline
//! (`docs/incident.svg` for a full run, `target/tmp/incident.svg` for a smoke run, or
//! `INCIDENT_SVG`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infuse_bench::monotonic_ns;
use infuse_tests::support::redis_server::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The callers' own deadline on every request, in every row.
const CLIENT_TIMEOUT_MS: u64 = 2000;
/// How long the cold downstream takes to answer a request above its capacity.
const COLD_DELAY: Duration = Duration::from_secs(1);
/// The cold downstream's capacity at the start of recovery, as a share of the fleet's load.
const COLD_FLOOR: f64 = 0.2;
/// The breaker's `timeout` in the `timeout + failure_rate` row.
const BREAKER_TIMEOUT_MS: u64 = 250;
const FAILURE_RATE: u32 = 50;
const MIN_CALLS: u32 = 20;
const SLOW_START_MIN: u32 = 10;
/// How long the slowed-down downstream takes to answer each request.
const SLOW_DELAY: Duration = Duration::from_millis(500);
/// `retries` in the outage rows (and the naive loop's).
const RETRIES: u32 = 2;
/// `retry_budget` and `retry_min_per_sec` in the outage rows (infuse's defaults).
const RETRY_BUDGET: u32 = 20;
const RETRY_MIN_PER_SEC: u32 = 10;
/// `fail_max` of the outage rows: their breakers stay closed.
const FAIL_MAX_NEVER: u32 = 1_000_000;

/// The run's parameters.
#[derive(Clone, Copy)]
struct Params {
    quick: bool,
    workers: usize,
    rate: f64,
    scale: f64,
}

impl Params {
    fn read() -> Params {
        let args: Vec<String> = std::env::args().collect();
        let flag = |name: &str| -> Option<String> {
            let at = args.iter().position(|a| a == name)?;
            args.get(at + 1).cloned()
        };
        let setting = |name: &str, env: &str| flag(name).or_else(|| std::env::var(env).ok());
        let quick = args.iter().any(|a| a == "--quick")
            || std::env::var("INCIDENT_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
            || !args.iter().any(|a| a == "--bench");
        let number = |name: &str, env: &str, default: f64| -> f64 {
            match setting(name, env) {
                None => default,
                Some(text) => match text.parse::<f64>() {
                    Ok(v) if v > 0.0 && v.is_finite() => v,
                    _ => {
                        eprintln!("{name} / {env}: {text:?} is not a positive number");
                        std::process::exit(2);
                    }
                },
            }
        };
        Params {
            quick,
            workers: number("--workers", "INCIDENT_WORKERS", 4.0)
                .round()
                .max(1.0) as usize,
            rate: number("--rate", "INCIDENT_RATE", if quick { 100.0 } else { 200.0 }),
            scale: number("--scale", "INCIDENT_SCALE", if quick { 0.3 } else { 1.0 }),
        }
    }

    fn ms(&self, full: f64) -> u64 {
        (full * self.scale).round().max(1.0) as u64
    }

    fn schedule(&self) -> Schedule {
        Schedule {
            scenario: Scenario::Incident,
            healthy: self.ms(5000.0),
            fail503: self.ms(5000.0),
            hang: self.ms(5000.0),
            recovery: self.ms(10000.0),
            cold: self.ms(3000.0),
        }
    }

    /// The slowdown's or the outage's schedule: healthy, trouble (in `fail503`), healthy.
    fn budget_schedule(&self, scenario: Scenario) -> Schedule {
        Schedule {
            scenario,
            healthy: self.ms(4000.0),
            fail503: self.ms(8000.0),
            hang: 0,
            recovery: self.ms(4000.0),
            cold: 0,
        }
    }

    /// `max_concurrent` of the slowdown rows: an eighth of what the slow phase holds in
    /// flight without a cap (load × delay).
    fn cap(&self) -> u32 {
        (self.load() * SLOW_DELAY.as_secs_f64() / 8.0)
            .round()
            .max(2.0) as u32
    }

    fn reset_ms(&self) -> u64 {
        self.ms(1000.0).max(200)
    }

    fn slow_start_ms(&self) -> u64 {
        self.ms(5000.0).max(1000)
    }

    fn window_ms(&self) -> u64 {
        self.ms(5000.0).max(1000)
    }

    /// The fleet's requests per second.
    fn load(&self) -> f64 {
        self.rate * self.workers as f64
    }
}

/// What the downstream goes through.
#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    /// Healthy, 503s, hanging, cold recovery (the first table).
    Incident,
    /// Healthy, every answer [`SLOW_DELAY`] late, healthy.
    Slowdown,
    /// Healthy, 503 at once, healthy.
    Outage,
}

/// The downstream's phases, in ms from the start of a row. The slowdown and the outage
/// use `healthy`, then `fail503` for their trouble, then `recovery` (healthy again).
#[derive(Clone, Copy)]
struct Schedule {
    scenario: Scenario,
    healthy: u64,
    fail503: u64,
    hang: u64,
    recovery: u64,
    cold: u64,
}

enum Phase {
    Healthy,
    Fail503,
    /// Held until this many ms from the start.
    Hang(u64),
    /// Cold, this far (0..1) into its cold start.
    Cold(f64),
    /// Every answer [`SLOW_DELAY`] late.
    Slow,
}

impl Schedule {
    fn fail_start(&self) -> u64 {
        self.healthy
    }
    fn hang_start(&self) -> u64 {
        self.healthy + self.fail503
    }
    fn recovery_start(&self) -> u64 {
        self.hang_start() + self.hang
    }
    fn end(&self) -> u64 {
        self.recovery_start() + self.recovery
    }

    fn phase(&self, at_ms: u64) -> Phase {
        let trouble = at_ms >= self.fail_start() && at_ms < self.hang_start();
        match self.scenario {
            Scenario::Incident => {}
            Scenario::Slowdown if trouble => return Phase::Slow,
            Scenario::Outage if trouble => return Phase::Fail503,
            Scenario::Slowdown | Scenario::Outage => return Phase::Healthy,
        }
        if at_ms < self.fail_start() {
            Phase::Healthy
        } else if at_ms < self.hang_start() {
            Phase::Fail503
        } else if at_ms < self.recovery_start() {
            Phase::Hang(self.recovery_start())
        } else if at_ms < self.recovery_start() + self.cold {
            Phase::Cold((at_ms - self.recovery_start()) as f64 / self.cold as f64)
        } else {
            Phase::Healthy
        }
    }
}

/// The downstream: its schedule, its arrivals, and the cold start's token bucket.
struct Downstream {
    schedule: Schedule,
    /// The fleet's load, requests per second (the cold capacity is a share of it).
    load: f64,
    /// `CLOCK_MONOTONIC` of the row's start; 0 before it is set.
    start_ns: AtomicU64,
    /// Arrival times, µs from the start.
    arrivals: Mutex<Vec<u64>>,
    /// Tokens and the µs of their last refill.
    bucket: Mutex<Option<(f64, u64)>>,
    /// Requests held now: arrived, their answer not yet written.
    in_flight: AtomicU64,
    /// The most held at once since the row's start.
    peak_in_flight: AtomicU64,
}

/// A request the downstream holds, until dropped (its answer written, or its connection
/// gone).
struct Held<'a>(&'a Downstream);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Downstream {
    /// Records an arrival; the status to answer and how long to wait first.
    fn arrive(&self) -> (u16, Option<Duration>) {
        let held = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        let start = self.start_ns.load(Ordering::Acquire);
        let now = monotonic_ns();
        if start == 0 || now < start {
            return (200, None);
        }
        self.peak_in_flight.fetch_max(held, Ordering::AcqRel);
        let at_us = (now - start) / 1000;
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(at_us);
        match self.schedule.phase(at_us / 1000) {
            Phase::Healthy => (200, None),
            Phase::Fail503 => (503, None),
            Phase::Hang(until_ms) => (
                503,
                Some(Duration::from_micros(
                    (until_ms * 1000).saturating_sub(at_us),
                )),
            ),
            Phase::Cold(progress) => {
                let capacity = self.load * (COLD_FLOOR + (1.0 - COLD_FLOOR) * progress);
                let burst = (capacity * 0.05).max(1.0);
                let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                let (tokens, last) = bucket.get_or_insert((burst, at_us));
                *tokens =
                    (*tokens + at_us.saturating_sub(*last) as f64 / 1e6 * capacity).min(burst);
                *last = at_us;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    (200, None)
                } else {
                    (200, Some(COLD_DELAY))
                }
            }
            Phase::Slow => (200, Some(SLOW_DELAY)),
        }
    }
}

async fn serve(listener: TcpListener, downstream: Arc<Downstream>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        tokio::spawn(connection(socket, downstream.clone()));
    }
}

/// HTTP/1.1 with keep-alive: every request is a bodiless GET, answered in order.
async fn connection(mut socket: TcpStream, downstream: Arc<Downstream>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            if buffer.len() > 64 * 1024 {
                return;
            }
        };
        buffer.drain(..end);
        let (status, wait) = downstream.arrive();
        let held = Held(&downstream);
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
        let response: &[u8] = if status == 200 {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        } else {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
        };
        let written = socket.write_all(response).await;
        drop(held);
        if written.is_err() {
            return;
        }
    }
}

/// A row of the table.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    NoBreaker,
    PerProcess,
    Fleet,
    FleetSlowStart,
    FleetTimeoutRate,
    /// Slowdown: no breaker, no cap.
    SlowNoCap,
    /// Slowdown: `max_concurrent` in each process's in-memory breaker.
    SlowPerProcessCap,
    /// Slowdown: `max_concurrent` on the fleet's breaker.
    SlowFleetCap,
    /// Outage: the client's own retries, no breaker, no budget.
    OutageNaiveRetries,
    /// Outage: `retries` with a budget per process (in-memory breakers).
    OutagePerProcessBudget,
    /// Outage: `retries` with the fleet's budget (Redis).
    OutageFleetBudget,
}

impl Kind {
    const ALL: [Kind; 11] = [
        Kind::NoBreaker,
        Kind::PerProcess,
        Kind::Fleet,
        Kind::FleetSlowStart,
        Kind::FleetTimeoutRate,
        Kind::SlowNoCap,
        Kind::SlowPerProcessCap,
        Kind::SlowFleetCap,
        Kind::OutageNaiveRetries,
        Kind::OutagePerProcessBudget,
        Kind::OutageFleetBudget,
    ];

    fn scenario(self) -> Scenario {
        match self {
            Kind::SlowNoCap | Kind::SlowPerProcessCap | Kind::SlowFleetCap => Scenario::Slowdown,
            Kind::OutageNaiveRetries | Kind::OutagePerProcessBudget | Kind::OutageFleetBudget => {
                Scenario::Outage
            }
            _ => Scenario::Incident,
        }
    }

    /// The worker's arguments beyond the common ones.
    fn args(self, params: Params) -> Vec<String> {
        let retrying = || {
            vec![
                format!("fail_max={FAIL_MAX_NEVER}"),
                format!("retries={RETRIES}"),
                format!("retry_budget={RETRY_BUDGET}"),
                format!("retry_min_per_sec={RETRY_MIN_PER_SEC}"),
            ]
        };
        match self {
            Kind::FleetTimeoutRate => vec![
                format!("timeout_ms={BREAKER_TIMEOUT_MS}"),
                format!("failure_rate={FAILURE_RATE}"),
                format!("window_ms={}", params.window_ms()),
                format!("min_calls={MIN_CALLS}"),
            ],
            Kind::SlowPerProcessCap | Kind::SlowFleetCap => {
                vec![format!("max_concurrent={}", params.cap())]
            }
            Kind::OutageNaiveRetries => vec![format!("naive_retries={RETRIES}")],
            Kind::OutagePerProcessBudget | Kind::OutageFleetBudget => retrying(),
            _ => Vec::new(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::NoBreaker => "no breaker",
            Kind::PerProcess => "one breaker per process (in-memory)",
            Kind::Fleet => "infuse fleet (Redis)",
            Kind::FleetSlowStart => "infuse fleet + `slow_start`",
            Kind::FleetTimeoutRate => "infuse fleet + `timeout` + `failure_rate`",
            Kind::SlowNoCap => "slowdown: no cap (no breaker)",
            Kind::SlowPerProcessCap => "slowdown: `max_concurrent` in each process (in-memory)",
            Kind::SlowFleetCap => "slowdown: `max_concurrent` across the fleet (Redis)",
            Kind::OutageNaiveRetries => "outage: 2 retries in the client, no budget (no breaker)",
            Kind::OutagePerProcessBudget => {
                "outage: `retries = 2`, a retry budget per process (in-memory)"
            }
            Kind::OutageFleetBudget => "outage: `retries = 2`, the fleet's retry budget (Redis)",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Kind::NoBreaker => "none",
            Kind::PerProcess => "per-process",
            Kind::Fleet => "fleet",
            Kind::FleetSlowStart => "fleet-slow-start",
            Kind::FleetTimeoutRate => "fleet-timeout-rate",
            Kind::SlowNoCap => "slow-none",
            Kind::SlowPerProcessCap => "slow-per-process",
            Kind::SlowFleetCap => "slow-fleet",
            Kind::OutageNaiveRetries => "outage-naive",
            Kind::OutagePerProcessBudget => "outage-per-process",
            Kind::OutageFleetBudget => "outage-fleet",
        }
    }

    fn mode(self) -> &'static str {
        match self {
            Kind::NoBreaker | Kind::SlowNoCap | Kind::OutageNaiveRetries => "none",
            Kind::PerProcess | Kind::SlowPerProcessCap | Kind::OutagePerProcessBudget => "memory",
            _ => "redis",
        }
    }
}

/// One worker's report.
#[derive(Default)]
struct Report {
    /// (scheduled µs, done µs, outcome letter, requests sent).
    calls: Vec<(u64, u64, char, u32)>,
    /// (µs, state) of its breaker's changes.
    transitions: Vec<(u64, String)>,
    late: u64,
    dropped: u64,
    max_lateness_us: u64,
}

fn parse_report(lines: &[String]) -> Report {
    let mut report = Report::default();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["C", sched, done, outcome, attempts] => {
                if let (Ok(s), Ok(d), Some(o), Ok(a)) = (
                    sched.parse(),
                    done.parse(),
                    outcome.chars().next(),
                    attempts.parse(),
                ) {
                    report.calls.push((s, d, o, a));
                }
            }
            ["T", at, state] => {
                if let Ok(at) = at.parse() {
                    report.transitions.push((at, state.to_string()));
                }
            }
            ["L", late, dropped, max] => {
                report.late = late.parse().unwrap_or_default();
                report.dropped = dropped.parse().unwrap_or_default();
                report.max_lateness_us = max.parse().unwrap_or_default();
            }
            _ => {}
        }
    }
    report
}

/// What the downstream and the callers saw in a slowdown or an outage, during its
/// trouble phase (calls by their scheduled time, requests by their arrival).
#[derive(Default)]
struct Trouble {
    /// Requests that reached the downstream.
    reached: u64,
    /// Calls scheduled (not dropped).
    calls: u64,
    /// Of those: ok, failed, rejected by the breaker (saturated, for a cap).
    ok: u64,
    failed: u64,
    rejected: u64,
    /// Calls that sent at least one request, and the requests they sent.
    first_attempts: u64,
    attempts: u64,
    /// Latency of the ok calls, p50 / p99, ms.
    ok_latency_ms: [f64; 2],
}

/// What a row measured.
struct Row {
    kind: Kind,
    schedule: Schedule,
    /// The most requests the downstream held at once during the row.
    peak_in_flight: u64,
    /// The slowdown's and the outage's figures.
    trouble: Option<Trouble>,
    skipped: Option<String>,
    reached_failing: u64,
    latency_ms: [f64; 3],
    all_reject_ms: Option<f64>,
    recovery_ms: Option<f64>,
    peak_ratio: Option<f64>,
    /// ms from the start: the first close after the recovery (the recovery without a
    /// breaker).
    close_ms: Option<f64>,
    redis_per_call: Option<f64>,
    sent: u64,
    late: u64,
    dropped: u64,
    max_lateness_ms: f64,
    incomplete: usize,
    /// Per 100 ms: downstream arrivals, callers' ok, failed, rejected (by completion).
    series: [Vec<u32>; 4],
}

impl Row {
    fn skipped(kind: Kind, schedule: Schedule, why: String) -> Row {
        Row {
            kind,
            schedule,
            peak_in_flight: 0,
            trouble: None,
            skipped: Some(why),
            reached_failing: 0,
            latency_ms: [0.0; 3],
            all_reject_ms: None,
            recovery_ms: None,
            peak_ratio: None,
            close_ms: None,
            redis_per_call: None,
            sent: 0,
            late: 0,
            dropped: 0,
            max_lateness_ms: 0.0,
            incomplete: 0,
            series: Default::default(),
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn total_commands(redis: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(redis)
        .expect("INFO stats");
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_commands_processed in INFO stats")
}

/// The caller processes of one row.
struct Workers {
    children: Vec<(Child, Option<ChildStdin>)>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (child, stdin) in &mut self.children {
            drop(stdin.take());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_row(
    kind: Kind,
    params: Params,
    server: &RedisServer,
    redis: &mut redis::Connection,
    rt: &tokio::runtime::Runtime,
    run_id: u64,
) -> Row {
    let schedule = schedule_of(kind, params);
    let downstream = Arc::new(Downstream {
        schedule,
        load: params.load(),
        start_ns: AtomicU64::new(0),
        arrivals: Mutex::new(Vec::new()),
        bucket: Mutex::new(None),
        in_flight: AtomicU64::new(0),
        peak_in_flight: AtomicU64::new(0),
    });
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("binding the downstream");
    let port = listener.local_addr().expect("local address").port();
    let accept = rt.spawn(serve(listener, downstream.clone()));

    let (ready_tx, ready): (_, Receiver<usize>) = channel();
    let mut children = Vec::new();
    let mut readers = Vec::new();
    for id in 0..params.workers {
        let offset_ns = (id as f64 * 1e9 / params.load()) as u64;
        let mut command = Command::new(env!("CARGO_BIN_EXE_infuse-incident-worker"));
        command
            .args([
                format!("id={id}"),
                format!("mode={}", kind.mode()),
                format!("url=http://127.0.0.1:{port}/"),
                format!("rate={}", params.rate),
                format!("duration_ms={}", schedule.end()),
                format!("offset_ns={offset_ns}"),
                format!("client_timeout_ms={CLIENT_TIMEOUT_MS}"),
                format!("reset_ms={}", params.reset_ms()),
                format!("redis={}", server.url()),
                format!("namespace=incident-{run_id}-{}", kind.short()),
            ])
            .env_remove("INFUSE_INCIDENT_SLOW_START")
            .env_remove("INFUSE_INCIDENT_SLOW_START_MIN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if kind == Kind::FleetSlowStart {
            command
                .env(
                    "INFUSE_INCIDENT_SLOW_START",
                    format!("{}ms", params.slow_start_ms()),
                )
                .env("INFUSE_INCIDENT_SLOW_START_MIN", SLOW_START_MIN.to_string());
        }
        command.args(kind.args(params));
        let mut child = command.spawn().expect("spawning infuse-incident-worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let ready_tx = ready_tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("READY") {
                    let _ = ready_tx.send(id);
                } else if line == "END" {
                    break;
                } else {
                    lines.push(line);
                }
            }
            lines
        }));
        children.push((child, stdin));
    }
    let mut workers = Workers { children };
    for _ in 0..params.workers {
        ready
            .recv_timeout(Duration::from_secs(20))
            .expect("a worker did not get ready within 20 s");
    }
    let commands_before = total_commands(redis);
    let start_ns = monotonic_ns() + 300_000_000;
    downstream.start_ns.store(start_ns, Ordering::Release);
    for (_, stdin) in &mut workers.children {
        if let Some(stdin) = stdin {
            writeln!(stdin, "START {start_ns}").expect("writing START");
            stdin.flush().expect("flushing START");
        }
    }
    let reports: Vec<Report> = readers
        .into_iter()
        .map(|reader| parse_report(&reader.join().expect("reader thread")))
        .collect();
    for (child, stdin) in &mut workers.children {
        drop(stdin.take());
        let _ = child.wait();
    }
    workers.children.clear();
    // This INFO and the one before: 1 command (the one before is counted).
    let commands = total_commands(redis).saturating_sub(commands_before + 1);
    accept.abort();
    let arrivals = std::mem::take(
        &mut *downstream
            .arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    let mut row = analyse(kind, params, &schedule, &reports, &arrivals, commands);
    row.peak_in_flight = downstream.peak_in_flight.load(Ordering::Acquire);
    if kind.scenario() != Scenario::Incident {
        row.trouble = Some(trouble(&schedule, &reports, &arrivals));
    }
    row
}

fn schedule_of(kind: Kind, params: Params) -> Schedule {
    match kind.scenario() {
        Scenario::Incident => params.schedule(),
        scenario => params.budget_schedule(scenario),
    }
}

/// The figures of a slowdown's or an outage's trouble phase.
fn trouble(schedule: &Schedule, reports: &[Report], arrivals: &[u64]) -> Trouble {
    let (from, to) = (schedule.fail_start() as f64, schedule.hang_start() as f64);
    let mut t = Trouble {
        reached: count_in(arrivals, from, to) as u64,
        ..Trouble::default()
    };
    let mut ok_latency = Vec::new();
    for &(sched, done, outcome, attempts) in reports.iter().flat_map(|r| &r.calls) {
        let at = sched as f64 / 1000.0;
        if outcome == 'd' || at < from || at >= to {
            continue;
        }
        t.calls += 1;
        match outcome {
            'k' => {
                t.ok += 1;
                ok_latency.push(done.saturating_sub(sched) as f64 / 1000.0);
            }
            'f' => t.failed += 1,
            'r' => t.rejected += 1,
            _ => {}
        }
        if attempts > 0 {
            t.first_attempts += 1;
            t.attempts += u64::from(attempts);
        }
    }
    ok_latency.sort_by(f64::total_cmp);
    t.ok_latency_ms = [percentile(&ok_latency, 0.5), percentile(&ok_latency, 0.99)];
    t
}

fn count_in(times_us: &[u64], from_ms: f64, to_ms: f64) -> usize {
    let (from, to) = ((from_ms * 1000.0) as u64, (to_ms * 1000.0) as u64);
    times_us.iter().filter(|&&t| t >= from && t < to).count()
}

fn analyse(
    kind: Kind,
    params: Params,
    schedule: &Schedule,
    reports: &[Report],
    arrivals: &[u64],
    commands: u64,
) -> Row {
    let fail = schedule.fail_start() as f64;
    let recovery = schedule.recovery_start() as f64;
    let end = schedule.end() as f64;
    // The first second (or third of the healthy phase) warms connections up.
    let warm = (schedule.healthy as f64 / 3.0).min(1000.0);
    let steady_span = schedule.healthy as f64 - warm;

    let reached_failing = count_in(arrivals, fail, recovery) as u64;

    let mut latency: Vec<f64> = reports
        .iter()
        .flat_map(|r| &r.calls)
        .filter(|(s, _, o, _)| {
            *o != 'd' && (*s as f64 / 1000.0) >= fail && (*s as f64 / 1000.0) < recovery
        })
        .map(|(s, d, _, _)| d.saturating_sub(*s) as f64 / 1000.0)
        .collect();
    latency.sort_by(f64::total_cmp);
    let latency_ms = [
        percentile(&latency, 0.5),
        percentile(&latency, 0.99),
        latency.last().copied().unwrap_or_default(),
    ];

    // Each process's first rejection after the first failure; the last of those.
    let mut all_reject_ms = Some(0.0f64);
    for report in reports {
        let first = report
            .calls
            .iter()
            .filter(|(s, _, o, _)| *o == 'r' && (*s as f64 / 1000.0) >= fail)
            .map(|(_, d, _, _)| *d as f64 / 1000.0 - fail)
            .min_by(f64::total_cmp);
        all_reject_ms = match (all_reject_ms, first) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }

    let ok_done: Vec<u64> = reports
        .iter()
        .flat_map(|r| &r.calls)
        .filter(|(_, _, o, _)| *o == 'k')
        .map(|(_, d, _, _)| *d)
        .collect();
    let healthy_rate = count_in(&ok_done, warm, schedule.healthy as f64) as f64 / steady_span;
    let window = 500.0;
    let mut recovery_ms = None;
    let mut t = recovery;
    while t + window <= end {
        if count_in(&ok_done, t, t + window) as f64 >= 0.9 * healthy_rate * window {
            recovery_ms = Some(t - recovery);
            break;
        }
        t += 50.0;
    }

    // The close: the first process told its breaker closed after the recovery began
    // (without a breaker, the recovery itself).
    let close_ms = if kind == Kind::NoBreaker {
        Some(recovery)
    } else {
        reports
            .iter()
            .flat_map(|r| &r.transitions)
            .filter(|(at, state)| state == "closed" && *at as f64 / 1000.0 >= recovery)
            .map(|(at, _)| *at as f64 / 1000.0)
            .min_by(f64::total_cmp)
    };
    let steady_per_250 =
        count_in(arrivals, warm, schedule.healthy as f64) as f64 / steady_span * 250.0;
    let peak_ratio = close_ms.map(|close| {
        (0..4)
            .map(|k| {
                count_in(
                    arrivals,
                    close + 250.0 * k as f64,
                    close + 250.0 * (k + 1) as f64,
                )
            })
            .max()
            .unwrap_or_default() as f64
            / steady_per_250
    });

    let sent: u64 = reports
        .iter()
        .map(|r| r.calls.iter().filter(|c| c.2 != 'd').count() as u64)
        .sum();
    let expected = (schedule.end() as f64 / 1000.0 * params.rate).floor() as usize;
    let incomplete = reports.iter().filter(|r| r.calls.len() < expected).count();

    let buckets = ((end + CLIENT_TIMEOUT_MS as f64 + 500.0) / 100.0).ceil() as usize;
    let mut series: [Vec<u32>; 4] = std::array::from_fn(|_| vec![0; buckets]);
    let mut add = |which: usize, us: u64| {
        if let Some(b) = series[which].get_mut((us / 100_000) as usize) {
            *b += 1;
        }
    };
    for &a in arrivals {
        add(0, a);
    }
    for (_, done, outcome, _) in reports.iter().flat_map(|r| &r.calls) {
        match outcome {
            'k' => add(1, *done),
            'f' => add(2, *done),
            'r' => add(3, *done),
            _ => {}
        }
    }

    Row {
        kind,
        schedule: *schedule,
        peak_in_flight: 0,
        trouble: None,
        skipped: None,
        reached_failing,
        latency_ms,
        all_reject_ms,
        recovery_ms,
        peak_ratio,
        close_ms,
        redis_per_call: (kind.mode() == "redis").then(|| commands as f64 / sent.max(1) as f64),
        sent,
        late: reports.iter().map(|r| r.late).sum(),
        dropped: reports.iter().map(|r| r.dropped).sum(),
        max_lateness_ms: reports
            .iter()
            .map(|r| r.max_lateness_us as f64 / 1000.0)
            .fold(0.0, f64::max),
        incomplete,
        series,
    }
}

fn opt_ms(value: Option<f64>, never: &str) -> String {
    value.map_or_else(|| never.to_owned(), |v| format!("{v:.0} ms"))
}

fn ratio(value: Option<f64>, base: Option<f64>) -> String {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}×", v / b),
        // 0 ÷ 0: the same.
        (Some(v), Some(_)) if v.abs() < f64::EPSILON => "1×".into(),
        _ => "—".into(),
    }
}

fn tables(all: &[Row], params: Params) -> String {
    let rows: Vec<&Row> = all
        .iter()
        .filter(|r| r.kind.scenario() == Scenario::Incident)
        .collect();
    let mut out = String::new();
    if !rows.is_empty() {
        out.push_str(&incident_tables(&rows, params));
    }
    out.push_str(&budget_tables(all, params));
    out
}

fn budget_tables(rows: &[Row], params: Params) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let measured = |scenario: Scenario| {
        rows.iter()
            .filter(move |r| r.kind.scenario() == scenario && r.skipped.is_none())
            .filter_map(|r| r.trouble.as_ref().map(|t| (r, t)))
    };
    let sends = |row: &Row| {
        format!(
            "{} ({} / {}){}",
            row.sent,
            row.late,
            row.dropped,
            if row.incomplete > 0 {
                format!(", {} workers incomplete", row.incomplete)
            } else {
                String::new()
            }
        )
    };
    let schedule = params.budget_schedule(Scenario::Slowdown);
    if measured(Scenario::Slowdown).next().is_some() {
        line(String::new());
        line(format!(
            "Slowdown: {} worker processes × {} requests/s open loop; healthy {} ms, every answer {} ms late for {} ms, healthy {} ms; `max_concurrent = {}` ({} in all with one cap per process).",
            params.workers, params.rate, schedule.healthy, SLOW_DELAY.as_millis(), schedule.fail503, schedule.recovery, params.cap(), params.cap() as usize * params.workers
        ));
        line(String::new());
        line("| row | peak requests held by the downstream at once | ÷ the cap | reached the downstream in the slow phase | calls in the slow phase: ok / rejected (saturated) / failed | ok calls' latency p50 / p99 | sends (late > 10 ms / dropped) |".into());
        line("|---|---|---|---|---|---|---|".into());
        for (row, t) in measured(Scenario::Slowdown) {
            line(format!(
                "| {} | {} | {:.2} | {} | {} / {} / {} | {:.0} / {:.0} ms | {} |",
                row.kind.label(),
                row.peak_in_flight,
                row.peak_in_flight as f64 / f64::from(params.cap()),
                t.reached,
                t.ok,
                t.rejected,
                t.failed,
                t.ok_latency_ms[0],
                t.ok_latency_ms[1],
                sends(row),
            ));
        }
    }
    let schedule = params.budget_schedule(Scenario::Outage);
    if measured(Scenario::Outage).next().is_some() {
        let seconds = schedule.fail503 as f64 / 1000.0;
        line(String::new());
        line(format!(
            "Outage: {} worker processes × {} requests/s open loop; healthy {} ms, 503 at once for {} ms, healthy {} ms; `retries = {RETRIES}`, `retry_budget = {RETRY_BUDGET}`, `retry_min_per_sec = {RETRY_MIN_PER_SEC}`, `fail_max = {FAIL_MAX_NEVER}` (the breakers stay closed).",
            params.workers, params.rate, schedule.healthy, schedule.fail503, schedule.recovery
        ));
        line(String::new());
        line("| row | calls in the outage (first attempts) | retries (requests − first attempts) | retries ÷ first attempts | retries / s | reached the downstream in the outage | calls in the outage: ok / failed / rejected | sends (late > 10 ms / dropped) |".into());
        line("|---|---|---|---|---|---|---|---|".into());
        for (row, t) in measured(Scenario::Outage) {
            let retries = t.attempts.saturating_sub(t.first_attempts);
            line(format!(
                "| {} | {} | {} | {:.3} | {:.0} | {} | {} / {} / {} | {} |",
                row.kind.label(),
                t.first_attempts,
                retries,
                retries as f64 / t.first_attempts.max(1) as f64,
                retries as f64 / seconds,
                t.reached,
                t.ok,
                t.failed,
                t.rejected,
                sends(row),
            ));
        }
    }
    out
}

fn incident_tables(rows: &[&Row], params: Params) -> String {
    let schedule = params.schedule();
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "{} worker processes × {} requests/s open loop (fleet load {} requests/s); phases: healthy {} ms, 503s {} ms, hanging {} ms, recovery {} ms (cold for {} ms); client deadline {CLIENT_TIMEOUT_MS} ms; breakers: fail_max 5, reset_timeout {} ms.",
        params.workers, params.rate, params.load(), schedule.healthy, schedule.fail503, schedule.hang, schedule.recovery, schedule.cold, params.reset_ms()
    ));
    line(String::new());
    line("| row | reached the downstream while failing | callers' latency during the failure p50 / p99 / max | first failure → every process rejects | recovery → 90 % of healthy throughput | peak load in the 1st s after the close ÷ steady | Redis commands / request | sends (late > 10 ms / dropped) |".into());
    line("|---|---|---|---|---|---|---|---|".into());
    for row in rows {
        if let Some(why) = &row.skipped {
            line(format!(
                "| {} | skipped: {why} | | | | | | |",
                row.kind.label()
            ));
            continue;
        }
        line(format!(
            "| {} | {} | {:.1} / {:.1} / {:.0} ms | {} | {} | {} | {} | {} ({} / {}){} |",
            row.kind.label(),
            row.reached_failing,
            row.latency_ms[0],
            row.latency_ms[1],
            row.latency_ms[2],
            opt_ms(row.all_reject_ms, "never"),
            opt_ms(row.recovery_ms, "not reached"),
            row.peak_ratio
                .map_or("no close".into(), |r| format!("{r:.2}")),
            row.redis_per_call.map_or("—".into(), |r| format!("{r:.3}")),
            row.sent,
            row.late,
            row.dropped,
            if row.incomplete > 0 {
                format!(", {} workers incomplete", row.incomplete)
            } else {
                String::new()
            }
        ));
    }
    if let Some(base) = rows
        .iter()
        .find(|r| r.kind == Kind::PerProcess && r.skipped.is_none())
    {
        line(String::new());
        line("Against one breaker per process (value ÷ the per-process row's; below 1 is better in every column):".into());
        line(String::new());
        line("| row | reached the downstream while failing | p99 latency during the failure | → every process rejects | recovery → 90 % | peak load after the close |".into());
        line("|---|---|---|---|---|---|".into());
        for row in rows.iter().filter(|r| r.skipped.is_none()) {
            line(format!(
                "| {} | {} | {} | {} | {} | {} |",
                row.kind.label(),
                ratio(
                    Some(row.reached_failing as f64),
                    Some(base.reached_failing as f64)
                ),
                ratio(Some(row.latency_ms[1]), Some(base.latency_ms[1])),
                ratio(row.all_reject_ms, base.all_reject_ms),
                ratio(row.recovery_ms, base.recovery_ms),
                ratio(row.peak_ratio, base.peak_ratio),
            ));
        }
    }
    let late_max = rows.iter().map(|r| r.max_lateness_ms).fold(0.0, f64::max);
    line(String::new());
    line(format!(
        "Largest lateness of a send behind its schedule: {late_max:.1} ms."
    ));
    out
}

/// The phases of a row's schedule to shade: (from s, to s, colour, label).
fn shades(schedule: &Schedule) -> Vec<(f64, f64, plotters::style::RGBAColor, &'static str)> {
    use plotters::prelude::*;
    let s = |ms: u64| ms as f64 / 1000.0;
    let trouble = |color: RGBColor, label| {
        vec![(
            s(schedule.fail_start()),
            s(schedule.hang_start()),
            color.mix(0.12),
            label,
        )]
    };
    match schedule.scenario {
        Scenario::Slowdown => trouble(RGBColor(240, 150, 0), "slow"),
        Scenario::Outage => trouble(RGBColor(230, 60, 60), "503s"),
        Scenario::Incident => vec![
            (
                s(schedule.fail_start()),
                s(schedule.hang_start()),
                RGBColor(230, 60, 60).mix(0.12),
                "503s",
            ),
            (
                s(schedule.hang_start()),
                s(schedule.recovery_start()),
                RGBColor(140, 60, 200).mix(0.12),
                "hanging",
            ),
            (
                s(schedule.recovery_start()),
                s(schedule.recovery_start() + schedule.cold),
                RGBColor(60, 120, 230).mix(0.12),
                "cold",
            ),
        ],
    }
}

fn plot(rows: &[Row], params: Params, path: &std::path::Path) -> Result<(), String> {
    use plotters::prelude::*;
    let rows: Vec<&Row> = rows.iter().filter(|r| r.skipped.is_none()).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let end_s = (params.schedule().end() + CLIENT_TIMEOUT_MS) as f64 / 1000.0;
    let steady = params.load() / 10.0;
    let y_max = rows
        .iter()
        .flat_map(|r| r.series.iter().flatten())
        .copied()
        .max()
        .unwrap_or(1) as f64;
    let y_max = y_max.clamp(steady * 1.2, steady * 3.0);
    let root = SVGBackend::new(path, (1100, 230 * rows.len() as u32 + 40)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (title, body) = root.split_vertically(40);
    title
        .draw_text(
            &format!(
                "Incident: {} processes × {} req/s; per 100 ms: requests reaching the downstream and callers' outcomes",
                params.workers, params.rate
            ),
            &("sans-serif", 18).into_font().color(&BLACK),
            (10, 12),
        )
        .map_err(|e| e.to_string())?;
    let panels = body.split_evenly((rows.len(), 1));
    let colors = [
        (BLACK, "reaching the downstream"),
        (RGBColor(30, 150, 60), "callers: ok"),
        (RGBColor(220, 40, 40), "callers: failed"),
        (RGBColor(240, 150, 0), "callers: rejected"),
    ];
    let close_color = RGBColor(60, 60, 60);
    let legend_on = rows
        .iter()
        .position(|r| r.kind != Kind::NoBreaker)
        .unwrap_or(0);
    for (index, (row, panel)) in rows.iter().zip(panels.iter()).enumerate() {
        let mut chart = ChartBuilder::on(panel)
            .caption(row.kind.label().replace('`', ""), ("sans-serif", 15))
            .margin(6)
            .x_label_area_size(22)
            .y_label_area_size(44)
            .build_cartesian_2d(0.0..end_s, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("s")
            .y_desc("per 100 ms")
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| e.to_string())?;
        for (from, to, color, label) in shades(&row.schedule) {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(from, 0.0), (to, y_max)],
                    color.filled(),
                )))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (from + 0.1, y_max * 0.95),
                    ("sans-serif", 11).into_font().color(&RGBColor(90, 90, 90)),
                )))
                .map_err(|e| e.to_string())?;
        }
        if let Some(close) = row
            .close_ms
            .filter(|_| row.kind != Kind::NoBreaker && row.kind.scenario() == Scenario::Incident)
        {
            let close = close / 1000.0;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(close, 0.0), (close, y_max)],
                    close_color.stroke_width(1),
                )))
                .map_err(|e| e.to_string())?
                .label("first close after the recovery")
                .legend(move |(x, y)| {
                    PathElement::new([(x + 8, y - 5), (x + 8, y + 5)], close_color)
                });
        }
        for (series, (color, label)) in row.series.iter().zip(colors) {
            chart
                .draw_series(LineSeries::new(
                    series
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| (i as f64 / 10.0 + 0.05, (v as f64).min(y_max))),
                    color.stroke_width(if color == BLACK { 2 } else { 1 }),
                ))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        // One legend, on the first panel with a breaker (so that it shows the close).
        if index != legend_on {
            continue;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let params = Params::read();
    let schedule = params.schedule();
    let load_before = load_average();
    println!(
        "incident: {} workers × {} req/s, phases {} + {} + {} + {} ms{}",
        params.workers,
        params.rate,
        schedule.healthy,
        schedule.fail503,
        schedule.hang,
        schedule.recovery,
        if params.quick { " (smoke run)" } else { "" }
    );
    let server = RedisServer::start();
    let mut redis = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("connecting to the bench's redis-server");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let run_id = monotonic_ns() / 1_000_000;
    let knows_slow_start = infuse_settings::SETTINGS
        .iter()
        .any(|s| s.name == "slow_start");
    // INCIDENT_ROWS=incident: the first table's rows only; =budgets: the slowdown's and
    // the outage's only.
    let only = std::env::var("INCIDENT_ROWS").unwrap_or_default();
    let every_row = !matches!(only.as_str(), "incident" | "budgets");
    let mut rows = Vec::new();
    for kind in Kind::ALL {
        let incident = kind.scenario() == Scenario::Incident;
        if (only == "incident" && !incident) || (only == "budgets" && incident) {
            continue;
        }
        if kind == Kind::FleetSlowStart && !knows_slow_start {
            let why = "this build of infuse has no `slow_start` setting".to_owned();
            println!("{}: {why}", kind.label());
            rows.push(Row::skipped(kind, schedule_of(kind, params), why));
            continue;
        }
        println!("{} …", kind.label());
        let _ = std::io::stdout().flush();
        rows.push(run_row(kind, params, &server, &mut redis, &rt, run_id));
    }
    let table = tables(&rows, params);
    println!("\n{table}");
    println!(
        "load average: {load_before} at start, {} at end",
        load_average()
    );
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::write(tmp.join("incident.md"), &table);
    let svg = match std::env::var_os("INCIDENT_SVG") {
        Some(path) => std::path::PathBuf::from(path),
        None if params.quick || !every_row => tmp.join("incident.svg"),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/incident.svg"),
    };
    match plot(&rows, params, &svg) {
        Ok(()) => println!("timeline: {}", svg.display()),
        Err(e) => eprintln!("could not draw the timeline {}: {e}", svg.display()),
    }
    println!("table: {}", tmp.join("incident.md").display());
    if params.quick {
        println!("(smoke run: `cargo bench -p infuse-bench --bench incident` for the figures)");
    }
    drop(rt);
    drop(server);
}
