//! One member of a fleet whose breaker has a failure-rate rule, as its own OS process:
//! `tests/fleet_rates.rs` starts several, tells them when to call (so that they call at
//! the same time), and checks that the rate rule counts the calls of the whole fleet.
//! `tests/fleet_authority.rs` drives it through a fault proxy.
//!
//! ```text
//! infuse-rate-worker <store> <namespace> <id> [failure_rate=50] [min_calls=20] \
//!     [min_instances=1] [fail_max=1000] [reset_timeout_ms=30000] [window_ms=10000] \
//!     [call_timeout_ms=500] [resync_ms=N] [trial_lease_ms=N] [call_ms=0]
//! ```
//!
//! `<store>` is a `redis://...` URL (the fleet's store), `sentinel:<master>@<url>,<url>,…`
//! (`Config::redis_sentinel`) or `memory` (this process's own store; `<namespace>` is
//! then unused). The breaker is `infuse::breaker("users")` with these settings;
//! `fail_max` defaults high, so that only the rate rule trips; `failure_rate=0` sets no
//! rate rule (only `fail_max` trips). `call_timeout_ms` is `Config::redis_call_timeout`,
//! `resync_ms` `Config::resync_interval` and `trial_lease_ms` `Config::trial_lease` (the
//! library's defaults when not given). Its calls are in-process futures that fail or
//! succeed as told, each taking `call_ms`: no downstream is involved.
//!
//! Once `init` succeeded it prints `READY <id> <unix_us>`, then reads commands on stdin,
//! one a line:
//!
//! - `go <calls> <pattern> <every_ms>`: makes `calls` calls, one every `every_ms` (0:
//!   back to back, yielding to the runtime between calls), `pattern` being `alternate`
//!   (the 1st, 3rd, 5th... call fails, so that every prefix of the calls fails at least
//!   half the time), `fail` or `ok`. Prints `CALL <id> <unix_us> <ok|failed|rejected>`
//!   per call, then waits ~300 ms (past the 100 ms flush of the counts) and prints
//!   `DONE <id> ok=<n> failed=<n> rejected=<n> last_failure_us=<unix_us or 0>`.
//! - `probe`: one succeeding call: `PROBE <id> <unix_us> <passed|rejected>`.
//! - `state`: `STATE <id> <state> view=<state> inc=<n> gen=<n> seq=<n>`: the store's
//!   state of the breaker (with Redis, the fleet's, or the local fallback's while Redis
//!   is unavailable) with the record's incarnation, generation and write count, and this
//!   process's view of it as its state changes told (which shows a breaker open for this
//!   process alone, see `min_instances`). Reading the store refreshes the view.
//! - `view`: `VIEW <id> <state>`: the view alone, without asking the store.
//! - `run <ok|fail> <every_ms>`: calls as `go` does (`CALL` lines), in the background (the
//!   commands go on), until `stop`, which prints
//!   `STOPPED <id> ok=<n> failed=<n> rejected=<n>` (after the flush wait).
//! - `hold <ok|fail>`: one call, admitted now and kept running while the commands go on:
//!   `HELD <id> <unix_us> <trial fleet|trial local|normal|rejected|failed>` once admitted
//!   (or not); it ends
//!   with the next `release`: `RELEASED <id> <unix_us> <ok|failed>` (not counted in the
//!   totals).
//! - `quit` (or end of input): prints
//!   `SUMMARY <id> ok=<n> failed=<n> rejected=<n> final=<state> view=<state>` and exits.
//!
//! Every state change of its breaker prints `EVENT <unix_us> <id> <from> <to>` and
//! `TRANSITION <unix_us> <id> <from> <to> <generation> <reason>`; every call that was the
//! half-open trial prints `TRIAL <id> <start_us> <end_us> <ok|failed> <fleet|local>` when
//! it ends (just before that call's `CALL` line, if it has one): `fleet` when Redis
//! granted it, `local` when the local fallback did (the process was degraded). Each time
//! the fleet layer goes degraded or back on Redis (as its log says) it prints
//! `HEALTH <id> <unix_us> <down|up>`. Exits 0 unless the arguments are
//! wrong (2) or `init` fails (1).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use infuse::{Breaker, Config, Listener, ServiceOverride, State, Transition};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;

