//! Per-call overhead of infuse against a bare call and against `failsafe` and `recloser`.
//!
//! ```text
//! cargo bench -p infuse-bench --bench overhead
//! ```
//!
//! # What is measured, and how
//!
//! Every guarded future here completes on its first poll (the breakers' fast paths never
//! wait, and the "remote call" is `async { Ok(black_box(x)) }`), so the single-task rows
//! drive each call with one `poll` on a no-op waker ([`run`]): no executor, no timer, no
//! scheduling noise — only the breaker's own work plus the bare call. Each row's figure
//! is the time of one whole call (creating the guarded future, polling it once, dropping
//! it and its output); overhead = the row − `baseline: bare call`.
//!
//! Rows (group `single task`; the same names in the other groups):
//!
//! - `baseline: bare call`: the unguarded call.
//! - `infuse closed: call()`: `breaker.call(future)` on a closed in-memory breaker (the
//!   returned future borrows the breaker).
//! - `infuse closed: call_owned()`: `breaker.call_owned(CallOptions::new(), future)` on
//!   the same breaker: the `'static` future that owns a clone of the handle, so the row
//!   includes cloning and dropping that handle (an `Arc`).
//! - `infuse closed: #[circuit_breaker]`: the same call behind the attribute (the global
//!   registry, in memory).
//! - `infuse closed: call(), failure_rate = 50` / `…, timeout = 1s` /
//!   `…, slow_call = 1s + slow_call_rate = 50`: `call()` on closed in-memory breakers
//!   with a backpressure setting, against `infuse closed: call()` (pybreaker's
//!   consecutive rule alone) in the same run. A rate rule counts each outcome into the
//!   process's tally (one `fetch_add`; a background task reports it every 100 ms); a
//!   timeout or slow-call rule reads the clock and boxes the timed phase (and, for a
//!   timeout, a tokio timer that is never polled, since the call completes at once).
//!   The bench thread (and each thread of the 2-thread group) has a tokio runtime
//!   entered (`Runtime::enter`, one worker thread, otherwise idle) for the flush task
//!   and the timers, as an application's calls would.
//! - `infuse closed: call(), max_concurrent = 64`: `call()` on a closed in-memory breaker
//!   with a concurrency cap: the call takes a permit (one compare-and-swap) and gives it
//!   back (one subtraction), against `infuse closed: call()` in the same run.
//! - `infuse closed (Redis): call()` / `infuse closed (Redis): call(), max_concurrent =
//!   64`: the same pair on a Redis-mode registry (a `redis-server` this bench starts on a
//!   free port; the registry's background tasks run on the flush runtime below). A closed
//!   call sends no Redis command, nor does a capped one: it takes a permit of the
//!   process's lease of the fleet's cap, which a background task renews. Before each
//!   sample of the capped row the bench makes sure the lease holds a permit (the keeper
//!   gives an idle lease back), outside the timing.
//! - `infuse closed: call(), with BreakerMetrics`: `call()` on a closed breaker with the
//!   `metrics` feature's listener, recording into `infuse_bench::AtomicRecorder` (atomics,
//!   as an exporter's hot path): two listener events, two clock reads, a counter and a
//!   histogram per call.
//! - `infuse open: rejected`: `call()` on a breaker opened with `open()` (a 24 h
//!   `reset_timeout`) inside the tokio runtime, so that a timer is armed for the end of
//!   the open period and the rejection reads no clock (infuse reads it only in the last
//!   5 ms of an open period, or when no runtime could arm the timer): rejected with
//!   `Open { retry_at }`.
//! - `infuse forced open: rejected`: `call()` on a breaker held open with `force_open()`:
//!   rejected with `ForcedOpen`.
//! - `failsafe closed` / `failsafe open: rejected`: failsafe's futures `CircuitBreaker`,
//!   5 consecutive failures open it for 60 s / opened by one failure, 24 h back-off.
//! - `recloser closed` / `recloser open: rejected`: recloser's defaults (ring buffer of
//!   100 calls, 50 % error rate) / `closed_len(1)`, `open_wait` 24 h, opened by failures.
//!
//! Groups:
//!
//! - `single task`: timed in the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`),
//!   so that other processes sharing the machine do not add their time slices to ours;
//!   the code measured never blocks, so for it CPU time is the cost of the call.
//!   `INFUSE_BENCH_CLOCK=wall` times them in wall-clock time instead. The `clock` group
//!   times one read of each monotonic clock the same way.
//! - `tokio current-thread`: a cross-check of some rows, each call awaited inside a
//!   current-thread tokio runtime (criterion's `to_async`), as applications run them;
//!   includes criterion's async loop. Not the rate rows: criterion's loop never yields,
//!   so that runtime would never run the tally's flush task, and the counts would pile
//!   up for the whole measurement (past the tally's high-water mark, after which every
//!   call takes the cold path).
//! - `2 threads: aggregate wall time per call`: two OS threads each make N calls through
//!   the *same* shared breaker at once; the figure is the pair's wall time / (2N), the
//!   **aggregate wall time per call of two threads** — not the cost of one call (each
//!   call takes about twice that on its own thread). It shows contention on shared cache
//!   lines: with none, it is about half the single-task figure on this 2-core machine.
//!
//! Before the timings, the binary counts heap allocations (through a counting global
//! allocator) over 10 000 calls of each kind, and panics if an infuse closed call
//! (`call()`, `call_owned()` or the attribute) or rejection (open or forced open)
//! allocated, or if a call under a rate rule allocated per call (the task that reports
//! the tally is spawned once per report period, not per call), or an in-memory capped
//! call. The Redis-mode registry is created after that count (its background tasks
//! allocate, and the count is global).
//!
//! Instruction counts of the same paths, free of timing noise: `infuse-bench/callgrind.sh`.
//!
//! Caveat: the workspace's dev-dependencies enable tokio's `test-util` feature, so
//! `tokio::time::Instant::now()` (the clock infuse reads, though none of the rows above
//! does) does one extra atomic load compared with a production build; the `clock/…` rows
//! show that cost.

