//! One simulated run: its parameters and schedule drawn from the seed, the processes,
//! the steps, and the checks after every step and at the end.

use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};

use super::net::{self, lock, Shared, TrialKey};
use super::rng::Rng;
use super::server::{LogModel, Server};
use crate::backend::Backend;
use crate::breaker::{Binding, Breaker};
use crate::core::{now_nanos, BreakerError, Settings, State};
use crate::fleet::{jittered, resync, Fleet, UnavailablePolicy};
use crate::store::redis::Deadlines;

/// The services a run's breakers protect.
const SERVICES: [&str; 3] = ["alpha", "beta", "gamma"];

/// The monitor's backoff cap (`Fleet::start_monitor`) and its jitter (+20%).
const MONITOR_CAP: Duration = Duration::from_millis(300);

/// What a run is made of, drawn from its seed.
#[derive(Debug, Clone)]
pub(super) struct Params {
    pub(super) processes: usize,
    pub(super) services: Vec<(&'static str, Settings)>,
    pub(super) policy: UnavailablePolicy,
    pub(super) deadlines: Deadlines,
    pub(super) resync_interval: Duration,
    pub(super) trial_lease: Duration,
    pub(super) steps: usize,
    /// Breakers created after `init` (loaded by their first call) rather than at it.
    pub(super) attached: bool,
    /// Whether the store itself fails (restarts, restores) in this run, or only the
    /// network between it and the processes.
    pub(super) store_faults: bool,
    /// Whether the breakers have a concurrency cap (`max_concurrent`), shared through
    /// the store's leases and checked by check (6).
    pub(super) caps: bool,
}

impl Params {
    pub(super) fn draw(rng: &mut Rng) -> Params {
        let processes = rng.range(2, 4) as usize + usize::from(rng.chance(100));
        let count = rng.range(1, 2) as usize + usize::from(rng.chance(150));
        let services = SERVICES[..count]
            .iter()
            .map(|&service| (service, draw_settings(rng, processes)))
            .collect();
        let policy = match rng.weighted(&[8, 1, 1]) {
            0 => UnavailablePolicy::LocalFallback,
            1 => UnavailablePolicy::FailOpen,
            _ => UnavailablePolicy::FailClosed,
        };
        Params {
            processes,
            services,
            policy,
            deadlines: Deadlines {
                call: rng.millis(8, 30),
                admin: rng.millis(60, 400),
            },
            resync_interval: rng.millis(200, 1200),
            trial_lease: rng.millis(80, 600),
            steps: rng.range(150, 400) as usize,
            attached: rng.chance(250),
            store_faults: rng.chance(650),
            caps: false,
        }
    }

    /// A concurrency cap on every breaker, and the policy half the time `FailClosed`
    /// (under which check (6) holds), drawn from a stream of their own: the rest of the
    /// run is drawn as without caps.
    fn with_caps(mut self, rng: &mut Rng) -> Params {
        self.caps = true;
        for (_, settings) in &mut self.services {
            // A call beyond the cap waits a little, or not at all (not for seconds: a
            // call that ran long after the faults healed would write after the
            // convergence check's start).
            let max_wait = match rng.chance(500) {
                true => Duration::ZERO,
                false => rng.millis(10, 200),
            };
            *settings = settings
                .max_concurrent(rng.range(1, 6) as u32)
                .max_wait(max_wait);
        }
        if rng.chance(500) {
            self.policy = UnavailablePolicy::FailClosed;
        }
        self
    }
}

fn draw_settings(rng: &mut Rng, processes: usize) -> Settings {
    let mut s = Settings::DEFAULT
        .fail_max(rng.range(1, 4) as u32)
        .reset_timeout(rng.millis(60, 900))
        .success_threshold(if rng.chance(250) {
            rng.range(2, 3) as u32
        } else {
            1
        });
    if rng.chance(300) {
        let max = s.reset_timeout * rng.range(2, 5) as u32;
        s = s.max_reset_timeout(max);
    }
    if rng.chance(400) {
        s = s
            .failure_rate(rng.range(30, 70) as u32)
            .min_calls(rng.range(3, 10) as u32)
            .window(rng.millis(1000, 3000));
    }
    if rng.chance(300) {
        s = s.min_instances(rng.range(2, processes.min(3) as u64) as u32);
    }
    if rng.chance(150) {
        s = s.trial_timeout(rng.millis(40, 200));
    }
    debug_assert_eq!(s.validate(), Ok(()));
    s
}

/// A simulated process: the real fleet layer over its link, and its breakers.
struct Process {
    fleet: Arc<Fleet>,
    breakers: Vec<Breaker>,
    cut: watch::Sender<bool>,
}

/// How the target of each service answers now.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    /// Calls failing, per mille.
    failing: u64,
    /// A process whose calls all fail (a sick caller), whatever the others see.
    sick: Option<usize>,
}