const SERVICE: &str = "users";
/// After a `go`: past the background flush (at most every 100 ms) and its answer.
const FLUSH_WAIT: Duration = Duration::from_millis(300);
const USAGE: &str = "usage: infuse-rate-worker <redis://...|sentinel:<master>@<url>,...|memory> \
    <namespace> <id> [failure_rate=N] [min_calls=N] [min_instances=N] [fail_max=N] \
    [reset_timeout_ms=N] [window_ms=N] [call_timeout_ms=N] [resync_ms=N] [trial_lease_ms=N] \
    [call_ms=N]";

fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

struct Args {
    store: String,
    namespace: String,
    id: String,
    failure_rate: u32,
    min_calls: u32,
    min_instances: u32,
    fail_max: u32,
    reset_timeout: Duration,
    window: Duration,
    call_timeout: Duration,
    resync: Option<Duration>,
    trial_lease: Option<Duration>,
    call_latency: Duration,
}

fn parse_args() -> Result<Args, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [store, namespace, id, settings @ ..] = args.as_slice() else {
        return Err(format!("expected at least 3 arguments, got {}", args.len()));
    };
    let mut parsed = Args {
        store: store.clone(),
        namespace: namespace.clone(),
        id: id.clone(),
        failure_rate: 50,
        min_calls: 20,
        min_instances: 1,
        fail_max: 1000,
        reset_timeout: Duration::from_secs(30),
        window: Duration::from_secs(10),
        call_timeout: Duration::from_millis(500),
        resync: None,
        trial_lease: None,
        call_latency: Duration::ZERO,
    };
    for setting in settings {
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("{setting:?}: expected name=value"))?;
        let number: u32 = value
            .parse()
            .map_err(|_| format!("{name}: expected a whole number, got {value:?}"))?;
        match name {
            "failure_rate" => parsed.failure_rate = number,
            "min_calls" => parsed.min_calls = number,
            "min_instances" => parsed.min_instances = number,
            "fail_max" => parsed.fail_max = number,
            "reset_timeout_ms" => parsed.reset_timeout = Duration::from_millis(number.into()),
            "window_ms" => parsed.window = Duration::from_millis(number.into()),
            "call_timeout_ms" => parsed.call_timeout = Duration::from_millis(number.into()),
            "resync_ms" => parsed.resync = Some(Duration::from_millis(number.into())),
            "trial_lease_ms" => parsed.trial_lease = Some(Duration::from_millis(number.into())),
            "call_ms" => parsed.call_latency = Duration::from_millis(number.into()),
            _ => return Err(format!("unknown setting {name:?}")),
        }
    }
    Ok(parsed)
}

/// Prints every state change of this process's breaker, and remembers the last state.
struct Events {
    id: String,
    view: Arc<Mutex<State>>,
}

impl Listener for Events {
    fn on_state_change(&self, _service: &str, from: State, to: State) {
        *self.view.lock().unwrap() = to;
        println!("EVENT {} {} {from} {to}", unix_us(), self.id);
    }

    fn on_transition(&self, t: &Transition) {
        println!(
            "TRANSITION {} {} {} {} {} {}",
            unix_us(),
            self.id,
            t.from,
            t.to,
            t.generation,
            t.reason.as_str()
        );
    }
}

/// Whether this process's fleet uses Redis (false while its calls follow the local
/// fallback), as the library's log tells it: `Redis unavailable; …` (degraded) and
/// `Redis available again; …` (recovered). Each change prints
/// `HEALTH <id> <unix_us> <down|up>`.
static HEALTHY: AtomicBool = AtomicBool::new(true);

/// A `tracing` subscriber that only watches the library's health messages.
struct HealthLog {
    id: String,
}

