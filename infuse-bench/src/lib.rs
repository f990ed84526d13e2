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

/// A `metrics` recorder that keeps every counter, gauge and histogram in atomics (a
/// histogram as a count and a sum), like an exporter's hot path without its export: what
/// the metrics rows of the benchmarks pay per call.
pub struct AtomicRecorder;

impl AtomicRecorder {
    /// Installs it as the process's recorder (once; later calls do nothing).
    pub fn install() {
        let _ = metrics::set_global_recorder(AtomicRecorder);
    }
}

/// A histogram as a count and a sum of bits.
#[derive(Default)]
struct SumHistogram {
    count: std::sync::atomic::AtomicU64,
    sum: std::sync::atomic::AtomicU64,
}

impl metrics::HistogramFn for SumHistogram {
    fn record(&self, value: f64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(value.to_bits() >> 32, Relaxed);
    }
}

impl metrics::Recorder for AtomicRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)))
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0)))
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(std::sync::Arc::new(SumHistogram::default()))
    }
}

/// A global allocator that counts allocations, for the benches that check a path
/// allocates nothing: declare it with
/// `#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc;` and read
/// [`allocations`]. Its cost (one relaxed atomic add per allocation) does not touch the
/// measured paths, which do not allocate.
pub struct CountingAlloc;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Allocations so far (by a [`CountingAlloc`] installed as the global allocator).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(std::sync::atomic::Ordering::SeqCst)
}

unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}
