//! `max_concurrent` holds across the fleet: worker processes (`infuse-cap-worker`) call
//! one downstream on loopback that holds each request (200 ms unless said) and counts how
//! many it holds at once, in all and per process.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infuse_tests::support::redis_server::RedisServer;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const HOLD: Duration = Duration::from_millis(200);

/// The downstream: requests held now, in all and by worker, and the most ever held.
#[derive(Default)]
struct Held {
    now: AtomicU32,
    peak: AtomicU32,
    by_worker: Mutex<HashMap<String, u32>>,
}

async fn downstream() -> (String, Arc<Held>) {
    downstream_holding(HOLD).await
}

async fn downstream_holding(hold: Duration) -> (String, Arc<Held>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let held = Arc::new(Held::default());
    let state = held.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let held = state.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut id = String::new();
                if BufReader::new(read).read_line(&mut id).await.is_err() {
                    return;
                }
                let id = id.trim().to_owned();
                let now = held.now.fetch_add(1, Ordering::SeqCst) + 1;
                held.peak.fetch_max(now, Ordering::SeqCst);
                *held
                    .by_worker
                    .lock()
                    .unwrap()
                    .entry(id.clone())
                    .or_default() += 1;
                tokio::time::sleep(hold).await;
                *held.by_worker.lock().unwrap().get_mut(&id).unwrap() -= 1;
                held.now.fetch_sub(1, Ordering::SeqCst);
                let _ = write.write_all(b"ok\n").await;
            });
        }
    });
    (address, held)
}

/// A sample of what the downstream held, every 10 ms: (time, in all, by worker).
type Samples = Arc<Mutex<Vec<(Instant, u32, HashMap<String, u32>)>>>;

fn sample(held: &Arc<Held>) -> Samples {
    let samples: Samples = Arc::default();
    let (held, out) = (held.clone(), samples.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let by_worker = held.by_worker.lock().unwrap().clone();
            let now = held.now.load(Ordering::SeqCst);
            out.lock().unwrap().push((Instant::now(), now, by_worker));
        }
    });
    samples
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    server: &RedisServer,
    ns: &str,
    down: &str,
    callers: u32,
    run_ms: u64,
    cap: u32,
    id: &str,
) -> (
    Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_infuse-cap-worker"))
        .args([&server.url(), ns, down])
        .args([
            callers.to_string(),
            run_ms.to_string(),
            cap.to_string(),
            "0".into(),
        ])
        .arg(id)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning infuse-cap-worker");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("ready within 30 s")
        .unwrap()
        .unwrap_or_default();
    assert_eq!(ready, format!("READY {id}"));
    (child, lines)
}

/// The mean of `f` over the samples taken between `from` and `to` after `start`.
fn mean(
    samples: &Samples,
    start: Instant,
    from: Duration,
    to: Duration,
    f: impl Fn(&(Instant, u32, HashMap<String, u32>)) -> u32,
) -> f64 {
    let samples = samples.lock().unwrap();
    let chosen: Vec<u32> = samples
        .iter()
        .filter(|s| s.0 >= start + from && s.0 <= start + to)
        .map(f)
        .collect();
    assert!(!chosen.is_empty(), "no sample in the window");
    chosen.iter().map(|&n| f64::from(n)).sum::<f64>() / chosen.len() as f64
}