use infuse_bench::{run, AppError};
use std::future::Future;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion};
use infuse::{BreakerError, CallOptions, Config, Registry, ServiceOverride};
use infuse_tests::support::redis_server::RedisServer;

// ---------------------------------------------------------------------------------------
// A global allocator that counts allocations, to check that the open path allocates
// nothing. Its cost (one relaxed atomic add per allocation) does not touch the measured
// paths, which do not allocate.

#[global_allocator]
static GLOBAL: infuse_bench::CountingAlloc = infuse_bench::CountingAlloc;

// ---------------------------------------------------------------------------------------
// Thread CPU time as a criterion measurement.

/// The calling thread's CPU time (Linux/Unix `CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpuTime;

#[cfg(target_os = "linux")]
fn thread_cpu_now() -> Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.sec as u64, ts.nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_now() -> Duration {
    // Elsewhere, fall back to a monotonic wall clock.
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

// ---------------------------------------------------------------------------------------
// The call being guarded.

/// The baseline: a bare async call that succeeds at once.
async fn bare(x: u64) -> Result<u64, AppError> {
    Ok::<u64, AppError>(black_box(x))
}

/// The same call behind the attribute (default settings, in-memory store).
#[infuse::circuit_breaker(service = "bench-macro")]
async fn guarded(x: u64) -> Result<u64, AppError> {
    Ok::<u64, AppError>(black_box(x))
}

/// The same call through [`infuse::Breaker::call_owned`]: the guarded future owns a
/// clone of the handle (an `Arc` increment here, a decrement when it is dropped), so it
/// is `'static`.
#[inline(always)]
fn owned(
    breaker: &infuse::Breaker,
    x: u64,
) -> impl Future<Output = Result<u64, AppError>> + 'static {
    breaker.call_owned(CallOptions::new(), bare(x))
}

async fn failing() -> Result<u64, AppError> {
    Err(AppError::Failed)
}

/// Runs `calls(n)` on two threads at once, each inside `runtime`; returns wall time / 2,
/// so that criterion's per-iteration figure is wall time / (2N).
fn two_threads(
    iters: u64,
    runtime: &tokio::runtime::Handle,
    calls: impl Fn(u64) + Sync,
) -> Duration {
    let barrier = Barrier::new(3);
    std::thread::scope(|s| {
        let workers = [(); 2].map(|_| {
            s.spawn(|| {
                let _runtime = runtime.enter();
                barrier.wait();
                calls(iters);
            })
        });
        barrier.wait();
        let start = Instant::now();
        for worker in workers {
            worker.join().expect("benchmark thread panicked");
        }
        start.elapsed() / 2
    })
}

