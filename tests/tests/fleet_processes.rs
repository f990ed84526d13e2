//! A real fleet: four worker *processes* (`tests/bin/fleet_worker.rs`) share one breaker
//! through a hermetic Redis while the downstream they call goes down and comes back. The
//! assertions count what the downstream itself received, so they hold whatever each
//! process believes.

use infuse_tests::support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;

use support::redis_server::RedisServer;
use support::topology::{RedisCluster, SentinelSet, MASTER_NAME};

const WORKERS: usize = 4;
const FAIL_MAX: usize = 5;
const RESET: Duration = Duration::from_millis(400);
const RUN: Duration = Duration::from_millis(4_500);
/// The downstream's schedule, from the moment every worker is ready.
const HEALTHY_FOR: Duration = Duration::from_millis(500);
const FAILING_FOR: Duration = Duration::from_millis(2_500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Before the schedule starts (workers still booting): healthy.
    Warmup,
    Healthy,
    Failing,
    Recovered,
}

#[derive(Debug, Clone)]
struct Request {
    at: Instant,
    phase: Phase,
    worker: String,
}

/// The service behind the breaker: answers each connection's line with `ok` or `fail`
/// according to the schedule, and records every request.
#[derive(Clone, Default)]
struct Downstream {
    start: Arc<Mutex<Option<Instant>>>,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Downstream {
    async fn listen(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(read).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let at = Instant::now();
                    let phase = me.phase(at);
                    me.log.lock().unwrap().push(Request {
                        at,
                        phase,
                        worker: line.trim().to_owned(),
                    });
                    let answer: &[u8] = if phase == Phase::Failing {
                        b"fail\n"
                    } else {
                        b"ok\n"
                    };
                    let _ = write.write_all(answer).await;
                });
            }
        });
        address
    }

    fn begin_schedule(&self, at: Instant) {
        *self.start.lock().unwrap() = Some(at);
    }

    fn phase(&self, at: Instant) -> Phase {
        match *self.start.lock().unwrap() {
            None => Phase::Warmup,
            Some(start) if at < start + HEALTHY_FOR => Phase::Healthy,
            Some(start) if at < start + HEALTHY_FOR + FAILING_FOR => Phase::Failing,
            Some(_) => Phase::Recovered,
        }
    }

    fn requests(&self) -> Vec<Request> {
        let mut log = self.log.lock().unwrap().clone();
        log.sort_by_key(|r| r.at);
        log
    }
}

fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What one worker printed.
#[derive(Debug, Default)]
struct WorkerOutput {
    /// `(unix_ms, from, to)`.
    events: Vec<(i64, String, String)>,
    summary: Option<BTreeMap<String, String>>,
    lines: Vec<String>,
}

