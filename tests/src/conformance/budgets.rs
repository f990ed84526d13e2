//! The budget cases of the conformance suite: every `infuse::store::Budgets` store (the
//! memory store, which applies the rules of `core/lease.rs` and `core/retry_budget.rs`,
//! and the Redis store on one server, a cluster or through Sentinels, which runs their
//! scripts) must give the answers the rules give.
//!
//! Each case is a `pub async fn case(store: &S, prefix: &str)` over `S: Budgets`, on its
//! own breakers (`{prefix}{case}`). As the breaker cases, they run on real time: leases
//! that must not end last [`LONG_LEASE`]; the case of an ending lease sleeps past
//! [`LEASE`]. The retry tokens' floor is counted per second of the store's clock: a case
//! that depends on two requests falling in one second runs again on a fresh breaker when
//! its answers show that a second ended between them (see [`in_one_second`]).
//!
//! Use it with `budget_conformance_tests!(store = …, prefix = …)` (one `#[tokio::test]`
//! per case) or `conformance::run_budgets(&store, prefix).await`.

use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use infuse::store::redis::{Deadlines, RedisStore};
use infuse::store::{Budgets, Grant};
use infuse::{Settings, StorageError};

use super::{service, LEASE, LONG_LEASE, MARGIN};

/// Calls `$callback! { [args] case, case, … }` with every budget case: the one list, from
/// which `BUDGET_CASES`, `run_budgets` and `budget_conformance_tests!` are made.
#[doc(hidden)]
#[macro_export]
macro_rules! __budget_cases {
    ($($callback:ident)::+ ! [$($args:tt)*]) => {
        $($callback)::+! { [$($args)*]
            a_lone_process_gets_what_it_wants_up_to_the_cap,
            leases_never_hold_more_than_the_cap_and_converge_to_fair_shares,
            concurrent_requests_never_lease_more_than_the_cap,
            a_process_asking_more_than_its_share_gets_what_is_free,
            keeping_fewer_gives_permits_back,
            an_ended_lease_gives_its_permits_back,
            asking_again_replaces_the_lease_of_the_process,
            a_zero_cap_leases_nothing,
            lease_values_saturate,
            tokens_are_a_share_of_the_first_attempts,
            tokens_are_shared_by_concurrent_callers,
            the_floor_allows_tokens_without_first_attempts,
            the_floor_and_the_ratio_are_not_added_in_one_second,
            token_counts_saturate,
        }
    };
}

