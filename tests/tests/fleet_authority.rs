//! Who decides for the fleet (issue 16, item 1): worker *processes*
//! (`src/bin/infuse-rate-worker.rs`) share one breaker through Redis, each connected
//! through its own fault proxy (`support::proxy`), while the test cuts, delays or
//! silences one process's network, or the whole fleet's, or fails Redis over.
//!
//! The rule under test: while the fleet's record exists and Redis has not lost history,
//! the record is the only truth. What a process decided on its local fallback protects
//! that process only; being cut off never lets it overrule the fleet. A process's view
//! replaces the record only when Redis lost history, and the history says so.
//!
//! The scenarios: a sick caller cut off while the others stay connected (the consecutive
//! rule; the rate rule with `min_instances = 2`, failing only while cut off, or all the
//! time); a fleet-wide failure during the cut (the fleet does open, the cut-off process
//! follows it after the heal); a whole-fleet outage and heal; lost events (convergence by
//! the periodic resync); Sentinel failovers to a lagging replica that lose a trip or a
//! trial's acquisition (no double trial, no wedged breaker, the history says what
//! happened).
//!
//! How the tests watch: a task of the test polls the breaker's record (`HGETALL
//! infuse:{<ns>/users}:state`) on the server directly every 20 ms, and the history list
//! is read at the end; the workers print every call's verdict, every change of their
//! view, every trial call (granted by Redis, or by their local fallback while degraded)
//! and every change of their fleet layer's health. Bounds on time are generous (a loaded
//! 2-core machine) and every wait is bounded; latencies are printed, not asserted exactly
//! (`cargo test -p infuse-tests --test fleet_authority -- --nocapture` shows them). Worker
//! processes are killed when their handle drops (a failed test included).

use infuse_tests::support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use support::proxy::{FaultProxy, Mode};
use support::redis_server::RedisServer;
use support::topology::{SentinelOptions, SentinelSet, MASTER_NAME};

const SERVICE: &str = "users";
/// The longest a worker may take to answer a command (boot included).
const ANSWER_WITHIN: Duration = Duration::from_secs(20);
/// How long a fleet may take to show a state everywhere once it should.
const SETTLE_WITHIN: Duration = Duration::from_secs(10);
/// Every worker's resync interval (the library's default, given explicitly).
const RESYNC: Duration = Duration::from_secs(1);
/// How often the test samples the record.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

fn namespace(test: &str) -> String {
    format!("authority-{test}-{}", std::process::id())
}

fn state_key(ns: &str) -> String {
    format!("infuse:{{{ns}/{SERVICE}}}:state")
}

fn history_key(ns: &str) -> String {
    format!("infuse:{{{ns}/{SERVICE}}}:history")
}

// ----- The breaker's rules, as the workers are started with ------------------------------

#[derive(Debug, Clone)]
struct Rules {
    /// 0: no rate rule.
    failure_rate: u32,
    min_calls: u32,
    min_instances: u32,
    fail_max: u32,
    reset: Duration,
    call_timeout: Duration,
    trial_lease: Option<Duration>,
    /// How long each call takes.
    call_ms: u64,
}

impl Rules {
    /// The consecutive rule alone: `fail_max = 5`.
    fn consecutive(reset: Duration) -> Rules {
        Rules {
            failure_rate: 0,
            min_calls: 20,
            min_instances: 1,
            fail_max: 5,
            reset,
            call_timeout: Duration::from_millis(500),
            trial_lease: None,
            call_ms: 0,
        }
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            format!("failure_rate={}", self.failure_rate),
            format!("min_calls={}", self.min_calls),
            format!("min_instances={}", self.min_instances),
            format!("fail_max={}", self.fail_max),
            format!("reset_timeout_ms={}", self.reset.as_millis()),
            format!("call_timeout_ms={}", self.call_timeout.as_millis()),
            format!("resync_ms={}", RESYNC.as_millis()),
            format!("call_ms={}", self.call_ms),
        ];
        if let Some(lease) = self.trial_lease {
            args.push(format!("trial_lease_ms={}", lease.as_millis()));
        }
        args
    }
}

// ----- A worker process -------------------------------------------------------------------

/// One worker process, its stdin, and the lines it printed so far.
struct Worker {
    id: String,
    pid: u32,
    /// Killed on drop (`kill_on_drop`).
    _child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

/// What `state` printed: the store's answer (Redis's record, or the local fallback's
/// while degraded) and the view.
#[derive(Debug, Clone, PartialEq, Eq)]
struct WorkerState {
    store: String,
    view: String,
    inc: u64,
    generation: u64,
    seq: u64,
}

impl Worker {
    fn spawn(store: &str, ns: &str, id: &str, rules: &Rules) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_infuse-rate-worker"))
            .args([store, ns, id])
            .args(rules.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning infuse-rate-worker");
        let pid = child.id().expect("a running worker");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
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
            pid,
            _child: child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{}: writing {command:?}: {e}", self.id));
        self.stdin.flush().await.unwrap();
    }