/// Four processes of `callers` callers each, sharing `max_concurrent = cap` against a
/// downstream that holds each request `hold`, for 5 s: the most the downstream held at
/// once, the mean over 1-4 s, and the scripts Redis ran a second (their cost per call is
/// printed).
async fn steady(ns: &str, hold: Duration, callers: u32, cap: u32) -> (u32, f64, f64) {
    let server = RedisServer::start();
    let (down, held) = downstream_holding(hold).await;
    let samples = sample(&held);
    let mut workers = Vec::new();
    for i in 0..4 {
        workers.push(worker(&server, ns, &down, callers, 5_000, cap, &format!("w{i}")).await);
    }
    let start = Instant::now();
    // Round trips: scripts (a script's own commands are counted apart by Redis).
    let round_trips = || server.command_calls("evalsha") + server.command_calls("eval");
    let scripts_before = round_trips();
    let (mut ran, mut saturated) = (0, 0);
    for (mut child, mut lines) in workers {
        let summary = lines.next_line().await.unwrap().unwrap_or_default();
        assert!(summary.starts_with("SUMMARY"), "{summary}");
        for (name, n) in summary
            .split(' ')
            .filter_map(|word| word.split_once('='))
            .filter_map(|(name, n)| Some((name, n.parse::<u64>().ok()?)))
        {
            match name {
                "saturated" => saturated += n,
                _ => ran += n,
            }
        }
        let _ = child.wait().await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let scripts = round_trips() - scripts_before;
    let busy = mean(
        &samples,
        start,
        Duration::from_millis(1_000),
        Duration::from_millis(4_000),
        |s| s.1,
    );
    let peak = held.peak.load(Ordering::SeqCst);
    let per_second = scripts as f64 / elapsed;
    eprintln!(
        "4 processes x {callers} callers, max_concurrent = {cap}, {hold:?} downstream, 5 s: \
         peak {peak} held at once, mean {busy:.1} over 1-4 s; {ran} calls ran, {saturated} \
         saturated; {scripts} scripts run in Redis ({:.1} a second): {:.4} per call that \
         ran, {:.4} per call (ran or saturated)",
        per_second,
        scripts as f64 / ran.max(1) as f64,
        scripts as f64 / (ran + saturated).max(1) as f64
    );
    (peak, busy, per_second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_never_hold_more_than_the_cap_and_keep_it_busy() {
    let (peak, busy, scripts_per_second) = steady("cap-steady", HOLD, 20, 20).await;
    assert!(peak <= 20, "the downstream held {peak} at once");
    assert!(
        busy >= 16.0,
        "the fleet keeps at least 80 % of the cap busy: {busy:.1}"
    );
    // Each process renews once a second and, while the fleet is full, asks for more at
    // most every MAX_ASK_GAP (400 ms): about 14 a second for the four. A keeper that asked
    // every 50 ms whatever the answer would make about 80.
    assert!(
        scripts_per_second <= 30.0,
        "the keepers ask a full fleet too often: {scripts_per_second:.1} scripts a second"
    );
}

/// Short calls: the Redis scripts a call costs, when calls are many (printed; the
/// lease's renewals and requests do not grow with the calls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_calls_share_the_cap_with_few_scripts() {
    let (peak, _, _) = steady("cap-short", Duration::from_millis(5), 16, 32).await;
    assert!(peak <= 32, "the downstream held {peak} at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_permits_come_back_within_the_lease() {
    let server = RedisServer::start();
    let (down, held) = downstream().await;
    let samples = sample(&held);
    let (mut a, _a_lines) = worker(&server, "cap-kill", &down, 20, 10_000, 20, "a").await;
    let (mut b, mut b_lines) = worker(&server, "cap-kill", &down, 20, 7_000, 20, "b").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b_before = {
        let now = Instant::now();
        mean(
            &samples,
            now - Duration::from_secs(1),
            Duration::ZERO,
            Duration::from_secs(1),
            |s| s.2.get("b").copied().unwrap_or(0),
        )
    };
    a.start_kill().unwrap(); // SIGKILL, holding its permits
    let killed = Instant::now();
    let _ = a.wait().await;
    // Lease time (2 s) + 1 s: b holds (nearly) the whole cap.
    let mut back = None;
    while killed.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let latest = samples
            .lock()
            .unwrap()
            .last()
            .map(|s| s.2.get("b").copied().unwrap_or(0));
        if latest.unwrap_or(0) >= 19 {
            back = Some(killed.elapsed());
            break;
        }
    }
    let summary = b_lines.next_line().await.unwrap().unwrap_or_default();
    assert!(summary.starts_with("SUMMARY b"), "{summary}");
    let _ = b.wait().await;
    let peak = held.peak.load(Ordering::SeqCst);
    eprintln!("b held {b_before:.1} on average beside a; after a's SIGKILL, b held 19+ after {back:?}; peak {peak}");
    assert!(
        b_before < 19.0,
        "a and b shared the cap: b held {b_before:.1}"
    );
    let back = back.expect("b gets the whole cap back within 5 s");
    assert!(
        back <= Duration::from_secs(3),
        "within the lease time + 1 s: {back:?}"
    );
    assert!(peak <= 20, "{peak}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_process_gets_most_of_the_cap_beside_idle_ones() {
    let server = RedisServer::start();
    let (down, held) = downstream().await;
    let samples = sample(&held);
    let mut workers = vec![worker(&server, "cap-busy", &down, 20, 5_000, 20, "busy").await];
    for i in 0..3 {
        workers.push(
            worker(
                &server,
                "cap-busy",
                &down,
                1,
                5_000,
                20,
                &format!("idle{i}"),
            )
            .await,
        );
    }
    let start = Instant::now();
    for (mut child, mut lines) in workers {
        let _ = lines.next_line().await;
        let _ = child.wait().await;
    }
    let busy = mean(
        &samples,
        start,
        Duration::from_millis(2_000),
        Duration::from_millis(4_000),
        |s| s.2.get("busy").copied().unwrap_or(0),
    );
    let peak = held.peak.load(Ordering::SeqCst);
    eprintln!("1 busy process (20 callers) and 3 with 1 caller each, max_concurrent = 20: the busy one held {busy:.1} on average over 2-4 s; peak {peak}");
    assert!(
        busy >= 12.0,
        "the busy process gets most of the cap: {busy:.1}"
    );
    assert!(peak <= 20, "{peak}");
}

/// Without Redis, a process keeps the share of its last lease under the default policy
/// (`LocalFallback`), and admits nothing beyond its cap's permits under `FailClosed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_process_keeps_its_last_share_fails_closed_or_opens() {
    use infuse::{BreakerError, Registry, ServiceOverride, UnavailablePolicy};
    use tokio::sync::Notify;

    for policy in [
        UnavailablePolicy::LocalFallback,
        UnavailablePolicy::FailClosed,
        UnavailablePolicy::FailOpen,
    ] {
        let mut server = RedisServer::start();
        let config = infuse_tests::support::redis_config(&server, "cap-down")
            .on_redis_unavailable(policy)
            .service(
                "users",
                ServiceOverride::new().max_concurrent(3).fail_max(1_000),
            );
        let registry = Registry::new(config).await.unwrap();
        let users = registry.breaker("users");
        let release = Arc::new(Notify::new());
        let hold = |users: &infuse::Breaker| {
            let (users, release) = (users.clone(), release.clone());
            tokio::spawn(async move {
                users
                    .call(async move {
                        release.notified().await;
                        Ok::<_, BreakerError>(())
                    })
                    .await
            })
        };
        // The lease grows to the whole cap while 3 calls want permits.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut running = Vec::new();
        while running.len() < 3 && Instant::now() < deadline {
            let call = hold(&users);
            tokio::time::sleep(Duration::from_millis(60)).await;
            if call.is_finished() {
                assert!(matches!(
                    call.await.unwrap(),
                    Err(BreakerError::Saturated { .. })
                ));
            } else {
                running.push(call);
            }
        }
        assert_eq!(running.len(), 3, "{policy}: the whole cap leased");
        release.notify_waiters();
        for call in running {
            call.await.unwrap().unwrap();
        }
        server.kill();
        // Past the lease (2 s) by this process's clock.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let calls: Vec<_> = (0..4).map(|_| hold(&users)).collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let saturated = calls.iter().filter(|call| call.is_finished()).count();
        release.notify_waiters();
        for call in calls {
            let _ = call.await;
        }
        match policy {
            UnavailablePolicy::LocalFallback => {
                assert_eq!(saturated, 1, "{policy}: its last share (3) goes on")
            }
            UnavailablePolicy::FailClosed => {
                assert_eq!(saturated, 4, "{policy}: no permit without Redis")
            }
            _ => assert_eq!(saturated, 0, "{policy}: no cap"),
        }
    }
}

/// A process that starts while Redis is unreachable never held a share of the fleet's
/// cap: under the default policy it has none to keep, so its capped calls are saturated
/// (the configured cap is never passed); once Redis answers it gets its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_started_without_redis_takes_no_permit_until_redis_answers() {
    use infuse::{BreakerError, Registry, ServiceOverride};

    let mut server = RedisServer::start();
    server.kill();
    let config = infuse_tests::support::redis_config(&server, "cap-fresh")
        .start_degraded(true)
        .service(
            "users",
            ServiceOverride::new().max_concurrent(3).fail_max(1_000),
        );
    let registry = Registry::new(config).await.unwrap();
    let users = registry.breaker("users");
    let call = || users.call(async { Ok::<_, BreakerError>(()) });
    assert!(
        matches!(call().await, Err(BreakerError::Saturated { .. })),
        "no share without Redis"
    );
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match call().await {
            Ok(()) => break,
            Err(BreakerError::Saturated { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("no lease 15 s after Redis came back: {other:?}"),
        }
    }
    let concurrency = users.concurrency().unwrap();
    assert!(
        concurrency.permits >= 1 && concurrency.permits <= 3,
        "{concurrency:?}"
    );
}
