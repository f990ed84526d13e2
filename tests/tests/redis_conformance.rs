//! The store conformance suite (`tests/conformance/`) against the Redis store, each case
//! on its own `redis-server`.

use infuse_tests::support;
use infuse_tests::{budget_conformance_tests, conformance, conformance_tests};

conformance_tests!(
    store = support::ServerStore::start().await,
    prefix = "redis:",
);

budget_conformance_tests!(
    store = support::ServerStore::start().await,
    prefix = "redis:",
);

#[tokio::test]
async fn run_all_in_sequence() {
    let store = support::ServerStore::start().await;
    conformance::run_all(&store, &conformance::unique_prefix("redis-all")).await;
    conformance::run_budgets(&store, &conformance::unique_prefix("redis-all")).await;
}

/// Garbage in the keys of a breaker's budgets (the memory store has none): a lease that
/// does not parse counts no more and is deleted, a second of the retry window that does
/// not parse counts as empty, and a key of another type is refused as corrupt, untouched.
#[tokio::test]
async fn garbage_in_the_budgets_counts_as_nothing_and_a_wrong_type_is_corrupt() {
    use infuse::store::redis::keys::{budget_key, permits_key};
    use infuse::store::{Budgets, Grant};
    use infuse::{Settings, StorageError};

    let store = support::ServerStore::start().await;
    let cli = |args: &[&str]| store.server.cli(args).expect("redis-cli");
    // The namespace of `ServerStore`.
    let key = |f: fn(&str, &str) -> String, service: &str| f("conformance", service);
    let far = "99999999999999";
    let permits = key(permits_key, "garbage");
    let (bad, negative, live) = ("x".to_owned(), format!("-1 0 {far}"), format!("3 3 {far}"));
    cli(&["HSET", &permits, "7", &bad, "8", &negative, "9", &live]);
    let lease = conformance::LONG_LEASE;
    let answer = Budgets::lease_permits(&store, "garbage", 1, 0, 20, 10, lease).await;
    assert_eq!(
        answer.unwrap(),
        Grant { target: 7, held: 7 },
        "only process 9's lease counts"
    );
    assert_eq!(cli(&["HLEN", &permits]).trim(), "2", "the garbage deleted");

    let retry = key(budget_key, "garbage");
    let hostile = ["x", "nan 1 2", "-5 3 4", "1e400 1 1", "1 2"];
    for slot in 0..10 {
        let field = format!("s{slot}");
        cli(&["HSET", &retry, &field, hostile[slot % hostile.len()]]);
    }
    let s = Settings::DEFAULT.retry_budget(20).retry_min_per_sec(0);
    let granted = Budgets::retry_tokens(&store, "garbage", &s, 10, 3).await;
    assert_eq!(
        granted.unwrap(),
        2,
        "20 % of 10; the garbage counts as nothing"
    );

    for (service, key) in [
        ("string-permits", key(permits_key, "string-permits")),
        ("string-retry", key(budget_key, "string-retry")),
    ] {
        cli(&["SET", &key, "x"]);
        let refused = if service == "string-permits" {
            Budgets::lease_permits(&store, service, 1, 0, 1, 1, lease)
                .await
                .map(drop)
        } else {
            Budgets::retry_tokens(&store, service, &s, 1, 1)
                .await
                .map(drop)
        };
        assert!(
            matches!(&refused, Err(StorageError::Corrupt(m)) if m.contains(&key)),
            "{service}: {refused:?}"
        );
        assert_eq!(cli(&["GET", &key]).trim(), "x", "{service}: untouched");
    }
}
