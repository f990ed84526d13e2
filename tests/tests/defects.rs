//! One test (or a few) per defect found by the review, each proving the fix the library
//! claims — and the further defects these tests found (a corrupt record under
//! `FailClosed`, a corrupt declared record at boot, an invalid override of an undeclared
//! service, `/` in namespaces, breakers outliving their registry, starting degraded under
//! `FailOpen`/`FailClosed`).
//!
//! Environment variables are process-wide and tests run in parallel threads: every
//! configuration here disables environment overrides, except the tests of
//! `INFUSE_DEFECT_DURATION_*`, which only that test sets (for its own service).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use infuse::{
    Breaker, BreakerError, CallOptions, Config, InitError, Registry, RegistryError,
    ServiceOverride, Settings, State, StorageError, UnavailablePolicy, MAX_OPEN_FOR,
};
use infuse_tests::support;
use infuse_tests::support::calls::{eventually, fail, succeed, DOWNSTREAM};
use infuse_tests::support::redis_server::RedisServer;

/// A port nothing listens on.
const CLOSED_URL: &str = "redis://127.0.0.1:1/0";
const CONNECT: Duration = Duration::from_millis(200);

// Declared services: `Registry::new` resolves their settings (environment included) up
// front, so an invalid value is an `InitError` rather than a log line.
#[infuse::circuit_breaker(service = "defect-duration")]
async fn defect_duration() -> Result<(), BreakerError> {
    Ok(())
}

#[infuse::circuit_breaker(service = "defect-declared")]
async fn defect_declared() -> Result<(), BreakerError> {
    Ok(())
}

/// The declared functions run (through the process-wide in-memory registry).
#[tokio::test]
async fn declared_services_run() {
    assert_eq!(defect_duration().await, Ok(()));
    assert_eq!(defect_declared().await, Ok(()));
}

/// Polls `f` every 10 ms for up to `within`.
async fn within(within: Duration, f: impl AsyncFnMut() -> bool) -> bool {
    eventually(within, Duration::from_millis(10), f).await
}

/// A fleet configuration with one service (`fail_max = 1`) and fast deadlines.
fn redis_config(server: &RedisServer, namespace: &str, service: &str, reset: Duration) -> Config {
    support::redis_service_config(server, namespace, service, 1, reset)
        .redis_call_timeout(Duration::from_millis(100))
        .redis_admin_timeout(Duration::from_millis(500))
        .resync_interval(Duration::from_millis(100))
}

fn key(namespace: &str, service: &str, which: &str) -> String {
    format!("infuse:{{{namespace}/{service}}}:{which}")
}

fn cli(server: &RedisServer, args: &[&str]) -> String {
    server
        .cli(args)
        .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
        .trim()
        .to_owned()
}

/// Whether the call's future ran (its own result came back, not a rejection).
fn ran(result: &Result<(), BreakerError>) -> bool {
    match result {
        Ok(()) => true,
        Err(error) => error.service() == DOWNSTREAM,
    }
}

// ---- 1. garbage in the `:open` key ---------------------------------------------------

/// Trips the breaker of `service` (fail_max 1), then replaces its `:open` key with
/// `garbage` (the breaker's own value pushed into a list, or set without expiry).
async fn trip_then_corrupt_open_key(
    server: &RedisServer,
    breaker: &Breaker,
    namespace: &str,
    list: bool,
) {
    assert!(ran(&fail(breaker).await));
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    let open = key(namespace, breaker.service(), "open");
    let value = cli(server, &["GET", &open]);
    cli(server, &["DEL", &open]);
    if list {
        cli(server, &["RPUSH", &open, "x"]);
    } else {
        cli(server, &["SET", &open, &value]);
        assert_eq!(cli(server, &["PTTL", &open]), "-1");
    }
}

fn assert_corrupt(state: Result<State, StorageError>, what: &str) {
    match state {
        Err(StorageError::Corrupt(detail)) => {
            assert!(detail.contains(":open"), "{what}: {detail}")
        }
        other => panic!("{what}: expected StorageError::Corrupt, got {other:?}"),
    }
}

/// Defect 1: "A value of the wrong type in a breaker's `:open` key (e.g. `RPUSH
/// infuse:{ns/svc}:open x`), or an `:open` string with no TTL (`SET` without `PX`),
/// used to wedge the breaker open forever." Now `state()` is `Corrupt`, calls follow the
/// default policy (local fallback: a healthy target's calls run once the reset timeout
/// has passed), and `close()` repairs the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_key_garbage_is_corrupt_local_fallback_runs_calls_and_close_repairs() {
    let server = RedisServer::start();
    let reset = Duration::from_millis(200);
    for (namespace, list) in [("d1-list", true), ("d1-nottl", false)] {
        let registry = Registry::new(redis_config(&server, namespace, "svc", reset))
            .await
            .unwrap();
        let breaker = registry.breaker("svc");
        trip_then_corrupt_open_key(&server, &breaker, namespace, list).await;
        assert_corrupt(breaker.state().await, namespace);
        // Not wedged: past the reset timeout a call runs (a local trial), and its success
        // closes the local breaker.
        assert!(
            within(Duration::from_secs(3), async || succeed(&breaker)
                .await
                .is_ok())
            .await,
            "{namespace}: the breaker stayed open"
        );
        for _ in 0..20 {
            assert_eq!(succeed(&breaker).await, Ok(()), "{namespace}");
        }
        assert_corrupt(breaker.state().await, namespace);
        // close() repairs the keys; calls go through Redis again.
        breaker.close().await.unwrap();
        assert_eq!(breaker.state().await.unwrap(), State::Closed, "{namespace}");
        let open = key(namespace, "svc", "open");
        assert_eq!(cli(&server, &["TYPE", &open]), "none", "{namespace}");
        assert!(ran(&fail(&breaker).await));
        assert_eq!(breaker.state().await.unwrap(), State::Open, "{namespace}");
        let pttl: i64 = cli(&server, &["PTTL", &open]).parse().unwrap();
        assert!(
            pttl > 0 && pttl <= 200,
            "{namespace}: the trip went through Redis: PTTL {pttl}"
        );
    }
}

