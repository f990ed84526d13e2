//! Trip propagation: how long after the failing call fails the other members of the fleet
//! are told the breaker opened, across real OS processes, and, in the same run for
//! comparison, between registries of this one process.
//!
//! ```text
//! cargo bench -p infuse-bench --bench propagation       # 200 trips per mode
//! cargo test -p infuse-bench --bench propagation        # smoke run, 10 trips per mode
//! ```
//!
//! The binary starts its own `redis-server` (on a free port, never the system one) and:
//!
//! - **processes**: [`WORKERS`] `infuse-propagation-worker` processes (`src/bin/`), each
//!   with its own [`Registry`] on `Config::redis(url)` in namespace `prop-processes`, and
//!   a listener that reads `CLOCK_MONOTONIC` when `on_state_change(_, _, Open)` is
//!   called and prints it; the trip is made here, by a registry of this process in the
//!   same namespace;
//! - **one process**: [`WORKERS`] registries of *this* process (each with its own Redis
//!   connections and pub/sub subscription, on this process's 2-thread tokio runtime) in
//!   namespace `prop-one-process`, with the same listener, plus a tripping registry.
//!
//! Each trip: close the breaker and wait until every listener of that mode was told it
//! closed; then one failing call through the tripping registry (`fail_max = 1`) trips
//! it. Its guarded future reads `CLOCK_MONOTONIC` in its body, just before it returns
//! its error (before the breaker records the failure); the call's own result
//! (`error_on_trip`) confirms that this call tripped the breaker. Latency = the
//! listener's reading − that reading. `CLOCK_MONOTONIC` is one system-wide clock on
//! Linux, so readings of different processes subtract. The modes alternate trip by trip
//! (different namespaces, so each trip wakes only its own mode's listeners), so both see
//! the same machine load. Every registry gives Redis a 500 ms deadline, so that a loaded
//! machine does not move one to its local fallback (out of the fleet).
//!
//! The figures include the tripping registry's Redis round trip (the failure is recorded
//! with a script, whose write is published), Redis's publish, and each listener's
//! process being scheduled; on a machine with fewer cores than processes the last one
//! dominates.

use infuse_bench::AppError;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use infuse::{
    Breaker, BreakerError, CallOptions, Config, Listener, Registry, ServiceOverride, State,
};
use infuse_bench::monotonic_ns;
use infuse_tests::support::redis_server::RedisServer;

/// Listener processes, and listener registries of the one-process mode.
const WORKERS: usize = 3;
const SERVICE: &str = "propagation";
/// How long to wait for every listener to hear of a change.
const WAIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Mode {
    Processes,
    OneProcess,
}

impl Mode {
    fn namespace(self) -> &'static str {
        match self {
            Mode::Processes => "prop-processes",
            Mode::OneProcess => "prop-one-process",
        }
    }
}

/// One listener's `on_state_change`: mode, listener index, the new state, its
/// `CLOCK_MONOTONIC` reading.
struct Event {
    mode: Mode,
    index: usize,
    to: State,
    at_ns: u64,
}

/// The one-process mode's listener: the same reading as the worker's, sent here.
struct Stamp {
    index: usize,
    events: Sender<Event>,
}

impl Listener for Stamp {
    fn on_state_change(&self, _service: &str, _from: State, to: State) {
        let at_ns = monotonic_ns();
        let _ = self.events.send(Event {
            mode: Mode::OneProcess,
            index: self.index,
            to,
            at_ns,
        });
    }
}

fn config(server: &RedisServer, mode: Mode) -> Config {
    Config::redis(server.url())
        .namespace(mode.namespace())
        .env_overrides(false)
        .redis_call_timeout(Duration::from_millis(500))
        .service(
            SERVICE,
            ServiceOverride::new()
                .fail_max(1)
                .reset_timeout(Duration::from_secs(600)),
        )
}