// ---------------------------------------------------------------------------------------
// The breakers under test.

const LONG: Duration = Duration::from_secs(24 * 3600);

/// The concurrency cap of the capped rows (the callgrind probe's too).
const CAP: u32 = 64;

type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    (),
>;

struct Breakers {
    infuse_closed: infuse::Breaker,
    /// `failure_rate = 50` (a rate rule: calls are counted).
    infuse_rate: infuse::Breaker,
    /// `timeout = 1s` (calls are timed, under a timer).
    infuse_timeout: infuse::Breaker,
    /// `slow_call = 1s`, `slow_call_rate = 50` (calls are timed and counted).
    infuse_slow: infuse::Breaker,
    /// `max_concurrent = 64` (a permit per call).
    infuse_capped: infuse::Breaker,
    /// Opened with `open()` (tripped state, 24 h `reset_timeout`).
    infuse_open: infuse::Breaker,
    /// Held open with `force_open()`.
    infuse_forced: infuse::Breaker,
    /// With `BreakerMetrics` counting into atomics (`AtomicRecorder`): listener events,
    /// two clock reads, a counter and a histogram per call.
    infuse_metrics: infuse::Breaker,
    /// pybreaker-like policy: 5 consecutive failures open it for 60 s.
    failsafe_closed: Failsafe,
    failsafe_open: Failsafe,
    /// recloser's defaults (ring buffer of 100 calls, 50 % error rate).
    recloser_closed: recloser::AsyncRecloser,
    recloser_open: recloser::AsyncRecloser,
}

fn failsafe_breaker(fail_max: u32, open_for: Duration) -> Failsafe {
    use failsafe::{backoff, failure_policy};
    failsafe::Config::new()
        .failure_policy(failure_policy::consecutive_failures(
            fail_max,
            backoff::constant(open_for),
        ))
        .build()
}

fn setup(rt: &tokio::runtime::Runtime, flusher: &tokio::runtime::Handle) -> Breakers {
    use failsafe::futures::CircuitBreaker as _;

    rt.block_on(async {
        infuse::init(
            Config::in_memory()
                .env_overrides(false)
                // These are created below with `infuse::breaker`, not declared.
                .allow_undeclared_overrides(true)
                .service("bench-open", ServiceOverride::new().reset_timeout(LONG))
                .service("bench-rate", ServiceOverride::new().failure_rate(50))
                .service("bench-capped", ServiceOverride::new().max_concurrent(CAP))
                .service(
                    "bench-timeout",
                    ServiceOverride::new().timeout(Duration::from_secs(1)),
                )
                .service(
                    "bench-slow",
                    ServiceOverride::new()
                        .slow_call(Duration::from_secs(1))
                        .slow_call_rate(50),
                ),
        )
        .await
        .expect("infuse::init");
    });
    let infuse_open = infuse::breaker("bench-open");
    rt.block_on(infuse_open.open()).expect("open");
    let infuse_forced = infuse::breaker("bench-forced");
    rt.block_on(infuse_forced.force_open()).expect("force_open");

    let failsafe_open = failsafe_breaker(1, LONG);
    assert!(matches!(
        run(failsafe_open.call(failing())),
        Err(failsafe::Error::Inner(_))
    ));

    let recloser_open: recloser::AsyncRecloser = recloser::Recloser::custom()
        .closed_len(1)
        .open_wait(LONG)
        .build()
        .into();
    for _ in 0..2 {
        let _ = run(recloser_open.call(failing()));
    }

    let breakers = Breakers {
        infuse_closed: infuse::breaker("bench-call"),
        infuse_rate: infuse::breaker("bench-rate"),
        infuse_timeout: infuse::breaker("bench-timeout"),
        infuse_slow: infuse::breaker("bench-slow"),
        infuse_capped: infuse::breaker("bench-capped"),
        infuse_open,
        infuse_forced,
        infuse_metrics: {
            infuse_bench::AtomicRecorder::install();
            let breaker = infuse::breaker("bench-metrics");
            let metrics = infuse::metrics::BreakerMetrics::new(&breaker);
            breaker.add_listener(std::sync::Arc::new(metrics));
            breaker
        },
        failsafe_closed: failsafe_breaker(5, Duration::from_secs(60)),
        failsafe_open,
        recloser_closed: recloser::Recloser::default().into(),
        recloser_open,
    };
    // Every row measures what it claims.
    let b = &breakers;
    assert!(run(b.infuse_closed.call(bare(1))).is_ok());
    let settings = b.infuse_closed.settings();
    assert!(!settings.has_rates() && settings.timeout.is_none() && settings.slow_call.is_none());
    assert_eq!(b.infuse_rate.settings().failure_rate, Some(50));
    assert_eq!(
        b.infuse_timeout.settings().timeout,
        Some(Duration::from_secs(1))
    );
    assert_eq!(b.infuse_slow.settings().slow_call_rate, Some(50));
    assert_eq!(b.infuse_capped.settings().max_concurrent, Some(CAP));
    assert!(run(b.infuse_capped.call(bare(1))).is_ok());
    assert_eq!(b.infuse_capped.concurrency().map(|c| c.in_use), Some(0));
    {
        let _runtime = flusher.enter();
        for breaker in [&b.infuse_rate, &b.infuse_timeout, &b.infuse_slow] {
            assert!(run(breaker.call(bare(1))).is_ok());
        }
    }
    assert!(run(owned(&b.infuse_closed, 1)).is_ok());
    assert!(run(guarded(1)).is_ok());
    assert!(matches!(
        run(b.infuse_open.call(bare(1))),
        Err(AppError::Breaker(BreakerError::Open { .. }))
    ));
    assert!(matches!(
        run(b.infuse_forced.call(bare(1))),
        Err(AppError::Breaker(BreakerError::ForcedOpen { .. }))
    ));
    assert!(run(b.failsafe_closed.call(bare(1))).is_ok());
    assert!(matches!(
        run(b.failsafe_open.call(bare(1))),
        Err(failsafe::Error::Rejected)
    ));
    assert!(run(b.recloser_closed.call(bare(1))).is_ok());
    assert!(matches!(
        run(b.recloser_open.call(bare(1))),
        Err(recloser::Error::Rejected)
    ));
    breakers
}

