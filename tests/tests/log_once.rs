//! Redis going away is logged once, not once per call. In a test binary of its own: the
//! counting subscriber is the process's global one, so no other test's thread can race
//! `tracing`'s per-callsite interest cache (a thread-local subscriber, in a binary whose
//! other tests log with none, missed the warning about one run in 20).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use infuse::Registry;
use infuse_tests::support::redis_server::RedisServer;
use infuse_tests::support::{calls, redis_service_config};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct CountWarnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountWarnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN
            && event.metadata().target().starts_with("infuse")
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn the_change_of_mode_is_logged_once_not_per_call() {
    let count = CountWarnings::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(count.clone()))
        .expect("the only subscriber of this test binary");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = RedisServer::start();
        let config =
            redis_service_config(&server, "faults", "users", 1000, Duration::from_secs(60))
                .redis_call_timeout(Duration::from_millis(25))
                .redis_admin_timeout(Duration::from_millis(300))
                .resync_interval(Duration::from_millis(200));
        let registry = Registry::new(config).await.unwrap();
        server.pause();
        for _ in 0..200 {
            let _ = calls::fail(&registry.breaker("users")).await;
        }
        server.resume();
    });
    // One "Redis unavailable" warning, whatever the number of calls (the pub/sub task may
    // add one "subscription lost" warning).
    let warnings = count.0.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} warnings for 200 failed calls"
    );
}
