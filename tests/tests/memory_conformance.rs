//! The store conformance suite (`tests/conformance/`) against the in-memory store.

use infuse_tests::{budget_conformance_tests, conformance, conformance_tests};

conformance_tests!(
    store = infuse::store::memory::MemoryStore::new(),
    prefix = "memory:",
);

budget_conformance_tests!(
    store = infuse::store::memory::MemoryStore::new(),
    prefix = "memory:",
);

/// The sequential entry point runs too (on a fresh store, so names cannot collide).
#[tokio::test]
async fn run_all_in_sequence() {
    let store = infuse::store::memory::MemoryStore::new();
    conformance::run_all(&store, &conformance::unique_prefix("memory-all")).await;
    conformance::run_budgets(&store, &conformance::unique_prefix("memory-all")).await;
}

/// `CASES` lists exactly the cases the macro instantiates (kept in sync by hand).
#[test]
fn case_list_has_no_duplicates() {
    let unique: std::collections::HashSet<_> = conformance::CASES
        .iter()
        .chain(conformance::BUDGET_CASES)
        .collect();
    assert_eq!(
        unique.len(),
        conformance::CASES.len() + conformance::BUDGET_CASES.len()
    );
}
