//! The failure-rate rule is fleet-wide: worker *processes* (`src/bin/infuse-rate-worker.rs`)
//! each count their calls and report them in batches, and the store's window adds up the
//! calls of every process. Separate OS processes are needed here, not only separate
//! registries: `min_instances` counts distinct processes (one instance id per process).
//!
//! The workers are driven over stdin: `go` lines sent to all of them at once make them
//! call at the same time. No assertion is on time; every wait polls, generously.
//!
//! `detection_latency` (ignored) measures how long the fleet takes from the call that
//! crosses the threshold to every process rejecting (`INFUSE_RATE_ROUNDS`, default 20):
//! `cargo test -p infuse-tests --test fleet_rates detection_latency -- --ignored --nocapture`.

use infuse_tests::support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use infuse::{Breaker, Registry, ServiceOverride, State};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use support::redis_server::RedisServer;

const SERVICE: &str = "users";
/// The longest a worker may take to answer a command (boot included): generous, for a
/// loaded 2-core machine. Tests take this long only when something is wrong.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);
/// How long a fleet may take to show a state everywhere (polled every 20 ms).
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

/// The breaker's rate rule, as the workers are started with (`fail_max` stays high, so
/// that only the rate rule trips; the open time is long, so that nothing closes during
/// a test).
#[derive(Debug, Clone, Copy)]
struct Rules {
    failure_rate: u32,
    min_calls: u32,
    min_instances: u32,
}

const FAIL_MAX: u32 = 1000;
const RESET: Duration = Duration::from_secs(60);

impl Rules {
    fn args(&self) -> Vec<String> {
        vec![
            format!("failure_rate={}", self.failure_rate),
            format!("min_calls={}", self.min_calls),
            format!("min_instances={}", self.min_instances),
            format!("fail_max={FAIL_MAX}"),
            format!("reset_timeout_ms={}", RESET.as_millis()),
        ]
    }

    fn overrides(&self) -> ServiceOverride {
        ServiceOverride::new()
            .fail_max(FAIL_MAX)
            .reset_timeout(RESET)
            .failure_rate(self.failure_rate)
            .min_calls(self.min_calls)
            .min_instances(self.min_instances)
    }
}

