//! A deterministic simulation of the fleet protocol (issue 16, item 6).
//!
//! N processes, each the real fleet layer ([`Fleet`]: its health gate, local fallback,
//! recovery, resync and event handling) with real [`Breaker`]s bound to it, share one
//! simulated store through a fault injector per process, on a tokio runtime whose clock
//! is paused (it moves only when every task waits, straight to the next timer). One seed
//! draws everything: the run's parameters (processes, breakers and their settings, the
//! unavailable-policy, deadlines, resync interval, trial lease), its schedule (calls and
//! their outcomes, resyncs, the targets' health, faults switched on and off, store
//! restarts, operators' commands, the time between steps), the network's latencies and
//! losses, the store's incarnations, and the library's own randomness (trial tokens,
//! the fallback's incarnations, the monitor's and the resync's jitter: see
//! [`crate::core::random`]). A failing seed replays exactly.
//!
//! Faults, per process ([`net`]): delay (each way, up to 3× the call deadline, so that a
//! command can run after its caller gave up on it), a request lost, a reply lost (the
//! command ran), the subscription lost (events lost until it comes back, then a resync,
//! as the subscriber does), events lost one by one (silently), cut off (a blackhole:
//! everything is held and delivered once it heals, late). Of the store ([`server`]): a
//! restart that loses everything (records, change log), a restart from a copy saved
//! earlier (writes since lost), each with a downtime during which commands are refused.
//!
//! Checked after every step and at the end (a violation fails the run, printing its
//! seed, its parameters and the last lines of its trace):
//!
//! 1. **At most one trial per generation across the fleet.** Each trial call a breaker
//!    starts (the permit is the trial) is keyed by the store's grant of its token: the
//!    record's service, incarnation and generation (and the store's losses before it).
//!    A second trial of one key starting while the first still runs *and the first's
//!    lease has not ended* is a violation. "One trial" means one holder of the slot at
//!    a time: the lease is the slot's bound, a trial that outlives its lease has lost
//!    the slot (its result is refused), so one that runs past it no longer counts. A
//!    trial the local fallback granted (the process is degraded) protects that process
//!    only: it is keyed by the process and its fallback's record, at most one at a time.
//!    A trial call on a slot nobody granted is a violation too.
//! 2. **The record changes only by a transition the rules allow from what the store
//!    received** ([`rules`]): every write is judged against the command that made it,
//!    from the rules table (state, generation, seq, counters, open time, slot), not
//!    from the machine's code.
//! 3. **No process's fallback decision reaches the record unless the store lost
//!    history.** A view enters the record only through `Register` with a seed: the
//!    store's oracle ([`server`]) allows it only when the record is missing after the
//!    store lost it, or older than a version this store really held and lost (a
//!    restore), or blank in place of an incarnation the store lost. A process claiming
//!    a version the store never held (one its fallback made) is a violation.
//! 4. **Convergence**: once every fault healed, within one resync interval (+20%
//!    jitter) plus the monitor's backoff cap (+20%) and two admin deadlines, every
//!    process is healthy and every view shows its record's state and generation (a
//!    process's own protection, `min_instances` or a fallback trip, excepted while it
//!    lasts).
//! 5. **Liveness**: then, with the targets healthy, once the open period, any lease and
//!    any process's own protection are over, a call of each process runs (the trial or
//!    an ordinary call): no breaker stays open, and no slot stays taken.
//!
//! 6. **Concurrency caps** (the runs `with_caps`: every breaker has a `max_concurrent`,
//!    whose leases the simulated store keeps by [`LeaseTable`], the rule of
//!    `scripts/lease_permits.lua`; the policy is `FailClosed` in half of them, and the
//!    check holds there): when a process admits a call that holds a permit, its lease
//!    on the store is live and holds at least its calls holding one. The leases never
//!    hold more than the cap, so the calls a process starts never take permits the
//!    store gave to another. Within [`LEASE`] after the store lost its leases (a restart,
//!    a restore), a process rightly still uses the lease it had.
//!
//! Calls go through [`Breaker::acquire_owned`] and the permit (the call path's
//! admission, trial slot, failure reports and batches, release on drop; the guarded
//! future is a wrapper over the same). The simulated processes share one OS process,
//! hence one [`process_instance`](crate::core::process_instance): each link stamps its
//! own instance on the commands that carry one, so `min_instances` counts them apart.
//! Not simulated: the client's backlog classification (`Congested`), key expiry,
//! announcements (accepted and dropped).
//!
//! Runs: `cargo test -p infuse --lib fleet::sim` runs the fast subset (seeds 0..200,
//! a few seconds) and the regression seeds below. The long run, a range, one seed
//! replayed with its whole trace, and today's change log instead of the proposed one:
//!
//! ```text
//! INFUSE_SIM_SEEDS=100000 cargo test -p infuse --release --lib fleet::sim -- --nocapture
//! INFUSE_SIM_FIRST=500000 INFUSE_SIM_SEEDS=1000 cargo test -p infuse --lib fleet::sim -- --nocapture
//! INFUSE_SIM_SEED=1234 cargo test -p infuse --lib fleet::sim -- --nocapture
//! INFUSE_SIM_LOG=counter INFUSE_SIM_SEEDS=3000 cargo test -p infuse --lib fleet::sim -- --nocapture
//! ```
//!
//! A failure prints its seed, the violations, the run's parameters and the last lines
//! of its trace (store writes, losses, faults switched, each process's health and views
//! as they change); the summary line's digest is equal in two runs of one range.
//!
//! # What it found
//!
//! Fixed (each commit names the seeds that fail without it; [`REGRESSIONS`] keeps them):
//! a process's own protection that never ended while idle, and its end wrongly closing
//! the fleet's open breaker; a resync forgetting breakers it had read the change log
//! past; commands unanswered (timed out) and notes lost never noted in the change log;
//! the recovery missing breakers first used on the fallback while it reconciled;
//! `adopt` letting older answers undo what it took in.
//!
//! Not fixed (D1, it needs the change log's scripts): a reader of the change log tells
//! that the store lost history only from a version that is gone or went back. A log
//! recreated after a restart, or restored from an older copy, that reached the reader's
//! version again before its next read looks like the same log: the reader misses what
//! the loss undid and what was noted before the version passed its own (seen as views
//! stale until a full pass: seeds 3, 9, 273, 556, 602, 915, 1069 of 0..3000 with
//! `INFUSE_SIM_LOG=counter`). The simulated store runs the proposed fix
//! ([`server::LogModel::RunId`]): the read also gives the server's run id (`INFO
//! server`: new at every restart, another on a promoted replica), and a reader that sees
//! another one than at its last read re-reads everything.
//!
//! Fixed in the lease keeper (`fleet/lease.rs`), found by the runs with caps (seeds
//! 0..100 run in every `cargo test`; [`CAP_REGRESSIONS`] keeps the others):
//! - L1: a keeper whose lease ended by its own clock while the fleet is degraded looped
//!   without sleeping (its next renewal was due in `until - now`, zero from then on), so
//!   the paused clock never moved and the run hung (in production: a task looping at
//!   every timer tick while Redis is away). Seeds 0..100 with caps did not finish.
//! - L2: a renewal told the store to keep only the calls running (`keep`), while the
//!   process went on admitting up to its previous grant until it read the answer; an
//!   answer lost or late (the keeper gave up on it) left the process using permits its
//!   lease on the store no longer held, up to its old lease's end (seeds 1, 21, 24, 50,
//!   87). Now the store keeps what the process may still admit, and a process that gives
//!   permits back lowers its own grant first.
//! - A "fleet full" mark left from before an outage turned a call away at once after it
//!   (no wait for a request that would have found room: seed 1048); the mark now lasts
//!   until the keeper's next answer, and is dropped when no answer comes.
//!
//! Not investigated (seed 4883 with caps, 1 of the 6,000 run): after a store restart,
//! a process's view of an open breaker still ends about 1 ms after the liveness check
//! calls, more than 60 ms past the end of the record another process re-seeded; the
//! process rejects that one call as open (a waiting longer check still failed, so it is
//! not only the answer's delay). Caps play no part in it that the trace shows.
//!
//! [`Breaker`]: crate::Breaker
//! [`Breaker::acquire_owned`]: crate::Breaker::acquire_owned
//! [`LeaseTable`]: crate::core::lease::LeaseTable
//! [`LEASE`]: crate::fleet::lease::LEASE