/// The faults switched on, with when each ends.
#[derive(Debug, Default, Clone)]
struct Timed {
    cut: Option<Instant>,
    delay: Option<Instant>,
    drop_requests: Option<Instant>,
    drop_replies: Option<Instant>,
    deaf: Option<Instant>,
    drop_events: Option<Instant>,
}

/// What a run found.
#[derive(Debug, Default, Clone)]
pub(super) struct Report {
    pub(super) digest: u64,
    pub(super) lines: u64,
    pub(super) sim_time: Duration,
    pub(super) server: super::server::Counters,
    pub(super) net: net::NetStats,
    pub(super) calls: u64,
    pub(super) rejected: u64,
    pub(super) local_trips: u64,
    pub(super) quarantines: u64,
    pub(super) degradations: u64,
    /// The whole trace, when asked for (a replayed seed).
    pub(super) trace: String,
}

/// A failed run: what was violated, and the trace's tail.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) violations: Vec<String>,
    pub(super) trace: String,
    pub(super) params: String,
}

struct World {
    params: Params,
    net: Shared,
    processes: Vec<Process>,
    rng: Rng,
    health: Vec<Health>,
    timed: Vec<Timed>,
    report: Report,
    calls: Arc<std::sync::atomic::AtomicU64>,
    rejected: Arc<std::sync::atomic::AtomicU64>,
    /// What each process looked like at the last step (for the trace).
    seen: Vec<String>,
}

/// Runs the simulation of `seed` on the current (paused, current-thread) runtime.
pub(super) async fn run(
    seed: u64,
    keep: usize,
    log: LogModel,
    caps: bool,
) -> Result<Report, Failure> {
    let mut rng = Rng::split(seed, 1);
    let mut params = Params::draw(&mut rng);
    if caps {
        params = params.with_caps(&mut Rng::split(seed, 4));
    }
    let start = Instant::now();
    let server = Server::new(Rng::split(seed, 2), log);
    let net: Shared = Arc::new(std::sync::Mutex::new(net::Net::new(
        server,
        params.processes,
        Rng::split(seed, 3),
        start,
        keep,
    )));
    let mut world = World {
        processes: Vec::new(),
        health: vec![Health::default(); params.services.len()],
        timed: vec![Timed::default(); params.processes],
        params,
        net,
        rng,
        report: Report::default(),
        calls: Arc::default(),
        rejected: Arc::default(),
        seen: Vec::new(),
    };
    let result = world.play().await;
    let net = lock(&world.net);
    world.report.digest = net.trace.digest;
    world.report.lines = net.trace.count;
    world.report.sim_time = Instant::now() - start;
    world.report.server = net.server.counters;
    world.report.net = net.stats;
    world.report.calls = world.calls.load(std::sync::atomic::Ordering::Relaxed);
    world.report.rejected = world.rejected.load(std::sync::atomic::Ordering::Relaxed);
    let mut trace = String::new();
    for line in net.trace.tail() {
        let _ = writeln!(trace, "  {line}");
    }
    let violations = match result {
        Ok(()) if net.violations.is_empty() => {
            if keep == usize::MAX {
                world.report.trace = trace;
            }
            return Ok(world.report.clone());
        }
        Ok(()) => net.violations.clone(),
        Err(mut violations) => {
            violations.extend(net.violations.iter().cloned());
            violations
        }
    };
    Err(Failure {
        violations,
        trace,
        params: format!("{:#?}", world.params),
    })
}