/// One worker process, its stdin, and the lines it printed so far.
struct Worker {
    id: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Worker {
    fn spawn(store: &str, namespace: &str, id: &str, rules: &Rules) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_infuse-rate-worker"))
            .args([store, namespace, id])
            .args(rules.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning infuse-rate-worker");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut stdout = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = stdout.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Worker {
            id: id.to_owned(),
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    async fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{}: writing {command:?}: {e}", self.id));
        stdin.flush().await.unwrap();
    }

    /// Reads lines until `<kind> <id> ...` and answers the words after the id.
    async fn expect(&mut self, kind: &str) -> Vec<String> {
        let deadline = Instant::now() + ANSWER_WITHIN;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!(
                    "{} exited before printing {kind}: {:#?}",
                    self.id, self.seen
                ),
                Err(_) => panic!(
                    "{} printed no {kind} within {ANSWER_WITHIN:?}: {:#?}",
                    self.id, self.seen
                ),
            };
            self.seen.push(line.clone());
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"ERROR") {
                panic!("{}: {line}", self.id);
            }
            if words.len() >= 2 && words[0] == kind && words[1] == self.id {
                return words[2..].iter().map(|w| w.to_string()).collect();
            }
        }
    }

    /// `(the store's state, this process's view)`.
    async fn state(&mut self) -> (String, String) {
        self.send("state").await;
        let words = self.expect("STATE").await;
        let view = words[1].strip_prefix("view=").unwrap().to_owned();
        (words[0].clone(), view)
    }

    /// Whether one more (succeeding) call passes the breaker.
    async fn probe(&mut self) -> bool {
        self.send("probe").await;
        self.expect("PROBE").await[1] == "passed"
    }

    /// Polls until this process's view of the breaker is `state`.
    async fn sees(&mut self, state: State) -> bool {
        let deadline = Instant::now() + SETTLE_WITHIN;
        loop {
            if self.state().await.1 == state.as_str() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends the worker; answers everything it printed and its SUMMARY's fields.
    async fn quit(mut self) -> Output {
        self.send("quit").await;
        let summary = fields(&self.expect("SUMMARY").await);
        drop(self.stdin.take());
        let status = tokio::time::timeout(ANSWER_WITHIN, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit", self.id))
            .unwrap();
        while let Some(line) = self.lines.recv().await {
            self.seen.push(line);
        }
        assert!(
            status.success(),
            "{} exited with {status}: {:#?}",
            self.id,
            self.seen
        );
        Output {
            id: self.id,
            summary,
            lines: self.seen,
        }
    }
}

/// `name=value` words as a map.
fn fields(words: &[String]) -> BTreeMap<String, String> {
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What a worker printed, once it exited.
#[derive(Debug)]
struct Output {
    id: String,
    summary: BTreeMap<String, String>,
    lines: Vec<String>,
}

impl Output {
    /// `(unix_us, from, to)` of every state change of its view.
    fn events(&self) -> Vec<(u128, String, String)> {
        self.lines
            .iter()
            .filter_map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["EVENT", us, id, from, to] if id == self.id => {
                        Some((us.parse().unwrap(), from.to_owned(), to.to_owned()))
                    }
                    _ => None,
                },
            )
            .collect()
    }

    /// `(unix_us, verdict)` of every call it made in `go` commands.
    fn calls(&self) -> Vec<(u128, String)> {
        self.lines
            .iter()
            .filter_map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["CALL", id, us, verdict] if id == self.id => {
                        Some((us.parse().unwrap(), verdict.to_owned()))
                    }
                    _ => None,
                },
            )
            .collect()
    }

    /// When its view first went from closed to open.
    fn opened_at(&self) -> Option<u128> {
        self.events()
            .into_iter()
            .find(|(_, from, to)| from == "closed" && to == "open")
            .map(|(us, ..)| us)
    }
}

/// Starts `n` workers (`w0`, `w1`...) on `store` and waits until all are ready.
async fn start(store: &str, namespace: &str, n: usize, rules: &Rules) -> Vec<Worker> {
    let mut workers: Vec<Worker> = (0..n)
        .map(|i| Worker::spawn(store, namespace, &format!("w{i}"), rules))
        .collect();
    for worker in &mut workers {
        worker.expect("READY").await;
    }
    workers
}

/// Sends `command` to every worker (the barrier: they start together), then waits for
/// each one's `DONE` (its calls made, and their counts flushed) and answers its fields.
async fn go_all(workers: &mut [Worker], command: &str) -> Vec<BTreeMap<String, String>> {
    for worker in workers.iter_mut() {
        worker.send(command).await;
    }
    let mut done = Vec::new();
    for worker in workers.iter_mut() {
        done.push(fields(&worker.expect("DONE").await));
    }
    done
}

async fn quit_all(workers: Vec<Worker>) -> Vec<Output> {
    let mut outputs = Vec::new();
    for worker in workers {
        outputs.push(worker.quit().await);
    }
    outputs
}

/// The fleet's breaker, in a registry of this test process (an operator's, say).
async fn fleet_breaker(server: &RedisServer, namespace: &str, rules: &Rules) -> Breaker {
    let registry =
        Registry::new(support::redis_config(server, namespace).service(SERVICE, rules.overrides()))
            .await
            .expect("a registry of the test");
    registry.breaker(SERVICE)
}

/// The breaker's state in Redis, read by a registry of this test process.
async fn fleet_state(server: &RedisServer, namespace: &str, rules: &Rules) -> State {
    let breaker = fleet_breaker(server, namespace, rules).await;
    breaker.state().await.expect("state")
}

fn namespace(test: &str) -> String {
    format!("fleet-rates-{test}-{}", std::process::id())
}

