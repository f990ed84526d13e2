//! The fleet's retry budget (`scripts/retry_budget.lua`, in a real Redis) against its
//! rule in Rust (`BudgetWindow`): random sequences of requests over chosen seconds get
//! the same grants and the same totals from both.

use infuse::store::retry_budget::BudgetWindow;
use infuse_tests::support::redis_server::RedisServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// One request: `skip` seconds after the previous one, reporting `firsts`, asking for
/// `wanted`.
#[derive(Debug, Clone, Copy)]
struct Request {
    skip: u64,
    firsts: u64,
    wanted: u64,
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![4 => Just(0u64), 3 => 1..3u64, 1 => 3..15u64],
        prop_oneof![1 => Just(0u64), 3 => 0..60u64, 1 => Just(9_007_199_254_740_991u64), 1 => 1_000_000_000..9_000_000_000_000_000u64],
        0..25u64,
    )
        .prop_map(|(skip, firsts, wanted)| Request {
            skip,
            firsts,
            wanted,
        })
}

#[test]
fn the_script_grants_what_the_rule_grants() {
    let server = RedisServer::start();
    let (runtime, conn) = infuse_tests::support::blocking_connection(&server);
    let script = redis::Script::new(include_str!("../../infuse/scripts/retry_budget.lua"));
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let strategy = (
        1..=100u32,
        0..12u32,
        proptest::collection::vec(request(), 1..40),
    );
    runner
        .run(&strategy, |(ratio, floor, requests)| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let key = format!("infuse:{{model/case{n}}}:retry");
            let mut conn = conn.clone();
            let mut window = BudgetWindow::default();
            let mut now = 1_700_000_000u64;
            for (i, r) in requests.iter().enumerate() {
                now += r.skip;
                window.first_attempts(now, r.firsts);
                let expected = window.take(now, r.wanted, ratio, floor);
                let (granted, firsts, retries): (u64, u64, u64) = runtime
                    .block_on(
                        script
                            .key(&key)
                            .arg(r.firsts)
                            .arg(r.wanted)
                            .arg(ratio)
                            .arg(floor)
                            .arg(60_000)
                            .arg(now)
                            .invoke_async(&mut conn),
                    )
                    .map_err(|e| TestCaseError::fail(format!("request {i}: {e}")))?;
                prop_assert_eq!(granted, expected, "request {} of {:?}", i, requests);
                prop_assert_eq!((firsts, retries), window.totals(now), "request {}", i);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn garbage_in_the_budget_counts_as_empty_and_a_wrong_type_is_refused() {
    let server = RedisServer::start();
    let key = "infuse:{model/garbage}:retry";
    server
        .cli(&[
            "HSET",
            key,
            "s0",
            "nan 1 2",
            "s1",
            "-5 3 4",
            "s2",
            "1e400 1 1",
            "s3",
            "x",
        ])
        .unwrap();
    let (runtime, mut conn) = infuse_tests::support::blocking_connection(&server);
    let script = redis::Script::new(include_str!("../../infuse/scripts/retry_budget.lua"));
    let invoke = |key: &str, args: [&str; 6], conn: &mut redis::aio::MultiplexedConnection| {
        let mut invocation = script.prepare_invoke();
        invocation.key(key);
        for arg in args {
            invocation.arg(arg);
        }
        runtime.block_on(invocation.invoke_async::<(u64, u64, u64)>(conn))
    };
    let answer = invoke(
        key,
        ["10", "3", "20", "0", "60000", "1700000000"],
        &mut conn,
    );
    assert_eq!(
        answer.unwrap(),
        (2, 10, 2),
        "20 % of 10; the garbage counted as nothing"
    );
    server
        .cli(&["SET", "infuse:{model/string}:retry", "x"])
        .unwrap();
    let refused = invoke(
        "infuse:{model/string}:retry",
        ["1", "1", "20", "5", "60000", "1700000000"],
        &mut conn,
    );
    assert!(
        refused.unwrap_err().to_string().contains("INFUSE_CORRUPT"),
        "a key of another type"
    );
    for bad in ["-1", "1.5", "nan", ""] {
        let refused = invoke(key, [bad, "1", "20", "5", "60000", "1700000000"], &mut conn);
        assert!(
            refused.unwrap_err().to_string().contains("INFUSE_ARG"),
            "{bad:?}"
        );
    }
}