/// Defect 1, with `FailClosed`: the breaker whose `:open` key holds garbage rejects its
/// calls (rather than wedging, or letting them through), until `close()` repairs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_key_garbage_under_fail_closed_rejects_until_close() {
    let server = RedisServer::start();
    let reset = Duration::from_millis(200);
    for (namespace, list) in [("d1fc-list", true), ("d1fc-nottl", false)] {
        let registry = Registry::new(
            redis_config(&server, namespace, "svc", reset)
                .on_redis_unavailable(UnavailablePolicy::FailClosed),
        )
        .await
        .unwrap();
        let breaker = registry.breaker("svc");
        trip_then_corrupt_open_key(&server, &breaker, namespace, list).await;
        assert_corrupt(breaker.state().await, namespace);
        // Well past the reset timeout, every call is rejected without running.
        let started = Instant::now();
        while started.elapsed() < reset * 3 {
            let result = succeed(&breaker).await;
            assert!(
                matches!(result, Err(BreakerError::Open { .. })),
                "{namespace}: {result:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        breaker.close().await.unwrap();
        assert_eq!(breaker.state().await.unwrap(), State::Closed, "{namespace}");
        assert_eq!(succeed(&breaker).await, Ok(()), "{namespace}");
    }
}

/// Defect 1, a closed breaker: "calls follow the unavailable-policy … with
/// `FailClosed` they are rejected". The breaker is closed in Redis and its `:open` key
/// holds a list; the resync (every 100 ms) finds the record corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_key_garbage_under_fail_closed_rejects_calls_of_a_closed_breaker() {
    let server = RedisServer::start();
    let namespace = "d1fc-closed";
    let registry = Registry::new(
        redis_config(&server, namespace, "svc", Duration::from_secs(60))
            .on_redis_unavailable(UnavailablePolicy::FailClosed),
    )
    .await
    .unwrap();
    let breaker = registry.breaker("svc");
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    cli(&server, &["RPUSH", &key(namespace, "svc", "open"), "x"]);
    assert_corrupt(breaker.state().await, namespace);
    assert!(
        within(Duration::from_secs(2), async || matches!(
            succeed(&breaker).await,
            Err(BreakerError::Open { .. })
        ))
        .await,
        "healthy calls still run through a corrupt record under FailClosed"
    );
}

/// Registry A makes the `:open` key of `service` a list (the breaker closed); then
/// registry B boots and `service`'s calls run under the policy in B, until A's `close()`
/// repairs the keys.
async fn boot_while_open_key_holds_garbage(namespace: &str, service: &str) {
    let server = RedisServer::start();
    let reset = Duration::from_secs(60);
    let a = Registry::new(redis_config(&server, namespace, "svc", reset))
        .await
        .unwrap();
    let breaker = a.breaker(service);
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    cli(&server, &["RPUSH", &key(namespace, service, "open"), "x"]);
    assert_corrupt(breaker.state().await, service);
    let b = Registry::new(redis_config(&server, namespace, "svc", reset))
        .await
        .expect("a process boots while one breaker's keys hold garbage");
    let other = b.breaker(service);
    assert_eq!(succeed(&other).await, Ok(()), "{service}");
    assert_corrupt(other.state().await, service);
    breaker.close().await.unwrap();
    assert_eq!(other.state().await.unwrap(), State::Closed, "{service}");
}

/// Defect 1, a process booting while the keys hold garbage, for a breaker created at run
/// time: it boots, the calls run (local fallback), and `close()` repairs the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_boots_while_a_run_time_breaker_s_open_key_holds_garbage() {
    boot_while_open_key_holds_garbage("d1-boot-rt", "svc").await;
}

/// Defect 1, the same for a `#[circuit_breaker]`-declared service, which `Registry::new`
/// (and `init`) registers at boot: one corrupt record must not stop a process from booting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_boots_while_a_declared_breaker_s_open_key_holds_garbage() {
    boot_while_open_key_holds_garbage("d1-boot", "defect-declared").await;
}

// ---- 2. garbage in the `:trial` key ------------------------------------------------------

