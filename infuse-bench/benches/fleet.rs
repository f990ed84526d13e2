//! Fleet mode (breakers shared through Redis): what it costs on the healthy path, how it
//! compares with a naive Redis-backed breaker, how fast a trip reaches the fleet, and how
//! calls behave while Redis hangs.
//!
//! ```text
//! cargo bench --bench fleet
//! ```
//!
//! The binary starts its own `redis-server` processes on free ports (never the system one)
//! and measures, in one run:
//!
//! 1. **Healthy-path overhead** (criterion group `fleet/healthy_call`): the same guarded
//!    call through an in-memory breaker and through a Redis-mode breaker, plus the bare
//!    call, awaited in a current-thread runtime (`to_async`). Overhead = time − bare.
//! 2. **Guarded calls/s** of infuse (Redis mode) against a naive pybreaker-style breaker
//!    that asks Redis on every call (`GET state` before, `SET fail_counter 0` after a
//!    success), one task each, timed loops.
//! 3. **Trip propagation between registries of this one process**: 4 registries in this
//!    process (each with its own Redis connections and pub/sub subscription, all on one
//!    2-thread tokio runtime) on one Redis; a failure in registry 0 trips the breaker
//!    (`fail_max = 1`; the call's own result, with `error_on_trip`, tells that it was the
//!    tripping call); a listener on every registry timestamps the
//!    `on_state_change(_, Open)` with `Instant::now()`. Latency = that timestamp in
//!    registries 1–3 − the moment the tripping call in registry 0 *returned* (a registry
//!    that learned of the trip earlier counts as 0). Before the next trip the bench waits
//!    until every listener, registry 0's included, has been told (registry 0's may be
//!    told by the pub/sub echo, after its call returned). A second pass cross-checks with
//!    callers polling each breaker until it rejects. Propagation across OS processes,
//!    from a timestamp taken inside the failing call, is `benches/propagation.rs`.
//! 4. **Calls while Redis is SIGSTOPped**, with `redis_call_timeout(25 ms)`: a mix of
//!    successes, failures that trip, calls while open and trials, each call's latency
//!    recorded; then SIGCONT and the time until the registry records to Redis again.
//!
//! Sections 2–4 are plain timed loops that run after the criterion group; the summary
//! table is printed at the end. Under `cargo test` (no `--bench` argument) every section
//! runs a short smoke version.

use infuse_bench::AppError;
use std::fmt::Debug;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use infuse::{
    Breaker, BreakerError, CallOptions, Config, Listener, Registry, ServiceOverride, State, Verdict,
};
use infuse_tests::support::redis_server::RedisServer;
use redis::aio::ConnectionManager;

/// The call deadline of section 4 (also infuse's default).
const DEADLINE: Duration = Duration::from_millis(25);

/// tokio's timers tick every millisecond and fire at the first tick at or after their
/// deadline: a timed-out wait lasts the deadline plus up to ~1 ms plus scheduling.
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// How long each part runs: full under `cargo bench`, a smoke test under `cargo test`.
struct Plan {
    bench: bool,
    rate_time: Duration,
    trips: usize,
    polled_trips: usize,
    stopped_time: Duration,
}

impl Plan {
    fn from_args() -> Plan {
        let bench = std::env::args().any(|a| a == "--bench");
        if bench {
            Plan {
                bench,
                rate_time: Duration::from_secs(2),
                trips: 200,
                polled_trips: 100,
                stopped_time: Duration::from_secs(2),
            }
        } else {
            Plan {
                bench,
                rate_time: Duration::from_millis(100),
                trips: 5,
                polled_trips: 5,
                stopped_time: Duration::from_millis(300),
            }
        }
    }
}

fn is_open(r: &Result<(), AppError>) -> bool {
    matches!(r, Err(AppError::Breaker(BreakerError::Open { .. })))
}

async fn fail(breaker: &Breaker) -> Result<(), AppError> {
    breaker.call(async { Err(AppError::Failed) }).await
}

/// A failing call that returns [`BreakerError::Tripped`] instead of its own error when
/// the store recorded that this very failure opened the breaker.
async fn trip(breaker: &Breaker) -> Result<(), AppError> {
    breaker
        .call_with(CallOptions::new().error_on_trip(true), async {
            Err(AppError::Failed)
        })
        .await
}

fn is_tripped(r: &Result<(), AppError>) -> bool {
    matches!(r, Err(AppError::Breaker(BreakerError::Tripped { .. })))
}

async fn succeed(breaker: &Breaker) -> Result<(), AppError> {
    breaker.call(async { Ok(()) }).await
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn redis_config(server: &RedisServer, namespace: &str) -> Config {
    Config::redis(server.url())
        .namespace(namespace)
        .env_overrides(false)
}

/// Waits (polling every 200 µs) until `f` holds, for up to `limit`.
async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    true
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "**missed**"
    }
}