/// A Redis-mode registry (on the bench's own `redis-server`) and two closed breakers of
/// it, plain and with `max_concurrent`.
struct RedisBreakers {
    closed: infuse::Breaker,
    capped: infuse::Breaker,
    /// Kept for the breakers' background tasks; dropped before the server.
    _registry: Registry,
    _server: RedisServer,
}

/// Created after the allocation count: the registry's background tasks allocate, and the
/// count is global. `flush_runtime` runs those tasks.
fn setup_redis(flush_runtime: &tokio::runtime::Runtime) -> RedisBreakers {
    let server = RedisServer::start();
    let config = Config::redis(server.url())
        .namespace(format!("bench-overhead-{}", std::process::id()))
        .env_overrides(false)
        .allow_undeclared_overrides(true)
        .service(
            "bench-redis-capped",
            ServiceOverride::new().max_concurrent(CAP),
        );
    let registry = flush_runtime
        .block_on(Registry::new(config))
        .expect("a Redis-mode registry");
    let closed = registry.breaker("bench-redis");
    let capped = registry.breaker("bench-redis-capped");
    // Load the shared state, so that the calls below take the fast path.
    for breaker in [&closed, &capped] {
        flush_runtime
            .block_on(breaker.state())
            .expect("the breaker's state from Redis");
    }
    let _runtime = flush_runtime.enter();
    assert!(run(closed.call(bare(1))).is_ok());
    hold_lease(&capped);
    assert!(run(capped.call(bare(1))).is_ok());
    assert!(!closed.settings().has_rates() && closed.settings().max_concurrent.is_none());
    assert_eq!(capped.settings().max_concurrent, Some(CAP));
    RedisBreakers {
        closed,
        capped,
        _registry: registry,
        _server: server,
    }
}

