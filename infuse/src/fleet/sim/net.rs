//! Between each process and the store: the process's [`Remote`] (what `RedisStore` is in
//! production), a connection that delivers its commands in order (one multiplexed
//! connection per process, as the `ConnectionManager`), and its pub/sub subscription —
//! with the faults the run switches on and off: delay (each way), a request lost, a
//! reply lost, the process cut off (a blackhole: requests and replies are held until it
//! heals, so a command the process gave up on may still run late), the subscription
//! lost, events lost one by one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, Instant};

use super::rng::Rng;
use super::server::{LogModel, Server};
use crate::core::{Command, Outcome, Settings, Snapshot, StorageError, TrialToken};
use crate::fleet::remote::{Answer as Boxed, Remote};
use crate::store::redis::{
    note_until_noted, noted, operation, timer_for, Announcement, Changes, Deadlines, LogRead,
    FULL_RESYNC_EVERY,
};

/// The faults of one process's link, as switched on now.
#[derive(Debug, Default, Clone)]
pub(super) struct Faults {
    /// Blackholed: nothing passes until it heals (held, then delivered).
    pub(super) cut: bool,
    /// Extra latency each way, up to this.
    pub(super) delay: Option<Duration>,
    /// Requests lost, per mille.
    pub(super) drop_requests: u64,
    /// Replies lost, per mille (the command ran).
    pub(super) drop_replies: u64,
    /// The subscription is lost: no event reaches the process.
    pub(super) deaf: bool,
    /// Events lost one by one, per mille.
    pub(super) drop_events: u64,
}

impl Faults {
    pub(super) fn any(&self) -> bool {
        self.cut
            || self.delay.is_some()
            || self.drop_requests > 0
            || self.drop_replies > 0
            || self.deaf
            || self.drop_events > 0
    }
}

/// Which granted trial a trial call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TrialKey {
    /// Granted by the store: the record's generation (and the store's losses before it).
    Fleet {
        service: &'static str,
        incarnation: u64,
        generation: u64,
        epoch: u32,
    },
    /// Granted by a process's local fallback: that fallback's record.
    Local {
        pid: usize,
        service: &'static str,
        incarnation: u64,
        generation: u64,
    },
}

#[derive(Debug)]
struct TrialRun {
    id: u64,
    pid: usize,
    key: TrialKey,
    /// A fleet trial's lease end, on the store's clock.
    until: Option<Instant>,
    started: Instant,
}

/// The trace of a run: its last lines (printed with a failure) and a digest of all of
/// them (two runs of one seed must agree).
pub(super) struct Trace {
    start: Instant,
    lines: VecDeque<String>,
    keep: usize,
    pub(super) digest: u64,
    pub(super) count: u64,
}

impl Trace {
    fn new(start: Instant, keep: usize) -> Trace {
        Trace {
            start,
            lines: VecDeque::new(),
            keep,
            digest: 0xcbf2_9ce4_8422_2325,
            count: 0,
        }
    }

    pub(super) fn at(&self, instant: Instant) -> String {
        let d = instant.saturating_duration_since(self.start);
        format!("{}.{:03}", d.as_millis(), d.subsec_micros() % 1000)
    }