/// The worker processes; their stdin is kept open until they are dropped.
struct Workers {
    children: Vec<(Child, Option<ChildStdin>)>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for (child, stdin) in &mut self.children {
            drop(stdin.take()); // EOF: the worker exits
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts the workers; a thread per worker turns its `STATE` lines into events, and
/// `ready` receives one message per `READY`.
fn start_workers(server: &RedisServer, events: &Sender<Event>) -> (Workers, Receiver<usize>) {
    let (ready_tx, ready) = channel();
    let mut children = Vec::new();
    for index in 0..WORKERS {
        let id = format!("w{index}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_infuse-propagation-worker"))
            .args([
                server.url().as_str(),
                Mode::Processes.namespace(),
                SERVICE,
                id.as_str(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning infuse-propagation-worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (events, ready_tx) = (events.clone(), ready_tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let words: Vec<&str> = line.split_whitespace().collect();
                match words.as_slice() {
                    ["READY", _] => {
                        let _ = ready_tx.send(index);
                    }
                    ["STATE", _, to, at] => {
                        let (Ok(to), Ok(at_ns)) = (State::from_str(to), at.parse()) else {
                            panic!("worker {index}: bad line {line:?}");
                        };
                        let _ = events.send(Event {
                            mode: Mode::Processes,
                            index,
                            to,
                            at_ns,
                        });
                    }
                    _ => eprintln!("worker {index}: unexpected line {line:?}"),
                }
            }
        });
        children.push((child, stdin));
    }
    (Workers { children }, ready)
}

/// What every listener was last told, per mode.
struct Tracker {
    events: Receiver<Event>,
    state: HashMap<(Mode, usize), State>,
    opened_at: HashMap<(Mode, usize), u64>,
}

impl Tracker {
    fn take(&mut self, event: Event) {
        let key = (event.mode, event.index);
        if event.to == State::Open {
            self.opened_at.insert(key, event.at_ns);
        }
        self.state.insert(key, event.to);
    }

    /// Takes events until every listener of `mode` was last told `state`, or `WAIT`.
    fn wait_all(&mut self, mode: Mode, state: State) -> bool {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Ok(event) = self.events.try_recv() {
                self.take(event);
            }
            if (0..WORKERS).all(|i| self.state.get(&(mode, i)) == Some(&state)) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.take(event),
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => panic!("every listener is gone"),
            }
        }
    }
}

#[derive(Default)]
struct Samples {
    /// Listener's reading − the reading inside the failing call, ns, every listener of
    /// every trip.
    latency: Vec<i64>,
    /// The tripping call's return − the reading inside it, ns (its own Redis round trip).
    own_return: Vec<i64>,
    /// Listener samples taken before the tripping call returned.
    before_return: usize,
    /// Trips some listener was not told of within `WAIT`.
    missing: usize,
    trips: usize,
}

/// Closes the breaker and waits until every listener of `mode` knows.
fn close(rt: &tokio::runtime::Runtime, tracker: &mut Tracker, mode: Mode, breaker: &Breaker) {
    rt.block_on(breaker.close()).expect("close");
    assert!(
        tracker.wait_all(mode, State::Closed),
        "{mode:?}: not every listener learned of the close within {WAIT:?}"
    );
    for i in 0..WORKERS {
        tracker.opened_at.remove(&(mode, i));
    }
}