/// Makes sure this process's lease of the fleet's cap holds a permit, so that the next
/// capped call completes on its first poll: the lease's keeper gives back the permits a
/// process did not use since its last renewal. Call with a tokio runtime entered (a call
/// that finds no permit waits for the keeper on a timer).
fn hold_lease(breaker: &infuse::Breaker) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while breaker.concurrency().is_none_or(|c| c.permits == 0) {
        assert!(
            Instant::now() < deadline,
            "no permit of the fleet's cap within 10 s"
        );
        // A call that finds no permit makes the keeper ask for more at once.
        let _ = futures::executor::block_on(breaker.call(bare(0)));
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Counts allocations per call; infuse's closed calls (`call()`, `call_owned()`, the
/// attribute) and rejections (open, forced open) must not allocate, nor a call under a
/// rate rule (but for the flush task it spawns once per report period). `runtime`:
/// entered for the rows with backpressure settings.
fn check_allocations(b: &Breakers, runtime: &tokio::runtime::Handle) {
    // The count is global: let the flush task that `setup`'s calls spawned (on the
    // runtime's worker, after 100 ms) finish first. The rows that spawn one come last,
    // and take far less than 100 ms.
    std::thread::sleep(Duration::from_millis(250));
    let _runtime = runtime.enter();
    const CALLS: u64 = 10_000;
    let count = |f: &dyn Fn(u64)| {
        f(0); // warm any lazy initialisation
        let before = infuse_bench::allocations();
        for i in 0..CALLS {
            f(i);
        }
        infuse_bench::allocations() - before
    };
    use failsafe::futures::CircuitBreaker as _;
    let rows: [(&str, u64); 14] = [
        (
            "infuse open (rejected)        ",
            count(&|i| {
                black_box(run(b.infuse_open.call(bare(i))).is_err());
            }),
        ),
        (
            "infuse forced open (rejected) ",
            count(&|i| {
                black_box(run(b.infuse_forced.call(bare(i))).is_err());
            }),
        ),
        (
            "infuse closed, call()         ",
            count(&|i| {
                black_box(run(b.infuse_closed.call(bare(i))).is_ok());
            }),
        ),
        (
            "infuse closed, call_owned()   ",
            count(&|i| {
                black_box(run(owned(&b.infuse_closed, i)).is_ok());
            }),
        ),
        (
            "infuse closed, #[attr]        ",
            count(&|i| {
                black_box(run(guarded(i)).is_ok());
            }),
        ),
        (
            "recloser open                 ",
            count(&|i| {
                black_box(run(b.recloser_open.call(bare(i))).is_err());
            }),
        ),
        (
            "recloser closed               ",
            count(&|i| {
                black_box(run(b.recloser_closed.call(bare(i))).is_ok());
            }),
        ),
        (
            "failsafe open                 ",
            count(&|i| {
                black_box(run(b.failsafe_open.call(bare(i))).is_err());
            }),
        ),
        (
            "failsafe closed               ",
            count(&|i| {
                black_box(run(b.failsafe_closed.call(bare(i))).is_ok());
            }),
        ),
        (
            "infuse closed, failure_rate=50",
            count(&|i| {
                black_box(run(b.infuse_rate.call(bare(i))).is_ok());
            }),
        ),
        (
            "infuse closed, timeout=1s     ",
            count(&|i| {
                black_box(run(b.infuse_timeout.call(bare(i))).is_ok());
            }),
        ),
        (
            "infuse closed, slow_call+rate ",
            count(&|i| {
                black_box(run(b.infuse_slow.call(bare(i))).is_ok());
            }),
        ),
        (
            "infuse closed, BreakerMetrics ",
            count(&|i| {
                black_box(run(b.infuse_metrics.call(bare(i))).is_ok());
            }),
        ),
        (
            "infuse closed, max_concurrent ",
            count(&|i| {
                black_box(run(b.infuse_capped.call(bare(i))).is_ok());
            }),
        ),
    ];
    println!("allocations over {CALLS} calls:");
    for (name, n) in rows {
        println!("  {name} {n:>6}  ({:.3} per call)", n as f64 / CALLS as f64);
    }
    assert_eq!(rows[0].1, 0, "a rejected (open) infuse call allocated");
    assert_eq!(
        rows[1].1, 0,
        "a rejected (forced open) infuse call allocated"
    );
    assert_eq!(rows[2].1, 0, "a closed infuse call() allocated");
    assert_eq!(rows[3].1, 0, "a closed infuse call_owned() allocated");
    assert_eq!(rows[4].1, 0, "a closed #[circuit_breaker] call allocated");
    assert!(
        rows[9].1 < CALLS / 100,
        "a closed infuse call() under failure_rate allocated per call"
    );
    assert_eq!(
        rows[12].1, 0,
        "a closed infuse call() with metrics allocated"
    );
    assert_eq!(rows[13].1, 0, "a capped closed infuse call() allocated");
    println!();
}

// ---------------------------------------------------------------------------------------

fn single_task<M: Measurement<Value = Duration>>(
    c: &mut Criterion<M>,
    b: &Breakers,
    r: &RedisBreakers,
    runtime: &tokio::runtime::Handle,
) {
    use failsafe::futures::CircuitBreaker as _;

    // For the rows with backpressure settings: the tally's flush task, and timers.
    let _runtime = runtime.enter();
    let mut g = c.benchmark_group("single task");
    g.bench_function("baseline: bare call", |bench| {
        bench.iter(|| run(bare(black_box(7))))
    });
    g.bench_function("infuse closed: call()", |bench| {
        bench.iter(|| run(b.infuse_closed.call(bare(black_box(7)))))
    });
    g.bench_function("infuse closed: call(), max_concurrent = 64", |bench| {
        bench.iter(|| run(b.infuse_capped.call(bare(black_box(7)))))
    });
    g.bench_function("infuse closed (Redis): call()", |bench| {
        bench.iter(|| run(r.closed.call(bare(black_box(7)))))
    });
    g.bench_function(
        "infuse closed (Redis): call(), max_concurrent = 64",
        |bench| {
            // Outside the timing: a permit in this process's lease (see `hold_lease`).
            hold_lease(&r.capped);
            bench.iter(|| run(r.capped.call(bare(black_box(7)))))
        },
    );
    g.bench_function("infuse closed: call(), failure_rate = 50", |bench| {
        bench.iter(|| run(b.infuse_rate.call(bare(black_box(7)))))
    });
    g.bench_function("infuse closed: call(), timeout = 1s", |bench| {
        bench.iter(|| run(b.infuse_timeout.call(bare(black_box(7)))))
    });
    g.bench_function(
        "infuse closed: call(), slow_call = 1s + slow_call_rate = 50",
        |bench| bench.iter(|| run(b.infuse_slow.call(bare(black_box(7))))),
    );
    g.bench_function("infuse closed: call_owned()", |bench| {
        bench.iter(|| run(owned(&b.infuse_closed, black_box(7))))
    });
    g.bench_function("infuse closed: call(), with BreakerMetrics", |bench| {
        bench.iter(|| run(b.infuse_metrics.call(bare(black_box(7)))))
    });
    g.bench_function("infuse closed: #[circuit_breaker]", |bench| {
        bench.iter(|| run(guarded(black_box(7))))
    });
    g.bench_function("infuse open: rejected", |bench| {
        bench.iter(|| run(b.infuse_open.call(bare(black_box(7)))))
    });
    g.bench_function("infuse forced open: rejected", |bench| {
        bench.iter(|| run(b.infuse_forced.call(bare(black_box(7)))))
    });
    g.bench_function("failsafe closed", |bench| {
        bench.iter(|| run(b.failsafe_closed.call(bare(black_box(7)))))
    });
    g.bench_function("failsafe open: rejected", |bench| {
        bench.iter(|| run(b.failsafe_open.call(bare(black_box(7)))))
    });
    g.bench_function("recloser closed", |bench| {
        bench.iter(|| run(b.recloser_closed.call(bare(black_box(7)))))
    });
    g.bench_function("recloser open: rejected", |bench| {
        bench.iter(|| run(b.recloser_open.call(bare(black_box(7)))))
    });
    g.finish();

    let mut g = c.benchmark_group("clock");
    g.bench_function("std::time::Instant::now", |bench| {
        bench.iter(std::time::Instant::now)
    });
    g.bench_function("tokio::time::Instant::now (test-util)", |bench| {
        bench.iter(tokio::time::Instant::now)
    });
    g.finish();
}

fn in_tokio<M: Measurement<Value = Duration>>(
    c: &mut Criterion<M>,
    b: &Breakers,
    rt: &tokio::runtime::Runtime,
) {
    let mut g = c.benchmark_group("tokio current-thread");
    g.bench_function("baseline: bare call", |bench| {
        bench.to_async(rt).iter(|| bare(black_box(7)))
    });
    g.bench_function("infuse closed: call()", |bench| {
        bench
            .to_async(rt)
            .iter(|| b.infuse_closed.call(bare(black_box(7))))
    });
    g.bench_function("infuse closed: call(), timeout = 1s", |bench| {
        bench
            .to_async(rt)
            .iter(|| b.infuse_timeout.call(bare(black_box(7))))
    });
    g.bench_function("infuse closed: call_owned()", |bench| {
        bench
            .to_async(rt)
            .iter(|| owned(&b.infuse_closed, black_box(7)))
    });
    g.bench_function("infuse open: rejected", |bench| {
        bench
            .to_async(rt)
            .iter(|| b.infuse_open.call(bare(black_box(7))))
    });
    g.bench_function("infuse forced open: rejected", |bench| {
        bench
            .to_async(rt)
            .iter(|| b.infuse_forced.call(bare(black_box(7))))
    });
    g.finish();
}

fn two_thread(c: &mut Criterion, b: &Breakers, runtime: &tokio::runtime::Handle) {
    use failsafe::futures::CircuitBreaker as _;

    // Not a per-call cost: the aggregate wall time per call of two threads (see the top).
    let mut g = c.benchmark_group("2 threads: aggregate wall time per call");
    let mut row = |name: &str, calls: &(dyn Fn(u64) + Sync)| {
        g.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter_custom(|iters| two_threads(iters, runtime, calls))
        });
    };
    row("baseline: bare call", &|n| {
        for i in 0..n {
            black_box(run(bare(black_box(i)))).ok();
        }
    });
    row("infuse closed: call()", &|n| {
        for i in 0..n {
            black_box(run(b.infuse_closed.call(bare(black_box(i))))).ok();
        }
    });
    row("infuse closed: call(), max_concurrent = 64", &|n| {
        for i in 0..n {
            black_box(run(b.infuse_capped.call(bare(black_box(i))))).ok();
        }
    });
    row("infuse closed: call(), failure_rate = 50", &|n| {
        for i in 0..n {
            black_box(run(b.infuse_rate.call(bare(black_box(i))))).ok();
        }
    });
    row("infuse closed: call(), timeout = 1s", &|n| {
        for i in 0..n {
            black_box(run(b.infuse_timeout.call(bare(black_box(i))))).ok();
        }
    });
    row("infuse closed: call_owned()", &|n| {
        for i in 0..n {
            black_box(run(owned(&b.infuse_closed, black_box(i)))).ok();
        }
    });
    row("infuse closed: #[circuit_breaker]", &|n| {
        for i in 0..n {
            black_box(run(guarded(black_box(i)))).ok();
        }
    });
    row("infuse open: rejected", &|n| {
        for i in 0..n {
            black_box(run(b.infuse_open.call(bare(black_box(i))))).ok();
        }
    });
    row("infuse forced open: rejected", &|n| {
        for i in 0..n {
            black_box(run(b.infuse_forced.call(bare(black_box(i))))).ok();
        }
    });
    row("failsafe closed", &|n| {
        for i in 0..n {
            black_box(run(b.failsafe_closed.call(bare(black_box(i))))).ok();
        }
    });
    row("failsafe open: rejected", &|n| {
        for i in 0..n {
            black_box(run(b.failsafe_open.call(bare(black_box(i))))).ok();
        }
    });
    row("recloser closed", &|n| {
        for i in 0..n {
            black_box(run(b.recloser_closed.call(bare(black_box(i))))).ok();
        }
    });
    row("recloser open: rejected", &|n| {
        for i in 0..n {
            black_box(run(b.recloser_open.call(bare(black_box(i))))).ok();
        }
    });
    g.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Entered by the threads that make the calls of the rows with backpressure settings:
    // its worker runs the tallies' flush tasks (every 100 ms), the calls arm its timers.
    // (A current-thread runtime would not do: criterion's loop never yields to it.)
    let flush_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let flusher = flush_runtime.handle();
    let breakers = setup(&rt, flusher);
    check_allocations(&breakers, flusher);
    let redis = setup_redis(&flush_runtime);

    let configure = |c: Criterion<WallTime>| {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(50)
            .without_plots()
            .configure_from_args()
    };
    if std::env::var("INFUSE_BENCH_CLOCK").as_deref() == Ok("wall") {
        let mut c = configure(Criterion::default());
        single_task(&mut c, &breakers, &redis, flusher);
        in_tokio(&mut c, &breakers, &rt);
        c.final_summary();
    } else {
        let mut c = configure(Criterion::default()).with_measurement(ThreadCpuTime);
        single_task(&mut c, &breakers, &redis, flusher);
        in_tokio(&mut c, &breakers, &rt);
        c.final_summary();
    }
    let mut c = configure(Criterion::default());
    two_thread(&mut c, &breakers, flusher);
    c.final_summary();
}