/// The `message` of an event.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for HealthLog {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.is_event()
            && *metadata.level() <= tracing::Level::INFO
            && metadata.target().starts_with("infuse")
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        let healthy = if message.0.starts_with("Redis unavailable") {
            false
        } else if message.0.starts_with("Redis available again") {
            true
        } else {
            return;
        };
        if HEALTHY.swap(healthy, Ordering::AcqRel) != healthy {
            let word = if healthy { "up" } else { "down" };
            println!("HEALTH {} {} {word}", self.id, unix_us());
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// `fleet` for a trial Redis granted, `local` for one the local fallback did.
fn trial_kind() -> &'static str {
    if HEALTHY.load(Ordering::Acquire) {
        "fleet"
    } else {
        "local"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Ok,
    Failed,
    Rejected,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Failed => "failed",
            Verdict::Rejected => "rejected",
        }
    }
}

/// One call through the breaker, to a (simulated) downstream that takes `latency` and
/// fails when told to. A call that was the half-open trial prints a `TRIAL` line.
async fn call(breaker: &Breaker, id: &str, fail: bool, latency: Duration) -> Verdict {
    let permit = match breaker.acquire().await {
        Ok(permit) => permit,
        Err(e) if e.is_rejection() => return Verdict::Rejected,
        // Another breaker error (none is configured): a failure.
        Err(_) => return Verdict::Failed,
    };
    let trial = permit.is_trial().then(trial_kind);
    let start = unix_us();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let verdict = if fail {
        let _ = permit.failure(&"downstream failed").await;
        Verdict::Failed
    } else {
        permit.success().await;
        Verdict::Ok
    };
    if let Some(kind) = trial {
        println!(
            "TRIAL {id} {start} {} {} {kind}",
            unix_us(),
            verdict.as_str()
        );
    }
    verdict
}

#[derive(Default)]
struct Totals {
    ok: u64,
    failed: u64,
    rejected: u64,
}

impl Totals {
    fn add(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Ok => self.ok += 1,
            Verdict::Failed => self.failed += 1,
            Verdict::Rejected => self.rejected += 1,
        }
    }
}

async fn store_state(breaker: &Breaker) -> String {
    match breaker.state().await {
        Ok(state) => state.to_string(),
        Err(e) => format!("error({})", e.to_string().replace(' ', "_")),
    }
}

/// The store's snapshot: `<state> inc=<n> gen=<n> seq=<n>` (`error(...)` and zeros if it
/// cannot be read). The view is printed by the caller after the read (which refreshes it).
async fn store_snapshot(breaker: &Breaker) -> (String, String) {
    match breaker.snapshot().await {
        Ok(s) => (
            s.state.to_string(),
            format!(
                "inc={} gen={} seq={}",
                s.version.incarnation, s.generation, s.version.seq
            ),
        ),
        Err(e) => (
            format!("error({})", e.to_string().replace(' ', "_")),
            "inc=0 gen=0 seq=0".to_owned(),
        ),
    }
}

/// `go <calls> <pattern> <every_ms>`.
async fn go(
    breaker: &Breaker,
    id: &str,
    latency: Duration,
    words: &[&str],
    totals: &mut Totals,
) -> Result<(), String> {
    let [calls, pattern, every_ms] = words else {
        return Err("go: expected <calls> <pattern> <every_ms>".to_owned());
    };
    let calls: u64 = calls
        .parse()
        .map_err(|_| format!("go: calls: expected a number, got {calls:?}"))?;
    let every: u64 = every_ms
        .parse()
        .map_err(|_| format!("go: every_ms: expected a number, got {every_ms:?}"))?;
    let fails = |n: u64| match *pattern {
        "alternate" => Ok(n.is_multiple_of(2)),
        "fail" => Ok(true),
        "ok" => Ok(false),
        other => Err(format!(
            "go: unknown pattern {other:?} (alternate, fail, ok)"
        )),
    };
    fails(0)?;
    let mut ticks = (every > 0).then(|| {
        let mut ticks = tokio::time::interval(Duration::from_millis(every));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    });
    let mut round = Totals::default();
    let mut last_failure = 0;
    for n in 0..calls {
        match ticks.as_mut() {
            Some(ticks) => {
                ticks.tick().await;
            }
            // Back to back, but let the flush and pub/sub tasks run in between.
            None => tokio::task::yield_now().await,
        }
        let verdict = call(breaker, id, fails(n)?, latency).await;
        let at = unix_us();
        if verdict == Verdict::Failed {
            last_failure = at;
        }
        println!("CALL {id} {at} {}", verdict.as_str());
        round.add(verdict);
        totals.add(verdict);
    }
    tokio::time::sleep(FLUSH_WAIT).await;
    println!(
        "DONE {id} ok={} failed={} rejected={} last_failure_us={last_failure}",
        round.ok, round.failed, round.rejected
    );
    Ok(())
}

