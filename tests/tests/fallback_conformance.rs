//! The store conformance suite (`infuse_tests::conformance`) against the fleet layer's
//! local fallback: a `FleetStore` whose `redis-server` is paused (SIGSTOP) and which has
//! been driven degraded before the case starts, so that every command — `Register`,
//! `Snapshot` and `Force` included — is answered in memory. The cases must pass as they
//! do for the memory store.

use infuse_tests::support::FleetServerStore;
use infuse_tests::{conformance, conformance_tests};

conformance_tests!(
    store = FleetServerStore::degraded().await,
    prefix = "fallback:",
);

/// Every case in sequence on one degraded store.
#[tokio::test]
async fn run_all_in_sequence() {
    let store = FleetServerStore::degraded().await;
    let prefix = conformance::unique_prefix("fallback-all");
    conformance::run_all(&store, &prefix).await;
    assert!(!store.store.is_healthy(), "the paused server answered");
}