    /// Reads lines until one satisfies `matches` (looking at the lines seen so far from
    /// index `from` first), within `within`; answers its index in `seen`.
    async fn wait_line(
        &mut self,
        from: usize,
        within: Duration,
        what: &str,
        matches: impl Fn(&[&str]) -> bool,
    ) -> Option<usize> {
        let words = |line: &String| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        for (i, line) in self.seen.iter().enumerate().skip(from) {
            let w = words(line);
            if matches(&w.iter().map(String::as_str).collect::<Vec<_>>()) {
                return Some(i);
            }
        }
        let deadline = Instant::now() + within;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!(
                    "{} exited while the test waited for {what}: {:#?}",
                    self.id, self.seen
                ),
                Err(_) => return None,
            };
            self.seen.push(line.clone());
            let w = words(&line);
            let w: Vec<&str> = w.iter().map(String::as_str).collect();
            if w.first() == Some(&"ERROR") {
                panic!("{}: {line}", self.id);
            }
            if matches(&w) {
                return Some(self.seen.len() - 1);
            }
        }
    }

    /// Reads lines until `<kind> <id> ...` (a new one) and answers the words after the id.
    async fn expect(&mut self, kind: &str) -> Vec<String> {
        let from = self.seen.len();
        let id = self.id.clone();
        let at = self
            .wait_line(from, ANSWER_WITHIN, kind, |w| {
                w.len() >= 2 && w[0] == kind && w[1] == id
            })
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{} printed no {kind} within {ANSWER_WITHIN:?}: {:#?}",
                    self.id, self.seen
                )
            });
        self.seen[at]
            .split_whitespace()
            .skip(2)
            .map(str::to_owned)
            .collect()
    }

    async fn state(&mut self) -> WorkerState {
        self.send("state").await;
        let words = self.expect("STATE").await;
        let field = |name: &str| -> u64 {
            words
                .iter()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{}: no {name} in STATE {words:?}", self.id))
        };
        WorkerState {
            store: words[0].clone(),
            view: words[1].strip_prefix("view=").unwrap().to_owned(),
            inc: field("inc"),
            generation: field("gen"),
            seq: field("seq"),
        }
    }

    /// Whether one more (succeeding) call passes the breaker.
    async fn probe(&mut self) -> bool {
        self.send("probe").await;
        self.expect("PROBE").await[1] == "passed"
    }

    /// Waits for the `DONE` of a `go`; answers its fields.
    async fn done(&mut self) -> BTreeMap<String, String> {
        fields(&self.expect("DONE").await)
    }

    /// Waits (from line `from` on) for an `EVENT <us> <id> <from_state> <to_state>`;
    /// answers its time.
    async fn event(
        &mut self,
        from: usize,
        from_state: &str,
        to_state: &str,
        within: Duration,
    ) -> Option<u128> {
        let id = self.id.clone();
        let at = self
            .wait_line(from, within, "an EVENT", |w| {
                w.len() == 5
                    && w[0] == "EVENT"
                    && w[2] == id
                    && w[3] == from_state
                    && w[4] == to_state
            })
            .await?;
        self.seen[at].split_whitespace().nth(1)?.parse().ok()
    }

    /// `(unix_us, from, to)` of every change of its view seen so far.
    fn events(&self) -> Vec<(u128, String, String)> {
        self.seen
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

    /// `(unix_us, verdict)` of every call it made in `go` commands so far.
    fn calls(&self) -> Vec<(u128, String)> {
        self.seen
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

    /// `(start_us, end_us, verdict, kind)` of every trial call it made so far, `kind`
    /// being `fleet` (Redis granted it) or `local` (its local fallback did).
    fn trials(&self) -> Vec<(u128, u128, String, String)> {
        self.seen
            .iter()
            .filter_map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["TRIAL", id, start, end, verdict, kind] if id == self.id => Some((
                        start.parse().unwrap(),
                        end.parse().unwrap(),
                        verdict.to_owned(),
                        kind.to_owned(),
                    )),
                    _ => None,
                },
            )
            .collect()
    }

    /// `(unix_us, up)` of every change of its fleet layer's health.
    fn health(&self) -> Vec<(u128, bool)> {
        self.seen
            .iter()
            .filter_map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["HEALTH", id, us, word] if id == self.id => {
                        Some((us.parse().unwrap(), word == "up"))
                    }
                    _ => None,
                },
            )
            .collect()
    }

    /// The lines about state (events, transitions, trials), for failure messages.
    fn story(&self) -> Vec<&str> {
        self.seen
            .iter()
            .map(String::as_str)
            .filter(|l| !l.starts_with("CALL "))
            .collect()
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

/// Workers `w0`, `w1`… on `server`, each through a proxy of its own; ready.
async fn start(
    server: &RedisServer,
    ns: &str,
    n: usize,
    rules: &Rules,
) -> Vec<(Worker, FaultProxy)> {
    let mut fleet: Vec<(Worker, FaultProxy)> = (0..n)
        .map(|i| {
            let proxy = FaultProxy::to_port(server.port());
            let worker = Worker::spawn(&proxy.url(), ns, &format!("w{i}"), rules);
            (worker, proxy)
        })
        .collect();
    for (worker, _) in &mut fleet {
        worker.expect("READY").await;
    }
    fleet
}

// ----- The record, as Redis holds it ----------------------------------------------------

/// One reading of `infuse:{<ns>/users}:state`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    inc: u64,
    generation: u64,
    seq: u64,
    /// The state code (0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled).
    state: u8,
}

impl Record {
    fn state_name(&self) -> &'static str {
        match self.state {
            0 => "closed",
            1 => "open",
            2 => "half-open",
            3 => "forced-open",
            4 => "disabled",
            _ => "?",
        }
    }
}

async fn connect_direct(server_port: u16) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{server_port}")).unwrap();
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        // The client's own connect deadline is short for a loaded machine: try again.
        match client.get_multiplexed_async_connection().await {
            Ok(conn) => return conn,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connecting to Redis on {server_port}: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("connecting to Redis on {server_port}: {e}"),
        }
    }
}

async fn read_record(conn: &mut redis::aio::MultiplexedConnection, ns: &str) -> Option<Record> {
    let map: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(state_key(ns))
        .query_async(conn)
        .await
        .ok()?;
    if map.is_empty() {
        return None;
    }
    let num = |k: &str| map.get(k).and_then(|v| v.parse::<u64>().ok());
    Some(Record {
        inc: num("inc")?,
        generation: num("gen")?,
        seq: num("seq")?,
        state: num("state")? as u8,
    })
}

/// A task of the test sampling the record every [`SAMPLE_EVERY`], keeping every change of
/// its state, generation or incarnation.
/// `(unix_us, the record)` at every change.
type Samples = Arc<Mutex<Vec<(u128, Option<Record>)>>>;

struct RecordWatch {
    samples: Samples,
    task: JoinHandle<()>,
}

