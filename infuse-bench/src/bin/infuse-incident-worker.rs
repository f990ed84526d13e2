//! One caller process of `benches/incident.rs`: an open-loop HTTP load through a breaker
//! (or none), as its own OS process.
//!
//! ```text
//! infuse-incident-worker key=value…
//!   id=0 mode=none|memory|redis url=http://127.0.0.1:PORT/ rate=200 duration_ms=25000
//!   offset_ns=0 client_timeout_ms=2000 reset_ms=1000 [redis=redis://…] [namespace=…]
//!   [timeout_ms=250] [failure_rate=50] [window_ms=5000] [min_calls=20] [fail_max=5]
//!   [max_concurrent=50] [retries=2] [retry_budget=20] [retry_min_per_sec=10]
//!   [naive_retries=2]
//! ```
//!
//! Builds its breaker (`mode=memory`: a [`Registry`] in this process's memory, what a
//! per-process library gives; `mode=redis`: one shared by the fleet; `mode=none`: no
//! breaker), prints `READY`, then reads `START <monotonic_ns>` on stdin. From that
//! instant (+ `offset_ns`, so that the workers' sends interleave) it sends one GET every
//! `1/rate` s for `duration_ms`, **open loop**: each send is scheduled by time and spawned,
//! never waiting for an earlier answer. A send that leaves more than [`LATE`] after its
//! scheduled time is counted late; one that would exceed [`MAX_IN_FLIGHT`] calls in
//! flight is not sent and counted dropped. Latency is measured from the *scheduled* time,
//! so a late send's wait is not hidden.
//!
//! The breaker settings come from the arguments (`fail_max`, 5 unless given,
//! `reset_timeout`, optional `timeout`, `failure_rate`, `max_concurrent`, `retries` and
//! the retry budget) and from `INFUSE_INCIDENT_*` variables (the bench sets
//! `INFUSE_INCIDENT_SLOW_START` for its slow-start row). With `retries`, each call goes
//! through [`Breaker::call_retrying`]. `naive_retries=N` (with `mode=none`): each failed
//! call is sent again up to N times, after the same backoff as infuse's defaults (full
//! jitter, 25 ms doubling per attempt, at most 1 s) and with no budget — what a client's
//! own retry loop does.
//!
//! Once every call has ended it prints, one per line, times in µs from `START`:
//! `C <scheduled> <done> <k|f|r|d> <attempts>` per call (ok, failed, rejected by the
//! breaker, dropped; the requests it sent), `T <at> <state>` per state change of its breaker, `L <late> <dropped>
//! <max_lateness>`, then `END`, and exits. 2 on bad arguments, 1 if the registry cannot
//! be created.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use infuse::{Breaker, Config, Listener, Registry, ServiceOverride, State};
use infuse_bench::{monotonic_ns, AppError};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The service name of the breaker (its variables are `INFUSE_INCIDENT_*`).
const SERVICE: &str = "incident";
/// A send leaving later than this after its scheduled time is counted late.
const LATE: Duration = Duration::from_millis(10);
/// Calls in flight above which a send is dropped (and counted) rather than piling up.
const MAX_IN_FLIGHT: usize = 5000;

/// What became of one call.
#[derive(Clone, Copy)]
enum Outcome {
    Ok,
    Failed,
    Rejected,
    Dropped,
}

impl Outcome {
    fn letter(self) -> char {
        match self {
            Outcome::Ok => 'k',
            Outcome::Failed => 'f',
            Outcome::Rejected => 'r',
            Outcome::Dropped => 'd',
        }
    }
}

/// Records the breaker's state changes with their `CLOCK_MONOTONIC` time.
struct Transitions(Arc<Mutex<Vec<(u64, State)>>>);