fn parse_output(id: &str, lines: Vec<String>) -> WorkerOutput {
    let mut out = WorkerOutput::default();
    for line in &lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["EVENT", ms, who, from, to] if *who == id => {
                out.events
                    .push((ms.parse().unwrap(), from.to_string(), to.to_string()));
            }
            ["SUMMARY", who, fields @ ..] if *who == id => {
                out.summary = Some(
                    fields
                        .iter()
                        .filter_map(|f| f.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    out.lines = lines;
    out
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_trip_together_and_trial_one_at_a_time() {
    let server = RedisServer::start();
    four_processes(server.url()).await;
}

/// The same on a Redis Cluster (three masters, three replicas): events reach every
/// process through the cluster bus's broadcast of `PUBLISH`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_a_cluster() {
    let cluster = RedisCluster::start();
    four_processes(format!("cluster:{}", cluster.urls().join(","))).await;
}

/// The same through Sentinels (a master, a replica, three Sentinels): the workers find
/// the master by asking the Sentinels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_through_sentinels() {
    let sentinels = SentinelSet::start();
    four_processes(format!(
        "sentinel:{MASTER_NAME}@{}",
        sentinels.urls().join(",")
    ))
    .await;
}

/// Four worker processes on `redis` (a worker's first argument).
async fn four_processes(redis: String) {
    let downstream = Downstream::default();
    let address = downstream.listen().await;
    let namespace = format!("fleet-processes-{}", std::process::id());

    // Spawn the workers; read their stdout as it comes (READY gates the schedule).
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<String>();
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let id = format!("w{i}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_infuse-fleet-worker"))
            .args([
                redis.clone(),
                namespace.clone(),
                address.clone(),
                ms(RUN).to_string(),
                FAIL_MAX.to_string(),
                ms(RESET).to_string(),
                id.clone(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning infuse-fleet-worker");
        let stdout = child.stdout.take().unwrap();
        let ready_tx = ready_tx.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut all = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("READY ") {
                    let _ = ready_tx.send(line.clone());
                }
                all.push(line);
            }
            all
        });
        workers.push((id, child, reader));
    }
    drop(ready_tx);
    let spawned = Instant::now();
    for _ in 0..WORKERS {
        tokio::time::timeout(Duration::from_secs(8), ready_rx.recv())
            .await
            .expect("a worker did not get ready within 8 s")
            .expect("a worker exited before getting ready");
    }
    let boot = spawned.elapsed();
    let start = Instant::now();
    let start_unix = unix_ms_now();
    downstream.begin_schedule(start);
    let fail_start = start + HEALTHY_FOR;
    let fail_start_unix = start_unix + ms(HEALTHY_FOR) as i64;

    // Wait for the workers (they stop by themselves after RUN).
    let mut outputs = BTreeMap::new();
    for (id, mut child, reader) in workers {
        let status = tokio::time::timeout(RUN + Duration::from_secs(4), child.wait())
            .await
            .unwrap_or_else(|_| panic!("worker {id} did not exit in time"))
            .unwrap();
        let lines = reader.await.unwrap();
        assert!(
            status.success(),
            "worker {id} exited with {status}: {lines:#?}"
        );
        outputs.insert(id.clone(), parse_output(&id, lines));
    }

    // ----- What the downstream saw ------------------------------------------------------
    let requests = downstream.requests();
    let count = |phase: Phase| requests.iter().filter(|r| r.phase == phase).count();
    let failing: Vec<&Request> = requests
        .iter()
        .filter(|r| r.phase == Phase::Failing)
        .collect();
    let offsets: Vec<u128> = failing
        .iter()
        .map(|r| ms(r.at.saturating_duration_since(fail_start)))
        .collect();
    // The burst: the failing-phase requests before the first quiet stretch of
    // reset_timeout / 2 (the breaker opened fleet-wide; only trials come after).
    let burst_len = failing
        .windows(2)
        .position(|w| w[1].at - w[0].at >= RESET / 2)
        .map_or(failing.len(), |i| i + 1);
    let (burst, trials) = failing.split_at(burst_len);
    let in_first_half_window = failing
        .iter()
        .filter(|r| r.at < fail_start + RESET / 2)
        .count();
    let gaps: Vec<u128> = failing[burst_len.saturating_sub(1)..]
        .windows(2)
        .map(|w| ms(w[1].at - w[0].at))
        .collect();

    // ----- Report -------------------------------------------------------------------------
    eprintln!("--- fleet_processes report ---");
    eprintln!(
        "workers ready after {} ms; downstream at {address}; namespace {namespace}",
        ms(boot)
    );
    eprintln!(
        "requests: warmup {} / healthy {} / failing {} / recovered {} (total {})",
        count(Phase::Warmup),
        count(Phase::Healthy),
        count(Phase::Failing),
        count(Phase::Recovered),
        requests.len()
    );
    eprintln!(
        "burst: {} requests (limit {}), {} within the first {} ms; at ms {:?} (from failing start)",
        burst.len(),
        FAIL_MAX + WORKERS,
        in_first_half_window,
        ms(RESET / 2),
        &offsets[..burst_len]
    );
    eprintln!(
        "trials: {} at ms {:?} by {:?}",
        trials.len(),
        &offsets[burst_len..],
        trials.iter().map(|r| r.worker.as_str()).collect::<Vec<_>>()
    );
    eprintln!(
        "gaps after the burst (ms, first one from the burst's last request): {gaps:?} (min allowed {})",
        ms(RESET * 3 / 4)
    );
    let mut summed = 0u64;
    for (id, out) in &outputs {
        let learned = out
            .events
            .iter()
            .find(|(_, from, to)| from == "closed" && to == "open")
            .map(|(t, ..)| t - fail_start_unix);
        let after_recovery = requests
            .iter()
            .filter(|r| r.phase == Phase::Recovered && &r.worker == id)
            .count();
        let summary = out
            .summary
            .as_ref()
            .map(|s| {
                summed += ["ok", "failed"]
                    .iter()
                    .filter_map(|k| s.get(*k)?.parse::<u64>().ok())
                    .sum::<u64>();
                format!("{s:?}")
            })
            .unwrap_or_else(|| "no SUMMARY".into());
        eprintln!(
            "{id}: {summary}; {} events, learned of the trip at {learned:?} ms; {after_recovery} requests after recovery",
            out.events.len()
        );
    }
    eprintln!(
        "workers' ok + failed = {summed}; downstream received {}",
        requests.len()
    );
    eprintln!("------------------------------");

    // ----- (a) the trip: at most fail_max failures plus one in-flight call per worker -----
    assert!(
        count(Phase::Healthy) > 0,
        "the workers did not call during the healthy phase"
    );
    assert!(
        !burst.is_empty(),
        "no request reached the failing downstream"
    );
    assert!(
        burst.len() <= FAIL_MAX + WORKERS,
        "{} requests reached the downstream before the breaker opened fleet-wide (at most {}): {:?}",
        burst.len(),
        FAIL_MAX + WORKERS,
        &offsets[..burst_len]
    );

    // ----- (b) then one trial per half-open window, for the whole fleet ------------------
    assert!(
        !trials.is_empty(),
        "no trial call reached the downstream in {} ms of failure",
        ms(FAILING_FOR)
    );
    for (i, gap) in gaps.iter().enumerate() {
        assert!(
            *gap >= ms(RESET * 3 / 4),
            "two requests {gap} ms apart after the trip (gap #{i}; at most one trial per \
             {} ms window): offsets {:?}",
            ms(RESET),
            &offsets[burst_len.saturating_sub(1)..]
        );
    }

    // ----- (c) every process learned of the trip, and recovered --------------------------
    for (id, out) in &outputs {
        let summary = out
            .summary
            .as_ref()
            .unwrap_or_else(|| panic!("{id} printed no SUMMARY: {:#?}", out.lines));
        assert_eq!(
            summary.get("final").map(String::as_str),
            Some("closed"),
            "{id} did not end closed: {:#?}",
            out.lines
        );
        assert!(
            out.events
                .iter()
                .any(|(_, from, to)| from == "closed" && to == "open"),
            "{id} never saw its breaker open: {:#?}",
            out.lines
        );
        let after_recovery = requests
            .iter()
            .filter(|r| r.phase == Phase::Recovered && &r.worker == id)
            .count();
        assert!(
            after_recovery >= 2,
            "{id} made {after_recovery} calls after the downstream recovered"
        );
    }
}
