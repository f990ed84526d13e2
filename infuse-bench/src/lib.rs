//! Hosts the benchmarks (`benches/`); see BENCHMARKS.md. Also what the benchmarks share
//! with their helper binaries (`src/bin/`).

/// `CLOCK_MONOTONIC` in nanoseconds. On Linux this clock is system-wide: readings taken
/// in different processes of one machine are comparable (`benches/propagation.rs`
/// subtracts a reading of one process from a reading of another).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A typical application error: its own failures, or the breaker's.
#[derive(Debug)]
pub enum AppError {
    /// The call itself failed.
    Failed,
    /// The breaker answered instead.
    Breaker(infuse::BreakerError),
}

impl From<infuse::BreakerError> for AppError {
    fn from(err: infuse::BreakerError) -> Self {
        AppError::Breaker(err)
    }
}

/// Polls a future once on a no-op waker: every future measured by the in-memory benches
/// is ready at once, so this is its whole cost, with no executor in the way.
#[inline(always)]
pub fn run<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a measured call did not complete on its first poll"),
    }
}