/// A breaker (fail_max 1, reset 200 ms, trial lease 30 s) tripped, with a list in its
/// `:trial` key.
async fn tripped_with_garbage_trial(
    server: &RedisServer,
    namespace: &str,
) -> (Registry, Breaker, Duration) {
    let reset = Duration::from_millis(200);
    let registry = Registry::new(
        redis_config(server, namespace, "svc", reset).trial_lease(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let breaker = registry.breaker("svc");
    assert!(ran(&fail(&breaker).await));
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    cli(server, &["RPUSH", &key(namespace, "svc", "trial"), "x"]);
    (registry, breaker, reset)
}

/// Defect 2: "A wrong-type value in the `:trial` key leaked the local fallback's trial
/// slot: the trial was granted locally but released/recorded in Redis, so the process
/// rejected everything for `trial_lease` (30 s)." Now the local trial's success is
/// recorded locally: it closes the local breaker and the following calls run at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trial_key_garbage_local_trial_success_closes_the_local_breaker() {
    let server = RedisServer::start();
    let (_registry, breaker, reset) = tripped_with_garbage_trial(&server, "d2-success").await;
    tokio::time::sleep(reset).await;
    assert!(
        within(Duration::from_secs(2), async || succeed(&breaker)
            .await
            .is_ok())
        .await,
        "no trial call ran"
    );
    let started = Instant::now();
    for i in 0..50 {
        assert_eq!(succeed(&breaker).await, Ok(()), "call {i} after the trial");
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// Defect 2, cancelled trial: the local trial's future is dropped mid-call; its slot is
/// released where it was granted, so the next call can be a trial right away rather
/// than being rejected for the 30 s lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trial_key_garbage_dropped_local_trial_frees_the_slot_at_once() {
    let server = RedisServer::start();
    let (_registry, breaker, reset) = tripped_with_garbage_trial(&server, "d2-drop").await;
    tokio::time::sleep(reset).await;
    let started = Arc::new(AtomicBool::new(false));
    assert!(
        within(Duration::from_secs(2), async || {
            let flag = started.clone();
            let hung = breaker.call(async move {
                flag.store(true, Ordering::SeqCst);
                std::future::pending::<Result<(), BreakerError>>().await
            });
            let _ = tokio::time::timeout(Duration::from_millis(50), hung).await;
            started.load(Ordering::SeqCst)
        })
        .await,
        "no trial call was admitted"
    );
    // The trial was dropped mid-call. The next call is a trial within a second, not
    // after the 30 s lease.
    let dropped = Instant::now();
    let mut last = None;
    let recovered = within(Duration::from_secs(2), async || {
        let result = succeed(&breaker).await;
        let ok = result.is_ok();
        last = Some(result);
        ok
    })
    .await;
    assert!(
        recovered,
        "still rejected {:?} after the trial was dropped: {last:?}",
        dropped.elapsed()
    );
    for _ in 0..20 {
        assert_eq!(succeed(&breaker).await, Ok(()));
    }
}

/// Defect 2, failed local trial: its failure is recorded where the trial was granted, so
/// the local breaker re-opens for the reset timeout (not the 30 s lease) and the next
/// trial comes right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trial_key_garbage_failed_local_trial_reopens_for_the_reset_timeout_only() {
    let server = RedisServer::start();
    let (_registry, breaker, reset) = tripped_with_garbage_trial(&server, "d2-fail").await;
    tokio::time::sleep(reset).await;
    assert!(
        within(Duration::from_secs(2), async || ran(&fail(&breaker).await)).await,
        "no trial call ran"
    );
    let error = succeed(&breaker)
        .await
        .expect_err("the failed trial re-opens");
    assert!(matches!(error, BreakerError::Open { .. }), "{error:?}");
    let hint = error.retry_after().unwrap();
    assert!(
        hint <= reset,
        "re-opened for {hint:?}, not the reset timeout"
    );
    let reopened = Instant::now();
    assert!(
        within(Duration::from_secs(2), async || succeed(&breaker)
            .await
            .is_ok())
        .await,
        "no second trial"
    );
    assert!(
        reopened.elapsed() < Duration::from_secs(2),
        "{:?}",
        reopened.elapsed()
    );
    assert_eq!(succeed(&breaker).await, Ok(()));
}

// ---- 3. passwords in Debug and errors ----------------------------------------------------

/// The password shapes: each holds two markers (which no encoding changes) around the
/// characters that used to break redaction.
const PASSWORDS: &[&str] = &[
    "LEFTSECRET/RIGHTSECRET",
    "LEFTSECRET@RIGHTSECRET",
    "LEFTSECRET:RIGHTSECRET",
    "LEFTSECRET%2FRIGHTSECRET",
    "LEFTSECRETpässwörd✓RIGHTSECRET",
    "LEFTSECRET//@@::RIGHTSECRET",
    "LEFTSECRET/@:%40RIGHTSECRET",
    "LEFTSECRETRIGHTSECRET",
];

fn assert_no_secret(text: &str, what: &str) {
    for marker in ["LEFTSECRET", "RIGHTSECRET"] {
        assert!(!text.contains(marker), "{what} shows the password: {text}");
    }
}

/// Defect 3: "A password containing `/` (`redis://:pa/ss@host/0`) was printed whole by
/// `Config`'s `Debug` and by `InitError`'s `Display` and `Debug`." Many shapes, with and
/// without a user name, and a user-info alone (masked as a token): neither `Config`'s
/// `Debug` nor the `Display` / `Debug` of `Registry::new`'s error shows any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_shape_leaks_into_config_debug_or_init_errors() {
    for password in PASSWORDS {
        let mut urls = vec![
            format!("redis://:{password}@127.0.0.1:1/0"),
            format!("redis://alice:{password}@127.0.0.1:1/0"),
            format!("redis://alice:{password}@localhost:1"),
        ];
        if !password.contains(':') {
            // A user-info alone (no `:`) is a token: masked whole.
            urls.push(format!("redis://{password}@127.0.0.1:1/0"));
        }
        for url in urls {
            let config = Config::redis(url.clone())
                .namespace("d3")
                .redis_connect_timeout(CONNECT)
                .env_overrides(false);
            let debug = format!("{config:?}");
            assert_no_secret(&debug, &format!("Debug of Config::redis({url:?})"));
            assert!(debug.contains(":1"), "the address is kept: {debug}");
            let error = Registry::new(config)
                .await
                .err()
                .unwrap_or_else(|| panic!("{url}: connected to a closed port"));
            assert!(
                matches!(
                    error,
                    InitError::Unreachable { .. } | InitError::InvalidSetting { .. }
                ),
                "{url}: {error:?}"
            );
            assert_no_secret(
                &error.to_string(),
                &format!("Display of the error for {url}"),
            );
            assert_no_secret(
                &format!("{error:?}"),
                &format!("Debug of the error for {url}"),
            );
        }
    }
}

/// Defect 3, the user is kept: only the password is masked.
#[test]
fn config_debug_keeps_the_user_and_host_and_masks_the_password() {
    let debug = format!("{:?}", Config::redis("redis://alice:pa/ss@host:6379/0"));
    assert!(debug.contains("redis://alice:***@host:6379/0"), "{debug}");
    assert!(!debug.contains("pa/ss"), "{debug}");
}

// ---- 4. durations ---------------------------------------------------------------------