impl RecordWatch {
    async fn start(server: &RedisServer, ns: &str) -> RecordWatch {
        let mut conn = connect_direct(server.port()).await;
        let samples: Samples = Arc::default();
        let ns = ns.to_owned();
        let out = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let read =
                    tokio::time::timeout(Duration::from_secs(2), read_record(&mut conn, &ns))
                        .await
                        .unwrap_or(None);
                {
                    let mut samples = out.lock().unwrap();
                    // A change of state, generation or incarnation (not of the counters).
                    let key =
                        |r: &Option<Record>| r.as_ref().map(|r| (r.inc, r.generation, r.state));
                    if samples.last().map(|(_, r)| key(r)) != Some(key(&read)) {
                        samples.push((unix_us(), read));
                    }
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        });
        RecordWatch { samples, task }
    }

    fn samples(&self) -> Vec<(u128, Option<Record>)> {
        self.samples.lock().unwrap().clone()
    }

    /// The first time the record let no calls through (open or half-open), if ever.
    fn first_opened(&self) -> Option<(u128, Record)> {
        self.samples().into_iter().find_map(|(at, r)| {
            let r = r?;
            matches!(r.state, 1 | 2).then_some((at, r))
        })
    }

    /// The generations the record showed.
    fn generations(&self) -> BTreeSet<u64> {
        self.samples()
            .into_iter()
            .filter_map(|(_, r)| Some(r?.generation))
            .collect()
    }

    /// The samples as text, relative to `t0`.
    fn describe(&self, t0: u128) -> String {
        self.samples()
            .iter()
            .map(|(at, r)| {
                let at = (*at as i128 - t0 as i128) / 1000;
                match r {
                    Some(r) => format!(
                        "  +{at} ms: {} gen={} seq={} inc={}",
                        r.state_name(),
                        r.generation,
                        r.seq,
                        r.inc
                    ),
                    None => format!("  +{at} ms: (no record)"),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for RecordWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One entry of the breaker's history: `"<ms> <from> <to> <gen> <reason> <process>"`.
#[derive(Debug, Clone)]
struct HistoryEntry {
    at_ms: u128,
    from: String,
    to: String,
    generation: u64,
    reason: String,
    process: String,
}

/// The breaker's history, oldest first.
async fn history(conn: &mut redis::aio::MultiplexedConnection, ns: &str) -> Vec<HistoryEntry> {
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(history_key(ns))
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .expect("LRANGE history");
    raw.iter()
        .rev()
        .map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            assert!(
                w.len() >= 6,
                "a history entry of {} words: {line:?}",
                w.len()
            );
            HistoryEntry {
                at_ms: w[0].parse().unwrap_or(0),
                from: w[1].to_owned(),
                to: w[2].to_owned(),
                generation: w[3].parse().unwrap_or(0),
                reason: w[4].to_owned(),
                process: w[5].to_owned(),
            }
        })
        .collect()
}

fn describe_history(
    entries: &[HistoryEntry],
    names: &BTreeMap<String, String>,
    t0: u128,
) -> String {
    if entries.is_empty() {
        return "  (empty)".to_owned();
    }
    entries
        .iter()
        .map(|e| {
            let who = names
                .get(&e.process)
                .cloned()
                .unwrap_or_else(|| e.process.clone());
            format!(
                "  +{} ms: {} -> {} gen={} {} by {who}",
                e.at_ms as i128 - (t0 / 1000) as i128,
                e.from,
                e.to,
                e.generation,
                e.reason
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each worker's fleet instance id (hex, as the history names processes), from the
/// processes' announcements: `{instance hex → worker id}`. A process announces itself with
/// its periodic resync: waits until every worker has, for at most `within`.
async fn instance_names(
    conn: &mut redis::aio::MultiplexedConnection,
    ns: &str,
    workers: &[&Worker],
    within: Duration,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + within;
    loop {
        let names = announced_names(conn, ns, workers).await;
        if names.len() == workers.len() || Instant::now() >= deadline {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn announced_names(
    conn: &mut redis::aio::MultiplexedConnection,
    ns: &str,
    workers: &[&Worker],
) -> BTreeMap<String, String> {
    let ids: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("infuse:{{{ns}}}:processes"))
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .unwrap_or_default();
    let mut names = BTreeMap::new();
    for id in ids {
        let json: Option<String> = redis::cmd("GET")
            .arg(format!("infuse:{{{ns}}}:process:{id}"))
            .query_async(conn)
            .await
            .unwrap_or(None);
        let pid = json.as_deref().and_then(|j| {
            let rest = j.split("\"pid\":").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u32>()
                .ok()
        });
        if let Some(worker) = workers.iter().find(|w| Some(w.pid) == pid) {
            names.insert(id, worker.id.clone());
        }
    }
    names
}

/// Fails unless every worker is named (the assertions that follow judge who wrote what).
fn assert_all_named(test: &str, names: &BTreeMap<String, String>, workers: usize) {
    assert_eq!(
        names.len(),
        workers,
        "{test}: not every worker announced itself: {names:?}"
    );
}

/// Polls a worker's `state` until it reads the record from Redis (the record's
/// incarnation and generation, as the test reads them at the same time) and its view
/// agrees with that answer; answers the time it took, or `None` after `within`.
async fn wait_on_redis(
    worker: &mut Worker,
    conn: &mut redis::aio::MultiplexedConnection,
    ns: &str,
    within: Duration,
) -> Option<(Duration, WorkerState, Record)> {
    let start = Instant::now();
    let deadline = start + within;
    loop {
        let state = worker.state().await;
        let record = read_record(conn, ns).await;
        if let Some(record) = &record {
            if state.inc == record.inc
                && state.generation == record.generation
                && state.view == state.store
            {
                return Some((start.elapsed(), state, record.clone()));
            }
        }
        if Instant::now() >= deadline {
            eprintln!(
                "{} not back on Redis; last: {state:?}, the record {record:?}",
                worker.id
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(ok, failed, rejected)` of a worker's `DONE`.
fn totals(done: &BTreeMap<String, String>) -> (u64, u64, u64) {
    let n = |k: &str| done.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (n("ok"), n("failed"), n("rejected"))
}

fn ms_since(t0: u128, at: u128) -> i128 {
    (at as i128 - t0 as i128) / 1000
}

// ----- (a), (b): a sick caller cut off while the others stay connected -------------------

/// How a sick-caller scenario runs.
struct SickCaller {
    test: &'static str,
    rules: Rules,
    /// The sick process also fails (and reports) while connected, before and after the
    /// cut (with `min_instances = 2` no single process may open the fleet's breaker).
    fails_while_connected: bool,
}

/// Three workers; `w0` is sick (its calls fail). Its proxy is blackholed while it keeps
/// failing (~4 s), then healed; then `w0` must be back on Redis. The two healthy workers
/// call every 20 ms the whole time, until `w0` is back and two resync intervals have
/// passed since the heal.
async fn sick_caller_cut_off(scenario: SickCaller) {
    let SickCaller {
        test,
        rules,
        fails_while_connected,
    } = scenario;
    let server = RedisServer::start();
    let ns = namespace(test);
    let mut fleet = start(&server, &ns, 3, &rules).await;
    let mut direct = connect_direct(server.port()).await;
    let watch = RecordWatch::start(&server, &ns).await;
    let t0 = unix_us();

    // The healthy ones call every 20 ms throughout, until stopped.
    for (healthy, _) in &mut fleet[1..] {
        healthy.send("run ok 20").await;
    }
    let (sick, sick_proxy) = &mut fleet[0];
    if fails_while_connected {
        sick.send("go 50 fail 20").await;
        let before = sick.done().await;
        eprintln!("{test}: w0 before the cut (connected): {before:?}");
    } else {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The cut: w0 keeps failing; its reports time out, it goes on on its local fallback
    // and trips there (its own protection).
    let cut_at = unix_us();
    sick_proxy.set(Mode::Blackhole);
    sick.send("go 200 fail 20").await;
    let during = sick.done().await;
    sick_proxy.set(Mode::Pass);
    let healed_at = unix_us();
    eprintln!(
        "{test}: w0 during the cut ({} ms): {during:?}",
        ms_since(cut_at, healed_at)
    );

    let after = if fails_while_connected {
        sick.send("go 100 fail 20").await;
        Some(sick.done().await)
    } else {
        None
    };
    if let Some(after) = &after {
        eprintln!("{test}: w0 after the heal (connected, failing): {after:?}");
    }

    // w0 back on Redis: it reads the fleet's record, and its view agrees (its own open
    // period over: reset_timeout after its last local trip, at most).
    let back = wait_on_redis(sick, &mut direct, &ns, rules.reset + SETTLE_WITHIN).await;
    let back_at = unix_us();
    let probe_passed = sick.probe().await;

    // The healthy ones go on for two resync intervals past the heal (and past w0's
    // return), then report.
    let until = healed_at + 2 * RESYNC.as_micros() + 100_000;
    if let Some(wait) = until.checked_sub(unix_us()) {
        tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    }
    let mut healthy_done = Vec::new();
    for (healthy, _) in &mut fleet[1..] {
        healthy.send("stop").await;
        healthy_done.push(fields(&healthy.expect("STOPPED").await));
    }
    let record_opened = watch.first_opened();
    let generations = watch.generations();
    let record_text = watch.describe(t0);
    drop(watch);
    let workers: Vec<&Worker> = fleet.iter().map(|(w, _)| w).collect();
    let names = instance_names(&mut direct, &ns, &workers, SETTLE_WITHIN).await;
    let entries = history(&mut direct, &ns).await;

    // ----- Report ------------------------------------------------------------------------
    let (_, _, rejected_during) = totals(&during);
    eprintln!("--- {test} ---");
    eprintln!(
        "cut at +{} ms, healed at +{} ms; w0 back on Redis: {:?} (at +{} ms); w0's probe then: {}",
        ms_since(t0, cut_at),
        ms_since(t0, healed_at),
        back.as_ref().map(|(took, s, _)| (took, s.clone())),
        ms_since(t0, back_at),
        if probe_passed { "passed" } else { "rejected" }
    );
    eprintln!("the record:\n{record_text}");
    eprintln!("history:\n{}", describe_history(&entries, &names, t0));
    for (worker, _) in &fleet {
        eprintln!("{} events: {:?}", worker.id, worker.events());
    }
    for ((healthy, _), done) in fleet[1..].iter().zip(&healthy_done) {
        let calls = healthy.calls();
        eprintln!(
            "{}: {done:?}; last call at +{} ms",
            healthy.id,
            calls.last().map_or(0, |(at, _)| ms_since(t0, *at))
        );
    }

    // ----- The healthy processes never reject, before, during or after -------------------
    for ((healthy, _), done) in fleet[1..].iter().zip(&healthy_done) {
        let rejected: Vec<i128> = healthy
            .calls()
            .iter()
            .filter(|(_, v)| v == "rejected")
            .map(|(at, _)| ms_since(t0, *at))
            .collect();
        assert!(
            rejected.is_empty(),
            "{test}: healthy {} rejected {} calls (at +ms {:?}; cut at +{} ms, healed at +{} ms): \
             a process cut off from Redis decided for the fleet. {}'s story: {:#?}",
            healthy.id,
            rejected.len(),
            &rejected[..rejected.len().min(10)],
            ms_since(t0, cut_at),
            ms_since(t0, healed_at),
            healthy.id,
            healthy.story()
        );
        assert_eq!(totals(done).2, 0, "{test}: {} DONE: {done:?}", healthy.id);
        assert!(
            healthy.events().iter().all(|(_, _, to)| to == "closed"),
            "{test}: healthy {}'s view left closed: {:?}",
            healthy.id,
            healthy.events()
        );
    }

    // ----- The fleet's record never moved to open ----------------------------------------
    if let Some((at, record)) = &record_opened {
        let phase = if *at < cut_at {
            "before the cut, w0 connected"
        } else if *at < healed_at {
            "during w0's cut"
        } else {
            "after the heal"
        };
        panic!(
            "{test}: the fleet's record went {} (gen {}) at +{} ms ({phase}; cut at +{} ms, \
             healed at +{} ms): one sick process opened the fleet's breaker.\nrecord:\n{}\nhistory:\n{}",
            record.state_name(),
            record.generation,
            ms_since(t0, *at),
            ms_since(t0, cut_at),
            ms_since(t0, healed_at),
            record_text,
            describe_history(&entries, &names, t0)
        );
    }
    assert!(
        entries.iter().all(|e| e.to == "closed"),
        "{test}: the history shows the breaker leaving closed:\n{}",
        describe_history(&entries, &names, t0)
    );
    assert_generations_explained(test, &generations, &entries, &names, t0);

    // ----- w0 protected itself, and is back on Redis afterwards --------------------------
    assert!(
        rejected_during > 0,
        "{test}: w0 never rejected a call during the cut (no protection on its local \
         fallback): {during:?}; story: {:#?}",
        fleet[0].0.story()
    );
    let (took, state, record) = back.unwrap_or_else(|| {
        panic!(
            "{test}: w0 did not come back on Redis within {:?} of the heal; story: {:#?}",
            rules.reset + SETTLE_WITHIN,
            fleet[0].0.story()
        )
    });
    eprintln!(
        "{test}: w0 back on Redis {took:?} after its last failing call: {state:?} = {record:?}"
    );
    assert!(
        probe_passed,
        "{test}: w0's call after it came back on Redis was rejected (the fleet is closed): {:#?}",
        fleet[0].0.story()
    );
}

/// Every generation the record showed (past the first) was made by a transition the
/// history records (a trip, a trial, an operator's call, or a replacement with its
/// reason): nothing rewrote the record silently.
fn assert_generations_explained(
    test: &str,
    generations: &BTreeSet<u64>,
    entries: &[HistoryEntry],
    names: &BTreeMap<String, String>,
    t0: u128,
) {
    let logged: BTreeSet<u64> = entries.iter().map(|e| e.generation).collect();
    let unexplained: Vec<u64> = generations
        .iter()
        .copied()
        .filter(|g| *g > 1 && !logged.contains(g))
        .collect();
    assert!(
        unexplained.is_empty(),
        "{test}: the record showed generations {unexplained:?} that no history entry explains \
         (a silent overwrite); generations seen: {generations:?}; history:\n{}",
        describe_history(entries, names, t0)
    );
}

/// The consecutive rule alone (`fail_max = 5`, `min_instances = 1`): the sick process
/// fails only while cut off (connected, its failures would count in the fleet's streak,
/// as they should): its local fallback trips, for it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sick_caller_cut_off_never_opens_the_fleet_consecutive_rule() {
    sick_caller_cut_off(SickCaller {
        test: "sick-consecutive",
        rules: Rules::consecutive(Duration::from_secs(3)),
        fails_while_connected: false,
    })
    .await;
}

/// The same rules, the sick process failing only while cut off: what its local fallback
/// decides (the consecutive rule trips it there) must stay its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sick_caller_cut_off_never_opens_the_fleet_rate_rule_failing_only_while_cut() {
    sick_caller_cut_off(SickCaller {
        test: "sick-rate-cut",
        rules: Rules {
            failure_rate: 50,
            min_calls: 10,
            min_instances: 2,
            fail_max: 5,
            ..Rules::consecutive(Duration::from_secs(3))
        },
        fails_while_connected: false,
    })
    .await;
}

/// The rate rule with `min_instances = 2` (and the library's default `fail_max = 5`): the
/// sick process fails before, during and after its cut; no single process may open the
/// fleet's breaker, by any rule, connected or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sick_caller_cut_off_never_opens_the_fleet_rate_rule_min_instances_2() {
    sick_caller_cut_off(SickCaller {
        test: "sick-rate",
        rules: Rules {
            failure_rate: 50,
            min_calls: 10,
            min_instances: 2,
            // The library's default: the consecutive rule is on too.
            fail_max: 5,
            ..Rules::consecutive(Duration::from_secs(3))
        },
        fails_while_connected: true,
    })
    .await;
}

// ----- (c) a real fleet-wide failure during the cut ---------------------------------------

/// `w0` is cut off while every worker's calls fail: the two connected ones trip the
/// fleet's breaker (the fleet DOES open) and then stop calling; `w0` goes on failing on
/// its local fallback, whose failed trials re-open it at ever newer generations (ahead of
/// the fleet's). After the heal, `w0` follows the fleet's record, and nothing it decided
/// alone reached the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_wide_failure_during_the_cut_opens_the_fleet_and_the_cut_off_one_follows() {
    let test = "fleet-wide";
    // A short open time: w0's fallback re-opens twice or more during the cut.
    let rules = Rules::consecutive(Duration::from_millis(1500));
    let server = RedisServer::start();
    let ns = namespace(test);
    let mut fleet = start(&server, &ns, 3, &rules).await;
    let mut direct = connect_direct(server.port()).await;
    let watch = RecordWatch::start(&server, &ns).await;
    let t0 = unix_us();

    let cut_at = unix_us();
    fleet[0].1.set(Mode::Blackhole);
    fleet[0].0.send("go 200 fail 20").await;
    for (worker, _) in &mut fleet[1..] {
        worker.send("go 10 fail 20").await;
    }
    let mut done = Vec::new();
    for (worker, _) in &mut fleet {
        done.push(worker.done().await);
    }
    fleet[0].1.set(Mode::Pass);
    let healed_at = unix_us();

    let back = wait_on_redis(
        &mut fleet[0].0,
        &mut direct,
        &ns,
        rules.reset + SETTLE_WITHIN,
    )
    .await;
    let back_at = unix_us();
    let record_opened = watch.first_opened();
    let generations = watch.generations();
    let record_text = watch.describe(t0);
    drop(watch);
    let workers: Vec<&Worker> = fleet.iter().map(|(w, _)| w).collect();
    let names = instance_names(&mut direct, &ns, &workers, SETTLE_WITHIN).await;
    let entries = history(&mut direct, &ns).await;
    assert_all_named(test, &names, workers.len());

    eprintln!("--- {test} ---");
    eprintln!(
        "cut at +{} ms, healed at +{} ms; w0 back on Redis: {:?} (at +{} ms)",
        ms_since(t0, cut_at),
        ms_since(t0, healed_at),
        back.as_ref().map(|(took, s, _)| (took, s.clone())),
        ms_since(t0, back_at)
    );
    for ((worker, _), done) in fleet.iter().zip(&done) {
        let calls = worker.calls();
        eprintln!(
            "{}: {done:?}; calls from +{} to +{} ms; events {:?}",
            worker.id,
            calls.first().map_or(0, |(at, _)| ms_since(t0, *at)),
            calls.last().map_or(0, |(at, _)| ms_since(t0, *at)),
            worker.events()
        );
    }
    eprintln!("the record:\n{record_text}");
    eprintln!("history:\n{}", describe_history(&entries, &names, t0));

    // The fleet opened, during the cut, by the connected processes.
    let (opened_at, _) = record_opened.unwrap_or_else(|| {
        panic!("{test}: the fleet's breaker never opened although every process failed")
    });
    assert!(
        opened_at < healed_at,
        "{test}: the fleet's record opened only at +{} ms, after the heal (+{} ms)",
        ms_since(t0, opened_at),
        ms_since(t0, healed_at)
    );
    let first_trip = entries
        .iter()
        .find(|e| e.from == "closed" && e.to == "open")
        .unwrap_or_else(|| panic!("{test}: no trip in the history"));
    let tripper = names.get(&first_trip.process).map(String::as_str);
    assert!(
        matches!(tripper, Some("w1" | "w2")),
        "{test}: the fleet's trip was written by {tripper:?} ({}), not by a connected \
         process; history:\n{}",
        first_trip.process,
        describe_history(&entries, &names, t0)
    );
    // Nothing w0 decided on its fallback reached the record: it wrote no history (it made
    // no call once healed), and every generation the record showed is explained.
    let by_w0: Vec<&HistoryEntry> = entries
        .iter()
        .filter(|e| names.get(&e.process).map(String::as_str) == Some("w0"))
        .collect();
    assert!(
        by_w0.is_empty(),
        "{test}: the cut-off w0 wrote to the fleet's history: {by_w0:#?}"
    );
    assert_generations_explained(test, &generations, &entries, &names, t0);

    // After the heal, w0 follows the fleet's record.
    let (took, state, record) = back.unwrap_or_else(|| {
        panic!(
            "{test}: w0 did not follow the fleet's record within {:?} of the heal; story: {:#?}",
            rules.reset + SETTLE_WITHIN,
            fleet[0].0.story()
        )
    });
    eprintln!("{test}: w0 follows the fleet {took:?} after the heal: {state:?} = {record:?}");
}

// ----- (d) a whole-fleet outage and heal --------------------------------------------------

/// Every worker's proxy is blackholed for ~3 s while they call a healthy downstream: no
/// call is rejected anywhere; after the heal every worker reads the record from Redis
/// again, and a trip by one of them reaches all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_fleet_outage_rejects_nothing_and_everyone_comes_back() {
    let test = "outage";
    let rules = Rules::consecutive(Duration::from_secs(10));
    let server = RedisServer::start();
    let ns = namespace(test);
    let mut fleet = start(&server, &ns, 3, &rules).await;
    let mut direct = connect_direct(server.port()).await;
    let watch = RecordWatch::start(&server, &ns).await;
    let t0 = unix_us();

    for (worker, _) in &mut fleet {
        worker.send("go 250 ok 20").await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cut_at = unix_us();
    for (_, proxy) in &fleet {
        proxy.set(Mode::Blackhole);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (_, proxy) in &fleet {
        proxy.set(Mode::Pass);
    }
    let healed_at = unix_us();
    let mut done = Vec::new();
    for (worker, _) in &mut fleet {
        done.push(worker.done().await);
    }
    eprintln!(
        "--- {test} --- cut at +{} ms, healed at +{} ms",
        ms_since(t0, cut_at),
        ms_since(t0, healed_at)
    );
    for ((worker, _), done) in fleet.iter().zip(&done) {
        eprintln!("{}: {done:?}; events {:?}", worker.id, worker.events());
        assert_eq!(
            totals(done).2,
            0,
            "{test}: {} rejected calls during a whole-fleet outage with a healthy \
             downstream: {done:?}; story: {:#?}",
            worker.id,
            worker.story()
        );
        assert!(
            worker.events().is_empty(),
            "{test}: {}'s view changed: {:?}",
            worker.id,
            worker.events()
        );
    }

    // Everyone back on Redis.
    for (worker, _) in &mut fleet {
        let back = wait_on_redis(worker, &mut direct, &ns, SETTLE_WITHIN).await;
        let (took, state, _) = back.unwrap_or_else(|| {
            panic!(
                "{test}: {} did not read the record from Redis within {SETTLE_WITHIN:?} of the \
                 heal; story: {:#?}",
                worker.id,
                worker.story()
            )
        });
        eprintln!(
            "{test}: {} back on Redis after {took:?}: {state:?}",
            worker.id
        );
    }

    // A trip by w0 reaches everyone: they follow the fleet again.
    let marks: Vec<usize> = fleet.iter().map(|(w, _)| w.seen.len()).collect();
    fleet[0].0.send("go 6 fail 0").await;
    fleet[0].0.done().await;
    let tripped_at = unix_us();
    for ((worker, _), mark) in fleet.iter_mut().zip(marks) {
        let seen = worker.event(mark, "closed", "open", SETTLE_WITHIN).await;
        let at = seen.unwrap_or_else(|| {
            panic!(
                "{test}: {} did not see w0's trip within {SETTLE_WITHIN:?}; story: {:#?}",
                worker.id,
                worker.story()
            )
        });
        eprintln!(
            "{test}: {} saw the trip at +{} ms ({} ms after w0's DONE)",
            worker.id,
            ms_since(t0, at),
            ms_since(tripped_at, at)
        );
        assert!(
            !worker.probe().await,
            "{test}: {}'s call passed after the trip",
            worker.id
        );
    }
    let record = read_record(&mut direct, &ns).await.expect("a record");
    assert_eq!(
        record.state_name(),
        "open",
        "{test}: the fleet's record after w0's trip"
    );
    let generations = watch.generations();
    drop(watch);
    let workers: Vec<&Worker> = fleet.iter().map(|(w, _)| w).collect();
    let names = instance_names(&mut direct, &ns, &workers, SETTLE_WITHIN).await;
    let entries = history(&mut direct, &ns).await;
    eprintln!("history:\n{}", describe_history(&entries, &names, t0));
    assert_all_named(test, &names, workers.len());
    let trips: Vec<&HistoryEntry> = entries.iter().filter(|e| e.to == "open").collect();
    assert!(
        trips.len() == 1 && names.get(&trips[0].process).map(String::as_str) == Some("w0"),
        "{test}: expected one trip, by w0; history:\n{}",
        describe_history(&entries, &names, t0)
    );
    assert_generations_explained(test, &generations, &entries, &names, t0);
}

// ----- (e) commands pass, events are lost -------------------------------------------------

/// `w1`'s pub/sub replies are dropped (its commands pass): when `w0` trips the fleet,
/// `w1` learns of it from its periodic resync, within one resync interval (+ slack);
/// `w2`, whose events arrive, is the control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_events_converge_within_one_resync_interval() {
    let test = "lost-events";
    let rules = Rules::consecutive(Duration::from_secs(20));
    let server = RedisServer::start();
    let ns = namespace(test);
    let mut fleet = start(&server, &ns, 3, &rules).await;
    let mut direct = connect_direct(server.port()).await;

    // The subscriptions are up (the proxy saw w1's and w2's SUBSCRIBE).
    for (worker, proxy) in &fleet[1..] {
        let subscribed =
            support::calls::eventually(SETTLE_WITHIN, Duration::from_millis(20), async || {
                proxy.subscriber_connections() == 1
            })
            .await;
        assert!(
            subscribed,
            "{test}: {} never subscribed through its proxy",
            worker.id
        );
    }
    fleet[1].1.set(Mode::DropPubSub);

    let marks: Vec<usize> = fleet.iter().map(|(w, _)| w.seen.len()).collect();
    fleet[0].0.send("go 6 fail 0").await;
    let tripped = fleet[0]
        .0
        .event(marks[0], "closed", "open", ANSWER_WITHIN)
        .await
        .expect("w0 tripped the breaker");
    fleet[0].0.done().await;
    // Generous: the interval has ±20 % jitter, then a read of the change log and of the
    // record, on a loaded machine.
    let bound = RESYNC * 6 / 5 + Duration::from_secs(2);
    let lost = fleet[1]
        .0
        .event(marks[1], "closed", "open", bound + SETTLE_WITHIN)
        .await;
    let control = fleet[2]
        .0
        .event(marks[2], "closed", "open", SETTLE_WITHIN)
        .await;
    let latency =
        |at: Option<u128>| at.map(|at| Duration::from_micros((at.saturating_sub(tripped)) as u64));
    eprintln!(
        "--- {test} --- w1 (events dropped) saw the trip after {:?}; w2 (events pass) after {:?}; \
         the proxy discarded {} bytes to w1's subscriber (resync interval {RESYNC:?}, bound {bound:?})",
        latency(lost),
        latency(control),
        fleet[1].1.discarded_bytes()
    );
    assert!(
        fleet[1].1.discarded_bytes() > 0,
        "{test}: the proxy discarded nothing on w1's subscriber connection (was the event sent?)"
    );
    let took = latency(lost).unwrap_or_else(|| {
        panic!(
            "{test}: w1 never saw the trip without its events; story: {:#?}",
            fleet[1].0.story()
        )
    });
    assert!(
        took <= bound,
        "{test}: w1 took {took:?} to see the trip without events (bound: one resync interval \
         {RESYNC:?} + jitter + slack = {bound:?}); story: {:#?}",
        fleet[1].0.story()
    );
    assert!(latency(control).is_some(), "{test}: w2 never saw the trip");
    assert!(
        !fleet[1].0.probe().await,
        "{test}: w1's call passed after the trip"
    );
    let record = read_record(&mut direct, &ns).await.expect("a record");
    assert_eq!(record.state_name(), "open");
}

// ----- (f) a Sentinel failover that loses the last write ---------------------------------

/// Workers on a Sentinel set whose replica replicates through a fault proxy: the test
/// holds replication back, lets the fleet write (a trip, or a trial's acquisition) that
/// only the master gets, and kills the master: the Sentinels promote the replica, which
/// never saw that write.
struct LaggingFailover {
    test: &'static str,
    set: SentinelSet,
    ns: String,
    workers: Vec<Worker>,
    rules: Rules,
    t0: u128,
}

impl LaggingFailover {
    async fn start(test: &'static str, rules: Rules) -> LaggingFailover {
        let set = SentinelSet::start_with(SentinelOptions {
            replication_proxy: true,
            ..SentinelOptions::default()
        });
        let ns = namespace(test);
        let store = format!("sentinel:{MASTER_NAME}@{}", set.urls().join(","));
        let mut workers: Vec<Worker> = (0..3)
            .map(|i| Worker::spawn(&store, &ns, &format!("w{i}"), &rules))
            .collect();
        for worker in &mut workers {
            worker.expect("READY").await;
        }
        LaggingFailover {
            test,
            set,
            ns,
            workers,
            rules,
            t0: unix_us(),
        }
    }

    fn master(&self) -> u16 {
        self.set.master_port()
    }

    fn replica(&self) -> u16 {
        let master = self.master();
        self.set
            .servers
            .iter()
            .map(RedisServer::port)
            .find(|p| *p != master)
            .expect("a replica")
    }

    async fn record_on(&self, port: u16) -> Option<Record> {
        read_record(&mut connect_direct(port).await, &self.ns).await
    }

    /// Waits until the replica holds what the master holds (replication flowing).
    async fn wait_replicated(&self) {
        let (master, replica) = (self.master(), self.replica());
        let mut last = (None, None);
        let synced =
            support::calls::eventually(SETTLE_WITHIN, Duration::from_millis(50), async || {
                last = (self.record_on(master).await, self.record_on(replica).await);
                last.0.is_some() && last.0 == last.1
            })
            .await;
        assert!(
            synced,
            "{}: the replica did not catch up with the master: {last:?}",
            self.test
        );
    }

    fn hold_replication(&self) {
        self.set
            .replication
            .as_ref()
            .expect("a replication proxy")
            .set(Mode::Blackhole);
    }

    /// Kills the master and waits for the Sentinels to promote the replica, then watches
    /// the record on the new master.
    async fn fail_over(&mut self) -> Failover {
        let replica = self.replica();
        let killed_at = unix_us();
        let old = self.set.kill_master();
        let new = self.set.wait_failover(old, Duration::from_secs(30));
        assert_eq!(new, replica, "{}: another server became master", self.test);
        let at = unix_us();
        let watch = RecordWatch::start(self.set.server(new), &self.ns).await;
        eprintln!("{}: failed over to {new} at +{} ms", self.test, self.ms(at));
        Failover {
            new,
            killed_at,
            at,
            watch,
        }
    }

    fn ms(&self, at: u128) -> i128 {
        ms_since(self.t0, at)
    }
}

/// A failover of a [`LaggingFailover`].
struct Failover {
    /// The new master's port.
    new: u16,
    /// When the old master was killed.
    killed_at: u128,
    /// When the new master was known.
    at: u128,
    /// The record on the new master, from `at` on.
    watch: RecordWatch,
}

/// What a failover lost, for [`assert_recovers`].
struct Lost {
    /// What it was, for the messages: "the trip".
    what: &'static str,
    /// Its short name, for the messages: "trip".
    name: &'static str,
    /// Whether a history entry re-does it.
    redone_by: fn(&HistoryEntry) -> bool,
}

/// A trial call: `(start_us, end_us, verdict, worker, kind)`.
type TrialCall = (u128, u128, String, String, String);

/// Every trial call of the fleet, by start.
fn all_trials(workers: &[Worker]) -> Vec<TrialCall> {
    let mut trials: Vec<TrialCall> = workers
        .iter()
        .flat_map(|w| {
            w.trials()
                .into_iter()
                .map(|(start, end, verdict, kind)| (start, end, verdict, w.id.clone(), kind))
        })
        .collect();
    trials.sort();
    trials
}

fn describe_trials(trials: &[TrialCall], t0: u128) -> Vec<String> {
    trials
        .iter()
        .map(|(s, e, v, w, k)| {
            format!("{w} +{}..+{} {v} ({k})", ms_since(t0, *s), ms_since(t0, *e))
        })
        .collect()
}

/// No trial call that Redis granted started while another one it granted was still
/// running within its lease (past the lease, the slot is free by design). A trial the
/// local fallback granted while its process was degraded is that process's own.
fn assert_no_double_trial(test: &str, trials: &[TrialCall], lease: Duration, t0: u128) {
    let fleet: Vec<&TrialCall> = trials.iter().filter(|t| t.4 == "fleet").collect();
    for pair in fleet.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            b.0 >= a.1 || b.0 >= a.0 + lease.as_micros(),
            "{test}: double trial: {}'s trial (+{}..+{} ms) started while {}'s (+{}..+{} ms) \
             was running within its lease ({lease:?}), both granted by Redis; every trial: {:?}",
            b.3,
            ms_since(t0, b.0),
            ms_since(t0, b.1),
            a.3,
            ms_since(t0, a.0),
            ms_since(t0, a.1),
            describe_trials(trials, t0)
        );
    }
}

/// Every worker went degraded when the master died and came back on Redis after the
/// failover (the `HEALTH` lines its trials are classified by).
fn assert_went_down_and_up(test: &str, workers: &[Worker], killed_at: u128) {
    for worker in workers {
        let health = worker.health();
        let down = health.iter().position(|(at, up)| !up && *at >= killed_at);
        let up_again = down.is_some_and(|i| health[i..].iter().any(|(_, up)| *up));
        assert!(
            up_again,
            "{test}: {} did not report its fleet layer going down at the failover and back up \
             (HEALTH lines {health:?}; did the library's \"Redis unavailable\" / \"Redis \
             available again\" messages change?)",
            worker.id
        );
    }
}

/// The breaker closes again, and every worker's calls pass, within `within` of `from`
/// (every worker is `run`ning calls to a healthy downstream meanwhile). Answers how long
/// after `from` the record was seen closed.
async fn assert_not_wedged(
    f: &mut LaggingFailover,
    master: u16,
    from: u128,
    within: Duration,
) -> Duration {
    let test = f.test;
    let ns = f.ns.clone();
    let mut direct = connect_direct(master).await;
    let elapsed = Duration::from_micros(unix_us().saturating_sub(from) as u64);
    let deadline = Instant::now() + within.saturating_sub(elapsed);
    let closed_at = loop {
        let record = read_record(&mut direct, &ns).await;
        if record.as_ref().is_some_and(|r| r.state == 0) {
            break unix_us();
        }
        if Instant::now() >= deadline {
            let stories: Vec<(&str, Vec<&str>)> = f
                .workers
                .iter()
                .map(|w| (w.id.as_str(), w.story()))
                .collect();
            panic!(
                "{test}: the breaker did not close within {within:?} (open time {:?} + trial \
                 lease + slack) although the downstream is healthy and every worker calls: \
                 wedged; the record: {record:?}; stories: {stories:#?}",
                f.rules.reset
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for worker in &mut f.workers {
        let id = worker.id.clone();
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
        let passed = worker
            .wait_line(0, left, "a passing call", |w| {
                matches!(w, ["CALL", who, at, "ok"] if *who == id
                    && at.parse::<u128>().is_ok_and(|at| at >= closed_at))
            })
            .await;
        assert!(
            passed.is_some(),
            "{test}: {id}'s calls are still rejected with the fleet's record closed; story: {:#?}",
            worker.story()
        );
    }
    Duration::from_micros(closed_at.saturating_sub(from) as u64)
}

/// Stops every worker's `run`.
async fn stop_all(workers: &mut [Worker]) {
    for worker in workers.iter_mut() {
        worker.send("stop").await;
        worker.expect("STOPPED").await;
    }
}

/// The new master's history: says how the record changed after the failover.
async fn report_history(
    f: &LaggingFailover,
    master: u16,
) -> (Vec<HistoryEntry>, BTreeMap<String, String>) {
    let mut direct = connect_direct(master).await;
    let workers: Vec<&Worker> = f.workers.iter().collect();
    // Only to name the writers in the report: announcements may be lost with the master.
    let names = instance_names(&mut direct, &f.ns, &workers, Duration::from_secs(2)).await;
    let entries = history(&mut direct, &f.ns).await;
    eprintln!(
        "{}: the new master's history:\n{}",
        f.test,
        describe_history(&entries, &names, f.t0)
    );
    (entries, names)
}

/// What a history entry written when a process's view replaced a record says.
fn is_replacement(e: &HistoryEntry) -> bool {
    matches!(e.reason.as_str(), "replaced_after_failover" | "reseeded")
}

/// The end of a failover test, once every worker calls a healthy downstream: the breaker
/// closes on the new master within the open time + the trial lease + 5 s of `from`
/// (`since`: what happened at `from`, for the report), every worker went down and came
/// back, no two trials overlapped, the new master's history says what happened to what
/// the failover `lost` (since the failover: a replacement, or an entry re-doing it), and
/// every generation the record showed is explained.
async fn assert_recovers(
    f: &mut LaggingFailover,
    failover: Failover,
    from: u128,
    since: &str,
    lost: Lost,
) {
    let test = f.test;
    let Failover {
        new,
        killed_at,
        watch,
        ..
    } = failover;
    let bound = f.rules.reset + f.rules.trial_lease.unwrap() + Duration::from_secs(5);
    let closed_after = assert_not_wedged(f, new, from, bound).await;
    stop_all(&mut f.workers).await;
    let generations = watch.generations();
    eprintln!(
        "{test}: the record on the new master:\n{}",
        watch.describe(f.t0)
    );
    drop(watch);
    let trials = all_trials(&f.workers);
    eprintln!(
        "{test}: closed {closed_after:?} after {since}; trials: {:?}",
        describe_trials(&trials, f.t0)
    );
    for worker in &f.workers {
        eprintln!(
            "{}: {:?}; health {:?}",
            worker.id,
            worker.events(),
            worker.health()
        );
    }
    let (entries, names) = report_history(f, new).await;

    assert_went_down_and_up(test, &f.workers, killed_at);
    assert_no_double_trial(test, &trials, f.rules.trial_lease.unwrap(), f.t0);
    let since_failover: Vec<&HistoryEntry> = entries
        .iter()
        .filter(|e| e.at_ms >= killed_at / 1000)
        .collect();
    assert!(
        since_failover
            .iter()
            .any(|e| is_replacement(e) || (lost.redone_by)(e)),
        "{test}: the new master's history does not say what happened to {} the failover \
         lost (since the failover: no replaced_after_failover / reseeded entry, no re-done \
         {}):\n{}",
        lost.what,
        lost.name,
        describe_history(&entries, &names, f.t0)
    );
    assert_generations_explained(test, &generations, &entries, &names, f.t0);
}

/// The trip reaches only the master; the replica becomes master without it. The
/// processes saw the trip (from Redis): after the failover the fleet must not forget it
/// silently nor wedge, and the history must say how the record got its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_loses_the_trip() {
    let test = "failover-trip";
    let rules = Rules {
        fail_max: 3,
        call_ms: 100,
        trial_lease: Some(Duration::from_secs(5)),
        ..Rules::consecutive(Duration::from_secs(2))
    };
    let mut f = LaggingFailover::start(test, rules).await;
    f.wait_replicated().await;
    let before = f.record_on(f.master()).await.expect("a record");

    // The trip, on the master only.
    f.hold_replication();
    let marks: Vec<usize> = f.workers.iter().map(|w| w.seen.len()).collect();
    f.workers[0].send("go 3 fail 0").await;
    f.workers[0].done().await;
    let on_master = f
        .record_on(f.master())
        .await
        .expect("a record on the master");
    let on_replica = f
        .record_on(f.replica())
        .await
        .expect("a record on the replica");
    eprintln!("{test}: before {before:?}; master {on_master:?}; replica {on_replica:?}");
    assert_eq!(
        on_master.state_name(),
        "open",
        "{test}: w0's calls did not trip"
    );
    assert_eq!(on_replica, before, "{test}: the trip reached the replica");
    for (worker, mark) in f.workers.iter_mut().zip(&marks) {
        let saw = worker.event(*mark, "closed", "open", SETTLE_WITHIN).await;
        assert!(saw.is_some(), "{test}: {} never saw the trip", worker.id);
    }

    // The failover loses it.
    let failover = f.fail_over().await;

    // The downstream is healthy: everyone calls.
    for worker in &mut f.workers {
        worker.send("run ok 50").await;
    }
    let from = failover.at;
    let lost = Lost {
        what: "the trip",
        name: "trip",
        redone_by: |e| e.to == "open",
    };
    assert_recovers(&mut f, failover, from, "the failover", lost).await;
}

/// The breaker is open on both servers; then `w0` takes the trial on the master only (its
/// call is held in flight) and the master dies: the promoted replica never saw the trial.
/// While `w0`'s trial is still running, no other trial may start; once it ends the
/// breaker must close (not wedge), and the history must say what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_loses_the_trial_acquisition() {
    let test = "failover-trial";
    let rules = Rules {
        fail_max: 3,
        call_ms: 100,
        trial_lease: Some(Duration::from_secs(10)),
        ..Rules::consecutive(Duration::from_secs(1))
    };
    let mut f = LaggingFailover::start(test, rules).await;

    // The trip, replicated.
    f.workers[1].send("go 3 fail 0").await;
    f.workers[1].done().await;
    f.wait_replicated().await;
    let tripped = f.record_on(f.master()).await.expect("a record");
    assert_eq!(
        tripped.state_name(),
        "open",
        "{test}: w1's calls did not trip"
    );

    // The trial, on the master only, held in flight.
    f.hold_replication();
    tokio::time::sleep(f.rules.reset + Duration::from_millis(300)).await;
    let marks: Vec<usize> = f.workers.iter().map(|w| w.seen.len()).collect();
    f.workers[0].send("hold ok").await;
    let held = f.workers[0].expect("HELD").await;
    assert_eq!(
        held[1], "trial",
        "{test}: w0's held call is not the trial: {held:?}"
    );
    let held_at: u128 = held[0].parse().unwrap();
    let on_master = f
        .record_on(f.master())
        .await
        .expect("a record on the master");
    let on_replica = f
        .record_on(f.replica())
        .await
        .expect("a record on the replica");
    eprintln!("{test}: master {on_master:?}; replica {on_replica:?}");
    assert_eq!(
        on_master.state_name(),
        "half-open",
        "{test}: the trial is not on the master"
    );
    assert_eq!(on_replica, tripped, "{test}: the trial reached the replica");
    for (worker, mark) in f.workers[1..].iter_mut().zip(&marks[1..]) {
        let saw = worker
            .event(*mark, "open", "half-open", SETTLE_WITHIN)
            .await;
        assert!(
            saw.is_some(),
            "{test}: {} never saw the trial taken",
            worker.id
        );
    }

    // The others call a healthy downstream meanwhile; the master dies.
    for worker in &mut f.workers[1..] {
        worker.send("run ok 50").await;
    }
    let failover = f.fail_over().await;
    let killed_at = failover.killed_at;

    // w0's trial runs on past the failover, while the others are back on the new master
    // (their fleet layer says so) and keep calling.
    for worker in &mut f.workers[1..] {
        let id = worker.id.clone();
        let up = worker
            .wait_line(0, SETTLE_WITHIN, "HEALTH up", |w| {
                matches!(w, ["HEALTH", who, at, "up"] if *who == id
                    && at.parse::<u128>().is_ok_and(|at| at >= killed_at))
            })
            .await;
        assert!(
            up.is_some(),
            "{test}: {id} did not come back on Redis within {SETTLE_WITHIN:?} of the failover \
             (while w0's trial was held); story: {:#?}",
            worker.story()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    f.workers[0].send("release").await;
    let released = f.workers[0].expect("RELEASED").await;
    let released_at: u128 = released[0].parse().unwrap();
    eprintln!(
        "{test}: w0's trial held from +{} to +{} ms",
        f.ms(held_at),
        f.ms(released_at)
    );
    f.workers[0].send("run ok 50").await;
    let lost = Lost {
        what: "the trial's acquisition",
        name: "acquisition",
        redone_by: |e| e.from == "open" && e.to == "half-open",
    };
    assert_recovers(&mut f, failover, released_at, "w0's trial ended", lost).await;
}