impl World {
    async fn play(&mut self) -> Result<(), Vec<String>> {
        self.start_processes().await;
        self.trace(format!("start: {:?}", self.params));
        // Let the breakers load before the first fault.
        sleep(Duration::from_millis(20)).await;
        for step in 0..self.params.steps {
            self.step(step);
            let dt = self.rng.millis(1, 40);
            sleep(dt).await;
            self.end_faults(false);
            self.observe();
            self.failed()?;
        }
        self.heal().await;
        self.failed()?;
        self.converge().await?;
        self.liveness().await?;
        self.failed()
    }

    fn trace(&self, line: String) {
        lock(&self.net).trace.push(line);
    }

    fn failed(&self) -> Result<(), Vec<String>> {
        let net = lock(&self.net);
        if net.violations.is_empty() {
            Ok(())
        } else {
            Err(Vec::new())
        }
    }

    async fn start_processes(&mut self) {
        for pid in 0..self.params.processes {
            let link = net::connect(&self.net, pid, self.params.deadlines);
            let fleet = Fleet::over(
                Box::new(link.remote),
                self.params.policy,
                format!("sim-store (p{pid})"),
                true,
                self.params.resync_interval,
            );
            tokio::spawn(deliver_events(Arc::downgrade(&fleet), link.events));
            tokio::spawn(resync::resync_periodically(
                Arc::downgrade(&fleet),
                self.params.resync_interval,
                fleet.closing.subscribe(),
            ));
            let mut breakers = Vec::new();
            for &(service, settings) in &self.params.services {
                let binding = Binding {
                    backend: Backend::Fleet(Arc::clone(&fleet)),
                    trial_lease: self.params.trial_lease,
                };
                let breaker = Breaker::new(service, settings, binding.clone());
                if self.params.attached {
                    // A breaker created after `init` (Registry::breaker_with).
                    binding.backend.attach(&breaker.cell());
                } else {
                    // `init` (Registry::configure).
                    let bound = breaker.rebind(settings, binding, false).await;
                    if let Err(error) = bound {
                        lock(&self.net).violation(format!(
                            "p{pid} {service}: binding failed with no fault: {error}"
                        ));
                    }
                }
                breakers.push(breaker);
            }
            self.processes.push(Process {
                fleet,
                breakers,
                cut: link.cut,
            });
        }
    }

