//! Per-call overhead of `infuse::tower::CircuitBreakerLayer` over a bare
//! `tower::service_fn`, against tower-resilience's circuit breaker layer over the same
//! service, in the same run.
//!
//! ```text
//! cargo bench -p infuse-bench --bench tower
//! ```
//!
//! Every service here answers at once (`service_fn` returning a ready future), so each
//! call is driven by polling `poll_ready` and the response future once on a no-op waker
//! ([`run`]): the figure is one whole call (readiness, `call`, the future's poll, drops)
//! with no executor. Overhead = the row − `baseline: service_fn`. Rows:
//!
//! - `baseline: service_fn`: the bare service.
//! - `infuse: new(breaker)`: one closed in-memory breaker, `OkIsSuccess` classifier.
//! - `infuse: new(breaker), open: rejected`: the same layer on an open breaker.
//! - `infuse: per_key (cached name)`: `per_key_in` with a key function returning one
//!   name: the cached handle's lookup (a lock-free map read and a string hash) added.
//! - `tower-resilience-circuitbreaker 0.14`: its layer with default settings (failure
//!   rate over a sliding window) over the same service.
//!
//! Before the timings, the binary counts heap allocations over 10 000 calls of each
//! infuse row and panics if any allocated.

use std::convert::Infallible;
use std::future::ready;
use std::hint::black_box;

use criterion::Criterion;
use infuse::tower::{CircuitBreakerLayer, OkIsSuccess};
use infuse::{Config, Registry, ServiceOverride};
use infuse_bench::run;
use tower::{Layer, Service, ServiceExt};

#[global_allocator]
static GLOBAL: infuse_bench::CountingAlloc = infuse_bench::CountingAlloc;

/// One whole call: readiness, `call`, the response future polled once.
#[inline(always)]
fn one<S: Service<u64>>(service: &mut S, x: u64) -> Result<S::Response, S::Error> {
    run(async { service.ready().await?.call(x).await })
}

/// Heap allocations in 10 000 calls, after a first one (which creates `per_key`'s
/// breaker and caches it).
fn allocations_per_call<S: Service<u64>>(service: &mut S) -> u64 {
    let _ = black_box(one(service, 0));
    let before = infuse_bench::allocations();
    for x in 0..10_000 {
        let _ = black_box(one(service, x));
    }
    infuse_bench::allocations() - before
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let config = Config::in_memory().env_overrides(false).service(
        "bench-tower-open",
        ServiceOverride::new().reset_timeout(std::time::Duration::from_secs(86_400)),
    );
    let registry = runtime.block_on(Registry::new(config)).unwrap();
    let closed = registry.breaker("bench-tower");
    let open = registry.breaker("bench-tower-open");
    runtime.block_on(open.open()).unwrap();

    let bare = tower::service_fn(|x: u64| ready(Ok::<_, Infallible>(black_box(x))));
    let mut infuse = CircuitBreakerLayer::new(closed)
        .classify(OkIsSuccess)
        .layer(bare);
    let mut rejected = CircuitBreakerLayer::new(open)
        .classify(OkIsSuccess)
        .layer(bare);
    let mut keyed =
        CircuitBreakerLayer::per_key_in(registry.clone(), |_: &u64| Some("bench-tower-key"))
            .classify(OkIsSuccess)
            .layer(bare);
    let resilience = tower_resilience_circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .unwrap();
    let mut resilience = resilience.layer(bare);

    for (name, allocations) in [
        ("new(breaker)", allocations_per_call(&mut infuse)),
        ("open: rejected", allocations_per_call(&mut rejected)),
        ("per_key", allocations_per_call(&mut keyed)),
    ] {
        assert_eq!(
            allocations, 0,
            "infuse {name} allocated {allocations} times in 10 000 calls"
        );
    }
    println!(
        "allocations per 10 000 calls: infuse 0 (closed, open, per_key); tower-resilience {}",
        allocations_per_call(&mut resilience)
    );

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("tower layer");
    let mut bare_service = bare;
    group.bench_function("baseline: service_fn", |b| {
        b.iter(|| one(&mut bare_service, black_box(1)))
    });
    group.bench_function("infuse: new(breaker)", |b| {
        b.iter(|| one(&mut infuse, black_box(1)))
    });
    group.bench_function("infuse: new(breaker), open: rejected", |b| {
        b.iter(|| one(&mut rejected, black_box(1)))
    });
    group.bench_function("infuse: per_key (cached name)", |b| {
        b.iter(|| one(&mut keyed, black_box(1)))
    });
    group.bench_function("tower-resilience-circuitbreaker 0.14", |b| {
        b.iter(|| one(&mut resilience, black_box(1)))
    });
    group.finish();
    criterion.final_summary();
}
