//! The fleet's concurrency leases (`scripts/lease_permits.lua`, in a real Redis) against
//! their rule in Rust (`LeaseTable`): random requests of a few processes over chosen
//! times get the same answers from both, and the permits held never pass the cap.

use infuse::store::lease::LeaseTable;
use infuse_tests::support::redis_server::RedisServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

#[derive(Debug, Clone, Copy)]
struct Request {
    skip_ms: u64,
    process: u64,
    keep: u32,
    want: u32,
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![3 => 0..50u64, 2 => 50..1_500u64, 1 => 1_500..5_000u64],
        1..5u64,
        prop_oneof![2 => Just(0u32), 3 => 0..30u32],
        prop_oneof![1 => Just(0u32), 4 => 0..40u32, 1 => Just(u32::MAX)],
    )
        .prop_map(|(skip_ms, process, keep, want)| Request {
            skip_ms,
            process,
            keep,
            want,
        })
}

#[test]
fn the_script_leases_what_the_rule_leases() {
    let server = RedisServer::start();
    let (runtime, conn) = infuse_tests::support::blocking_connection(&server);
    let script = redis::Script::new(include_str!("../../infuse/scripts/lease_permits.lua"));
    let mut runner = TestRunner::new(Config {
        cases: 200,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let strategy = (
        prop_oneof![1 => Just(1u32), 4 => 1..64u32],
        prop_oneof![1 => Just(1u64), 4 => 100..3_000u64],
        proptest::collection::vec(request(), 1..50),
    );
    runner
        .run(&strategy, |(cap, lease_ms, requests)| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let key = format!("infuse:{{model/case{n}}}:permits");
            let mut conn = conn.clone();
            let mut table = LeaseTable::default();
            let mut now = 1_700_000_000_000u64;
            for (i, r) in requests.iter().enumerate() {
                now += r.skip_ms;
                let expected = table.request(now, r.process, r.keep, r.want, cap, lease_ms);
                let (target, held, _, _): (u32, u32, u32, u32) = runtime
                    .block_on(
                        script
                            .key(&key)
                            .arg(r.process)
                            .arg(r.keep)
                            .arg(r.want)
                            .arg(cap)
                            .arg(lease_ms)
                            .arg(now)
                            .invoke_async(&mut conn),
                    )
                    .map_err(|e| TestCaseError::fail(format!("request {i}: {e}")))?;
                prop_assert_eq!(
                    (target, held),
                    (expected.target, expected.held),
                    "request {} of {:?}",
                    i,
                    requests
                );
                prop_assert!(
                    table.held(now) <= cap,
                    "held {} of {}",
                    table.held(now),
                    cap
                );
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn garbage_leases_count_no_more_and_bad_arguments_are_refused() {
    let server = RedisServer::start();
    let (runtime, mut conn) = infuse_tests::support::blocking_connection(&server);
    let script = redis::Script::new(include_str!("../../infuse/scripts/lease_permits.lua"));
    let key = "infuse:{model/garbage}:permits";
    let far = "99999999999999";
    server
        .cli(&[
            "HSET",
            key,
            "7",
            "x",
            "8",
            &format!("-1 0 {far}"),
            "9",
            &format!("3 3 {far}"),
        ])
        .unwrap();
    let mut invoke = |key: &str, args: [&str; 6]| {
        let mut invocation = script.prepare_invoke();
        invocation.key(key);
        for arg in args {
            invocation.arg(arg);
        }
        runtime.block_on(invocation.invoke_async::<(u32, u32, u32, u32)>(&mut conn))
    };
    // Only process 9's lease counts: 10 - 3 are left.
    let answer = invoke(key, ["1", "0", "20", "10", "2000", "1700000000000"]);
    assert_eq!(answer.unwrap(), (7, 7, 3, 1));
    assert_eq!(
        server.cli(&["HLEN", key]).unwrap().trim(),
        "2",
        "garbage deleted"
    );
    server
        .cli(&["SET", "infuse:{model/s}:permits", "x"])
        .unwrap();
    let refused = invoke(
        "infuse:{model/s}:permits",
        ["1", "0", "1", "1", "2000", "1"],
    );
    assert!(refused.unwrap_err().to_string().contains("INFUSE_CORRUPT"));
    for bad in [
        ["x", "0", "1", "1", "1", "1"],
        ["1", "-1", "1", "1", "1", "1"],
        ["1", "0", "4294967296", "1", "1", "1"],
    ] {
        let refused = invoke(key, bad);
        assert!(
            refused.unwrap_err().to_string().contains("INFUSE_ARG"),
            "{bad:?}"
        );
    }
}