    /// One step of the schedule.
    fn step(&mut self, step: usize) {
        let n = self.params.processes;
        let services = self.params.services.len();
        let store = u64::from(self.params.store_faults);
        let action = self
            .rng
            .weighted(&[45, 6, 8, 16, 2 * store, store, store, 2, 19]);
        match action {
            0 => {
                let pid = self.rng.below(n as u64) as usize;
                let s = self.rng.below(services as u64) as usize;
                for _ in 0..self.rng.range(1, 4) {
                    self.spawn_call(pid, s);
                }
            }
            1 => {
                let pid = self.rng.below(n as u64) as usize;
                self.trace(format!("step {step}: p{pid} resyncs"));
                let fleet = Arc::clone(&self.processes[pid].fleet);
                tokio::spawn(async move { resync::resync(&fleet).await });
            }
            2 => {
                let s = self.rng.below(services as u64) as usize;
                let health = match self.rng.weighted(&[4, 3, 2, 2]) {
                    0 => Health::default(),
                    1 => Health {
                        failing: 1000,
                        sick: None,
                    },
                    2 => Health {
                        failing: 500,
                        sick: None,
                    },
                    _ => Health {
                        failing: 0,
                        sick: Some(self.rng.below(n as u64) as usize),
                    },
                };
                self.trace(format!(
                    "step {step}: {} now {health:?}",
                    self.params.services[s].0
                ));
                self.health[s] = health;
            }
            3 => {
                let pid = self.rng.below(n as u64) as usize;
                self.switch_fault(step, pid);
            }
            4 => {
                let mut net = lock(&self.net);
                net.server.save_copy(Instant::now());
                net.trace
                    .push(format!("step {step}: the store saves a copy"));
            }
            5 => {
                let downtime = self.rng.millis(0, 300);
                {
                    let mut net = lock(&self.net);
                    net.server.restart_empty(Instant::now(), downtime);
                    net.trace.push(format!(
                        "step {step}: the store restarts EMPTY, down {downtime:?}"
                    ));
                }
                self.resubscribe_all(downtime);
            }
            6 => {
                let back = self.rng.below(3) as usize;
                let downtime = self.rng.millis(0, 300);
                {
                    let mut net = lock(&self.net);
                    if !net.server.has_copy() {
                        return;
                    }
                    let age = net.server.restore(back, Instant::now(), downtime);
                    net.trace.push(format!(
                        "step {step}: the store restarts from a copy {age:?} old, down {downtime:?}"
                    ));
                }
                self.resubscribe_all(downtime);
            }
            7 => self.operator(step),
            _ => {}
        }
    }

    fn spawn_call(&mut self, pid: usize, s: usize) {
        let health = self.health[s];
        let fails = health.sick == Some(pid) || self.rng.chance(health.failing);
        // Mostly quick; now and then as long as a trial lease.
        let took = if self.rng.chance(100) {
            self.rng.upto(self.params.trial_lease)
        } else {
            self.rng.upto(Duration::from_millis(20))
        };
        let call = self.call(pid, s, !fails, took);
        tokio::spawn(call);
    }

