//! The retry budget holds for the whole fleet: 8 worker processes retry the calls of a
//! dead downstream, and their retries together stay within `retry_budget` percent of
//! their first attempts plus `retry_min_per_sec` a second — not 8 times that. With one
//! store per process (the control), the same load gets 8 times the floor.

use std::process::Stdio;
use std::time::Duration;

use infuse_tests::support::redis_server::RedisServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const WORKERS: usize = 8;
const RATE: u32 = 5;
const SECONDS: u32 = 5;
const RETRIES: u32 = 3;
const BUDGET: u32 = 20;
const FLOOR: u32 = 5;

struct Totals {
    first: u64,
    attempts: u64,
    retries: u64,
    exhausted: u64,
}

fn field(line: &str, name: &str) -> u64 {
    line.split(' ')
        .find_map(|word| word.strip_prefix(&format!("{name}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

/// Runs the workers against `store` ("memory" or a Redis URL) and sums their counts.
async fn run(store: &str, namespace: &str) -> Totals {
    let mut children: Vec<Child> = (0..WORKERS)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_infuse-retry-worker"))
                .args([store, namespace, &format!("w{i}")])
                .args([RATE, SECONDS, RETRIES, BUDGET, FLOOR].map(|n| n.to_string()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("spawning infuse-retry-worker")
        })
        .collect();
    let mut outputs = Vec::new();
    for child in &mut children {
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a worker is ready within 30 s")
            .unwrap()
            .unwrap_or_default();
        assert!(ready.starts_with("READY"), "{ready:?}");
        outputs.push(lines);
    }
    for child in &mut children {
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
    }
    let mut totals = Totals {
        first: 0,
        attempts: 0,
        retries: 0,
        exhausted: 0,
    };
    for lines in &mut outputs {
        let done = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("a worker is done within 60 s")
            .unwrap()
            .unwrap_or_default();
        assert!(done.starts_with("DONE"), "{done:?}");
        totals.first += field(&done, "first");
        totals.attempts += field(&done, "attempts");
        totals.retries += field(&done, "retries");
        totals.exhausted += field(&done, "exhausted");
    }
    for mut child in children {
        let _ = child.wait().await;
    }
    totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_shares_one_retry_budget() {
    let server = RedisServer::start();
    // Round trips: scripts (a script's own commands are counted apart by Redis); the
    // budget's own requests are the scripts run on its key, counted through MONITOR.
    let scripts = || server.command_calls("evalsha") + server.command_calls("eval");
    let mut monitor = Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "monitor"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-cli monitor");
    let mut watched = BufReader::new(monitor.stdout.take().unwrap()).lines();
    let budget_requests = tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok(Some(line)) = watched.next_line().await {
            n += u64::from(line.contains("\"EVALSHA\"") && line.contains("/users}:retry\""));
        }
        n
    });
    let before = scripts();
    let fleet = run(&server.url(), "retry-budget").await;
    let fleet_scripts = scripts() - before;
    tokio::time::sleep(Duration::from_millis(100)).await;
    monitor.kill().await.unwrap();
    let budget_requests = budget_requests.await.unwrap();
    let control = run("memory", "unused").await;

    let first = u64::from(RATE * SECONDS) * WORKERS as u64;
    assert_eq!((fleet.first, control.first), (first, first));
    for totals in [&fleet, &control] {
        assert_eq!(
            totals.attempts,
            totals.first + totals.retries,
            "retries are attempts"
        );
    }
    // The stretch lasts SECONDS, plus the last calls' retries: allow one second more of
    // the floor.
    let bound = first * u64::from(BUDGET) / 100 + u64::from(FLOOR) * u64::from(SECONDS + 1);
    eprintln!(
        "{WORKERS} processes x {RATE} failing calls/s for {SECONDS} s, retries = {RETRIES}, \
         retry_budget = {BUDGET}, retry_min_per_sec = {FLOOR}: fleet budget {} retries \
         ({} refused), one budget per process {} retries ({} refused); bound {bound}, \
         without a budget {}; the fleet's run: {budget_requests} requests to the budget \
         ({:.4} an attempt), {fleet_scripts} scripts in all ({:.4} an attempt, the failures' \
         reports included)",
        fleet.retries,
        fleet.exhausted,
        control.retries,
        control.exhausted,
        first * u64::from(RETRIES),
        budget_requests as f64 / fleet.attempts.max(1) as f64,
        fleet_scripts as f64 / fleet.attempts.max(1) as f64
    );
    assert!(budget_requests > 0, "the budget was asked (MONITOR saw it)");
    // Each process asks at most every 100 ms, less and less often while the spent budget
    // grants none (up to 1 s apart): about 160 here, where asking every 100 ms made 315.
    assert!(
        budget_requests <= WORKERS as u64 * u64::from(SECONDS + 1) * 5,
        "{budget_requests} requests to the budget"
    );
    assert!(
        fleet.retries <= bound,
        "the fleet's retries ({}) stay within {BUDGET} % of its first attempts plus {FLOOR}/s: {bound}",
        fleet.retries
    );
    assert!(
        fleet.retries >= first * u64::from(BUDGET) / 100 / 2,
        "the budget is used, not just refused: {}",
        fleet.retries
    );
    let floors = WORKERS as u64 * u64::from(FLOOR * SECONDS);
    assert!(
        control.retries >= floors * 9 / 10 && control.retries > bound,
        "one budget per process lets the floor through {WORKERS} times ({} retries, about \
         {floors}; the fleet's bound {bound})",
        control.retries
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_process_keeps_a_budget_of_its_own() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use infuse::{Listener, Registry, ServiceOverride};

    #[derive(Default)]
    struct Retries(AtomicU64, AtomicU64);
    impl Listener for Retries {
        fn on_retry(&self, _: &str, _: u32) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        fn on_retry_budget_exhausted(&self, _: &str) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }

    let mut server = RedisServer::start();
    let settings = ServiceOverride::new()
        .fail_max(u32::MAX)
        .retries(2)
        .retry_budget(10)
        .retry_min_per_sec(4)
        .retry_backoff(Duration::from_millis(1))
        .max_retry_backoff(Duration::from_millis(2));
    let config = infuse_tests::support::redis_config(&server, "retry-down")
        .service("users", settings)
        .start_degraded(true);
    let registry = Registry::new(config).await.unwrap();
    let users = registry.breaker("users");
    let counts = Arc::new(Retries::default());
    users.add_listener(counts.clone());
    let fail = || async { Err::<(), _>(std::io::Error::other("down")) };

    server.kill();
    // Redis gone: the process's own budget decides, with the same rule (4 a second here,
    // 10 % of 20 first attempts being 2).
    let started = tokio::time::Instant::now();
    for _ in 0..20 {
        let _ = users.call_retrying(fail).await;
    }
    // The floor counts once per second the calls spanned (on a loaded machine, more
    // than one).
    let seconds = started.elapsed().as_secs() + 2;
    let retries = counts.0.load(Ordering::Relaxed);
    assert!(
        retries >= 4 && retries <= 4 * seconds + 2,
        "retries go on within this process's budget: {retries} in {seconds} s at most"
    );
    assert!(counts.1.load(Ordering::Relaxed) >= 12);
}
