//! What a breaker costs: the bytes a registry keeps per breaker, read from a counting
//! global allocator, in memory mode and in fleet mode (and, for fleet mode, Redis's
//! `used_memory` per breaker). The figures are printed (`cargo test -p infuse-tests
//! --test memory_per_breaker -- --nocapture`) and documented on `Config::max_breakers`;
//! the test fails if they grow past a bound well above them. In a test binary of its
//! own, with one test: the allocator counts every thread of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::future::join_all;
use infuse::{Config, Registry, State};
use infuse_tests::support::redis_config;
use infuse_tests::support::redis_server::RedisServer;

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: as the caller's contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Breakers in memory mode: the default `max_breakers`.
const N: usize = 10_000;

/// Breakers in fleet mode (fewer: each is created in Redis, which takes a while in a debug
/// build).
const FLEET_N: usize = 2_000;

fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// Redis's `used_memory`.
fn used_memory(server: &RedisServer) -> i64 {
    let info = server.cli(&["INFO", "memory"]).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap()
}

#[test]
fn bytes_per_breaker_in_memory_and_in_fleet_mode() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let names: Vec<String> = (0..N).map(|i| format!("service-{i:05}")).collect();

        // Memory mode: the default limit allows N breakers, one more is refused.
        let registry = Registry::new(Config::in_memory().env_overrides(false))
            .await
            .unwrap();
        let before = live();
        for name in &names {
            registry.try_breaker(name).unwrap();
        }
        let memory = (live() - before) / N as i64;
        assert!(registry.try_breaker("one-too-many").is_err());
        drop(registry);

        // Fleet mode: each breaker created and its record loaded (a hundred at a time,
        // as a busy process meets new services), then a few resyncs.
        let server = RedisServer::start();
        let registry = Registry::new(
            redis_config(&server, "memory")
                .resync_interval(Duration::from_millis(200))
                .redis_call_timeout(Duration::from_secs(2))
                .redis_admin_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = live();
        let redis_before = used_memory(&server);
        for batch in names[..FLEET_N].chunks(100) {
            join_all(batch.iter().map(|name| async {
                let breaker = registry.try_breaker(name).unwrap();
                assert_eq!(breaker.state().await.unwrap(), State::Closed);
            }))
            .await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let fleet = (live() - before) / FLEET_N as i64;
        let redis = (used_memory(&server) - redis_before) / FLEET_N as i64;

        println!(
            "bytes per breaker: memory mode {memory} ({N} breakers), fleet mode {fleet} in the process and {redis} in Redis's used_memory ({FLEET_N} breakers)"
        );
        // Measured at about 1.2 KB, 0.75 KB and 0.6 KB: these bounds catch a breaker
        // that grows several-fold.
        assert!(memory < 4_096, "memory mode: {memory} bytes per breaker");
        assert!(fleet < 4_096, "fleet mode: {fleet} bytes per breaker");
        assert!(redis < 4_096, "Redis: {redis} bytes per breaker");
        drop(registry);
    });
}