mod net;
mod rng;
mod rules;
mod run;
mod server;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant as WallClock;

use crate::core::random::seeded;
use crate::core::test_epoch;
use run::{Failure, Report};
use server::LogModel;

/// Seeds the fast subset runs.
const FAST_SEEDS: u64 = 200;

/// Seeds the fast subset with concurrency caps runs.
const FAST_CAP_SEEDS: u64 = 100;

/// The trace lines a failure prints (a replayed seed prints them all).
const TRACE_TAIL: usize = 400;

/// Runs one seed on a paused current-thread runtime of its own.
fn run_seed(seed: u64, keep: usize, caps: bool) -> Result<Report, Failure> {
    let _installed = seeded::install(seeded::mix(seed ^ 0x1b_f1ee7));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        let result = runtime.block_on(async {
            test_epoch::set(Some(tokio::time::Instant::now()));
            run::run(seed, keep, log_model(), caps).await
        });
        drop(runtime);
        result
    }));
    test_epoch::set(None);
    match result {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic".to_owned());
            Err(Failure {
                violations: vec![format!("the run panicked: {what}")],
                trace: String::new(),
                params: String::new(),
            })
        }
    }
}

/// How readers of the change log learn that the store lost history: the proposed run
/// id (D1's fix) unless `INFUSE_SIM_LOG=counter` asks for today's counter alone.
fn log_model() -> LogModel {
    match std::env::var("INFUSE_SIM_LOG").as_deref() {
        Ok("counter") => LogModel::Counter,
        Ok("run-id") | Err(_) => LogModel::RunId,
        Ok(other) => panic!("INFUSE_SIM_LOG={other:?}: expected `counter` or `run-id`"),
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
    )
}