/// A setting of `Config`: its name, its maximum, and how to set it.
struct DurationSetting {
    name: &'static str,
    max: Duration,
    set: fn(Config, Duration) -> Config,
}

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn duration_settings() -> Vec<DurationSetting> {
    vec![
        DurationSetting {
            name: "trial_lease",
            max: Config::MAX_TRIAL_LEASE,
            set: |c, d| c.trial_lease(d),
        },
        DurationSetting {
            name: "redis_call_timeout",
            max: Duration::from_secs(60),
            set: |c, d| c.redis_call_timeout(d),
        },
        DurationSetting {
            name: "redis_admin_timeout",
            max: Duration::from_secs(5 * 60),
            set: |c, d| c.redis_admin_timeout(d),
        },
        DurationSetting {
            name: "redis_connect_timeout",
            max: Duration::from_secs(5 * 60),
            set: |c, d| c.redis_connect_timeout(d),
        },
        DurationSetting {
            name: "resync_interval",
            max: Duration::from_secs(60 * 60),
            set: |c, d| c.resync_interval(d),
        },
        DurationSetting {
            name: "key_ttl",
            max: 365 * DAY,
            set: |c, d| c.key_ttl(d),
        },
        DurationSetting {
            name: "reset_timeout",
            max: Settings::MAX_RESET_TIMEOUT,
            set: |c, d| c.service("defect-declared", ServiceOverride::new().reset_timeout(d)),
        },
    ]
}

/// Builds a configuration.
type ConfigFn = fn() -> Config;

/// The configurations every duration is checked in: in memory, and Redis (at a closed
/// port: validation comes before connecting).
fn base_configs() -> [(&'static str, ConfigFn); 2] {
    [
        ("memory", || Config::in_memory().env_overrides(false)),
        ("redis", || {
            Config::redis(CLOSED_URL)
                .redis_connect_timeout(CONNECT)
                .env_overrides(false)
        }),
    ]
}

fn check_invalid(
    result: Result<Registry, InitError>,
    needles: &[&str],
    what: &str,
) -> Result<(), String> {
    match result {
        Err(error @ InitError::InvalidSetting { .. }) => {
            let text = error.to_string();
            match needles.iter().find(|needle| !text.contains(*needle)) {
                Some(needle) => Err(format!("{what}: {needle:?} not in: {text}")),
                None => Ok(()),
            }
        }
        Err(other) => Err(format!(
            "{what}: expected InvalidSetting, got {other:?} ({other})"
        )),
        Ok(_) => Err(format!("{what}: accepted")),
    }
}

fn expect_invalid(result: Result<Registry, InitError>, needles: &[&str], what: &str) {
    if let Err(message) = check_invalid(result, needles, what) {
        panic!("{message}");
    }
}

/// Defect 4: "`reset_timeout` of `18446744073709551615ms` gave a misleading error,
/// `9223372036854775807ms` opened for 292 years, and
/// `ServiceOverride::reset_timeout(Duration::MAX)` made init panic in Redis mode."
/// Every duration setting of `Config` has a maximum: above it (or zero), `Registry::new`
/// fails with `InvalidSetting` naming the setting, in memory and in Redis mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_config_duration_above_its_maximum_is_an_invalid_setting_naming_it() {
    for (mode, base) in base_configs() {
        for setting in duration_settings() {
            let name = setting.name;
            for (value, why) in [
                (Duration::MAX, "exceeds the maximum"),
                (
                    setting.max + Duration::from_millis(1),
                    "exceeds the maximum",
                ),
                (Duration::ZERO, "greater than zero"),
            ] {
                let what = format!("{mode}: {name} = {value:?}");
                let result =
                    std::panic::AssertUnwindSafe(Registry::new((setting.set)(base(), value)));
                let result = futures::FutureExt::catch_unwind(result)
                    .await
                    .unwrap_or_else(|_| panic!("{what}: panicked"));
                expect_invalid(result, &[name, why], &what);
            }
        }
    }
}

/// Defect 4, the maximum itself is accepted (in memory: nothing to connect to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_config_duration_at_its_maximum_is_accepted() {
    for setting in duration_settings() {
        let config = (setting.set)(Config::in_memory().env_overrides(false), setting.max);
        let registry = Registry::new(config)
            .await
            .unwrap_or_else(|e| panic!("{} = its maximum: {e}", setting.name));
        if setting.name == "reset_timeout" {
            let settings = registry.breaker("defect-declared").settings();
            assert_eq!(settings.reset_timeout, Settings::MAX_RESET_TIMEOUT);
        }
    }
}

/// Defect 4, in Redis mode with a live server: `ServiceOverride::reset_timeout(Duration::MAX)`
/// for a declared service is an `InvalidSetting` naming `Config::service`, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_timeout_duration_max_in_redis_mode_is_an_error_not_a_panic() {
    let server = RedisServer::start();
    let config = Config::redis(server.url())
        .namespace("d4")
        .service(
            "defect-declared",
            ServiceOverride::new().reset_timeout(Duration::MAX),
        )
        .env_overrides(false);
    let result =
        futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(Registry::new(config)))
            .await
            .expect("Registry::new panicked");
    expect_invalid(
        result,
        &[
            "Config::service(\"defect-declared\")",
            "reset_timeout",
            "exceeds the maximum of 24h",
        ],
        "redis",
    );
}

/// Defect 4, a service no `#[circuit_breaker]` declares (a breaker created after the
/// registry): its `reset_timeout` override above the maximum must be refused by
/// `Registry::new` too, not silently replaced by the defaults when the breaker is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undeclared_service_override_above_the_maximum_is_refused() {
    for (mode, base) in base_configs() {
        let config = base().service(
            "defect-undeclared",
            ServiceOverride::new()
                .fail_max(2)
                .reset_timeout(Duration::MAX),
        );
        let result = Registry::new(config).await;
        if let Ok(registry) = &result {
            let settings = registry.breaker("defect-undeclared").settings();
            eprintln!("{mode}: accepted; the breaker got {settings:?}");
        }
        expect_invalid(
            result,
            &["defect-undeclared", "reset_timeout", "exceeds the maximum"],
            mode,
        );
    }
}