/// `run <pattern> <every_ms>`: calls as `go` does, in a task of its own, until `stop`.
fn run(
    breaker: &Breaker,
    id: &str,
    latency: Duration,
    words: &[&str],
) -> Result<(Arc<AtomicBool>, tokio::task::JoinHandle<Totals>), String> {
    let [pattern, every_ms] = words else {
        return Err("run: expected <pattern> <every_ms>".to_owned());
    };
    let fail = match *pattern {
        "fail" => true,
        "ok" => false,
        other => return Err(format!("run: unknown pattern {other:?} (fail, ok)")),
    };
    let every: u64 = every_ms
        .parse()
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("run: every_ms: expected a number > 0, got {every_ms:?}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (breaker, id, stopped) = (breaker.clone(), id.to_owned(), stop.clone());
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_millis(every));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut totals = Totals::default();
        while !stopped.load(Ordering::Acquire) {
            ticks.tick().await;
            let verdict = call(&breaker, &id, fail, latency).await;
            println!("CALL {id} {} {}", unix_us(), verdict.as_str());
            totals.add(verdict);
        }
        totals
    });
    Ok((stop, task))
}

/// `hold <ok|fail>`: one call, admitted now and left running (in a task of its own: the
/// commands go on) until `release`.
fn hold(breaker: &Breaker, id: &str, pattern: &str, release: &Arc<Notify>) -> Result<(), String> {
    let fail = match pattern {
        "ok" => false,
        "fail" => true,
        other => return Err(format!("hold: unknown pattern {other:?} (ok, fail)")),
    };
    let (breaker, id, release) = (breaker.clone(), id.to_owned(), release.clone());
    tokio::spawn(async move {
        let permit = match breaker.acquire_owned().await {
            Ok(permit) => permit,
            Err(e) => {
                let why = if e.is_rejection() {
                    "rejected"
                } else {
                    "failed"
                };
                println!("HELD {id} {} {why}", unix_us());
                return;
            }
        };
        let trial = permit.is_trial().then(trial_kind);
        let start = unix_us();
        match trial {
            Some(kind) => println!("HELD {id} {start} trial {kind}"),
            None => println!("HELD {id} {start} normal"),
        }
        release.notified().await;
        let verdict = if fail {
            let _ = permit.failure(&"downstream failed").await;
            Verdict::Failed
        } else {
            permit.success().await;
            Verdict::Ok
        };
        let end = unix_us();
        if let Some(kind) = trial {
            println!("TRIAL {id} {start} {end} {} {kind}", verdict.as_str());
        }
        println!("RELEASED {id} {end} {}", verdict.as_str());
    });
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("infuse-rate-worker: {e}");
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let _ = tracing::subscriber::set_global_default(HealthLog {
        id: args.id.clone(),
    });
    let view = Arc::new(Mutex::new(State::Closed));
    let fleet = |config: Config| {
        // The default 25 ms deadline on Redis is meant for production latency budgets; on
        // a loaded test machine it can pass, which switches this process to its local
        // fallback and takes it out of the fleet (see infuse-fleet-worker). This worker
        // demonstrates the fleet's window: 500 ms unless told otherwise.
        let config = config
            .namespace(args.namespace.as_str())
            .redis_call_timeout(args.call_timeout);
        let config = match args.resync {
            Some(interval) => config.resync_interval(interval),
            None => config,
        };
        match args.trial_lease {
            Some(lease) => config.trial_lease(lease),
            None => config,
        }
    };
    let config = if args.store == "memory" {
        Config::in_memory()
    } else if let Some((master, sentinels)) = args
        .store
        .strip_prefix("sentinel:")
        .and_then(|rest| rest.split_once('@'))
    {
        fleet(Config::redis_sentinel(sentinels.split(','), master))
    } else {
        fleet(Config::redis(args.store.as_str()))
    };
    let overrides = ServiceOverride::new()
        .fail_max(args.fail_max)
        .reset_timeout(args.reset_timeout)
        .min_calls(args.min_calls)
        .min_instances(args.min_instances)
        .window(args.window);
    // failure_rate=0: no rate rule.
    let overrides = match args.failure_rate {
        0 => overrides,
        rate => overrides.failure_rate(rate),
    };
    let config = config
        .service(SERVICE, overrides)
        // `users` is created at run time with `infuse::breaker`, not declared.
        .allow_undeclared_overrides(true)
        .env_overrides(false)
        .listener(Arc::new(Events {
            id: args.id.clone(),
            view: view.clone(),
        }));
    if let Err(e) = infuse::init(config).await {
        eprintln!("infuse-rate-worker {}: init failed: {e}", args.id);
        std::process::exit(1);
    }
    let breaker = infuse::breaker(SERVICE);
    // Load the shared state now rather than on the first call (no call is counted).
    let state = store_state(&breaker).await;
    if let Ok(state) = state.parse::<State>() {
        *view.lock().unwrap() = state;
    }
    let id = args.id.as_str();
    println!("READY {id} {}", unix_us());

    let mut totals = Totals::default();
    let release = Arc::new(Notify::new());
    let mut running: Option<(Arc<AtomicBool>, tokio::task::JoinHandle<Totals>)> = None;
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = commands.next_line().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        let done = match words.as_slice() {
            ["go", rest @ ..] => go(&breaker, id, args.call_latency, rest, &mut totals).await,
            ["probe"] => {
                let verdict = call(&breaker, id, false, args.call_latency).await;
                totals.add(verdict);
                let passed = if verdict == Verdict::Rejected {
                    "rejected"
                } else {
                    "passed"
                };
                println!("PROBE {id} {} {passed}", unix_us());
                Ok(())
            }
            ["state"] => {
                let (state, version) = store_snapshot(&breaker).await;
                let view = *view.lock().unwrap();
                println!("STATE {id} {state} view={view} {version}");
                Ok(())
            }
            ["view"] => {
                let view = *view.lock().unwrap();
                println!("VIEW {id} {view}");
                Ok(())
            }
            ["run", rest @ ..] if running.is_none() => {
                run(&breaker, id, args.call_latency, rest).map(|r| running = Some(r))
            }
            ["run", ..] => Err("run: already running (stop first)".to_owned()),
            ["stop"] => match running.take() {
                Some((stop, task)) => {
                    stop.store(true, Ordering::Release);
                    let round = task.await.unwrap_or_default();
                    tokio::time::sleep(FLUSH_WAIT).await;
                    println!(
                        "STOPPED {id} ok={} failed={} rejected={}",
                        round.ok, round.failed, round.rejected
                    );
                    totals.ok += round.ok;
                    totals.failed += round.failed;
                    totals.rejected += round.rejected;
                    Ok(())
                }
                None => Err("stop: nothing runs".to_owned()),
            },
            ["hold", pattern] => hold(&breaker, id, pattern, &release),
            ["release"] => {
                release.notify_one();
                Ok(())
            }
            ["quit"] => break,
            [] => Ok(()),
            _ => Err(format!("unknown command {line:?}")),
        };
        if let Err(e) = done {
            println!("ERROR {id} {e}");
        }
    }

    let state = store_state(&breaker).await;
    let view = *view.lock().unwrap();
    println!(
        "SUMMARY {id} ok={} failed={} rejected={} final={state} view={view}",
        totals.ok, totals.failed, totals.rejected
    );
}