/// Sums of the runs' counters, to show what the runs exercised.
#[derive(Default)]
struct Totals {
    runs: u64,
    /// Of every run's trace (order-independent): equal in two runs of one range.
    digest: u64,
    lines: u64,
    sim_ms: u64,
    writes: u64,
    trips: u64,
    trials_granted: u64,
    reseeded: u64,
    replaced: u64,
    restarts: u64,
    restores: u64,
    requests: u64,
    lost: u64,
    replies_lost: u64,
    refused: u64,
    events_lost: u64,
    fleet_trials: u64,
    local_trials: u64,
    calls: u64,
    rejected: u64,
    degraded_steps: u64,
    local_trip_steps: u64,
    quarantined_steps: u64,
}

impl Totals {
    fn add(&mut self, r: &Report) {
        self.runs += 1;
        self.digest = self.digest.wrapping_add(seeded::mix(r.digest));
        self.lines += r.lines;
        self.sim_ms += r.sim_time.as_millis() as u64;
        self.writes += r.server.writes;
        self.trips += r.server.trips;
        self.trials_granted += r.server.trials_granted;
        self.reseeded += r.server.reseeded;
        self.replaced += r.server.replaced;
        self.restarts += r.server.restarts;
        self.restores += r.server.restores;
        self.requests += r.net.requests;
        self.lost += r.net.lost;
        self.replies_lost += r.net.replies_lost;
        self.refused += r.net.refused;
        self.events_lost += r.net.events_lost;
        self.fleet_trials += r.net.fleet_trials;
        self.local_trials += r.net.local_trials;
        self.calls += r.calls;
        self.rejected += r.rejected;
        self.degraded_steps += r.degradations;
        self.local_trip_steps += r.local_trips;
        self.quarantined_steps += r.quarantines;
    }
}