/// Defect 4, environment variables: `INFUSE_DEFECT_DURATION_RESET_TIMEOUT` (service
/// `defect-duration`, declared above) above the maximum, zero, or beyond what a duration
/// holds is an `InvalidSetting` naming the variable and the setting; `9223372036854775807ms`
/// no longer opens the breaker for 292 years.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_reset_timeout_above_the_maximum_names_the_variable() {
    const VAR: &str = "INFUSE_DEFECT_DURATION_RESET_TIMEOUT";
    let cases = [
        ("18446744073709551615ms", "exceeds the maximum of 24h"),
        ("9223372036854775807ms", "exceeds the maximum of 24h"),
        ("86400001ms", "exceeds the maximum of 24h"),
        ("1441m", "exceeds the maximum of 24h"),
        ("0", "greater than zero"),
        ("18446744073709551615m", "too large"),
    ];
    let mut failures = Vec::new();
    for (value, why) in cases {
        std::env::set_var(VAR, value);
        for (mode, base) in base_configs() {
            let config = base().env_overrides(true);
            let result = Registry::new(config).await;
            let what = format!("{mode}: {VAR}={value}");
            if let Err(message) = check_invalid(result, &[VAR, "defect-duration", why], &what) {
                failures.push(message);
            }
        }
    }
    std::env::remove_var(VAR);
    assert!(failures.is_empty(), "{failures:#?}");
    // The maximum itself is accepted.
    std::env::set_var(VAR, "1440m");
    let registry = Registry::new(Config::in_memory()).await;
    std::env::remove_var(VAR);
    let settings = registry.unwrap().breaker("defect-duration").settings();
    assert_eq!(settings.reset_timeout, Settings::MAX_RESET_TIMEOUT);
}

/// Checks `open_for` on `breaker`: above the maximum (or zero) it is refused with
/// `InvalidInput` and nothing changes; at the maximum it opens for 30 days.
async fn check_open_for_limits(breaker: &Breaker, what: &str) {
    for refused in [
        Duration::MAX,
        MAX_OPEN_FOR + Duration::from_millis(1),
        Duration::ZERO,
    ] {
        let before = breaker.snapshot().await.unwrap();
        match breaker.open_for(refused).await {
            Err(StorageError::InvalidInput(reason)) => {
                assert!(reason.contains("open_for"), "{what}: {reason}");
            }
            other => panic!("{what}: open_for({refused:?}) gave {other:?}"),
        }
        let after = breaker.snapshot().await.unwrap();
        assert_eq!(
            (after.state, after.generation, after.fail_counter),
            (before.state, before.generation, before.fail_counter),
            "{what}: open_for({refused:?}) changed the breaker"
        );
        if let (Some(b), Some(a)) = (before.open_remaining, after.open_remaining) {
            assert!(a <= b, "{what}: the open time was extended");
        }
    }
    breaker.open_for(MAX_OPEN_FOR).await.unwrap();
    let snapshot = breaker.snapshot().await.unwrap();
    assert_eq!(snapshot.state, State::Open, "{what}");
    let left = snapshot.open_remaining.unwrap();
    assert!(
        left > MAX_OPEN_FOR - Duration::from_secs(60) && left <= MAX_OPEN_FOR,
        "{what}: {left:?}"
    );
    breaker.close().await.unwrap();
}

/// Defect 4, `Breaker::open_for`: at most `infuse::MAX_OPEN_FOR` (30 days); above it the
/// answer is `InvalidInput` and the state is unchanged — closed or open, in memory and
/// in Redis (where the record outlives the open time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_for_above_the_maximum_is_invalid_input_and_changes_nothing() {
    let memory = Registry::new(Config::in_memory().env_overrides(false))
        .await
        .unwrap()
        .breaker("svc");
    let server = RedisServer::start();
    let registry = Registry::new(redis_config(&server, "d4-open", "svc", DAY))
        .await
        .unwrap();
    let redis = registry.breaker("svc");
    for (what, breaker) in [("memory", &memory), ("redis", &redis)] {
        check_open_for_limits(breaker, &format!("{what}, closed")).await;
        breaker.open().await.unwrap();
        check_open_for_limits(breaker, &format!("{what}, open")).await;
    }
    redis.open_for(MAX_OPEN_FOR).await.unwrap();
    let state_ttl: u64 = cli(&server, &["PTTL", &key("d4-open", "svc", "state")])
        .parse()
        .unwrap();
    let open_ttl: u64 = cli(&server, &["PTTL", &key("d4-open", "svc", "open")])
        .parse()
        .unwrap();
    assert!(
        open_ttl > (MAX_OPEN_FOR - Duration::from_secs(60)).as_millis() as u64,
        "{open_ttl}"
    );
    assert!(
        state_ttl >= open_ttl,
        "the record expires before the open time ends: {state_ttl} < {open_ttl}"
    );
}

// ---- 5. service names -------------------------------------------------------------------

fn invalid_names() -> Vec<(String, &'static str)> {
    vec![
        ("a{b}c".to_owned(), "`{` or `}`"),
        ("{".to_owned(), "`{` or `}`"),
        ("users}".to_owned(), "`{` or `}`"),
        (String::new(), "empty"),
        ("a\nb".to_owned(), "control"),
        ("tab\there".to_owned(), "control"),
        ("nul\0".to_owned(), "control"),
        ("\u{85}next-line".to_owned(), "control"),
        ("x".repeat(257), "256 bytes"),
        ("é".repeat(129), "256 bytes"),
    ]
}

