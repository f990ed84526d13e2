//! Per-call overhead of infuse against a bare call and against `failsafe` and `recloser`.
//!
//! ```text
//! cargo bench --bench overhead
//! ```
//!
//! # What is measured, and how
//!
//! Every guarded future here completes on its first poll (the breakers' fast paths never
//! wait, and the "remote call" is `async { Ok(black_box(x)) }`), so the single-task rows
//! drive each call with one `poll` on a no-op waker ([`run`]): no executor, no timer, no
//! scheduling noise — only the breaker's own work plus the bare call. The `tokio …` rows
//! cross-check the same calls awaited inside a current-thread tokio runtime
//! (criterion's `to_async`), which is how applications run them.
//!
//! Single-task rows are timed in the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), so that other processes sharing the machine do not add
//! their time slices to ours; the code measured never blocks, so for it CPU time is the
//! cost of the call. `INFUSE_BENCH_CLOCK=wall` times them in wall-clock time instead.
//!
//! The `2 threads` rows spawn two OS threads that each make N calls through the *same*
//! shared breaker; the figure is wall time / (2N), i.e. the cost per call of the pair
//! running flat out on this 2-core machine (shared-cache-line contention shows here).
//!
//! Before the timings, the binary counts heap allocations (through a counting global
//! allocator) over 10 000 rejected calls and 10 000 closed calls, and panics if a rejected
//! call allocates.
//!
//! Caveat: the workspace's dev-dependencies enable tokio's `test-util` feature, so
//! `tokio::time::Instant::now()` (which infuse's open path reads) does one extra atomic
//! load compared with a production build; the `clock/…` rows show that cost.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion};
use infuse::{BreakerError, Config, ServiceOverride};

// ---------------------------------------------------------------------------------------
// A global allocator that counts allocations, to check that the open path allocates
// nothing. Its cost (one relaxed atomic add per allocation) does not touch the measured
// paths, which do not allocate.

struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

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

/// A typical application error: its own failures, or the breaker's.
#[derive(Debug)]
#[allow(dead_code)] // the fields are only read through `Debug`
enum AppError {
    Failed,
    Breaker(BreakerError),
}

impl From<BreakerError> for AppError {
    fn from(err: BreakerError) -> Self {
        AppError::Breaker(err)
    }
}

/// The baseline: a bare async call that succeeds at once.
async fn bare(x: u64) -> Result<u64, AppError> {
    Ok::<u64, AppError>(black_box(x))
}

/// The same call behind the attribute (default settings, in-memory store).
#[infuse::circuit_breaker(service = "bench-macro")]
async fn guarded(x: u64) -> Result<u64, AppError> {
    Ok::<u64, AppError>(black_box(x))
}

async fn failing() -> Result<u64, AppError> {
    Err(AppError::Failed)
}

/// Polls a future once on a no-op waker; every future measured here is ready at once.
#[inline(always)]
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a benchmarked call did not complete on its first poll"),
    }
}