// ---------------------------------------------------------------------------------------
// 1. Healthy-path overhead: criterion group, timed with `iter_custom` so that the figures
//    of the summary table are the very samples criterion analysed.

/// The `(iterations, elapsed)` of every routine run of one benchmark; the last
/// `SAMPLE_SIZE` are criterion's measurement samples (the earlier ones are its warm-up).
type Runs = Arc<Mutex<Vec<(u64, Duration)>>>;

const SAMPLE_SIZE: usize = 100;

/// The median time per call over criterion's measurement samples.
fn per_call(runs: &Runs) -> Option<f64> {
    let runs = runs.lock().unwrap();
    let samples = &runs[runs.len().saturating_sub(SAMPLE_SIZE)..];
    let mut per: Vec<f64> = samples
        .iter()
        .filter(|(iters, _)| *iters > 0)
        .map(|(iters, elapsed)| elapsed.as_secs_f64() * 1e9 / *iters as f64)
        .collect();
    if per.is_empty() {
        return None;
    }
    per.sort_by(f64::total_cmp);
    Some(per[per.len() / 2])
}

async fn bare_call() -> Result<u64, BreakerError> {
    async { Ok::<u64, BreakerError>(black_box(1)) }.await
}

async fn guarded_call(breaker: &Breaker) -> Result<u64, BreakerError> {
    breaker
        .call(async { Ok::<u64, BreakerError>(black_box(1)) })
        .await
}

struct Healthy {
    bare: Option<f64>,
    memory: Option<f64>,
    redis: Option<f64>,
    /// Redis commands the server executed while the group ran (all sources; commands
    /// run inside scripts are counted too), by name.
    commands: Vec<(String, u64)>,
    /// `size_of_val` of the guarded call's future.
    future_bytes: usize,
    /// Seconds the group ran.
    seconds: f64,
}

fn section_healthy(c: &mut Criterion, server: &RedisServer) -> Healthy {
    let rt = current_thread();
    let (memory, redis) = rt.block_on(async {
        let memory = Registry::new(Config::in_memory().env_overrides(false))
            .await
            .expect("in-memory registry");
        let redis = Registry::new(redis_config(server, "bench-healthy"))
            .await
            .expect("Redis registry");
        let (m, r) = (memory.breaker("bench"), redis.breaker("bench"));
        // Warm-up: the Redis breaker loads the shared state on its first call.
        for _ in 0..1_000 {
            guarded_call(&m).await.unwrap();
            guarded_call(&r).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // boot traffic settles
        (memory, redis)
    });
    let (m, r) = (memory.breaker("bench"), redis.breaker("bench"));
    let runs: [Runs; 3] = Default::default();

    let future_bytes =
        std::mem::size_of_val(&r.call(async { Ok::<u64, BreakerError>(black_box(1)) }));
    let before = command_stats(server);
    let started = Instant::now();
    let mut g = c.benchmark_group("fleet/healthy_call");
    g.sample_size(SAMPLE_SIZE);
    {
        let runs = runs[0].clone();
        g.bench_function("bare", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let runs = runs.clone();
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(bare_call().await).unwrap();
                    }
                    let elapsed = start.elapsed();
                    runs.lock().unwrap().push((iters, elapsed));
                    elapsed
                }
            })
        });
    }
    for (name, breaker, runs) in [
        ("in_memory", &m, runs[1].clone()),
        ("redis", &r, runs[2].clone()),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (runs, breaker) = (runs.clone(), breaker.clone());
                async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(guarded_call(&breaker).await).unwrap();
                    }
                    let elapsed = start.elapsed();
                    runs.lock().unwrap().push((iters, elapsed));
                    elapsed
                }
            })
        });
    }
    g.finish();
    let seconds = started.elapsed().as_secs_f64();
    let commands = stats_delta(&command_stats(server), &before);
    rt.block_on(async move { drop((memory, redis)) });
    Healthy {
        bare: per_call(&runs[0]),
        memory: per_call(&runs[1]),
        redis: per_call(&runs[2]),
        commands,
        seconds,
        future_bytes,
    }
}

// ---------------------------------------------------------------------------------------
// 2. Guarded calls/s: infuse (Redis mode) against a naive Redis-backed breaker.

/// A pybreaker-style breaker on Redis (pybreaker's `CircuitRedisState`): every call reads
/// the state from Redis before running, and every success writes `fail_counter = 0`.
struct NaiveBreaker {
    conn: ConnectionManager,
    state_key: String,
    fail_key: String,
    fail_max: u64,
}

impl NaiveBreaker {
    async fn new(server: &RedisServer) -> NaiveBreaker {
        let client = redis::Client::open(server.url()).expect("redis url");
        let mut conn = ConnectionManager::new(client).await.expect("connect");
        let (state_key, fail_key) = (
            "naive:bench:state".to_owned(),
            "naive:bench:fail".to_owned(),
        );
        redis::cmd("SET")
            .arg(&state_key)
            .arg("closed")
            .query_async::<()>(&mut conn)
            .await
            .expect("SET");
        NaiveBreaker {
            conn,
            state_key,
            fail_key,
            fail_max: 5,
        }
    }