/// Defect 5: "`breaker("a{b}c")` and `breaker("")` were accepted although `{`/`}` are
/// reserved in Redis keys." `infuse::try_breaker` and `Registry::try_breaker` refuse
/// such names with a message saying what is wrong; names at the limit are fine.
#[test]
fn try_breaker_refuses_reserved_empty_control_and_long_names() {
    let registry = Registry::in_memory();
    for (name, why) in invalid_names() {
        for (what, result) in [
            ("infuse::try_breaker", infuse::try_breaker(&name)),
            ("Registry::try_breaker", registry.try_breaker(&name)),
        ] {
            let error = match result {
                Err(RegistryError::InvalidName(error)) => error,
                Err(other) => panic!("{what}({name:?}): expected InvalidName, got {other:?}"),
                Ok(_) => panic!("{what}({name:?}) accepted"),
            };
            assert_eq!(error.name, name);
            let text = error.to_string();
            assert!(text.contains(why), "{what}({name:?}): {text}");
        }
    }
    for name in [
        "x".repeat(256),
        "é".repeat(128),
        "users-api/v2 (eu)".to_owned(),
    ] {
        assert!(infuse::try_breaker(&name).is_ok(), "{name:?}");
        assert!(registry.try_breaker(&name).is_ok(), "{name:?}");
    }
}

/// Defect 5: `infuse::breaker` panics on a reserved name, pointing to `try_breaker`.
#[test]
#[should_panic(expected = "use try_breaker()")]
fn global_breaker_with_braces_panics_naming_try_breaker() {
    let _ = infuse::breaker("a{b}c");
}

/// Defect 5: `infuse::breaker("")` panics, pointing to `try_breaker`.
#[test]
#[should_panic(expected = "use try_breaker()")]
fn global_breaker_with_an_empty_name_panics_naming_try_breaker() {
    let _ = infuse::breaker("");
}

/// Defect 5: `Registry::breaker` panics too, pointing to `try_breaker`.
#[test]
#[should_panic(expected = "must not contain `{` or `}`")]
fn registry_breaker_with_braces_panics_saying_why() {
    let _ = Registry::in_memory().breaker("a{b}c");
}

/// Defect 5: `Config::service` with an invalid name is an `InitError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_service_with_an_invalid_name_is_an_init_error() {
    for (mode, base) in base_configs() {
        for (name, why) in invalid_names() {
            let config = base().service(name.clone(), ServiceOverride::new().fail_max(2));
            match Registry::new(config).await {
                Err(InitError::InvalidName(error)) => {
                    assert_eq!(error.name, name);
                    assert!(error.to_string().contains(why), "{mode}: {error}");
                }
                Err(other) => panic!("{mode} {name:?}: expected InvalidName, got {other:?}"),
                Ok(_) => panic!("{mode}: Config::service({name:?}) accepted"),
            }
        }
    }
}

/// Defect 5, the neighbour of the reserved braces: the key of a breaker is
/// `infuse:{<namespace>/<service>}`, and `/` is allowed in service names. Namespace `d5`
/// with service `users/eu` and namespace `d5/users` with service `eu` would share a
/// breaker, so a namespace may not contain `/`: the key then splits one way only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_never_meet_even_when_names_contain_a_slash() {
    let server = RedisServer::start();
    let reset = Duration::from_secs(60);
    let refused = Registry::new(redis_config(&server, "d5/users", "eu", reset))
        .await
        .err()
        .expect("a namespace holding `/` is refused");
    let text = refused.to_string();
    assert!(
        text.contains("Config::namespace") && text.contains('/'),
        "{text}"
    );
    let a = Registry::new(redis_config(&server, "d5", "users/eu", reset))
        .await
        .unwrap();
    let b = Registry::new(redis_config(&server, "d5-users", "eu", reset))
        .await
        .unwrap();
    let (a, b) = (a.breaker("users/eu"), b.breaker("eu"));
    assert!(ran(&fail(&a).await));
    assert_eq!(a.state().await.unwrap(), State::Open);
    assert_eq!(
        b.state().await.unwrap(),
        State::Closed,
        "another namespace's breaker opened"
    );
}

// ---- 7. trial in flight -------------------------------------------------------------

/// Defect 7: "A call rejected because another call holds the half-open trial said
/// "Timeout not elapsed yet" with no retry hint." In fleet mode, registry A's trial is in
/// flight; registry B's call (and A's own second call) is rejected with `TrialInFlight`,
/// saying so, with a retry hint no longer than the trial lease (and about its remainder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_during_another_process_trial_is_trial_in_flight_with_a_retry_hint() {
    let server = RedisServer::start();
    let reset = Duration::from_millis(200);
    let lease = Duration::from_secs(10);
    let config = || redis_config(&server, "d7", "svc", reset).trial_lease(lease);
    let (ra, rb) = (
        Registry::new(config()).await.unwrap(),
        Registry::new(config()).await.unwrap(),
    );
    let (a, b) = (ra.breaker("svc"), rb.breaker("svc"));
    assert!(ran(&fail(&a).await));
    assert!(
        within(Duration::from_secs(2), async || matches!(
            succeed(&b).await,
            Err(BreakerError::Open { .. })
        ))
        .await,
        "b never saw the trip"
    );
    tokio::time::sleep(reset + Duration::from_millis(20)).await;
    let started = Arc::new(AtomicBool::new(false));
    let release = Arc::new(tokio::sync::Notify::new());
    let trial = tokio::spawn(a.call_owned(CallOptions::new(), {
        let (started, release) = (started.clone(), release.clone());
        async move {
            started.store(true, Ordering::SeqCst);
            release.notified().await;
            Ok::<(), BreakerError>(())
        }
    }));
    assert!(
        within(Duration::from_secs(2), async || started
            .load(Ordering::SeqCst))
        .await,
        "a's trial never started"
    );
    let b_ran = Arc::new(AtomicUsize::new(0));
    let mut seen = None;
    let rejected = within(Duration::from_secs(2), async || {
        let counter = b_ran.clone();
        let result = b
            .call(async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<(), BreakerError>(())
            })
            .await;
        let done = matches!(result, Err(BreakerError::TrialInFlight { .. }));
        seen = Some(result);
        done
    })
    .await;
    assert!(rejected, "b's call: {seen:?}");
    assert_eq!(
        b_ran.load(Ordering::SeqCst),
        0,
        "b's call ran during a's trial"
    );
    let own = succeed(&a).await;
    for (who, result) in [("b", seen.unwrap()), ("a", own)] {
        let error = result.expect_err(who);
        assert!(
            matches!(error, BreakerError::TrialInFlight { service: "svc", .. }),
            "{who}: {error:?}"
        );
        assert!(error.is_rejection(), "{who}");
        let text = error.to_string();
        assert!(text.contains("a trial call is in flight"), "{who}: {text}");
        assert!(!text.contains("Timeout not elapsed yet"), "{who}: {text}");
        let hint = error.retry_after().expect("a retry hint");
        assert!(
            hint > Duration::ZERO && hint <= lease,
            "{who}: retry_after {hint:?}"
        );
        assert!(
            hint > lease / 2,
            "{who}: retry_after {hint:?} is not about the lease's remainder"
        );
    }
    release.notify_one();
    assert_eq!(trial.await.unwrap(), Ok(()));
    assert!(
        within(Duration::from_secs(2), async || succeed(&b).await.is_ok()).await,
        "b never saw the trial close the breaker"
    );
}

