//! Slow start across a real fleet: worker *processes* (`src/bin/infuse-slow-start-worker.rs`)
//! share one breaker through a hermetic Redis and call a downstream at a fixed rate. The
//! test holds the breaker open from outside (an operator's `force_open`, through Redis),
//! then closes it, and counts what the downstream itself receives per 250 ms: with
//! `slow_start` the calls come back as a ramp from `slow_start_min` % of the steady
//! load, reaching it within `slow_start` + 1 s; without it, as a step. Counts, not
//! timings of single calls, with generous slack: the machine may be a busy 2-core VM.

use infuse_tests::support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infuse::{Config, Registry, Settings};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::time::{sleep, Instant};

use support::redis_server::RedisServer;

const WORKERS: usize = 2;
const BUCKET: Duration = Duration::from_millis(250);
/// Healthy calls before the steady load is measured, and how long it is measured.
const WARMUP: Duration = Duration::from_millis(700);
const STEADY: Duration = Duration::from_millis(1_000);
/// How long the breaker is held open.
const HELD_OPEN: Duration = Duration::from_millis(500);
const SLOW_START: Duration = Duration::from_secs(4);
const SLOW_START_MIN: u32 = 10;
/// What the workers run for after the close.
const AFTER_CLOSE: Duration = Duration::from_millis(5_500);

/// The downstream: answers `ok` to every request and notes when each arrived.
#[derive(Clone, Default)]
struct Downstream {
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Downstream {
    async fn listen(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let arrivals = self.arrivals.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let arrivals = arrivals.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(read).read_line(&mut line).await.is_err() {
                        return;
                    }
                    arrivals.lock().unwrap().push(Instant::now());
                    let _ = write.write_all(b"ok\n").await;
                });
            }
        });
        address
    }

    /// Requests that arrived in `[from, from + length)`.
    fn count(&self, from: Instant, length: Duration) -> usize {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals
            .iter()
            .filter(|&&at| at >= from && at < from + length)
            .count()
    }
}

/// What one run saw.
struct Run {
    /// Requests per bucket while healthy (the mean over [`STEADY`]).
    steady: f64,
    /// Requests per bucket from the close on.
    after_close: Vec<usize>,
    /// The workers' summaries, summed (`ok`, `failed`, `open`, `recovering`, `other`).
    calls: BTreeMap<String, u64>,
}

/// Starts the workers (with `slow_start`, or without), measures the steady load, holds the
/// breaker open, closes it, and counts the downstream's requests afterwards.
async fn run(slow_start: Option<Duration>) -> Run {
    let server = RedisServer::start();
    let namespace = format!("slow-start-{}", std::process::id());
    let downstream = Downstream::default();
    let address = downstream.listen().await;
    let total = WARMUP + STEADY + HELD_OPEN + AFTER_CLOSE;
    let slow_ms = slow_start.map_or(0, |d| d.as_millis());
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let id = format!("w{i}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_infuse-slow-start-worker"))
            .args([
                server.url(),
                namespace.clone(),
                address.clone(),
                total.as_millis().to_string(),
                slow_ms.to_string(),
                SLOW_START_MIN.to_string(),
                id.clone(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning infuse-slow-start-worker");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("a worker did not get ready within 10 s")
            .unwrap();
        assert_eq!(ready.as_deref(), Some(format!("READY {id}").as_str()));
        workers.push((child, lines));
    }
    // The operator: another member of the fleet, through the same Redis.
    let operator = Registry::new(Config::redis(server.url()).namespace(namespace.as_str()))
        .await
        .unwrap()
        .breaker("users");

    sleep(WARMUP).await;
    let steady_from = Instant::now();
    sleep(STEADY).await;
    let steady = downstream.count(steady_from, STEADY) as f64
        / (STEADY.as_secs_f64() / BUCKET.as_secs_f64());
    operator.force_open().await.unwrap();
    sleep(HELD_OPEN).await;
    let closed_at = Instant::now();
    operator.close().await.unwrap();
    sleep(AFTER_CLOSE).await;
    let buckets = (AFTER_CLOSE.as_millis() / BUCKET.as_millis()) as u32;
    let after_close = (0..buckets)
        .map(|i| downstream.count(closed_at + BUCKET * i, BUCKET))
        .collect();

    let mut calls = BTreeMap::new();
    for (mut child, mut lines) in workers {
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("a worker did not exit in time")
            .unwrap();
        assert!(status.success(), "a worker exited with {status}");
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(summary) = line.strip_prefix("SUMMARY ") {
                for (name, n) in summary.split_whitespace().filter_map(|f| f.split_once('=')) {
                    *calls.entry(name.to_owned()).or_default() += n.parse::<u64>().unwrap();
                }
            }
        }
    }
    eprintln!(
        "slow_start {slow_start:?}: steady {steady:.1} requests per {} ms; after the close: {after_close:?}; calls {calls:?}",
        BUCKET.as_millis()
    );
    Run {
        steady,
        after_close,
        calls,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_close_the_fleet_ramps_up_and_without_slow_start_steps_up() {
    let ramp = run(Some(SLOW_START)).await;
    assert!(
        ramp.steady >= 20.0,
        "too little load to tell: {}",
        ramp.steady
    );
    // The first bucket: the share grows from slow_start_min % to its value a bucket
    // later; half as much again, and a few requests, of slack.
    let settings = Settings::DEFAULT
        .slow_start(SLOW_START)
        .slow_start_min(SLOW_START_MIN);
    let share = f64::from(settings.slow_start_share(BUCKET).unwrap()) / 100.0;
    let first = ramp.after_close[0] as f64;
    assert!(
        first <= ramp.steady * share * 1.5 + 8.0,
        "the first {} ms after the close: {first} requests, steady {:.1} (share {share})",
        BUCKET.as_millis(),
        ramp.steady
    );
    // Halfway through, about half of the steady load (55 %), far from all of it.
    let halfway = (SLOW_START.as_millis() / 2 / BUCKET.as_millis()) as usize;
    assert!(
        (ramp.after_close[halfway] as f64) < ramp.steady * 0.85,
        "halfway: {:?}",
        ramp.after_close
    );
    // Steady again within slow_start + 1 s: the bucket that ends then.
    let end = ((SLOW_START + Duration::from_secs(1)).as_millis() / BUCKET.as_millis()) as usize - 1;
    assert!(
        ramp.after_close[end] as f64 >= ramp.steady * 0.7,
        "slow_start + 1 s after the close: {:?}, steady {:.1}",
        ramp.after_close,
        ramp.steady
    );
    assert!(ramp.calls["recovering"] > 0, "{:?}", ramp.calls);
    assert_eq!(ramp.calls["failed"], 0, "{:?}", ramp.calls);

    // Without slow start, the whole load comes back at once.
    let step = run(None).await;
    assert!(
        step.steady >= 20.0,
        "too little load to tell: {}",
        step.steady
    );
    assert!(
        step.after_close[0] as f64 >= step.steady * 0.5,
        "without slow start, the first {} ms: {:?}, steady {:.1}",
        BUCKET.as_millis(),
        step.after_close,
        step.steady
    );
    assert_eq!(step.calls["recovering"], 0, "{:?}", step.calls);
}
