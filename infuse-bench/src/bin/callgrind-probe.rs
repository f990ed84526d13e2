//! Runs N calls of each fast path in its own function, for `callgrind.sh` to count the
//! instructions of one path at a time (`valgrind --tool=callgrind --toggle-collect=<fn>`).
//!
//! ```text
//! callgrind-probe [N]      # N calls per path, 100 000 by default
//! ```
//!
//! The paths, each a `#[no_mangle]` function so that its name is exact (every call is
//! polled once on a no-op waker, as in `benches/overhead.rs`; in-memory breakers):
//!
//! - `probe_bare`: the unguarded call (the loop and the call itself);
//! - `probe_closed_call`: `breaker.call(future)`, breaker closed;
//! - `probe_closed_call_owned`: `breaker.call_owned(CallOptions::new(), future)`, closed;
//! - `probe_open_rejection`: `call()` on a breaker opened with `open()` (24 h, a timer
//!   armed: no clock read);
//! - `probe_forced_rejection`: `call()` on a breaker held open with `force_open()`;
//! - `probe_closed_rate`: `breaker.call(future)`, closed, `failure_rate = 50` (a rate
//!   rule: each outcome is counted into the process's tally);
//! - `probe_closed_timeout`: the same with `timeout = 1s` (the call is timed: a clock
//!   read, the boxed timed phase and a tokio timer, never polled);
//! - `probe_closed_slow_rate`: the same with `slow_call = 1s`, `slow_call_rate = 50`
//!   (timed, no timer, and counted).
//! - `probe_closed_metrics`: `breaker.call(future)`, closed, with `Config::metrics()`
//!   counting into atomics (`AtomicRecorder`): the listener, two clock reads, a counter
//!   and a histogram per call.
//!
//! The calls are made with a current-thread tokio runtime entered (`Runtime::enter`) and
//! never driven: the timers are armed on it, and the tally's flush task, spawned by the
//! first counted call (the warm-up), never runs, so every counted call is the steady
//! state, one `fetch_add` (the real flush task runs every 100 ms; N calls stay far below
//! the tally's high-water mark).
//!
//! Each path runs once before its probe, so that lazy initialisation is not counted, and
//! each probe's body differs (the rejections check their own error variant) so that the
//! compiler cannot fold two probes into one symbol, which would count both loops.

use infuse_bench::{run, AppError, AtomicRecorder};
use std::hint::black_box;
use std::time::Duration;

use infuse::{Breaker, BreakerError, CallOptions, Config, Registry, ServiceOverride};

async fn bare(x: u64) -> Result<u64, AppError> {
    Ok::<u64, AppError>(black_box(x))
}

#[no_mangle]
#[inline(never)]
fn probe_bare(n: u64) -> u64 {
    let mut ok = 0;
    for i in 0..n {
        ok += black_box(run(bare(black_box(i)))).is_ok() as u64;
    }
    ok
}

#[no_mangle]
#[inline(never)]
fn probe_closed_call(breaker: &Breaker, n: u64) -> u64 {
    let mut ok = 0;
    for i in 0..n {
        ok += black_box(run(breaker.call(bare(black_box(i))))).is_ok() as u64;
    }
    ok
}

#[no_mangle]
#[inline(never)]
fn probe_closed_metrics(breaker: &Breaker, n: u64) -> u64 {
    let mut ok = 0;
    for i in 0..n {
        // `+ 1`: a body of its own, not folded into `probe_closed_call`.
        ok += black_box(run(breaker.call(bare(black_box(i) + 1)))).is_ok() as u64;
    }
    ok
}

#[infuse::circuit_breaker(service = "closed-attribute")]
async fn attributed(x: u64) -> Result<u64, AppError> {
    Ok(black_box(x))
}

#[no_mangle]
#[inline(never)]
fn probe_closed_attribute(n: u64) -> u64 {
    let mut ok = 0;
    for i in 0..n {
        ok += black_box(run(attributed(black_box(i)))).is_ok() as u64;
    }
    ok
}

#[no_mangle]
#[inline(never)]
fn probe_closed_call_owned(breaker: &Breaker, n: u64) -> u64 {
    let mut ok = 0;
    for i in 0..n {
        let call = breaker.call_owned(CallOptions::new(), bare(black_box(i)));
        ok += black_box(run(call)).is_ok() as u64;
    }
    ok
}

#[no_mangle]
#[inline(never)]
fn probe_open_rejection(breaker: &Breaker, n: u64) -> u64 {
    let mut rejected = 0;
    for i in 0..n {
        let result = black_box(run(breaker.call(bare(black_box(i)))));
        rejected += matches!(result, Err(AppError::Breaker(BreakerError::Open { .. }))) as u64;
    }
    rejected
}

#[no_mangle]
#[inline(never)]
fn probe_forced_rejection(breaker: &Breaker, n: u64) -> u64 {
    let mut rejected = 0;
    for i in 0..n {
        let result = black_box(run(breaker.call(bare(black_box(i)))));
        rejected += matches!(
            result,
            Err(AppError::Breaker(BreakerError::ForcedOpen { .. }))
        ) as u64;
    }
    rejected
}