/// Defect 7, in memory (one process): a call during this process's own trial is
/// `TrialInFlight` with a hint no longer than the trial lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_during_a_trial_in_memory_is_trial_in_flight_with_a_retry_hint() {
    let lease = Duration::from_secs(10);
    let reset = Duration::from_millis(100);
    let registry = Registry::new(
        Config::in_memory()
            .env_overrides(false)
            .trial_lease(lease)
            .service(
                "svc",
                ServiceOverride::new().fail_max(1).reset_timeout(reset),
            ),
    )
    .await
    .unwrap();
    let breaker = registry.breaker("svc");
    assert!(ran(&fail(&breaker).await));
    tokio::time::sleep(reset).await;
    let permit = breaker.acquire().await.expect("the trial");
    assert!(permit.is_trial());
    let error = succeed(&breaker)
        .await
        .expect_err("rejected during the trial");
    assert!(
        matches!(error, BreakerError::TrialInFlight { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("a trial call is in flight"),
        "{error}"
    );
    let hint = error.retry_after().unwrap();
    assert!(hint > lease / 2 && hint <= lease, "{hint:?}");
    permit.success().await;
    assert_eq!(succeed(&breaker).await, Ok(()));
}

/// Found while writing the test above: a `Breaker` taken from a `Registry` that is then
/// dropped (`Registry::new(config).await?.breaker("svc")`) keeps calling Redis, but no
/// longer follows the fleet — the fleet reaches breakers through the registry's
/// directory, held weakly — so another process's trip never reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_outliving_its_registry_still_follows_the_fleet() {
    let server = RedisServer::start();
    let config = || redis_config(&server, "d7-weak", "svc", Duration::from_secs(60));
    let a = Registry::new(config()).await.unwrap();
    let b = Registry::new(config()).await.unwrap().breaker("svc");
    assert_eq!(succeed(&b).await, Ok(()));
    assert!(ran(&fail(&a.breaker("svc")).await));
    assert!(
        within(Duration::from_secs(2), async || matches!(
            succeed(&b).await,
            Err(BreakerError::Open { .. })
        ))
        .await,
        "b's calls still run; b.state() = {:?}",
        b.state().await
    );
}

// ---- 8. operators: open_for, force_open, disable ----------------------------------------

/// A call that counts its runs.
async fn counted(breaker: &Breaker, runs: &AtomicUsize, ok: bool) -> Result<(), BreakerError> {
    breaker
        .call(async {
            runs.fetch_add(1, Ordering::SeqCst);
            if ok {
                Ok(())
            } else {
                Err(BreakerError::Tripped {
                    service: "downstream",
                })
            }
        })
        .await
}