/// One trip of `mode`, measured.
fn trip(
    rt: &tokio::runtime::Runtime,
    tracker: &mut Tracker,
    mode: Mode,
    breaker: &Breaker,
    out: &mut Samples,
) {
    close(rt, tracker, mode, breaker);
    let inside = AtomicU64::new(0);
    let result: Result<(), AppError> = rt.block_on(breaker.call_with(
        CallOptions::new().error_on_trip(true),
        async {
            // The failing call's body: its timestamp, then its error.
            inside.store(monotonic_ns(), Ordering::Relaxed);
            Err(AppError::Failed)
        },
    ));
    let returned = monotonic_ns();
    assert!(
        matches!(result, Err(AppError::Breaker(BreakerError::Tripped { .. }))),
        "{mode:?}: the failing call did not trip the breaker: {result:?}"
    );
    let inside = inside.load(Ordering::Relaxed);
    out.trips += 1;
    out.own_return.push(returned as i64 - inside as i64);
    if !tracker.wait_all(mode, State::Open) {
        out.missing += 1;
    }
    for i in 0..WORKERS {
        if let Some(&at) = tracker.opened_at.get(&(mode, i)) {
            out.latency.push(at as i64 - inside as i64);
            if at < returned {
                out.before_return += 1;
            }
        }
    }
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(ns: i64) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

fn summary(values: &[i64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    format!(
        "p50 {} / p99 {} / max {} (min {}, {} samples)",
        ms(percentile(&sorted, 0.5)),
        ms(percentile(&sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default()),
        ms(sorted.first().copied().unwrap_or_default()),
        sorted.len()
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let trips = if bench { 200 } else { 10 };
    let load_before = load_average();
    let server = RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let (events_tx, events) = channel();
    let (workers, ready) = start_workers(&server, &events_tx);
    let (processes, one_process, _listeners) = rt.block_on(async {
        let processes = Registry::new(config(&server, Mode::Processes))
            .await
            .expect("Redis registry");
        let one_process = Registry::new(config(&server, Mode::OneProcess))
            .await
            .expect("Redis registry");
        let mut listeners = Vec::new();
        for index in 0..WORKERS {
            let stamp = Arc::new(Stamp {
                index,
                events: events_tx.clone(),
            });
            let registry = Registry::new(config(&server, Mode::OneProcess).listener(stamp))
                .await
                .expect("Redis registry");
            let breaker = registry.breaker(SERVICE);
            let _: Result<(), BreakerError> = breaker.call(async { Ok(()) }).await;
            listeners.push((registry, breaker));
        }
        (processes, one_process, listeners)
    });
    drop(events_tx);
    for _ in 0..WORKERS {
        ready
            .recv_timeout(Duration::from_secs(10))
            .expect("a worker did not get ready within 10 s");
    }
    let breakers = [
        (Mode::Processes, processes.breaker(SERVICE)),
        (Mode::OneProcess, one_process.breaker(SERVICE)),
    ];
    let mut tracker = Tracker {
        events,
        // A new namespace: every breaker starts closed.
        state: [Mode::Processes, Mode::OneProcess]
            .into_iter()
            .flat_map(|m| (0..WORKERS).map(move |i| ((m, i), State::Closed)))
            .collect(),
        opened_at: HashMap::new(),
    };
    let mut samples: HashMap<Mode, Samples> = HashMap::new();
    for (mode, breaker) in &breakers {
        // Load the shared state (and warm the connections) before the first trip.
        let _: Result<(), BreakerError> = rt.block_on(breaker.call(async { Ok(()) }));
        trip(&rt, &mut tracker, *mode, breaker, &mut Samples::default()); // warm-up
    }
    for _ in 0..trips {
        for (mode, breaker) in &breakers {
            trip(
                &rt,
                &mut tracker,
                *mode,
                breaker,
                samples.entry(*mode).or_default(),
            );
        }
    }
    for (mode, breaker) in &breakers {
        close(&rt, &mut tracker, *mode, breaker);
    }
    drop(workers);
    rt.block_on(async move { drop((breakers, processes, one_process, _listeners)) });

    println!("\n=== trip propagation ===");
    println!(
        "latency = the listener's CLOCK_MONOTONIC reading in on_state_change(_, _, Open) − \
         the reading inside the failing call's body, just before it returned its error"
    );
    let mut rows = Vec::new();
    for (mode, label) in [
        (
            Mode::Processes,
            format!("to {WORKERS} other OS processes (one registry each)"),
        ),
        (
            Mode::OneProcess,
            format!("to {WORKERS} other registries of the tripping process"),
        ),
    ] {
        let s = &samples[&mode];
        println!(
            "{label}: {} trips, {}; {} trips not seen by every listener within {WAIT:?}, {} \
             samples before the tripping call returned",
            s.trips,
            summary(&s.latency),
            s.missing,
            s.before_return,
        );
        println!(
            "  the tripping call itself, reading inside it → its return: {}",
            summary(&s.own_return)
        );
        let mut sorted = s.latency.clone();
        sorted.sort_unstable();
        rows.push(format!(
            "| trip propagation {label}, from inside the failing call: p50 / p99 / max | {} / {} / {} | {} trips × {WORKERS} |",
            ms(percentile(&sorted, 0.5)),
            ms(percentile(&sorted, 0.99)),
            ms(sorted.last().copied().unwrap_or_default()),
            s.trips,
        ));
    }
    println!("\n| figure | value | samples |\n|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!(
        "load average: {load_before} at start, {} at end",
        load_average()
    );
    if !bench {
        println!("(smoke run: `cargo bench -p infuse-bench --bench propagation` for the figures)");
    }
    let _ = std::io::stdout().flush();
}
