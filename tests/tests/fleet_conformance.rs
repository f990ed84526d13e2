//! The store conformance suite (`infuse_tests::conformance`) against the fleet layer
//! (`FleetStore`: Redis behind the health gate, the policy and the local fallback), each
//! case on its own healthy `redis-server`.

use infuse_tests::support::FleetServerStore;
use infuse_tests::{conformance, conformance_tests};

conformance_tests!(store = FleetServerStore::start().await, prefix = "fleet:",);

/// Every case in sequence on one store.
#[tokio::test]
async fn run_all_in_sequence() {
    let store = FleetServerStore::start().await;
    let prefix = conformance::unique_prefix("fleet-all");
    conformance::run_all(&store, &prefix).await;
    assert!(
        store.store.is_healthy(),
        "the fleet store degraded meanwhile"
    );
}