    async fn call<T, E: From<BreakerError>>(
        &mut self,
        future: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let state: Option<String> = redis::cmd("GET")
            .arg(&self.state_key)
            .query_async(&mut self.conn)
            .await
            .expect("GET state");
        if state.as_deref() == Some("open") {
            return Err(BreakerError::ForcedOpen { service: "naive" }.into());
        }
        match future.await {
            Ok(value) => {
                redis::cmd("SET")
                    .arg(&self.fail_key)
                    .arg(0)
                    .query_async::<()>(&mut self.conn)
                    .await
                    .expect("SET fail_counter");
                Ok(value)
            }
            Err(error) => {
                let failures: u64 = redis::cmd("INCR")
                    .arg(&self.fail_key)
                    .query_async(&mut self.conn)
                    .await
                    .expect("INCR fail_counter");
                if failures >= self.fail_max {
                    redis::cmd("SET")
                        .arg(&self.state_key)
                        .arg("open")
                        .query_async::<()>(&mut self.conn)
                        .await
                        .expect("SET state");
                }
                Err(error)
            }
        }
    }
}

#[derive(Default)]
struct Rate {
    calls: u64,
    elapsed: Duration,
    /// Redis commands executed meanwhile, by name.
    commands: Vec<(String, u64)>,
}

impl Rate {
    fn add_commands(&mut self, delta: Vec<(String, u64)>) {
        for (name, n) in delta {
            match self.commands.iter_mut().find(|(c, _)| *c == name) {
                Some((_, total)) => *total += n,
                None => self.commands.push((name, n)),
            }
        }
    }

    fn total_commands(&self) -> u64 {
        self.commands.iter().map(|(_, n)| n).sum()
    }