    pub(super) fn push(&mut self, line: String) {
        let line = format!("{:>10} {line}", self.at(Instant::now()));
        for byte in line.bytes() {
            self.digest = (self.digest ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
        self.count += 1;
        if self.lines.len() == self.keep {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub(super) fn tail(&self) -> impl Iterator<Item = &String> {
        self.lines.iter()
    }
}

/// Everything the tasks of a run share (one thread; locked briefly, never across an
/// await).
pub(super) struct Net {
    pub(super) server: Server,
    pub(super) links: Vec<Faults>,
    events: Vec<mpsc::UnboundedSender<(String, Instant)>>,
    /// The network's own draws (latencies, losses).
    rng: Rng,
    pub(super) trace: Trace,
    pub(super) violations: Vec<String>,
    trials: Vec<TrialRun>,
    next_trial: u64,
    pub(super) stats: NetStats,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct NetStats {
    pub(super) requests: u64,
    pub(super) lost: u64,
    pub(super) replies_lost: u64,
    pub(super) refused: u64,
    pub(super) events: u64,
    pub(super) events_lost: u64,
    pub(super) fleet_trials: u64,
    pub(super) local_trials: u64,
}

pub(super) type Shared = Arc<Mutex<Net>>;

pub(super) fn lock(net: &Shared) -> MutexGuard<'_, Net> {
    net.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Net {
    pub(super) fn new(
        server: Server,
        processes: usize,
        rng: Rng,
        start: Instant,
        keep: usize,
    ) -> Net {
        Net {
            server,
            links: vec![Faults::default(); processes],
            events: Vec::new(),
            rng,
            trace: Trace::new(start, keep),
            violations: Vec::new(),
            trials: Vec::new(),
            next_trial: 0,
            stats: NetStats::default(),
        }
    }

    pub(super) fn violation(&mut self, what: String) {
        self.trace.push(format!("VIOLATION {what}"));
        self.violations.push(what);
    }

    /// Runs a request at the store (its turn on the connection came).
    fn handle(&mut self, pid: usize, body: Body) -> Reply {
        let now = Instant::now();
        if self.server.is_down(now) {
            self.stats.refused += 1;
            self.trace.push(format!(
                "p{pid} {body:?}: refused (the store is restarting)"
            ));
            return Reply::Refused;
        }
        match body {
            Body::Apply {
                service,
                settings,
                command,
            } => {
                let applied = self.server.apply(service, &settings, command, now);
                if let Some(wrote) = &applied.wrote {
                    self.trace
                        .push(format!("p{pid} {service} {} {wrote}", brief(&command)));
                }
                if let Some(violation) = applied.violation {
                    self.violation(format!("p{pid} {service}: {violation}"));
                }
                if let Some(event) = applied.event {
                    self.publish(event, now);
                }
                Reply::Outcome(as_on_the_wire(applied.outcome))
            }
            Body::Changes { last } => {
                let (version, services) = self.server.changes(last);
                self.trace.push(format!(
                    "p{pid} reads the change log since v{last}: v{version:?} {services:?}"
                ));
                Reply::Log(version, services, self.server.run_id)
            }
            Body::Note { service } => {
                let version = self.server.note_change(service);
                self.trace.push(format!("p{pid} note {service} v{version}"));
                Reply::Done
            }
            Body::Ping | Body::LoadScripts => Reply::Done,
            Body::Lease {
                service,
                keep,
                want,
                cap,
                lease,
            } => {
                let grant = self
                    .server
                    .lease(&service, pid, keep, want, cap, lease, now);
                self.trace.push(format!(
                    "p{pid} {service} lease(keep {keep} want {want} of {cap}): may use {}, holds {}",
                    grant.target, grant.held
                ));
                Reply::Grant(grant)
            }
        }
    }

    /// Check (6), in runs with concurrency caps under `FailClosed`: process `pid` admits a
    /// call of `service` holding a permit, `in_use` of its calls holding one now. Its
    /// lease on the store must be live and hold that many (the leases' sum never passes
    /// the cap, so neither do the calls): a process stops using its lease before it ends,
    /// and never uses permits the store gave back. Within [`LEASE`] of the store losing
    /// its leases, a process rightly uses the lease it had.
    ///
    /// [`LEASE`]: crate::fleet::lease::LEASE
    pub(super) fn cap_admitted(&mut self, pid: usize, service: &str, in_use: u32) {
        let now = Instant::now();
        let lost = self.server.leases_lost;
        if lost.is_some_and(|lost| now < lost + crate::fleet::lease::LEASE) {
            return;
        }
        let (lease, sum) = self.server.lease_of(service, pid, now);
        let held = lease.map_or(0, |lease| lease.held);
        if in_use > held {
            self.violation(format!(
                "p{pid} {service}: a call admitted with {in_use} calls holding permits, but its lease on the store holds {held} ({lease:?}; all leases hold {sum})"
            ));
        }
    }

    /// Pub/sub: the event to every subscribed process, after its latency.
    fn publish(&mut self, event: String, now: Instant) {
        for q in 0..self.events.len() {
            let faults = &self.links[q];
            let (deaf, drop, delay) = (faults.cut || faults.deaf, faults.drop_events, faults.delay);
            self.stats.events += 1;
            if deaf || self.rng.chance(drop) {
                self.stats.events_lost += 1;
                continue;
            }
            let latency = Duration::from_micros(self.rng.range(0, 1500))
                + delay.map_or(Duration::ZERO, |d| self.rng.upto(d));
            let _ = self.events[q].send((event.clone(), now + latency));
        }
    }

    /// Check (1): a trial call starts. Two trials of one fleet generation must not run
    /// at once while the first one's lease lasts: the lease is the slot's bound (a trial
    /// still running after its lease ended has lost the slot, by design, and its result
    /// is refused). A local fallback's trials are counted per process and fallback
    /// record (they protect that process only).
    pub(super) fn trial_started(
        &mut self,
        pid: usize,
        key: TrialKey,
        until: Option<Instant>,
    ) -> u64 {
        let now = Instant::now();
        let clash = self.trials.iter().find(|run| {
            run.key == key
                && match key {
                    TrialKey::Fleet { .. } => run.until.is_some_and(|until| now < until),
                    TrialKey::Local { .. } => true,
                }
        });
        if let Some(run) = clash {
            let what = format!(
                "two trials at once in {key:?}: p{}'s (started at {}, lease until {:?}) is still running when p{pid}'s starts",
                run.pid,
                self.trace.at(run.started),
                run.until.map(|until| self.trace.at(until)),
            );
            self.violation(what);
        }
        match key {
            TrialKey::Fleet { .. } => self.stats.fleet_trials += 1,
            TrialKey::Local { .. } => self.stats.local_trials += 1,
        }
        self.next_trial += 1;
        let id = self.next_trial;
        self.trace
            .push(format!("p{pid} trial #{id} starts: {key:?}"));
        self.trials.push(TrialRun {
            id,
            pid,
            key,
            until,
            started: now,
        });
        id
    }

    pub(super) fn trial_ended(&mut self, id: u64) {
        self.trials.retain(|run| run.id != id);
    }

    /// The store's grant of `token`, as a trial key.
    pub(super) fn fleet_trial(&self, token: TrialToken) -> Option<(TrialKey, Instant)> {
        let grant = self.server.grants.get(&token)?;
        Some((
            TrialKey::Fleet {
                service: grant.service,
                incarnation: grant.incarnation,
                generation: grant.generation,
                epoch: grant.epoch,
            },
            grant.until,
        ))
    }
}

fn brief(command: &Command) -> String {
    match command {
        Command::Register { seed: Some(seed) } => format!(
            "register(seed {} g{} fail {} confirmed {:?})",
            seed.state,
            seed.generation,
            seed.fail_counter,
            seed.confirmed.map(|v| (v.incarnation & 0xffff, v.seq))
        ),
        Command::Register { seed: None } => "register".to_owned(),
        Command::RecordFailure {
            generation,
            count,
            instance,
        } => format!("failure(g{generation} x{count} i{instance})"),
        Command::RecordSuccess { generation } => format!("success(g{generation})"),
        Command::RecordCalls {
            generation,
            counts,
            instance,
        } => format!(
            "calls(g{generation} {}/{} tail {} i{instance})",
            counts.failures, counts.calls, counts.tail
        ),
        Command::AcquireTrial { token, .. } => format!("acquire({:x})", token.0 as u16),
        Command::RecordTrial { token, success } => {
            format!(
                "trial({:x} {})",
                token.0 as u16,
                if *success { "ok" } else { "failed" }
            )
        }
        Command::ReleaseTrial { token } => format!("release({:x})", token.0 as u16),
        other => format!("{other:?}"),
    }
}

/// An answer as the process reads it from a script's reply: times in whole
/// milliseconds (Redis's `PTTL`).
fn as_on_the_wire(mut outcome: Outcome) -> Outcome {
    let ms = |d: Duration| Duration::from_millis(d.as_millis() as u64);
    let snapshot: &mut Snapshot = &mut outcome.snapshot;
    snapshot.open_remaining = snapshot.open_remaining.map(ms);
    snapshot.trial_remaining = snapshot.trial_remaining.map(ms);
    outcome
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one message in flight per request: boxing buys nothing
enum Body {
    Apply {
        service: &'static str,
        settings: Settings,
        command: Command,
    },
    Changes {
        last: u64,
    },
    Note {
        service: &'static str,
    },
    Ping,
    LoadScripts,
    Lease {
        service: String,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
    },
}

enum Reply {
    Outcome(Outcome),
    /// The log's version and what changed, and the server's run id.
    Log(Option<u64>, Vec<String>, u64),
    Done,
    Grant(crate::core::lease::Grant),
    /// Connection refused: the store is restarting.
    Refused,
}

struct Request {
    body: Body,
    /// When it reaches the store (if the connection is free by then).
    arrive: Instant,
    /// The reply's latency.
    back: Duration,
    lost: bool,
    reply_lost: bool,
    reply: Option<oneshot::Sender<Reply>>,
}

/// One process's side: its [`Remote`].
pub(super) struct SimRemote {
    conn: Conn,
    /// The process's identity in the commands it sends (`min_instances`): the
    /// simulated processes share one OS process, so the link stamps its own.
    instance: u64,
    deadlines: Deadlines,
    /// As `RedisStore`'s change log: the version read last (and the server's run id
    /// then, [`LogModel::RunId`]), reads since a full pass.
    seen: Mutex<Option<(u64, u64)>>,
    since_full: AtomicU64,
    log_model: LogModel,
    /// Dropped with the store: a note still retried then gives up.
    alive: Arc<()>,
}

/// The process's connection (cheap to clone, as a `ConnectionManager`).
#[derive(Clone)]
struct Conn {
    pid: usize,
    net: Shared,
    wire: mpsc::UnboundedSender<Request>,
}

/// The tasks that carry one process's traffic; spawned by [`connect`].
pub(super) struct Link {
    pub(super) remote: SimRemote,
    pub(super) cut: watch::Sender<bool>,
    pub(super) events: mpsc::UnboundedReceiver<(String, Instant)>,
}

/// Connects process `pid`: its connection (requests in order, then replies in order)
/// and its subscription.
pub(super) fn connect(net: &Shared, pid: usize, deadlines: Deadlines) -> Link {
    let log_model = lock(net).server.log_model;
    let (wire, requests) = mpsc::unbounded_channel();
    let (replies_tx, replies) = mpsc::unbounded_channel();
    let (cut, cut_rx) = watch::channel(false);
    let (events_tx, events) = mpsc::unbounded_channel();
    lock(net).events.push(events_tx);
    tokio::spawn(carry_requests(
        Arc::clone(net),
        pid,
        requests,
        cut_rx.clone(),
        replies_tx,
    ));
    tokio::spawn(carry_replies(replies, cut_rx));
    Link {
        remote: SimRemote {
            conn: Conn {
                pid,
                net: Arc::clone(net),
                wire,
            },
            instance: 1001 + pid as u64,
            deadlines,
            alive: Arc::new(()),
            seen: Mutex::new(None),
            since_full: AtomicU64::new(0),
            log_model,
        },
        cut,
        events,
    }
}

type ReplySlot = (Reply, Instant, oneshot::Sender<Reply>);

async fn carry_requests(
    net: Shared,
    pid: usize,
    mut requests: mpsc::UnboundedReceiver<Request>,
    mut cut: watch::Receiver<bool>,
    replies: mpsc::UnboundedSender<ReplySlot>,
) {
    while let Some(request) = requests.recv().await {
        sleep_until(request.arrive).await;
        let _ = cut.wait_for(|cut| !*cut).await;
        let reply = {
            let mut net = lock(&net);
            if request.lost {
                net.stats.lost += 1;
                net.trace.push(format!("p{pid} lost {:?}", request.body));
                continue;
            }
            net.handle(pid, request.body)
        };
        if let Some(slot) = request.reply {
            if request.reply_lost {
                let mut net = lock(&net);
                net.stats.replies_lost += 1;
                net.trace.push(format!("p{pid} reply lost"));
            } else {
                let _ = replies.send((reply, Instant::now() + request.back, slot));
            }
        }
    }
}

async fn carry_replies(
    mut replies: mpsc::UnboundedReceiver<ReplySlot>,
    mut cut: watch::Receiver<bool>,
) {
    while let Some((reply, at, slot)) = replies.recv().await {
        sleep_until(at).await;
        let _ = cut.wait_for(|cut| !*cut).await;
        let _ = slot.send(reply);
    }
}

impl Conn {
    /// Puts a request on the connection, drawing its fate from the link's faults.
    fn send(&self, body: Body, reply: Option<oneshot::Sender<Reply>>) {
        let mut net = lock(&self.net);
        let faults = net.links[self.pid].clone();
        net.stats.requests += 1;
        let rng = &mut net.rng;
        let way = |rng: &mut Rng| {
            Duration::from_micros(rng.range(50, 800))
                + faults.delay.map_or(Duration::ZERO, |d| rng.upto(d))
        };
        let arrive = Instant::now() + way(rng);
        let back = way(rng);
        let lost = rng.chance(faults.drop_requests);
        let reply_lost = reply.is_some() && rng.chance(faults.drop_replies);
        let _ = self.wire.send(Request {
            body,
            arrive,
            back,
            lost,
            reply_lost,
            reply,
        });
    }

    /// A request and its reply, under `deadline` (as `bounded` in the Redis store; a
    /// request or reply lost is a timeout).
    async fn ask(
        &self,
        operation: &'static str,
        deadline: Duration,
        body: Body,
    ) -> Result<Reply, StorageError> {
        let (slot, answer) = oneshot::channel();
        self.send(body, Some(slot));
        let answer = async {
            match answer.await {
                Ok(reply) => reply,
                Err(_) => std::future::pending().await,
            }
        };
        match tokio::time::timeout(timer_for(deadline), answer).await {
            Ok(Reply::Refused) => Err(StorageError::Unavailable(format!(
                "{operation}: connection refused (the simulated store is restarting)"
            ))),
            Ok(reply) => Ok(reply),
            Err(_) => Err(StorageError::Timeout {
                operation,
                after: deadline,
            }),
        }
    }
}

impl SimRemote {
    async fn ask(
        &self,
        operation: &'static str,
        deadline: Duration,
        body: Body,
    ) -> Result<Reply, StorageError> {
        self.conn.ask(operation, deadline, body).await
    }

    /// As `RedisStore::note_change`: sent after the command on the same connection, not
    /// waited for, and sent again until noted.
    fn note(&self, service: &'static str) {
        let (conn, alive) = (self.conn.clone(), Arc::downgrade(&self.alive));
        let deadline = self.deadlines.admin;
        tokio::spawn(note_until_noted(move || {
            let (conn, alive) = (conn.clone(), alive.upgrade());
            async move {
                alive?;
                let noted = conn
                    .ask("note_change", deadline, Body::Note { service })
                    .await;
                Some(noted.is_ok())
            }
        }));
    }
}

impl Remote for SimRemote {
    fn apply<'a>(
        &'a self,
        service: &'static str,
        settings: &'a Settings,
        command: Command,
    ) -> Boxed<'a, Outcome> {
        let command = match command {
            Command::RecordFailure {
                generation, count, ..
            } => Command::RecordFailure {
                generation,
                count,
                instance: self.instance,
            },
            Command::RecordCalls {
                generation, counts, ..
            } => Command::RecordCalls {
                generation,
                counts,
                instance: self.instance,
            },
            other => other,
        };
        let settings = *settings;
        Box::pin(async move {
            let operation = operation(&command);
            let deadline = self.deadlines.of(&command);
            let body = Body::Apply {
                service,
                settings,
                command,
            };
            let outcome = match self.ask(operation, deadline, body).await {
                Ok(Reply::Outcome(outcome)) => Ok(outcome),
                Ok(_) => Err(StorageError::Corrupt(format!(
                    "{operation}: a reply of another kind"
                ))),
                Err(error) => Err(error),
            };
            // As RedisStore::apply: the note goes after the command on the same
            // connection, not waited for.
            if noted(&command, outcome.as_ref().ok()) || (outcome.is_err() && noted(&command, None))
            {
                self.note(service);
            }
            outcome
        })
    }

    /// As `RedisStore::changes`: the client's side of the change log.
    fn changes<'a>(
        &'a self,
        breakers: usize,
        announcement: Option<&'a Announcement>,
    ) -> Boxed<'a, LogRead> {
        Box::pin(async move {
            let period = FULL_RESYNC_EVERY.max(breakers as u64);
            let due = self.since_full.fetch_add(1, Ordering::AcqRel) + 1 >= period;
            let seen = *self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let body = Body::Changes {
                last: seen.map_or(0, |(last, _)| last),
            };
            let Reply::Log(version, services, run_id) =
                self.ask("changes", self.deadlines.admin, body).await?
            else {
                return Err(StorageError::Corrupt(
                    "changes: a reply of another kind".into(),
                ));
            };
            *self.seen.lock().unwrap_or_else(PoisonError::into_inner) =
                version.map(|version| (version, run_id));
            let same_server =
                self.log_model == LogModel::Counter || seen.is_some_and(|(_, seen)| seen == run_id);
            let last = seen.map(|(last, _)| last);
            let changes = match (last, version) {
                (Some(last), Some(version)) if version >= last && !due && same_server => {
                    Changes::Services(services)
                }
                _ => {
                    self.since_full.store(0, Ordering::Release);
                    Changes::All
                }
            };
            Ok(LogRead {
                changes,
                announced: announcement.is_some(),
            })
        })
    }

    fn ping(&self) -> Boxed<'_, ()> {
        Box::pin(async move {
            self.ask("PING", self.deadlines.call, Body::Ping).await?;
            Ok(())
        })
    }

    fn load_scripts(&self) -> Boxed<'_, ()> {
        Box::pin(async move {
            self.ask("SCRIPT LOAD", self.deadlines.admin, Body::LoadScripts)
                .await?;
            Ok(())
        })
    }

    fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// As `RedisStore::lease_permits`, under the admin deadline (the link stamps its
    /// process: the simulated processes share one process instance).
    fn lease_permits<'a>(
        &'a self,
        service: &'a str,
        _process: u64,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
    ) -> Boxed<'a, crate::core::lease::Grant> {
        Box::pin(async move {
            let body = Body::Lease {
                service: service.to_owned(),
                keep,
                want,
                cap,
                lease,
            };
            match self
                .ask("lease permits", self.deadlines.admin, body)
                .await?
            {
                Reply::Grant(grant) => Ok(grant),
                _ => Err(StorageError::Corrupt(
                    "lease permits: a reply of another kind".into(),
                )),
            }
        })
    }
}
