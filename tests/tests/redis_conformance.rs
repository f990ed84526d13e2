//! The store conformance suite (`tests/conformance/`) against the Redis store, each case
//! on its own `redis-server`.

use infuse_tests::support;
use infuse_tests::{conformance, conformance_tests};

conformance_tests!(
    store = support::ServerStore::start().await,
    prefix = "redis:",
);

#[tokio::test]
async fn run_all_in_sequence() {
    let store = support::ServerStore::start().await;
    conformance::run_all(&store, &conformance::unique_prefix("redis-all")).await;
}