    fn per_second(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

struct Rates {
    infuse: Rate,
    naive: Rate,
    /// One Redis round trip (PING) through the naive breaker's connection.
    round_trip: Duration,
}

fn section_rates(plan: &Plan, server: &RedisServer) -> Rates {
    const BATCH: u64 = 4_096;
    const ROUNDS: u32 = 4;
    let rt = current_thread();
    rt.block_on(async {
        let registry = Registry::new(redis_config(server, "bench-rate"))
            .await
            .expect("Redis registry");
        let breaker = registry.breaker("bench");
        let mut naive = NaiveBreaker::new(server).await;
        // Warm-up.
        for _ in 0..1_000 {
            guarded_call(&breaker).await.unwrap();
            naive
                .call(async { Ok::<u64, BreakerError>(black_box(1)) })
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;

        // Alternating rounds, so that both designs see the same machine load.
        let round = plan.rate_time / ROUNDS;
        let mut infuse = Rate::default();
        let mut naive_rate = Rate::default();
        for _ in 0..ROUNDS {
            let before = command_stats(server);
            let start = Instant::now();
            while start.elapsed() < round {
                for _ in 0..BATCH {
                    black_box(guarded_call(&breaker).await).unwrap();
                }
                infuse.calls += BATCH;
                tokio::task::yield_now().await; // let the registry's background tasks run
            }
            infuse.elapsed += start.elapsed();
            infuse.add_commands(stats_delta(&command_stats(server), &before));

            let before = command_stats(server);
            let start = Instant::now();
            while start.elapsed() < round {
                for _ in 0..16 {
                    black_box(
                        naive
                            .call(async { Ok::<u64, BreakerError>(black_box(1)) })
                            .await,
                    )
                    .unwrap();
                }
                naive_rate.calls += 16;
            }
            naive_rate.elapsed += start.elapsed();
            naive_rate.add_commands(stats_delta(&command_stats(server), &before));
        }
        let mut conn = naive.conn.clone();
        let naive = naive_rate;
        // The floor of any design that asks Redis per call: one round trip (PING).
        let start = Instant::now();
        let mut pings = 0u32;
        while start.elapsed() < round {
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .expect("PING");
            pings += 1;
        }
        let round_trip = start.elapsed() / pings.max(1);
        drop(registry);
        Rates {
            infuse,
            naive,
            round_trip,
        }
    })
}

// ---------------------------------------------------------------------------------------
// 3. Trip propagation between 4 registries of this one process.

/// Timestamps the state changes one registry learns of.
struct Watch {
    /// The state this registry's view last moved to (`State` as 0/1/2).
    state: AtomicU8,
    /// When it last moved to open.
    opened: Mutex<Option<Instant>>,
}

impl Watch {
    fn new() -> Arc<Watch> {
        Arc::new(Watch {
            state: AtomicU8::new(0),
            opened: Mutex::new(None),
        })
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    fn opened(&self) -> Option<Instant> {
        *self.opened.lock().unwrap()
    }
}

impl Listener for Watch {
    fn on_state_change(&self, _service: &str, _from: State, to: State) {
        let now = Instant::now();
        if to == State::Open {
            *self.opened.lock().unwrap() = Some(now);
        }
        let code = to.code();
        self.state.store(code, Ordering::Release);
    }
}

struct Propagation {
    /// Listener-timestamped latencies (registries 1–3, all trips), from the return of the
    /// tripping call (zero when the registry knew before it returned).
    samples: Vec<Duration>,
    /// The same, from the start of the tripping call.
    from_start: Vec<Duration>,
    /// Of those, how many learned of the trip before registry 0's call had returned.
    before_return: usize,
    /// Trips after which some registry did not learn of it within 2 s.
    missing: usize,
    /// Trips whose tripping registry's own listener had not been told yet when the
    /// tripping call returned (told by the pub/sub echo, on another thread).
    own_told_late: usize,
    /// Registries that had been notified but did not reject the next call.
    not_rejecting: usize,
    /// Polling cross-check: time until a call in registries 1–3 is rejected.
    polled: Vec<Duration>,
    polled_missing: usize,
    trips: usize,
}

fn section_propagation(plan: &Plan, server: &RedisServer) -> Propagation {
    const SERVICE: &str = "propagation";
    let rt = multi_thread();
    rt.block_on(async {
        let watches: Vec<Arc<Watch>> = (0..4).map(|_| Watch::new()).collect();
        let mut registries = Vec::new();
        for watch in &watches {
            let config = redis_config(server, "bench-propagation")
                .service(
                    SERVICE,
                    ServiceOverride::new()
                        .fail_max(1)
                        .reset_timeout(Duration::from_secs(600)),
                )
                .listener(watch.clone());
            registries.push(Registry::new(config).await.expect("Redis registry"));
        }
        let breakers: Vec<Breaker> = registries.iter().map(|r| r.breaker(SERVICE)).collect();
        breakers[0].close().await.expect("close");
        for b in &breakers {
            let _ = succeed(b).await; // loads the shared state
        }
        tokio::time::sleep(Duration::from_millis(100)).await;

        // Closes the breaker (fleet-wide) and waits until every registry knows.
        let close_all = async || {
            breakers[0].close().await.expect("close");
            let closed = wait_until(Duration::from_secs(2), || {
                watches.iter().all(|w| w.state() == 0)
            })
            .await;
            assert!(closed, "the fleet did not learn of the close within 2 s");
            for w in &watches {
                *w.opened.lock().unwrap() = None;
            }
        };

        let mut out = Propagation {
            samples: Vec::new(),
            from_start: Vec::new(),
            before_return: 0,
            missing: 0,
            own_told_late: 0,
            not_rejecting: 0,
            polled: Vec::new(),
            polled_missing: 0,
            trips: plan.trips,
        };
        for _ in 0..plan.trips {
            close_all().await;
            let started = Instant::now();
            let result = trip(&breakers[0]).await;
            let returned = Instant::now();
            // Whether this call tripped is the store's verdict, carried by the call's own
            // result (`error_on_trip`). Registry 0's *listener* is no witness of it at this
            // point: the view change, and so the notification, may come from the pub/sub
            // echo of the write, handled on another worker thread, which can run its
            // listeners after the call returned.
            assert!(
                is_tripped(&result),
                "the failure did not trip the breaker: {result:?}"
            );
            if watches[0].opened().is_none() {
                out.own_told_late += 1;
            }
            // Every registry, 0 included, must have been notified before the next close,
            // or a late notification of this trip would land after it.
            let all = wait_until(Duration::from_secs(2), || {
                watches.iter().all(|w| w.opened().is_some())
            })
            .await;
            if !all {
                out.missing += 1;
            }
            for (watch, breaker) in watches[1..].iter().zip(&breakers[1..]) {
                if let Some(seen) = watch.opened() {
                    out.from_start.push(seen.saturating_duration_since(started));
                    match seen.checked_duration_since(returned) {
                        Some(d) => out.samples.push(d),
                        None => {
                            out.before_return += 1;
                            out.samples.push(Duration::ZERO);
                        }
                    }
                    if !is_open(&succeed(breaker).await) {
                        out.not_rejecting += 1;
                    }
                }
            }
        }

        // Cross-check: callers in registries 1–3 poll with guarded calls (yielding between
        // rounds) until each is rejected.
        for _ in 0..plan.polled_trips {
            close_all().await;
            let result = trip(&breakers[0]).await;
            let returned = Instant::now();
            assert!(
                is_tripped(&result),
                "the failure did not trip the breaker: {result:?}"
            );
            let mut pending: Vec<&Breaker> = breakers[1..].iter().collect();
            while !pending.is_empty() {
                if returned.elapsed() > Duration::from_secs(2) {
                    out.polled_missing += pending.len();
                    break;
                }
                let mut i = 0;
                while i < pending.len() {
                    if is_open(&succeed(pending[i]).await) {
                        out.polled.push(returned.elapsed());
                        pending.swap_remove(i);
                    } else {
                        i += 1;
                    }
                }
                tokio::task::yield_now().await;
            }
            // As above: let every listener hear of this trip before the next close.
            wait_until(Duration::from_secs(2), || {
                watches.iter().all(|w| w.opened().is_some())
            })
            .await;
        }
        breakers[0].close().await.expect("close");
        drop(breakers);
        drop(registries);
        out
    })
}

// ---------------------------------------------------------------------------------------
// 4. Calls while Redis is SIGSTOPped.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Success,
    Failure,
    Trip,
    TrialSuccess,
    TrialFailure,
    Rejected,
}

const KINDS: [Kind; 6] = [
    Kind::Success,
    Kind::Failure,
    Kind::Trip,
    Kind::TrialSuccess,
    Kind::TrialFailure,
    Kind::Rejected,
];

/// One guarded call of the mix: what `Breaker::call` does (acquire, run, report), spelled
/// out so the bench knows whether the call was a trial.
async fn mixed_call(breaker: &Breaker, failing: bool) -> Kind {
    let permit = match breaker.acquire().await {
        Ok(permit) => permit,
        Err(_) => return Kind::Rejected,
    };
    let trial = permit.is_trial();
    let outcome: Result<(), AppError> = if failing {
        Err(AppError::Failed)
    } else {
        Ok(())
    };
    match (outcome, trial) {
        (Ok(()), true) => {
            permit.success().await;
            Kind::TrialSuccess
        }
        (Ok(()), false) => {
            permit.success().await;
            Kind::Success
        }
        (Err(e), true) => {
            permit.failure(&e).await;
            Kind::TrialFailure
        }
        (Err(e), false) => match permit.failure(&e).await {
            Verdict::Tripped => Kind::Trip,
            _ => Kind::Failure,
        },
    }
}

/// Phases of section 4 (each call is tagged with the phase it started in).
const HEALTHY: u8 = 0;
const STOPPED: u8 = 1;
const RESUMED: u8 = 2;
const RECOVERED: u8 = 3;

struct Call {
    phase: u8,
    kind: Kind,
    latency: Duration,
}

/// Runs the mix on `tasks` tasks until `stop`: six successes then six failures (fail_max
/// 3 trips), whatever the state, a call every ~1 ms per task.
fn spawn_mix(
    breaker: &Breaker,
    tasks: usize,
    phase: &Arc<AtomicU8>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Call>>> {
    let counter = Arc::new(AtomicU64::new(0));
    (0..tasks)
        .map(|_| {
            let (breaker, phase, stop, counter) = (
                breaker.clone(),
                phase.clone(),
                stop.clone(),
                counter.clone(),
            );
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let failing = counter.fetch_add(1, Ordering::Relaxed) % 12 >= 6;
                    let phase = phase.load(Ordering::Acquire);
                    let start = Instant::now();
                    let kind = mixed_call(&breaker, failing).await;
                    calls.push(Call {
                        phase,
                        kind,
                        latency: start.elapsed(),
                    });
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                calls
            })
        })
        .collect()
}

struct PhaseStats {
    count: usize,
    by_kind: Vec<(Kind, usize, Duration)>,
    p50: Duration,
    p99: Duration,
    max: Duration,
    max_kind: Option<Kind>,
    over_deadline: usize,
    over_deadline_plus_slack: usize,
}

fn phase_stats(calls: &[Call], phase: u8) -> PhaseStats {
    let of_phase: Vec<&Call> = calls.iter().filter(|c| c.phase == phase).collect();
    let mut latencies: Vec<Duration> = of_phase.iter().map(|c| c.latency).collect();
    latencies.sort();
    let worst = of_phase.iter().max_by_key(|c| c.latency);
    PhaseStats {
        count: of_phase.len(),
        by_kind: KINDS
            .iter()
            .map(|k| {
                let of_kind = of_phase.iter().filter(|c| c.kind == *k);
                let max = of_kind.clone().map(|c| c.latency).max().unwrap_or_default();
                (*k, of_kind.count(), max)
            })
            .collect(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: worst.map(|c| c.latency).unwrap_or_default(),
        max_kind: worst.map(|c| c.kind),
        over_deadline: latencies.iter().filter(|l| **l > DEADLINE).count(),
        over_deadline_plus_slack: latencies
            .iter()
            .filter(|l| **l > DEADLINE + TIMER_SLACK)
            .count(),
    }
}

struct Stopped {
    healthy: PhaseStats,
    stopped: PhaseStats,
    resumed: PhaseStats,
    /// Calls once the registry records to Redis again.
    recovered: PhaseStats,
    /// Redis commands executed from the recovery to the end of the section.
    recovered_commands: Vec<(String, u64)>,
    /// The mix breaker's shared state at the end.
    final_snapshot: Option<infuse::Snapshot>,
    /// From SIGCONT until an admin read (`state()`) of the breaker answered.
    answering_after: Option<Duration>,
    /// From SIGCONT until a failing call was recorded in Redis again.
    healthy_after: Option<Duration>,
    /// Commands Redis executed between SIGSTOP and its first answer after SIGCONT (sent
    /// while it was stopped, executed late), by name.
    late_commands: Vec<(String, u64)>,
    /// State transitions the mix breaker's listener saw, by `from -> to`.
    transitions: Vec<(String, u64)>,
}

/// Counts state transitions.
struct Transitions(Mutex<Vec<(String, u64)>>);

impl Listener for Transitions {
    fn on_state_change(&self, _service: &str, from: State, to: State) {
        let key = format!("{from} -> {to}");
        let mut all = self.0.lock().unwrap();
        match all.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => all.push((key, 1)),
        }
    }
}

/// `INFO commandstats` as `(command, calls)`, without the harness's own commands.
fn command_stats(server: &RedisServer) -> Vec<(String, u64)> {
    server
        .command_stats()
        .into_iter()
        .filter(|(name, _)| name != "info" && name != "config")
        .collect()
}

fn stats_delta(after: &[(String, u64)], before: &[(String, u64)]) -> Vec<(String, u64)> {
    after
        .iter()
        .filter_map(|(name, n)| {
            let was = before
                .iter()
                .find(|(b, _)| b == name)
                .map_or(0, |(_, n)| *n);
            (*n > was).then(|| (name.clone(), n - was))
        })
        .collect()
}

fn section_stopped(plan: &Plan) -> Stopped {
    const MIX: &str = "mix";
    const PROBE: &str = "probe";
    let server = RedisServer::start();
    let rt = multi_thread();
    rt.block_on(async {
        let transitions = Arc::new(Transitions(Mutex::new(Vec::new())));
        let config = redis_config(&server, "bench-stopped")
            .redis_call_timeout(DEADLINE)
            .service(
                MIX,
                ServiceOverride::new()
                    .fail_max(3)
                    .reset_timeout(Duration::from_millis(100)),
            )
            .service(
                PROBE,
                ServiceOverride::new()
                    .fail_max(1_000_000)
                    .reset_timeout(Duration::from_secs(600)),
            );
        let registry = Registry::new(config).await.expect("Redis registry");
        let (mix, probe) = (registry.breaker(MIX), registry.breaker(PROBE));
        mix.add_listener(transitions.clone());
        let _ = succeed(&mix).await;
        let _ = succeed(&probe).await;
        tokio::time::sleep(Duration::from_millis(100)).await;

        let phase = Arc::new(AtomicU8::new(HEALTHY));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = spawn_mix(&mix, 2, &phase, &stop);
        tokio::time::sleep(plan.stopped_time / 4).await; // a healthy-Redis reference

        let before_stop = command_stats(&server);
        phase.store(STOPPED, Ordering::Release);
        server.pause();
        tokio::time::sleep(plan.stopped_time).await;

        server.resume();
        let resumed = Instant::now();
        phase.store(RESUMED, Ordering::Release);
        let mut answering_after = None;
        let mut healthy_after = None;
        let mut late_commands = Vec::new();
        let mut recovered_from = Vec::new();
        while resumed.elapsed() < Duration::from_secs(10) {
            if answering_after.is_none() {
                if probe.state().await.is_ok() {
                    answering_after = Some(resumed.elapsed());
                    late_commands = stats_delta(&command_stats(&server), &before_stop);
                } else {
                    continue;
                }
            }
            // Healthy again = a failing call's record reaches Redis (the probe's fleet
            // counter moves), rather than the local fallback.
            let Ok(before) = probe.fail_counter().await else {
                continue;
            };
            let _ = fail(&probe).await;
            let at = resumed.elapsed();
            if matches!(probe.fail_counter().await, Ok(after) if after > before) {
                healthy_after = Some(at);
                phase.store(RECOVERED, Ordering::Release);
                recovered_from = command_stats(&server);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(plan.stopped_time / 2).await; // calls after recovery
        stop.store(true, Ordering::Release);
        let mut calls = Vec::new();
        for task in tasks {
            calls.extend(task.await.expect("mix task"));
        }
        let recovered_commands = stats_delta(&command_stats(&server), &recovered_from);
        let final_snapshot = mix.snapshot().await.ok();
        drop((mix, probe));
        drop(registry);
        let transitions = transitions.0.lock().unwrap().clone();
        Stopped {
            healthy: phase_stats(&calls, HEALTHY),
            stopped: phase_stats(&calls, STOPPED),
            resumed: phase_stats(&calls, RESUMED),
            recovered: phase_stats(&calls, RECOVERED),
            final_snapshot,
            recovered_commands,
            answering_after,
            healthy_after,
            late_commands,
            transitions,
        }
    })
}

// ---------------------------------------------------------------------------------------
// The report.

fn print_phase(name: &str, s: &PhaseStats) {
    println!(
        "  {name}: {} calls, p50 {}, p99 {}, max {} ({:?}), > {} ms: {}, > {} ms: {}",
        s.count,
        ms(s.p50),
        ms(s.p99),
        ms(s.max),
        s.max_kind,
        DEADLINE.as_millis(),
        s.over_deadline,
        (DEADLINE + TIMER_SLACK).as_millis(),
        s.over_deadline_plus_slack,
    );
    let kinds: Vec<String> = s
        .by_kind
        .iter()
        .map(|(k, n, max)| format!("{k:?} {n} (max {})", ms(*max)))
        .collect();
    println!("    by kind: {}", kinds.join(", "));
}

fn report(plan: &Plan, h: &Healthy, r: &Rates, p: &Propagation, s: &Stopped) {
    // A smoke run's figures come from a handful of calls: no verdicts.
    let met = |yes: bool| if plan.bench { met(yes) } else { "(smoke run)" };
    println!("\n=== fleet benchmark details ===");
    println!(
        "1. healthy call: bare {:?} ns, in-memory {:?} ns, Redis {:?} ns (median per call over \
         criterion's samples); the guarded call's future is {} bytes; Redis commands executed \
         during the group ({:.1} s): {:?} (criterion's loop never yields, so the registry's \
         background resync does not run during it)",
        h.bare, h.memory, h.redis, h.future_bytes, h.seconds, h.commands
    );
    println!(
        "2. infuse: {} calls in {} (Redis meanwhile: {:?}, the periodic resync); \
         naive: {} calls in {} (Redis: {:?}, {:.2} commands per call)",
        r.infuse.calls,
        ms(r.infuse.elapsed),
        r.infuse.commands,
        r.naive.calls,
        ms(r.naive.elapsed),
        r.naive.commands,
        r.naive.total_commands() as f64 / r.naive.calls as f64,
    );
    println!(
        "   per call: infuse {:.1} ns, naive {:.1} µs; one Redis round trip (PING) {:.1} µs",
        1e9 / r.infuse.per_second(),
        1e6 / r.naive.per_second(),
        r.round_trip.as_secs_f64() * 1e6,
    );
    let mut samples = p.samples.clone();
    samples.sort();
    let mut polled = p.polled.clone();
    polled.sort();
    let mut from_start = p.from_start.clone();
    from_start.sort();
    println!(
        "3. {} trips × 3 other registries of this process: {} listener samples (p50 {}, p90 {}, p99 {}, max {}), \
         {} seen before the tripping call returned, {} trips not seen everywhere within 2 s, \
         {} notified registries not rejecting, {} trips whose own registry's listener was told \
         after the tripping call returned; polling cross-check: {} samples (p50 {}, p99 {}, max {}), {} missing",
        p.trips,
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(percentile(&samples, 0.99)),
        ms(samples.last().copied().unwrap_or_default()),
        p.before_return,
        p.missing,
        p.not_rejecting,
        p.own_told_late,
        polled.len(),
        ms(percentile(&polled, 0.5)),
        ms(percentile(&polled, 0.99)),
        ms(polled.last().copied().unwrap_or_default()),
        p.polled_missing,
    );
    println!("4. calls of the mix (2 tasks, a call every ~1 ms each):");
    print_phase("Redis healthy", &s.healthy);
    print_phase("Redis SIGSTOPped", &s.stopped);
    print_phase("after SIGCONT, registry still degraded", &s.resumed);
    print_phase("after the registry recovered", &s.recovered);
    println!(
        "  after SIGCONT: admin read answered after {:?}, failures recorded in Redis again after {:?}",
        s.answering_after, s.healthy_after
    );
    println!(
        "  commands sent while stopped and executed after SIGCONT: {:?}",
        s.late_commands
    );
    println!("  transitions of the mix breaker: {:?}", s.transitions);
    println!(
        "  Redis commands executed once recovered (mix calls and the final snapshot): {:?}",
        s.recovered_commands
    );
    println!(
        "  the mix breaker in Redis at the end: {:?}",
        s.final_snapshot
    );

    let ns = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1} ns"));
    let (overhead_ratio, total_ratio) = match (h.bare, h.memory, h.redis) {
        (Some(b), Some(m), Some(r)) => (Some((r - b) / (m - b)), Some(r / m)),
        _ => (None, None),
    };
    let ratio = (r.infuse.per_second() / r.naive.per_second()).round();
    let p99 = percentile(&samples, 0.99);
    println!("\n=== fleet benchmark summary ===");
    println!("| # | figure | value | target | |");
    println!("|---|---|---|---|---|");
    println!(
        "| 1 | healthy call, bare / in-memory / Redis (median per call) | {} / {} / {} | | |",
        ns(h.bare),
        ns(h.memory),
        ns(h.redis)
    );
    println!(
        "| 1 | overhead (time − bare): in-memory / Redis | {} / {} | | |",
        ns(h.memory.zip(h.bare).map(|(m, b)| m - b)),
        ns(h.redis.zip(h.bare).map(|(r, b)| r - b)),
    );
    println!(
        "| 1 | Redis ÷ in-memory: overhead / total | {} / {} | ≤ 1.5× | {} |",
        overhead_ratio.map_or("n/a".into(), |x| format!("{x:.2}×")),
        total_ratio.map_or("n/a".into(), |x| format!("{x:.2}×")),
        met(overhead_ratio.is_some_and(|x| x <= 1.5)),
    );
    println!(
        "| 2 | guarded calls/s, infuse (Redis mode) / naive | {:.0} / {:.0} | | |",
        r.infuse.per_second(),
        r.naive.per_second()
    );
    println!(
        "| 2 | infuse ÷ naive | {ratio:.0}× | ≥ 1000× | {} |",
        met(ratio >= 1000.0)
    );
    println!(
        "| 3 | trip propagation to 3 other registries of this process, listener, from the tripping call's return: p50 / p99 / max ({} samples) | {} / {} / {} | p99 ≤ 5 ms | {} |",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(p99),
        ms(samples.last().copied().unwrap_or_default()),
        met(p.missing == 0 && p99 <= Duration::from_millis(5)),
    );
    println!(
        "| 3 | the same, from the start of the tripping call: p50 / p99 / max | {} / {} / {} | | |",
        ms(percentile(&from_start, 0.5)),
        ms(percentile(&from_start, 0.99)),
        ms(from_start.last().copied().unwrap_or_default()),
    );
    println!(
        "| 3 | the same, polling callers (from the return): p50 / p99 ({} samples) | {} / {} | | |",
        polled.len(),
        ms(percentile(&polled, 0.5)),
        ms(percentile(&polled, 0.99)),
    );
    println!(
        "| 4 | calls while SIGSTOPped: max / p99 ({} calls) | {} / {} | max ≤ {} ms | {} |",
        s.stopped.count,
        ms(s.stopped.max),
        ms(s.stopped.p99),
        DEADLINE.as_millis(),
        met(s.stopped.over_deadline == 0),
    );
    println!(
        "| 4 | calls while SIGSTOPped: count > {} ms (strict) / > {} ms (deadline + timer tick) | {} / {} | 0 / 0 | {} / {} |",
        DEADLINE.as_millis(),
        (DEADLINE + TIMER_SLACK).as_millis(),
        s.stopped.over_deadline,
        s.stopped.over_deadline_plus_slack,
        met(s.stopped.over_deadline == 0),
        met(s.stopped.over_deadline_plus_slack == 0),
    );
    println!(
        "| 4 | calls after SIGCONT: max / count > {} ms ({} calls) | {} / {} | | |",
        DEADLINE.as_millis(),
        s.resumed.count + s.recovered.count,
        ms(s.resumed.max.max(s.recovered.max)),
        s.resumed.over_deadline + s.recovered.over_deadline,
    );
    let count = |kinds: &[Kind]| -> usize {
        s.recovered
            .by_kind
            .iter()
            .filter(|(k, _, _)| kinds.contains(k))
            .map(|(_, n, _)| n)
            .sum()
    };
    println!(
        "| 4 | calls once recovered: ran / trials / rejected ({} calls) | {} / {} / {} | | |",
        s.recovered.count,
        count(&[Kind::Success, Kind::Failure, Kind::Trip]),
        count(&[Kind::TrialSuccess, Kind::TrialFailure]),
        count(&[Kind::Rejected]),
    );
    println!(
        "| 4 | SIGCONT → Redis answers / → failures recorded in Redis again | {} / {} | | |",
        s.answering_after.map_or("never".into(), ms),
        s.healthy_after.map_or("never".into(), ms),
    );
}

/// The 1-, 5- and 15-minute load averages (other processes perturb the figures).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let plan = Plan::from_args();
    let load_before = load_average();
    let server = RedisServer::start();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let healthy = section_healthy(&mut c, &server);
    c.final_summary();
    let rates = section_rates(&plan, &server);
    let propagation = section_propagation(&plan, &server);
    let stopped = section_stopped(&plan);
    report(&plan, &healthy, &rates, &propagation, &stopped);
    println!(
        "load average: {load_before} at start, {} at end",
        load_average()
    );
    if !plan.bench {
        println!("(smoke run: `cargo bench --bench fleet` for the figures)");
    }
}