    /// One call through process `pid`'s breaker of service `s`: `Ok(trial)` if it ran
    /// (`trial`: it was the trial), else the rejection.
    fn call(
        &self,
        pid: usize,
        s: usize,
        succeeds: bool,
        took: Duration,
    ) -> impl std::future::Future<Output = Result<bool, BreakerError>> + Send + 'static {
        let breaker = self.processes[pid].breakers[s].clone();
        let fleet = Arc::clone(&self.processes[pid].fleet);
        let net = Arc::clone(&self.net);
        let (calls, rejected) = (Arc::clone(&self.calls), Arc::clone(&self.rejected));
        let checks_caps = self.params.caps && self.params.policy == UnavailablePolicy::FailClosed;
        async move {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let permit = match breaker.acquire_owned().await {
                Ok(permit) => permit,
                Err(rejection) => {
                    rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(rejection);
                }
            };
            let service = breaker.service();
            if checks_caps && !permit.is_trial() {
                let (_, in_use, _) = breaker.cell.permits.counts();
                lock(&net).cap_admitted(pid, service, in_use);
            }
            let trial = permit.trial_token().map(|token| {
                let local = fleet.fallback.granted(&token);
                let (key, until) = if local {
                    let snapshot = fleet.fallback.peek(service, &breaker.settings());
                    let key = TrialKey::Local {
                        pid,
                        service,
                        incarnation: snapshot.version.incarnation,
                        generation: snapshot.generation,
                    };
                    (Some(key), None)
                } else {
                    match lock(&net).fleet_trial(token) {
                        Some((key, until)) => (Some(key), Some(until)),
                        None => (None, None),
                    }
                };
                let mut net = lock(&net);
                match key {
                    Some(key) => Some(net.trial_started(pid, key, until)),
                    None => {
                        net.violation(format!(
                            "p{pid} {service}: a trial call started on a slot neither the store nor the local fallback granted ({token})"
                        ));
                        None
                    }
                }
            });
            sleep(took).await;
            if let Some(Some(id)) = trial {
                lock(&net).trial_ended(id);
            }
            let was_trial = permit.is_trial();
            if succeeds {
                permit.success().await;
            } else {
                let _ = permit.failure(&"the target failed").await;
            }
            Ok(was_trial)
        }
    }

    fn switch_fault(&mut self, step: usize, pid: usize) {
        let now = Instant::now();
        let until = now + self.rng.millis(30, 1500);
        let kind = self.rng.weighted(&[3, 3, 2, 2, 2, 2]);
        let faults = {
            let mut net = lock(&self.net);
            let faults = &mut net.links[pid];
            let timed = &mut self.timed[pid];
            match kind {
                0 => {
                    faults.cut = true;
                    timed.cut = Some(until);
                }
                1 => {
                    faults.delay = Some(
                        self.rng
                            .millis(2, 3 * self.params.deadlines.call.as_millis() as u64),
                    );
                    timed.delay = Some(until);
                }
                2 => {
                    faults.drop_requests = self.rng.range(100, 600);
                    timed.drop_requests = Some(until);
                }
                3 => {
                    faults.drop_replies = self.rng.range(100, 600);
                    timed.drop_replies = Some(until);
                }
                4 => {
                    faults.deaf = true;
                    timed.deaf = Some(until);
                }
                _ => {
                    faults.drop_events = self.rng.range(100, 900);
                    timed.drop_events = Some(until);
                }
            }
            faults.clone()
        };
        if faults.cut {
            let _ = self.processes[pid].cut.send(true);
        }
        self.trace(format!(
            "step {step}: p{pid} faults now {faults:?} (the new one until {})",
            lock(&self.net).trace.at(until)
        ));
    }

    /// Switches off the faults whose time is up (all of them with `all`). A
    /// subscription back resyncs, as the subscriber does after each (re)subscribe.
    fn end_faults(&mut self, all: bool) {
        let now = Instant::now();
        for pid in 0..self.params.processes {
            let due = |until: &mut Option<Instant>| {
                let ended = until.is_some_and(|until| all || until <= now);
                if ended {
                    *until = None;
                }
                ended
            };
            let timed = &mut self.timed[pid];
            let ends = [
                due(&mut timed.cut),
                due(&mut timed.delay),
                due(&mut timed.drop_requests),
                due(&mut timed.drop_replies),
                due(&mut timed.deaf),
                due(&mut timed.drop_events),
            ];
            if !ends.contains(&true) {
                continue;
            }
            let faults = {
                let mut net = lock(&self.net);
                let faults = &mut net.links[pid];
                if ends[0] {
                    faults.cut = false;
                }
                if ends[1] {
                    faults.delay = None;
                }
                if ends[2] {
                    faults.drop_requests = 0;
                }
                if ends[3] {
                    faults.drop_replies = 0;
                }
                if ends[4] {
                    faults.deaf = false;
                }
                if ends[5] {
                    faults.drop_events = 0;
                }
                faults.clone()
            };
            if ends[0] {
                let _ = self.processes[pid].cut.send(false);
            }
            self.trace(format!("p{pid} faults now {faults:?}"));
            if ends[0] || ends[4] {
                self.resubscribed(pid, Duration::ZERO);
            }
        }
    }

    /// The subscriber of `pid` subscribes again after `after` (its retry): then resyncs.
    fn resubscribed(&self, pid: usize, after: Duration) {
        let fleet = Arc::downgrade(&self.processes[pid].fleet);
        tokio::spawn(async move {
            sleep(after + jittered(Duration::from_millis(100))).await;
            if let Some(fleet) = fleet.upgrade() {
                resync::resync(&fleet).await;
            }
        });
    }

    /// A restart drops every subscription: each comes back after the downtime.
    fn resubscribe_all(&mut self, downtime: Duration) {
        let until = Instant::now() + downtime;
        for pid in 0..self.params.processes {
            lock(&self.net).links[pid].deaf = true;
            let deaf = &mut self.timed[pid].deaf;
            *deaf = Some(deaf.map_or(until, |d| d.max(until)));
        }
    }

    fn operator(&mut self, step: usize) {
        let pid = self.rng.below(self.params.processes as u64) as usize;
        let s = self.rng.below(self.params.services.len() as u64) as usize;
        let breaker = self.processes[pid].breakers[s].clone();
        let what = self.rng.weighted(&[2, 2, 1, 2]);
        self.trace(format!(
            "step {step}: an operator on p{pid}: {} {}",
            ["open", "close", "half_open", "snapshot"][what],
            breaker.service()
        ));
        tokio::spawn(async move {
            let _ = match what {
                0 => breaker.open().await,
                1 => breaker.close().await,
                2 => breaker.half_open().await,
                _ => breaker.snapshot().await.map(drop),
            };
        });
    }

    /// Traces what changed in the processes since the last step (health, views, the
    /// fallback's own trips), and counts what they decided on their own (for the
    /// report).
    fn observe(&mut self) {
        let mut lines = Vec::new();
        for (pid, process) in self.processes.iter().enumerate() {
            let fleet = &process.fleet;
            let healthy = fleet.health.is_healthy();
            if !healthy {
                self.report.degradations += 1;
            }
            let trips = fleet.fallback.trip_count();
            self.report.local_trips += trips as u64;
            let mut seen = if healthy { "healthy" } else { "DEGRADED" }.to_owned();
            if trips > 0 {
                let _ = write!(seen, " fallback trips {trips}");
            }
            for breaker in &process.breakers {
                let view = &breaker.cell.view;
                let quarantined = view.quarantined();
                if quarantined {
                    self.report.quarantines += 1;
                }
                let _ = write!(
                    seen,
                    " | {} {} g{}{}",
                    breaker.service(),
                    view.state(),
                    view.generation(),
                    if quarantined { " (own)" } else { "" }
                );
            }
            if self.seen.get(pid) != Some(&seen) {
                lines.push(format!("p{pid} now {seen}"));
                if self.seen.len() <= pid {
                    self.seen.resize(pid + 1, String::new());
                }
                self.seen[pid] = seen;
            }
        }
        for line in lines {
            self.trace(line);
        }
    }

    /// Lets `time` pass, tracing the processes and checking as after a step.
    async fn wait(&mut self, time: Duration) -> Result<(), Vec<String>> {
        let until = Instant::now() + time;
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            sleep((until - now).min(Duration::from_millis(10))).await;
            self.observe();
            self.failed()?;
        }
    }

    /// Every fault ends; the store is up.
    async fn heal(&mut self) {
        self.end_faults(true);
        let now = Instant::now();
        let down = lock(&self.net)
            .server
            .down_until
            .filter(|&until| until > now);
        if let Some(until) = down {
            sleep_until(until).await;
        }
        for pid in 0..self.params.processes {
            debug_assert!(
                !lock(&self.net).links[pid].any(),
                "{:?}",
                lock(&self.net).links[pid]
            );
        }
        self.trace("every fault healed".to_owned());
    }

    /// Check (4): once every fault healed, every view converges to the record within one
    /// resync interval (+20% jitter) plus the monitor's backoff cap (+20%), allowing one
    /// admin deadline for the commands in flight at the heal and one for the resync's
    /// own. Nothing calls meanwhile (calls made before still settle).
    async fn converge(&mut self) -> Result<(), Vec<String>> {
        let admin = self.params.deadlines.admin;
        let bound = self.params.resync_interval * 6 / 5
            + MONITOR_CAP
            + admin * 2
            + Duration::from_millis(50);
        self.wait(bound).await?;
        let mut violations = Vec::new();
        let net = lock(&self.net);
        for (pid, process) in self.processes.iter().enumerate() {
            if !process.fleet.health.is_healthy() {
                violations.push(format!(
                    "convergence: p{pid} is still degraded {bound:?} after every fault healed"
                ));
            }
            for breaker in &process.breakers {
                let service = breaker.service();
                let view = &breaker.cell.view;
                let Some(record) = net.server.record(service) else {
                    violations.push(format!(
                        "convergence: {service} has no record {bound:?} after every fault healed (no process recreated it)"
                    ));
                    continue;
                };
                let (state, generation) = (view.state(), view.generation());
                if (state, generation) == (record.state, record.generation) {
                    continue;
                }
                if view.quarantined()
                    && record.state == State::Closed
                    && generation == record.generation
                {
                    continue; // its own protection (bounded by its open time)
                }
                violations.push(format!(
                    "convergence: p{pid} sees {service} {state} gen {generation}, the record is {} gen {} (incarnation {:x} seq {}), {bound:?} after every fault healed",
                    record.state,
                    record.generation,
                    record.incarnation & 0xffff,
                    record.seq
                ));
            }
        }
        drop(net);
        if violations.is_empty() {
            self.trace(format!("converged within {bound:?}"));
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Check (5): with the faults healed and the targets healthy, once a breaker's open
    /// period and any trial lease have ended (and the calling process's own protection),
    /// a call of every process runs: as the trial, or as an ordinary call. The calls go
    /// one at a time, each when the record (which they may trip again: a rate rule can
    /// trip on a success that brings the window to `min_calls`) lets it.
    async fn liveness(&mut self) -> Result<(), Vec<String>> {
        for health in &mut self.health {
            *health = Health::default();
        }
        let mut violations = Vec::new();
        for s in 0..self.params.services.len() {
            let service = self.params.services[s].0;
            for pid in 0..self.params.processes {
                // A view waits up to 50 ms before asking for a slot it saw taken.
                sleep(Duration::from_millis(60)).await;
                loop {
                    let now = Instant::now();
                    let mut ready = now;
                    if let Some(record) = lock(&self.net).server.record(service) {
                        if record.state == State::Open {
                            ready = ready.max(record.open_until.unwrap_or(now));
                        }
                        if let Some((_, until)) = record.trial {
                            ready = ready.max(until);
                        }
                    }
                    if let Some(cap) = self.params.services[s].1.max_concurrent {
                        // Permits another process used last stay in its lease until its
                        // renewal after next (it gives back only what went unused since
                        // the last one): wait until some are free.
                        let (own, all) = lock(&self.net).server.lease_of(service, pid, now);
                        if all - own.map_or(0, |lease| lease.held) >= cap {
                            ready = ready.max(now + Duration::from_millis(100));
                        }
                    }
                    let until = self.processes[pid].breakers[s].cell.view.quarantine_until();
                    ready =
                        ready.max(now + Duration::from_nanos(until.saturating_sub(now_nanos())));
                    if ready <= now {
                        break;
                    }
                    sleep_until(ready + Duration::from_millis(60)).await;
                }
                let record = lock(&self.net).server.record(service).cloned();
                match self.call(pid, s, true, Duration::from_millis(1)).await {
                    Ok(trial) => self.trace(format!(
                        "liveness: p{pid} {service} ran ({})",
                        if trial { "the trial" } else { "a call" }
                    )),
                    Err(rejection) => violations.push(format!(
                        "liveness: p{pid}'s call to {service} was rejected ({rejection}) with the open period and leases over; the record was {:?}",
                        record.map(|r| (r.state, r.generation, r.trial.map(|(_, until)| until.saturating_duration_since(Instant::now()))))
                    )),
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// The subscriber: each event, after its latency, to the fleet.
async fn deliver_events(
    fleet: Weak<Fleet>,
    mut events: mpsc::UnboundedReceiver<(String, Instant)>,
) {
    while let Some((payload, at)) = events.recv().await {
        sleep_until(at).await;
        let Some(fleet) = fleet.upgrade() else { return };
        resync::on_event(&fleet, &payload);
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for violation in &self.violations {
            writeln!(f, "  - {violation}")?;
        }
        writeln!(f, "parameters: {}", self.params)?;
        writeln!(f, "the trace's last lines:")?;
        f.write_str(&self.trace)
    }
}