/// The operator scenario on `a` (operator) and `b` (another process, or the same
/// breaker in memory), fail_max 2, reset 200 ms. `pttl` reads the `:state` key's PTTL
/// in Redis mode.
async fn operator_scenario(a: &Breaker, b: &Breaker, pttl: Option<&dyn Fn() -> i64>) {
    let reset = a.settings().reset_timeout;
    let poll = Duration::from_secs(3);
    // open_for: rejected as open, with the window as the hint.
    a.open_for(Duration::from_secs(2)).await.unwrap();
    let mut seen = None;
    assert!(
        within(poll, async || {
            let r = succeed(b).await;
            let done = matches!(r, Err(BreakerError::Open { .. }));
            seen = Some(r);
            done
        })
        .await,
        "b after open_for: {seen:?}"
    );
    let hint = seen.unwrap().unwrap_err().retry_after().unwrap();
    assert!(
        hint > Duration::from_millis(1500) && hint <= Duration::from_secs(2),
        "open_for(2 s) hint: {hint:?}"
    );
    assert_eq!(a.state().await.unwrap(), State::Open);
    assert_eq!(b.state().await.unwrap(), State::Open);
    let left = b.snapshot().await.unwrap().open_remaining.unwrap();
    assert!(left > Duration::from_millis(1500), "{left:?}");
    // force_open: rejected as forced, with no hint, past the reset timeout too.
    a.force_open().await.unwrap();
    assert!(
        within(poll, async || matches!(
            succeed(b).await,
            Err(BreakerError::ForcedOpen { .. })
        ))
        .await,
        "b never saw force_open"
    );
    tokio::time::sleep(reset + Duration::from_millis(100)).await;
    let runs = AtomicUsize::new(0);
    for _ in 0..10 {
        let error = counted(b, &runs, true).await.unwrap_err();
        assert!(
            matches!(error, BreakerError::ForcedOpen { .. }),
            "{error:?}"
        );
        assert_eq!(error.retry_after(), None);
        assert!(
            error.to_string().contains("held open by an operator"),
            "{error}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no trial while forced open");
    assert_eq!(a.state().await.unwrap(), State::ForcedOpen);
    assert_eq!(b.state().await.unwrap(), State::ForcedOpen);
    if let Some(pttl) = pttl {
        assert_eq!(pttl(), -1, "a forced-open record must not expire");
    }
    // close: calls run.
    a.close().await.unwrap();
    assert!(
        within(poll, async || succeed(b).await.is_ok()).await,
        "b never saw close"
    );
    // disable: every call runs and is counted, nothing trips.
    a.disable().await.unwrap();
    assert!(
        within(poll, async || b.state().await.ok() == Some(State::Disabled)).await,
        "b never saw disable"
    );
    let fail_max = a.settings().fail_max;
    let failures = fail_max as usize * 3;
    let runs = AtomicUsize::new(0);
    for i in 0..failures {
        let result = counted(b, &runs, false).await;
        assert!(ran(&result), "failing call {i} while disabled: {result:?}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), failures);
    assert_eq!(b.fail_counter().await.unwrap(), failures as u32);
    assert_eq!(a.fail_counter().await.unwrap(), failures as u32);
    assert_eq!(a.state().await.unwrap(), State::Disabled);
    assert_eq!(b.state().await.unwrap(), State::Disabled);
    if let Some(pttl) = pttl {
        assert_eq!(pttl(), -1, "a disabled record must not expire");
    }
    // close: closed, counters reset, calls run; the record expires again.
    a.close().await.unwrap();
    for breaker in [a, b] {
        let snapshot = breaker.snapshot().await.unwrap();
        assert_eq!(snapshot.state, State::Closed);
        assert_eq!((snapshot.fail_counter, snapshot.success_counter), (0, 0));
    }
    assert!(
        within(poll, async || succeed(b).await.is_ok()).await,
        "b never saw the last close"
    );
    if let Some(pttl) = pttl {
        assert!(pttl() > 0, "a closed record expires again");
    }
}

/// Defect 8: "Operators could not hold a breaker open for a maintenance window." Now
/// `open_for`, `force_open` and `disable` act fleet-wide: what registry A does, registry
/// B's calls and `state()` see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_states_act_fleet_wide() {
    let server = RedisServer::start();
    let config = || {
        redis_config(&server, "d8", "svc", Duration::from_millis(200)).service(
            "svc",
            ServiceOverride::new()
                .fail_max(2)
                .reset_timeout(Duration::from_millis(200)),
        )
    };
    let (ra, rb) = (
        Registry::new(config()).await.unwrap(),
        Registry::new(config()).await.unwrap(),
    );
    let (a, b) = (ra.breaker("svc"), rb.breaker("svc"));
    let state_key = key("d8", "svc", "state");
    let pttl = || -> i64 { cli(&server, &["PTTL", &state_key]).parse().unwrap() };
    operator_scenario(&a, &b, Some(&pttl)).await;
}

/// Defect 8, the memory store (one registry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_states_in_memory() {
    let registry = Registry::new(
        Config::in_memory().env_overrides(false).service(
            "svc",
            ServiceOverride::new()
                .fail_max(2)
                .reset_timeout(Duration::from_millis(200)),
        ),
    )
    .await
    .unwrap();
    let breaker = registry.breaker("svc");
    operator_scenario(&breaker, &breaker.clone(), None).await;
}

// ---- 10. Redis unreachable at boot ---------------------------------------------------------

/// Defect 10: "`init` failing because Redis is unreachable should say how to start
/// anyway." The error is `Unreachable`, names the address and `start_degraded(true)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_at_boot_says_how_to_start_degraded() {
    let started = Instant::now();
    let result = Registry::new(
        Config::redis(CLOSED_URL)
            .redis_connect_timeout(CONNECT)
            .env_overrides(false),
    )
    .await;
    let error = result.err().expect("connected to a closed port");
    assert!(matches!(error, InitError::Unreachable { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("start_degraded(true)"), "{text}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(
        started.elapsed() < CONNECT + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

fn degraded(policy: UnavailablePolicy) -> Config {
    Config::redis(CLOSED_URL)
        .namespace("d10")
        .redis_connect_timeout(CONNECT)
        .start_degraded(true)
        .on_redis_unavailable(policy)
        .service(
            "svc",
            ServiceOverride::new()
                .fail_max(2)
                .reset_timeout(Duration::from_secs(60)),
        )
        .env_overrides(false)
}

/// Defect 10: with `start_degraded(true)` the registry boots, and calls follow the
/// default policy (local fallback breakers: calls run, failures trip locally).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_degraded_boots_and_calls_follow_the_local_fallback() {
    let registry = Registry::new(degraded(UnavailablePolicy::LocalFallback))
        .await
        .expect("start_degraded(true) boots");
    let breaker = registry.breaker("svc");
    assert_eq!(succeed(&breaker).await, Ok(()));
    assert!(ran(&fail(&breaker).await));
    assert!(ran(&fail(&breaker).await));
    assert!(matches!(
        succeed(&breaker).await,
        Err(BreakerError::Open { .. })
    ));
    assert_eq!(breaker.state().await.unwrap(), State::Open);
}

/// Defect 10, the other policies: with `start_degraded(true)` the registry boots (this
/// binary declares services with `#[circuit_breaker]`, as applications do); fail-open
/// calls run unchecked, fail-closed calls are rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_degraded_boots_under_fail_open_and_fail_closed() {
    let open = Registry::new(degraded(UnavailablePolicy::FailOpen)).await;
    let closed = Registry::new(degraded(UnavailablePolicy::FailClosed)).await;
    let (open, closed) = match (open, closed) {
        (Ok(open), Ok(closed)) => (open, closed),
        (open, closed) => panic!(
            "start_degraded(true) failed: fail-open {:?}, fail-closed {:?}",
            open.err(),
            closed.err()
        ),
    };
    let breaker = open.breaker("svc");
    for _ in 0..5 {
        assert!(ran(&fail(&breaker).await), "fail open runs every call");
    }
    assert_eq!(succeed(&breaker).await, Ok(()));
    let breaker = closed.breaker("svc");
    assert!(matches!(
        succeed(&breaker).await,
        Err(BreakerError::Open { .. })
    ));
}