/// Instantiates one `#[tokio::test]` per budget case for a store expression (as
/// `conformance_tests!`, with its test maker).
#[macro_export]
macro_rules! budget_conformance_tests {
    ($(#[$attr:meta])* store = $store:expr, prefix = $prefix:expr $(,)?) => {
        $crate::__budget_cases!($crate::__conformance_test! [[$(#[$attr])*] ($store) ($prefix)]);
    };
}

macro_rules! define_run_budgets {
    ([] $($case:ident,)*) => {
        /// Every budget case, in order (the names match the functions and the tests).
        pub const BUDGET_CASES: &[&str] = &[$(stringify!($case)),*];

        /// Runs every budget case in sequence.
        pub async fn run_budgets<S: Budgets>(store: &S, prefix: &str) {
            $($case(store, prefix).await;)*
        }
    };
}

crate::__budget_cases!(define_run_budgets![]);

// ---------------------------------------------------------------------------------------
// Helpers

fn grant(target: u32, held: u32) -> Grant {
    Grant { target, held }
}

/// One request of a lease.
async fn lease<S: Budgets>(
    store: &S,
    svc: &str,
    process: u64,
    keep: u32,
    want: u32,
    cap: u32,
    lease: Duration,
) -> Grant {
    store
        .lease_permits(svc, process, keep, want, cap, lease)
        .await
        .unwrap_or_else(|e| {
            panic!("{svc}: process {process} keep {keep} want {want} of {cap}: {e}")
        })
}

/// The permits held by each process, from the answers to their last requests.
#[derive(Debug, Default)]
struct Holders(Vec<(u64, u32)>);

impl Holders {
    /// Notes `process`'s answer and checks that the leases hold no more than `cap`.
    fn note(&mut self, svc: &str, process: u64, answer: Grant, cap: u32) {
        assert!(answer.target <= answer.held, "{svc}: {process}: {answer:?}");
        self.0.retain(|(p, _)| *p != process);
        self.0.push((process, answer.held));
        let sum: u64 = self.0.iter().map(|(_, held)| u64::from(*held)).sum();
        assert!(
            sum <= u64::from(cap),
            "{svc}: {sum} held of {cap}: {self:?}"
        );
    }
}

/// Settings of the retry budget: `ratio` percent, `floor` a second.
fn budget(ratio: u32, floor: u32) -> Settings {
    Settings::DEFAULT
        .retry_budget(ratio)
        .retry_min_per_sec(floor)
}

async fn tokens<S: Budgets>(store: &S, svc: &str, s: &Settings, firsts: u64, wanted: u64) -> u64 {
    store
        .retry_tokens(svc, s, firsts, wanted)
        .await
        .unwrap_or_else(|e| panic!("{svc}: {firsts} first attempts, {wanted} wanted: {e}"))
}

/// Runs `run` (on a fresh breaker each time) until its answers equal `expected`, at most
/// three times: answers counted per second differ when a second of the store's clock ends
/// between two requests, which a few milliseconds' run rarely meets twice; a store that
/// does not count by second never matches.
async fn in_one_second<F, Fut>(svc: &str, expected: &[u64], mut run: F)
where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = Vec<u64>>,
{
    let mut seen = Vec::new();
    for attempt in 0..3 {
        let answers = run(service(svc, &format!("-{attempt}"))).await;
        if answers == expected {
            return;
        }
        seen.push(answers);
    }
    panic!("{svc}: expected {expected:?} (within one second), got {seen:?}");
}

// ---------------------------------------------------------------------------------------
// Leases of concurrency permits

/// Alone, a process gets what it wants, up to the cap; what it wants it may use.
pub async fn a_lone_process_gets_what_it_wants_up_to_the_cap<S: Budgets>(store: &S, prefix: &str) {
    let svc = service(prefix, "a_lone_process_gets_what_it_wants_up_to_the_cap");
    assert_eq!(lease(store, svc, 1, 0, 5, 8, LONG_LEASE).await, grant(5, 5));
    assert_eq!(
        lease(store, svc, 1, 5, 20, 8, LONG_LEASE).await,
        grant(8, 8),
        "{svc}: at most the cap"
    );
    assert_eq!(lease(store, svc, 1, 0, 3, 8, LONG_LEASE).await, grant(3, 3));
}

/// Several busy processes: the first takes all, the others wait with nothing; the first
/// may then use only its fair share but keeps what runs, gives the rest back as its calls
/// end, and every process settles at a fair share. The leases never hold more than the
/// cap.
pub async fn leases_never_hold_more_than_the_cap_and_converge_to_fair_shares<S: Budgets>(
    store: &S,
    prefix: &str,
) {
    let svc = service(
        prefix,
        "leases_never_hold_more_than_the_cap_and_converge_to_fair_shares",
    );
    let cap = 10;
    let mut holders = Holders::default();
    let steps: [(u64, u32, Grant); 8] = [
        (1, 0, grant(10, 10)),
        (2, 0, grant(0, 0)),
        (3, 0, grant(0, 0)),
        // Others are short: a third of 10 for new calls; its 10 running calls kept.
        (1, 10, grant(3, 10)),
        // Its calls drained to its target: the rest goes back.
        (1, 3, grant(3, 3)),
        (2, 0, grant(3, 3)),
        (3, 0, grant(3, 3)),
        (1, 3, grant(3, 3)),
    ];
    for (i, (process, keep, expected)) in steps.into_iter().enumerate() {
        let answer = lease(store, svc, process, keep, cap, cap, LONG_LEASE).await;
        assert_eq!(
            answer, expected,
            "{svc}: step {i}, process {process} keeping {keep}"
        );
        holders.note(svc, process, answer, cap);
    }
}

/// Eight processes ask for all five permits at once: whatever the order, one gets them.
pub async fn concurrent_requests_never_lease_more_than_the_cap<S: Budgets>(
    store: &S,
    prefix: &str,
) {
    let svc = service(prefix, "concurrent_requests_never_lease_more_than_the_cap");
    let answers =
        join_all((1..=8).map(|process| lease(store, svc, process, 0, 5, 5, LONG_LEASE))).await;
    let mut holders = Holders::default();
    for (process, answer) in (1..=8).zip(answers.iter().copied()) {
        holders.note(svc, process, answer, 5);
    }
    let mut held: Vec<u32> = answers.iter().map(|a| a.held).collect();
    held.sort_unstable();
    assert_eq!(held, [0, 0, 0, 0, 0, 0, 0, 5], "{svc}: {answers:?}");
}

/// A process that wants more than its share gets what the others leave free, as long as
/// none of them is short; then its fair share bounds the others.
pub async fn a_process_asking_more_than_its_share_gets_what_is_free<S: Budgets>(
    store: &S,
    prefix: &str,
) {
    let svc = service(
        prefix,
        "a_process_asking_more_than_its_share_gets_what_is_free",
    );
    let mut holders = Holders::default();
    let steps: [(u64, u32, u32, Grant); 4] = [
        (1, 0, 4, grant(4, 4)),
        // 1 wants no more than it holds: 2 gets the 6 left, past its half.
        (2, 0, 10, grant(6, 6)),
        (2, 6, 10, grant(6, 6)),
        // 2 is short, so 1 may not pass half; it holds less, and keeps it.
        (1, 4, 10, grant(4, 4)),
    ];
    for (i, (process, keep, want, expected)) in steps.into_iter().enumerate() {
        let answer = lease(store, svc, process, keep, want, 10, LONG_LEASE).await;
        assert_eq!(answer, expected, "{svc}: step {i}");
        holders.note(svc, process, answer, 10);
    }
}

/// A process that keeps and wants fewer gives the rest back, a `want` of 0 gives its
/// lease back, and the others get what was given.
pub async fn keeping_fewer_gives_permits_back<S: Budgets>(store: &S, prefix: &str) {
    let svc = service(prefix, "keeping_fewer_gives_permits_back");
    let mut holders = Holders::default();
    let steps: [(u64, u32, u32, Grant); 6] = [
        (1, 0, 6, grant(6, 6)),
        (2, 0, 6, grant(0, 0)),
        (1, 2, 2, grant(2, 2)),
        (2, 0, 6, grant(4, 4)),
        (1, 0, 0, grant(0, 0)),
        (2, 4, 6, grant(6, 6)),
    ];
    for (i, (process, keep, want, expected)) in steps.into_iter().enumerate() {
        let answer = lease(store, svc, process, keep, want, 6, LONG_LEASE).await;
        assert_eq!(answer, expected, "{svc}: step {i}");
        holders.note(svc, process, answer, 6);
    }
}

/// A process that stops renewing (it crashed): when its lease ends, its permits go to the
/// others; asking again, it is one of the others.
pub async fn an_ended_lease_gives_its_permits_back<S: Budgets>(store: &S, prefix: &str) {
    let svc = service(prefix, "an_ended_lease_gives_its_permits_back");
    assert_eq!(lease(store, svc, 1, 0, 4, 4, LEASE).await, grant(4, 4));
    assert_eq!(
        lease(store, svc, 2, 0, 4, 4, LONG_LEASE).await,
        grant(0, 0),
        "{svc}: 1's lease holds all"
    );
    tokio::time::sleep(LEASE + MARGIN).await;
    assert_eq!(
        lease(store, svc, 2, 0, 4, 4, LONG_LEASE).await,
        grant(4, 4),
        "{svc}: 1's lease ended"
    );
    assert_eq!(lease(store, svc, 1, 0, 4, 4, LONG_LEASE).await, grant(0, 0));
}

/// A request replaces the lease of its process (its own permits are not counted against
/// it): asking again for as many is answered as before, and leaves the others as much.
pub async fn asking_again_replaces_the_lease_of_the_process<S: Budgets>(store: &S, prefix: &str) {
    let svc = service(prefix, "asking_again_replaces_the_lease_of_the_process");
    for _ in 0..3 {
        assert_eq!(
            lease(store, svc, 1, 0, 6, 10, LONG_LEASE).await,
            grant(6, 6)
        );
    }
    assert_eq!(
        lease(store, svc, 2, 0, 10, 10, LONG_LEASE).await,
        grant(4, 4),
        "{svc}: 1 holds 6, once"
    );
    for _ in 0..3 {
        assert_eq!(
            lease(store, svc, 2, 4, 10, 10, LONG_LEASE).await,
            grant(4, 4)
        );
    }
}

/// No permits: no target, and nothing kept, whatever runs.
pub async fn a_zero_cap_leases_nothing<S: Budgets>(store: &S, prefix: &str) {
    let svc = service(prefix, "a_zero_cap_leases_nothing");
    assert_eq!(lease(store, svc, 1, 0, 5, 0, LONG_LEASE).await, grant(0, 0));
    assert_eq!(lease(store, svc, 1, 3, 5, 0, LONG_LEASE).await, grant(0, 0));
    assert_eq!(lease(store, svc, 2, 0, 1, 0, LONG_LEASE).await, grant(0, 0));
}

/// The largest cap, want and lease: all of it, and nothing for another.
pub async fn lease_values_saturate<S: Budgets>(store: &S, prefix: &str) {
    let svc = service(prefix, "lease_values_saturate");
    let max = u32::MAX;
    assert_eq!(
        lease(store, svc, u64::MAX, max, max, max, Duration::MAX).await,
        grant(max, max)
    );
    assert_eq!(
        lease(store, svc, 2, 0, 5, max, LONG_LEASE).await,
        grant(0, 0)
    );
}

// ---------------------------------------------------------------------------------------
// Retry tokens

/// No floor to speak of (no first attempts in the second asked for it is spent by the
/// first request): 20 % of the first attempts, spent once.
pub async fn tokens_are_a_share_of_the_first_attempts<S: Budgets>(store: &S, prefix: &str) {
    let svc = service(prefix, "tokens_are_a_share_of_the_first_attempts");
    let s = budget(20, 0);
    assert_eq!(
        tokens(store, svc, &s, 1_000, 500).await,
        200,
        "{svc}: 20 % of 1,000"
    );
    assert_eq!(tokens(store, svc, &s, 0, 1).await, 0, "{svc}: spent");
    assert_eq!(
        tokens(store, svc, &s, 10, 100).await,
        2,
        "{svc}: 20 % of 10 more"
    );
    assert_eq!(tokens(store, svc, &s, 0, 1).await, 0, "{svc}: spent");
}

/// Ten callers at once, each with 100 first attempts and wanting 50: each gets 20, the
/// share of what it brought, whatever the order: 200 in all, never more.
pub async fn tokens_are_shared_by_concurrent_callers<S: Budgets>(store: &S, prefix: &str) {
    let svc = service(prefix, "tokens_are_shared_by_concurrent_callers");
    let s = budget(20, 0);
    let granted = join_all((0..10).map(|_| tokens(store, svc, &s, 100, 50))).await;
    assert_eq!(granted, [20; 10], "{svc}");
    assert_eq!(tokens(store, svc, &s, 0, 50).await, 0, "{svc}: spent");
}

/// Without first attempts, `retry_min_per_sec` tokens a second, across requests.
pub async fn the_floor_allows_tokens_without_first_attempts<S: Budgets>(store: &S, prefix: &str) {
    let base = format!("{prefix}the_floor_allows_tokens_without_first_attempts");
    let s = budget(20, 5);
    in_one_second(&base, &[3, 2, 0, 0], |svc| {
        let s = &s;
        async move {
            let mut answers = Vec::new();
            for wanted in [3, 3, 1, 100] {
                answers.push(tokens(store, svc, s, 0, wanted).await);
            }
            answers
        }
    })
    .await;
}

/// In one second, the ratio or the floor, whichever allows more, not both: 10 first
/// attempts at 20 % allow 2, the floor 5.
pub async fn the_floor_and_the_ratio_are_not_added_in_one_second<S: Budgets>(
    store: &S,
    prefix: &str,
) {
    let base = format!("{prefix}the_floor_and_the_ratio_are_not_added_in_one_second");
    let s = budget(20, 5);
    in_one_second(&base, &[5, 0, 2], |svc| {
        let s = &s;
        async move {
            vec![
                tokens(store, svc, s, 10, 100).await,
                tokens(store, svc, s, 0, 100).await,
                // 25 more first attempts: 20 % of 35 is 7, of which 5 are spent.
                tokens(store, svc, s, 25, 100).await,
            ]
        }
    })
    .await;
}

/// The largest counts saturate at 2^53 - 1, in both stores.
pub async fn token_counts_saturate<S: Budgets>(store: &S, prefix: &str) {
    let svc = service(prefix, "token_counts_saturate");
    let max = infuse::store::retry_budget::MAX_COUNT;
    let s = budget(100, 0);
    assert_eq!(tokens(store, svc, &s, u64::MAX, u64::MAX).await, max);
    assert_eq!(
        tokens(store, svc, &s, u64::MAX, u64::MAX).await,
        0,
        "{svc}: spent"
    );
}

// ---------------------------------------------------------------------------------------
// The harness's stores

/// The Redis store on a server of its own (`redis_conformance`'s store) keeps its budgets
/// there.
impl Budgets for crate::support::ServerStore {
    async fn lease_permits(
        &self,
        service: &str,
        process: u64,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
    ) -> Result<Grant, StorageError> {
        Budgets::lease_permits(&self.store, service, process, keep, want, cap, lease).await
    }

    async fn retry_tokens(
        &self,
        service: &str,
        settings: &Settings,
        first_attempts: u64,
        wanted: u64,
    ) -> Result<u64, StorageError> {
        Budgets::retry_tokens(&self.store, service, settings, first_attempts, wanted).await
    }
}

/// A Redis store in `namespace` over the connection `config` makes (one server, the
/// master its Sentinels name, or a cluster): how the topologies' binaries run the budget
/// cases. The fleet store (`Config::fleet_store`) keeps no budgets of its own: the fleet
/// sends these same scripts, and without Redis its processes follow the
/// unavailable-policy, which no store answers.
pub async fn budget_store(config: &infuse::Config, namespace: &str) -> RedisStore {
    let conn = config
        .redis_connection()
        .await
        .expect("a connection to the topology");
    let deadlines = Deadlines {
        call: Duration::from_secs(1),
        admin: Duration::from_secs(2),
    };
    let store = RedisStore::new(
        conn.commands(),
        namespace,
        Duration::from_secs(60),
        deadlines,
    );
    store.load_scripts().await.expect("the scripts load");
    store
}