/// Runs `count` seeds from `first` on every core; panics naming each failing seed.
fn run_seeds(first: u64, count: u64, caps: bool) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count.max(1) as usize);
    let next = AtomicU64::new(first);
    let failures: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    let failed = AtomicUsize::new(0);
    let totals = Mutex::new(Totals::default());
    let started = WallClock::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= first + count {
                    return;
                }
                match run_seed(seed, TRACE_TAIL, caps) {
                    Ok(report) => totals.lock().unwrap().add(&report),
                    Err(failure) => {
                        let shown = failed.fetch_add(1, Ordering::Relaxed) < 3;
                        if shown {
                            eprintln!(
                                "\nfleet simulation: seed {seed} FAILED (replay: INFUSE_SIM_SEED={seed}{} cargo test -p infuse --lib fleet::sim -- --nocapture)\n{failure}",
                                if caps { " INFUSE_SIM_CAPS=1" } else { "" }
                            );
                        }
                        let first = failure.violations.first().cloned().unwrap_or_default();
                        failures.lock().unwrap().push((seed, first));
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let t = totals.into_inner().unwrap();
    eprintln!(
        "fleet simulation: {count} seeds from {first} in {elapsed:.1?} ({:.2} ms/seed on {threads} threads); {} passed, {} failed; digest {:016x}",
        elapsed.as_secs_f64() * 1000.0 / count.max(1) as f64,
        t.runs,
        count - t.runs,
        t.digest,
    );
    eprintln!(
        "  exercised: {} s simulated, {} trace lines, {} calls ({} rejected), {} store writes, {} openings, {} trials granted ({} fleet trial calls, {} local), {} records recreated from a view, {} replaced, {} restarts empty, {} restores; {} requests ({} lost, {} replies lost, {} refused), {} events lost; steps with a process degraded {}, with fallback trips held {}, with a view quarantined {}",
        t.sim_ms / 1000,
        t.lines,
        t.calls,
        t.rejected,
        t.writes,
        t.trips,
        t.trials_granted,
        t.fleet_trials,
        t.local_trials,
        t.reseeded,
        t.replaced,
        t.restarts,
        t.restores,
        t.requests,
        t.lost,
        t.replies_lost,
        t.refused,
        t.events_lost,
        t.degraded_steps,
        t.local_trip_steps,
        t.quarantined_steps,
    );
    let mut failures = failures.into_inner().unwrap();
    failures.sort_unstable();
    if !failures.is_empty() {
        let list: Vec<String> = failures
            .iter()
            .take(50)
            .map(|(seed, first)| format!("  seed {seed}: {first}"))
            .collect();
        panic!(
            "the fleet simulation failed for {} of {count} seeds (replay one with INFUSE_SIM_SEED=<seed>):\n{}",
            failures.len(),
            list.join("\n")
        );
    }
}

/// The fast subset (seeds 0..200), or the range `INFUSE_SIM_FIRST` ..
/// `+INFUSE_SIM_SEEDS`, or the one seed `INFUSE_SIM_SEED` (which prints its trace).
#[test]
fn fleet_simulation() {
    if let Some(seed) = env_u64("INFUSE_SIM_SEED") {
        match run_seed(seed, usize::MAX, env_u64("INFUSE_SIM_CAPS") == Some(1)) {
            Ok(report) => eprintln!(
                "fleet simulation: seed {seed} passed\n{}\n{:?}",
                report.trace,
                Report {
                    trace: String::new(),
                    ..report.clone()
                }
            ),
            Err(failure) => panic!("fleet simulation: seed {seed} FAILED\n{failure}"),
        }
        return;
    }
    let first = env_u64("INFUSE_SIM_FIRST").unwrap_or(0);
    let count = env_u64("INFUSE_SIM_SEEDS").unwrap_or(FAST_SEEDS);
    run_seeds(first, count, env_u64("INFUSE_SIM_CAPS") == Some(1));
}

/// The fast subset with a concurrency cap on every breaker (check (6)).
#[test]
fn fleet_simulation_with_caps() {
    if env_u64("INFUSE_SIM_SEED").is_some() {
        return; // `fleet_simulation` replays it
    }
    let first = env_u64("INFUSE_SIM_FIRST").unwrap_or(0);
    let count = env_u64("INFUSE_SIM_SEEDS").unwrap_or(FAST_CAP_SEEDS);
    run_seeds(first, count, true);
}

/// Seeds that failed before a fix, by the defect (see the module's documentation):
/// they keep failing if it comes back. (A change to what a run draws changes what these
/// seeds do: find the new ones by reverting each fix.)
const REGRESSIONS: [(&str, &[u64]); 6] = [
    ("a process's own protection ends on time", &[2, 8]),
    (
        "its end leaves the fleet's open breaker open",
        &[1206, 1319],
    ),
    ("an unanswered command is noted", &[52, 188, 233, 237]),
    ("a lost note is sent again", &[1162, 1464, 1556]),
    ("recovery re-reads breakers first used meanwhile", &[6508]),
    ("adopt keeps the version it took in", &[4200, 6247, 9690]),
];

/// Seeds with caps that failed before a fix, beyond the ones every run covers.
const CAP_REGRESSIONS: [(&str, &[u64]); 1] = [(
    "a stale \"fleet full\" mark does not turn a call away",
    &[1048],
)];

#[test]
fn regression_seeds() {
    let mut failed = Vec::new();
    let runs = REGRESSIONS
        .iter()
        .map(|run| (run, false))
        .chain(CAP_REGRESSIONS.iter().map(|run| (run, true)));
    for ((defect, seeds), caps) in runs {
        for &seed in *seeds {
            if let Err(failure) = run_seed(seed, TRACE_TAIL, caps) {
                eprintln!("seed {seed} ({defect}) FAILED:\n{failure}");
                failed.push(format!("{seed} ({defect})"));
            }
        }
    }
    assert!(failed.is_empty(), "regression seeds failed: {failed:?}");
}

/// A seed replays exactly: the same trace, line for line.
#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17, 42] {
        let digest = |seed| match run_seed(seed, TRACE_TAIL, false) {
            Ok(report) => (report.digest, report.lines),
            Err(failure) => panic!("seed {seed} failed:\n{failure}"),
        };
        let first = digest(seed);
        let again = digest(seed);
        assert_eq!(
            first, again,
            "seed {seed} ran differently the second time: something in the run is not drawn from its seed"
        );
    }
}