/// The example: 4 × 8 calls at 50 % failures, `min_calls = 20`.
const RATE_50_OVER_20: Rules = Rules {
    failure_rate: 50,
    min_calls: 20,
    min_instances: 1,
};

/// Every worker saw its breaker open, reads the fleet's state as open, and has a call
/// rejected.
async fn assert_every_process_rejects(workers: &mut [Worker]) {
    for worker in workers {
        assert!(
            worker.sees(State::Open).await,
            "{} never saw the breaker open: {:#?}",
            worker.id,
            worker.seen
        );
        assert_eq!(
            worker.state().await.0,
            "open",
            "{}: the fleet's state",
            worker.id
        );
        assert!(
            !worker.probe().await,
            "{}: a call after the trip passed",
            worker.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_trip_the_rate_rule_with_the_fleets_calls() {
    let server = RedisServer::start();
    let rules = RATE_50_OVER_20;
    let mut workers = start(&server.url(), &namespace("trip"), 4, &rules).await;

    // 8 calls each, every other one failing: 4 × 8 = 32 calls ≥ min_calls in the fleet's
    // window, half of them failures; no process alone has min_calls.
    let done = go_all(&mut workers, "go 8 alternate 0").await;
    eprintln!("DONE: {done:?}");

    assert_every_process_rejects(&mut workers).await;
    assert_eq!(
        fleet_state(&server, &namespace("trip"), &rules).await,
        State::Open
    );
    for out in quit_all(workers).await {
        eprintln!("{}: {:?}", out.id, out.summary);
        assert_eq!(out.summary["final"], "open", "{}: {:#?}", out.id, out.lines);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_load_does_not_trip_processes_that_each_keep_their_own_store() {
    let rules = RATE_50_OVER_20;
    let mut workers = start("memory", "unused", 4, &rules).await;

    // The same 4 × 8 calls, but each process's window holds its own 8 < min_calls.
    let done = go_all(&mut workers, "go 8 alternate 0").await;
    for (worker, done) in workers.iter_mut().zip(&done) {
        assert_eq!(
            (
                done["ok"].as_str(),
                done["failed"].as_str(),
                done["rejected"].as_str()
            ),
            ("4", "4", "0"),
            "{}",
            worker.id
        );
        assert_eq!(
            worker.state().await,
            ("closed".to_owned(), "closed".to_owned()),
            "{}",
            worker.id
        );
        assert!(
            worker.probe().await,
            "{}: a later call was rejected",
            worker.id
        );
    }
    for out in quit_all(workers).await {
        assert_eq!(
            out.summary["final"], "closed",
            "{}: {:#?}",
            out.id, out.lines
        );
        assert_eq!(out.summary["rejected"], "0", "{}", out.id);
        assert!(out.events().is_empty(), "{}: {:#?}", out.id, out.lines);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_min_instances_one_failing_process_protects_itself_and_two_trip_the_fleet() {
    let server = RedisServer::start();
    let ns = namespace("instances");
    let rules = Rules {
        min_instances: 2,
        ..RATE_50_OVER_20
    };
    let mut workers = start(&server.url(), &ns, 4, &rules).await;

    // w0 fails alone: 24 calls, 12 failures. The fleet's window has the volume and the
    // rate, but one process reporting failures: the fleet's breaker stays closed...
    let done = go_all(&mut workers[..1], "go 24 alternate 0").await;
    eprintln!("w0 DONE: {:?}", done[0]);
    let (w0, others) = workers.split_first_mut().unwrap();
    // ... while w0, whose own calls trip the rule, opens its breaker for itself.
    assert!(
        w0.sees(State::Open).await,
        "w0 did not protect itself: {:#?}",
        w0.seen
    );
    assert!(!w0.probe().await, "w0's later call passed");
    assert_eq!(
        w0.state().await.0,
        "closed",
        "the fleet's state, read by w0"
    );
    assert_eq!(fleet_state(&server, &ns, &rules).await, State::Closed);
    for worker in others.iter_mut() {
        assert_eq!(
            worker.state().await,
            ("closed".to_owned(), "closed".to_owned()),
            "{}",
            worker.id
        );
        // A success each: the window now holds w0's reported calls (21 to 24, every
        // other one failed: the counts of calls made after w0 opened are dropped) and
        // these 3 successes, below 50 %.
        assert!(worker.probe().await, "{}: a call was rejected", worker.id);
    }

    // w1 fails too: 8 failures make 32 to 35 calls, 19 to 20 failures (57 % or more),
    // reported by two processes (w1 alone has 9 calls, below min_calls: only the fleet's
    // window can trip).
    let done = go_all(&mut others[..1], "go 8 fail 0").await;
    eprintln!("w1 DONE: {:?}", done[0]);
    assert_every_process_rejects(&mut workers).await;
    assert_eq!(fleet_state(&server, &ns, &rules).await, State::Open);
    for out in quit_all(workers).await {
        eprintln!("{}: {:?}", out.id, out.summary);
        assert_eq!(out.summary["final"], "open", "{}", out.id);
        // One closed → open each: w0's own protection became the fleet's trip unseen.
        let opened = out
            .events()
            .iter()
            .filter(|(_, from, to)| from == "closed" && to == "open")
            .count();
        assert_eq!(opened, 1, "{}: {:#?}", out.id, out.lines);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_close_ends_a_processs_own_protection() {
    let server = RedisServer::start();
    let ns = namespace("close");
    let rules = Rules {
        min_instances: 2,
        ..RATE_50_OVER_20
    };
    let mut workers = start(&server.url(), &ns, 2, &rules).await;
    go_all(&mut workers[..1], "go 24 alternate 0").await;
    let w0 = &mut workers[0];
    assert!(w0.sees(State::Open).await, "w0 did not protect itself");

    // An operator closes the breaker from another process: a new period for the whole
    // fleet, which ends w0's own protection too (it would otherwise last reset_timeout).
    fleet_breaker(&server, &ns, &rules)
        .await
        .close()
        .await
        .expect("close");
    assert!(
        w0.sees(State::Closed).await,
        "w0 stayed open after the operator's close(): {:#?}",
        w0.seen
    );
    assert!(w0.probe().await, "w0's call after close() was rejected");
}

// ----- Detection latency (measurement, not a test of time) ------------------------------

/// One load a fleet of workers runs in a measurement round.
struct Profile {
    name: &'static str,
    /// Run by every process first (calls that all succeed), e.g. `go 20 ok 10`.
    warmup: Option<&'static str>,
    calls: u32,
    pattern: &'static str,
    every_ms: u32,
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn describe(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "no samples".to_owned();
    }
    values.sort_by(f64::total_cmp);
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, min {:.1}, max {:.1} (n = {})",
        percentile(values, 50.0),
        percentile(values, 99.0),
        values[0],
        values[values.len() - 1],
        values.len()
    )
}

/// When the fleet's calls first met the rule: the completion time of the call after
/// which the calls made so far (by every process, in time order, rejections excluded)
/// reach `min_calls` at `failure_rate` or more, from `min_instances` failing processes.
fn crossing(outputs: &[Output], rules: &Rules) -> Option<u128> {
    let mut calls: Vec<(u128, &str, bool)> = outputs
        .iter()
        .flat_map(|out| {
            out.calls()
                .into_iter()
                .filter(|(_, verdict)| verdict != "rejected")
                .map(|(us, verdict)| (us, out.id.as_str(), verdict == "failed"))
        })
        .collect();
    calls.sort();
    let (mut total, mut failures) = (0u64, 0u64);
    let mut failing = BTreeSet::new();
    for (us, id, failed) in calls {
        total += 1;
        if failed {
            failures += 1;
            failing.insert(id);
        }
        if total >= u64::from(rules.min_calls)
            && failures * 100 >= u64::from(rules.failure_rate) * total
            && failing.len() >= rules.min_instances as usize
        {
            return Some(us);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test -p infuse-tests --test fleet_rates -- --ignored --nocapture"]
async fn detection_latency() {
    let rounds: usize = std::env::var("INFUSE_RATE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let server = RedisServer::start();
    let rules = RATE_50_OVER_20;
    let profiles = [
        // The CI test's load: 8 calls each, back to back.
        Profile {
            name: "burst",
            warmup: None,
            calls: 8,
            pattern: "alternate",
            every_ms: 0,
        },
        // A steady load: a call every 10 ms each for 400 ms (no process alone gathers
        // min_calls in one 100 ms batch, so none flushes early).
        Profile {
            name: "steady",
            warmup: None,
            calls: 40,
            pattern: "alternate",
            every_ms: 10,
        },
        // A fleet that has been calling (and reporting) for a while when the target
        // starts failing: 80 successes are in the window, then every call fails, a call
        // every 10 ms each; the rule is crossed at the 80th failure. Each process knows
        // the fleet's window as of its last report, so it reports at once when that plus
        // its own counts could trip.
        Profile {
            name: "warm",
            warmup: Some("go 20 ok 10"),
            calls: 40,
            pattern: "fail",
            every_ms: 10,
        },
    ];
    let mut report = Vec::new();
    for profile in &profiles {
        let (mut all, mut each, mut rejecting) = (Vec::new(), Vec::new(), Vec::new());
        let mut spread = Vec::new();
        for round in 0..rounds {
            let ns = format!("{}-{}-{round}", namespace("latency"), profile.name);
            let mut workers = start(&server.url(), &ns, 4, &rules).await;
            if let Some(warmup) = profile.warmup {
                go_all(&mut workers, warmup).await;
            }
            let command = format!(
                "go {} {} {}",
                profile.calls, profile.pattern, profile.every_ms
            );
            go_all(&mut workers, &command).await;
            for worker in &mut workers {
                assert!(worker.sees(State::Open).await, "{}: no trip", worker.id);
            }
            let outputs = quit_all(workers).await;
            let crossed = crossing(&outputs, &rules).expect("the calls cross the threshold");
            let ms = |us: u128| (us as f64 - crossed as f64) / 1000.0;
            let opened: Vec<f64> = outputs
                .iter()
                .map(|out| ms(out.opened_at().expect("an open event")))
                .collect();
            let first_rejected: Vec<f64> = outputs
                .iter()
                .filter_map(|out| {
                    out.calls()
                        .into_iter()
                        .find(|(_, verdict)| verdict == "rejected")
                        .map(|(us, _)| ms(us))
                })
                .collect();
            let slowest = opened.iter().copied().fold(f64::MIN, f64::max);
            let rounded = |values: &[f64]| {
                values
                    .iter()
                    .map(|v| format!("{v:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            eprintln!(
                "{} round {round}: open after [{}] ms (every process: {slowest:.1} ms); first rejected call after [{}] ms",
                profile.name,
                rounded(&opened),
                rounded(&first_rejected),
            );
            let first = opened.iter().copied().fold(f64::MAX, f64::min);
            spread.push(slowest - first);
            all.push(slowest);
            each.extend(opened);
            rejecting.extend(first_rejected);
        }
        report.push(format!(
            "{} (4 processes × {} calls, one every {} ms, {}{}; failure_rate 50, min_calls 20):\n  \
             crossing → every process open: {}\n  \
             crossing → a process open:     {}\n  \
             crossing → its first rejected call (calls still running): {}\n  \
             first process open → every process open (the fan-out): {}",
            profile.name,
            profile.calls,
            profile.every_ms,
            profile.pattern,
            profile.warmup.map_or(String::new(), |w| format!(", after `{w}`")),
            describe(&mut all),
            describe(&mut each),
            describe(&mut rejecting),
            describe(&mut spread),
        ));
    }
    eprintln!("--- detection latency, {rounds} rounds per load ---");
    for line in report {
        eprintln!("{line}");
    }
}