/// A healthy call through a breaker with backpressure settings. `tag` (passed through
/// `black_box`) keeps the four probes below distinct symbols: their loops are otherwise
/// the same code as `probe_closed_call`'s.
#[inline(always)]
fn closed_with_settings(breaker: &Breaker, n: u64, tag: u64) -> u64 {
    black_box(tag);
    let mut ok = 0;
    for i in 0..n {
        ok += black_box(run(breaker.call(bare(black_box(i))))).is_ok() as u64;
    }
    ok
}

#[no_mangle]
#[inline(never)]
fn probe_closed_rate(breaker: &Breaker, n: u64) -> u64 {
    closed_with_settings(breaker, n, 1)
}

#[no_mangle]
#[inline(never)]
fn probe_closed_timeout(breaker: &Breaker, n: u64) -> u64 {
    closed_with_settings(breaker, n, 2)
}

#[no_mangle]
#[inline(never)]
fn probe_closed_slow_rate(breaker: &Breaker, n: u64) -> u64 {
    closed_with_settings(breaker, n, 3)
}

#[no_mangle]
#[inline(never)]
fn probe_closed_capped(breaker: &Breaker, n: u64) -> u64 {
    closed_with_settings(breaker, n, 4)
}

fn main() {
    let n: u64 = match std::env::args().nth(1) {
        None => 100_000,
        Some(n) => n.parse().expect("usage: callgrind-probe [N]"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Opened inside the runtime: a timer is armed for the end of the open period.
    let config = Config::in_memory()
        .env_overrides(false)
        .service(
            "open",
            ServiceOverride::new().reset_timeout(Duration::from_secs(24 * 3600)),
        )
        .service("rate", ServiceOverride::new().failure_rate(50))
        .service("capped", ServiceOverride::new().max_concurrent(64))
        .service(
            "timeout",
            ServiceOverride::new().timeout(Duration::from_secs(1)),
        )
        .service(
            "slow-rate",
            ServiceOverride::new()
                .slow_call(Duration::from_secs(1))
                .slow_call_rate(50),
        );
    let registry = rt
        .block_on(Registry::new(config))
        .expect("in-memory registry");
    AtomicRecorder::install();
    let metered = rt
        .block_on(Registry::new(
            Config::in_memory().env_overrides(false).metrics(),
        ))
        .expect("in-memory registry")
        .breaker("metered");
    let closed = registry.breaker("closed");
    let open = registry.breaker("open");
    let forced = registry.breaker("forced");
    let rate = registry.breaker("rate");
    let timeout = registry.breaker("timeout");
    let slow_rate = registry.breaker("slow-rate");
    let capped = registry.breaker("capped");
    assert_eq!(capped.settings().max_concurrent, Some(64));
    assert_eq!(rate.settings().failure_rate, Some(50));
    assert_eq!(timeout.settings().timeout, Some(Duration::from_secs(1)));
    assert_eq!(slow_rate.settings().slow_call_rate, Some(50));
    // Timers and the flush task need a runtime; this one is never driven (see the top).
    let _runtime = rt.enter();
    rt.block_on(async {
        open.open().await.expect("open");
        forced.force_open().await.expect("force_open");
    });

    // Warm every path, and check that each does what its name says.
    assert_eq!(probe_bare(1), 1);
    assert_eq!(probe_closed_call(&closed, 1), 1);
    assert_eq!(probe_closed_attribute(1), 1);
    assert_eq!(probe_closed_call_owned(&closed, 1), 1);
    assert_eq!(probe_open_rejection(&open, 1), 1);
    assert_eq!(probe_forced_rejection(&forced, 1), 1);
    assert_eq!(probe_closed_rate(&rate, 1), 1);
    assert_eq!(probe_closed_timeout(&timeout, 1), 1);
    assert_eq!(probe_closed_slow_rate(&slow_rate, 1), 1);
    assert_eq!(probe_closed_metrics(&metered, 1), 1);
    assert_eq!(probe_closed_capped(&capped, 1), 1);
    assert_eq!(
        capped.concurrency().map(|c| c.in_use),
        Some(0),
        "given back"
    );

    let counts = [
        ("probe_bare", probe_bare(n)),
        ("probe_closed_call", probe_closed_call(&closed, n)),
        ("probe_closed_attribute", probe_closed_attribute(n)),
        (
            "probe_closed_call_owned",
            probe_closed_call_owned(&closed, n),
        ),
        ("probe_open_rejection", probe_open_rejection(&open, n)),
        ("probe_forced_rejection", probe_forced_rejection(&forced, n)),
        ("probe_closed_rate", probe_closed_rate(&rate, n)),
        ("probe_closed_timeout", probe_closed_timeout(&timeout, n)),
        (
            "probe_closed_slow_rate",
            probe_closed_slow_rate(&slow_rate, n),
        ),
        ("probe_closed_capped", probe_closed_capped(&capped, n)),
        ("probe_closed_metrics", probe_closed_metrics(&metered, n)),
    ];
    for (name, count) in counts {
        assert_eq!(count, n, "{name}: not every call took its path");
    }
    println!("callgrind-probe: {n} calls per path");
}