/// Runs `calls(n)` on two threads at once; returns wall time / 2, so that criterion's
/// per-iteration figure is wall time / (2N).
fn two_threads(iters: u64, calls: impl Fn(u64) + Sync) -> Duration {
    let barrier = Barrier::new(3);
    std::thread::scope(|s| {
        let workers = [(); 2].map(|_| {
            s.spawn(|| {
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

type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    (),
>;

struct Breakers {
    infuse_closed: infuse::Breaker,
    infuse_open: infuse::Breaker,
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

fn setup(rt: &tokio::runtime::Runtime) -> Breakers {
    use failsafe::futures::CircuitBreaker as _;

    rt.block_on(async {
        infuse::init(
            Config::in_memory()
                .env_overrides(false)
                .service("bench-open", ServiceOverride::new().reset_timeout(LONG)),
        )
        .await
        .expect("infuse::init");
    });
    let infuse_open = infuse::breaker("bench-open");
    rt.block_on(infuse_open.open()).expect("force open");

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
        infuse_open,
        failsafe_closed: failsafe_breaker(5, Duration::from_secs(60)),
        failsafe_open,
        recloser_closed: recloser::Recloser::default().into(),
        recloser_open,
    };
    // Every row measures what it claims.
    let b = &breakers;
    assert!(run(b.infuse_closed.call(bare(1))).is_ok());
    assert!(run(guarded(1)).is_ok());
    assert!(matches!(
        run(b.infuse_open.call(bare(1))),
        Err(AppError::Breaker(BreakerError::Open { .. }))
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

/// Counts allocations per call; a rejected infuse call must not allocate.
fn check_allocations(b: &Breakers) {
    const CALLS: u64 = 10_000;
    let count = |f: &dyn Fn(u64)| {
        f(0); // warm any lazy initialisation
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        for i in 0..CALLS {
            f(i);
        }
        ALLOCATIONS.load(Ordering::SeqCst) - before
    };
    use failsafe::futures::CircuitBreaker as _;
    let rows: [(&str, u64); 6] = [
        (
            "infuse open (rejected) ",
            count(&|i| {
                black_box(run(b.infuse_open.call(bare(i))).is_err());
            }),
        ),
        (
            "infuse closed, call()  ",
            count(&|i| {
                black_box(run(b.infuse_closed.call(bare(i))).is_ok());
            }),
        ),
        (
            "infuse closed, #[attr] ",
            count(&|i| {
                black_box(run(guarded(i)).is_ok());
            }),
        ),
        (
            "recloser open          ",
            count(&|i| {
                black_box(run(b.recloser_open.call(bare(i))).is_err());
            }),
        ),
        (
            "recloser closed        ",
            count(&|i| {
                black_box(run(b.recloser_closed.call(bare(i))).is_ok());
            }),
        ),
        (
            "failsafe open          ",
            count(&|i| {
                black_box(run(b.failsafe_open.call(bare(i))).is_err());
            }),
        ),
    ];
    println!("allocations over {CALLS} calls:");
    for (name, n) in rows {
        println!("  {name} {n:>6}  ({:.3} per call)", n as f64 / CALLS as f64);
    }
    assert_eq!(rows[0].1, 0, "a rejected infuse call allocated");
    println!();
}

// ---------------------------------------------------------------------------------------

fn single_task<M: Measurement<Value = Duration>>(c: &mut Criterion<M>, b: &Breakers) {
    use failsafe::futures::CircuitBreaker as _;

    let mut g = c.benchmark_group("single task");
    g.bench_function("baseline: bare call", |bench| {
        bench.iter(|| run(bare(black_box(7))))
    });
    g.bench_function("infuse closed: call()", |bench| {
        bench.iter(|| run(b.infuse_closed.call(bare(black_box(7)))))
    });
    g.bench_function("infuse closed: #[circuit_breaker]", |bench| {
        bench.iter(|| run(guarded(black_box(7))))
    });
    g.bench_function("infuse open: rejected", |bench| {
        bench.iter(|| run(b.infuse_open.call(bare(black_box(7)))))
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
    g.bench_function("infuse open: rejected", |bench| {
        bench
            .to_async(rt)
            .iter(|| b.infuse_open.call(bare(black_box(7))))
    });
    g.finish();
}

fn two_thread(c: &mut Criterion, b: &Breakers) {
    use failsafe::futures::CircuitBreaker as _;

    let mut g = c.benchmark_group("2 threads");
    let mut row = |name: &str, calls: &(dyn Fn(u64) + Sync)| {
        g.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter_custom(|iters| two_threads(iters, calls))
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
    let breakers = setup(&rt);
    check_allocations(&breakers);

    let configure = |c: Criterion<WallTime>| {
        c.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(50)
            .without_plots()
            .configure_from_args()
    };
    if std::env::var("INFUSE_BENCH_CLOCK").as_deref() == Ok("wall") {
        let mut c = configure(Criterion::default());
        single_task(&mut c, &breakers);
        in_tokio(&mut c, &breakers, &rt);
        c.final_summary();
    } else {
        let mut c = configure(Criterion::default()).with_measurement(ThreadCpuTime);
        single_task(&mut c, &breakers);
        in_tokio(&mut c, &breakers, &rt);
        c.final_summary();
    }
    let mut c = configure(Criterion::default());
    two_thread(&mut c, &breakers);
    c.final_summary();
}