impl Listener for Transitions {
    fn on_state_change(&self, _service: &str, _from: State, to: State) {
        let now = monotonic_ns();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((now, to));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("infuse-incident-worker: {message}");
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &HashMap<String, String>, key: &str) -> Option<T> {
    args.get(key).map(|text| {
        text.parse()
            .unwrap_or_else(|_| fail(&format!("{key}={text} does not read")))
    })
}

fn required<T: std::str::FromStr>(args: &HashMap<String, String>, key: &str) -> T {
    arg(args, key).unwrap_or_else(|| fail(&format!("missing {key}=…")))
}

async fn build_breaker(
    args: &HashMap<String, String>,
    transitions: &Arc<Mutex<Vec<(u64, State)>>>,
) -> Option<(Registry, Breaker)> {
    let mode: String = required(args, "mode");
    let mut settings = ServiceOverride::new()
        .fail_max(arg(args, "fail_max").unwrap_or(5))
        .reset_timeout(Duration::from_millis(required(args, "reset_ms")));
    if let Some(cap) = arg::<u32>(args, "max_concurrent") {
        settings = settings.max_concurrent(cap);
    }
    if let Some(retries) = arg::<u32>(args, "retries") {
        settings = settings.retries(retries);
    }
    if let Some(percent) = arg::<u32>(args, "retry_budget") {
        settings = settings.retry_budget(percent);
    }
    if let Some(per_sec) = arg::<u32>(args, "retry_min_per_sec") {
        settings = settings.retry_min_per_sec(per_sec);
    }
    if let Some(ms) = arg::<u64>(args, "timeout_ms") {
        settings = settings.timeout(Duration::from_millis(ms));
    }
    if let Some(rate) = arg::<u32>(args, "failure_rate") {
        settings = settings
            .failure_rate(rate)
            .window(Duration::from_millis(required(args, "window_ms")))
            .min_calls(required(args, "min_calls"));
    }
    let config = match mode.as_str() {
        "none" => return None,
        "memory" => Config::in_memory(),
        "redis" => Config::redis(required::<String>(args, "redis"))
            .namespace(required::<String>(args, "namespace"))
            // A loaded 2-core machine must not push a process out of the fleet.
            .redis_call_timeout(Duration::from_millis(500)),
        other => fail(&format!("unknown mode={other}")),
    };
    let config = config
        .service(SERVICE, settings)
        .listener(Arc::new(Transitions(transitions.clone())));
    match Registry::new(config).await {
        Ok(registry) => {
            let breaker = registry.breaker(SERVICE);
            // Load the shared state before the first timed call.
            let _ = breaker.state().await;
            Some((registry, breaker))
        }
        Err(e) => {
            eprintln!("infuse-incident-worker: {e}");
            std::process::exit(1);
        }
    }
}

/// One GET, counted in `attempts`; ok on a 200 with its body read.
async fn get(client: &reqwest::Client, url: &str, attempts: &AtomicU32) -> Result<(), AppError> {
    attempts.fetch_add(1, Ordering::Relaxed);
    let response = client.get(url).send().await.map_err(|_| AppError::Failed)?;
    if response.status() != 200 {
        return Err(AppError::Failed);
    }
    response.bytes().await.map_err(|_| AppError::Failed)?;
    Ok(())
}

/// A client's own retry loop, without a breaker or a budget: up to `retries` more
/// attempts after a failure, each after a backoff with full jitter (a random time up to
/// 25 ms × 2^n, at most 1 s: infuse's default `retry_backoff` and `max_retry_backoff`).
async fn naive(
    client: &reqwest::Client,
    url: &str,
    attempts: &AtomicU32,
    retries: u32,
    seed: u64,
) -> Result<(), AppError> {
    let mut n = 0;
    loop {
        let result = get(client, url, attempts).await;
        if result.is_ok() || n >= retries {
            return result;
        }
        let ceiling = Duration::from_millis(25)
            .saturating_mul(1 << n.min(16))
            .min(Duration::from_secs(1));
        let jitter = splitmix(seed ^ monotonic_ns() ^ (u64::from(n) << 56));
        tokio::time::sleep(ceiling.mul_f64((jitter >> 11) as f64 / (1u64 << 53) as f64)).await;
        n += 1;
    }
}

/// A 64-bit mix (splitmix64's finaliser): jitter without a random-number crate.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: HashMap<String, String> = std::env::args()
        .skip(1)
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => fail(&format!("argument {a:?} is not key=value")),
        })
        .collect();
    let id: usize = required(&args, "id");
    let url: Arc<str> = required::<String>(&args, "url").into();
    let rate: f64 = required(&args, "rate");
    let duration_ms: u64 = required(&args, "duration_ms");
    let offset_ns: u64 = required(&args, "offset_ns");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(required(&args, "client_timeout_ms")))
        .build()
        .unwrap_or_else(|e| fail(&format!("HTTP client: {e}")));
    let transitions = Arc::new(Mutex::new(Vec::new()));
    let registry = build_breaker(&args, &transitions).await;
    let breaker: Option<Breaker> = registry.as_ref().map(|(_, breaker)| breaker.clone());
    let retrying = breaker
        .as_ref()
        .is_some_and(|b| b.settings().retries.is_some());
    let naive_retries: u32 = arg(&args, "naive_retries").unwrap_or(0);

    println!("READY {id}");
    let _ = std::io::stdout().flush();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let start_ns: u64 = loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Some(ns) = line.strip_prefix("START ") {
                    break ns
                        .trim()
                        .parse()
                        .unwrap_or_else(|_| fail("START <ns> does not read"));
                }
            }
            _ => fail("stdin closed before START"),
        }
    };

    let sends = (duration_ms as f64 / 1000.0 * rate).floor() as u64;
    let interval_ns = 1e9 / rate;
    let records = Arc::new(Mutex::new(Vec::with_capacity(sends as usize)));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (mut late, mut dropped, mut max_lateness) = (0u64, 0u64, 0u64);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..sends {
        let scheduled = start_ns + offset_ns + (i as f64 * interval_ns) as u64;
        let now = monotonic_ns();
        if scheduled > now {
            tokio::time::sleep(Duration::from_nanos(scheduled - now)).await;
        }
        let lateness = monotonic_ns().saturating_sub(scheduled);
        max_lateness = max_lateness.max(lateness);
        if lateness > LATE.as_nanos() as u64 {
            late += 1;
        }
        let sched_us = (scheduled - start_ns) / 1000;
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            dropped += 1;
            records.lock().unwrap_or_else(|e| e.into_inner()).push((
                sched_us,
                sched_us,
                Outcome::Dropped,
                0,
            ));
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (client, url, breaker) = (client.clone(), url.clone(), breaker.clone());
        let (records, in_flight) = (records.clone(), in_flight.clone());
        tasks.spawn(async move {
            let attempts = AtomicU32::new(0);
            let result = match &breaker {
                Some(breaker) if retrying => {
                    breaker
                        .call_retrying(|| get(&client, &url, &attempts))
                        .await
                }
                Some(breaker) => breaker.call(get(&client, &url, &attempts)).await,
                None => naive(&client, &url, &attempts, naive_retries, id as u64 ^ i).await,
            };
            let outcome = match result {
                Ok(()) => Outcome::Ok,
                Err(AppError::Breaker(e)) if e.is_rejection() => Outcome::Rejected,
                Err(_) => Outcome::Failed,
            };
            let done_us = monotonic_ns().saturating_sub(start_ns) / 1000;
            records.lock().unwrap_or_else(|e| e.into_inner()).push((
                sched_us,
                done_us,
                outcome,
                attempts.load(Ordering::Relaxed),
            ));
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        // Reap finished calls as we go, so that the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (sched, done, outcome, attempts) in records.lock().unwrap_or_else(|e| e.into_inner()).iter()
    {
        let _ = writeln!(out, "C {sched} {done} {} {attempts}", outcome.letter());
    }
    for (at, to) in transitions.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let at_us = at.saturating_sub(start_ns) / 1000;
        let _ = writeln!(out, "T {at_us} {to}");
    }
    let _ = writeln!(out, "L {late} {dropped} {}", max_lateness / 1000);
    let _ = writeln!(out, "END");
    let _ = out.flush();
    drop(out);
    drop(breaker);
    if let Some((registry, breaker)) = registry {
        drop(breaker);
        let _ = registry.shutdown().await;
    }
}
