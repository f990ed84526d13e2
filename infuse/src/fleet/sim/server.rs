//! The simulated store: one [`machine::apply`] over every breaker's record (what the
//! Lua scripts do in Redis, as the conformance suite and the memory-vs-Redis property
//! test hold them to), the namespace's change log, pub/sub's events (published by the
//! scripts' rules), and the faults of the store itself: a restart that loses everything,
//! a restart from an older copy (an RDB snapshot, or a lagging replica promoted).
//!
//! With concurrency caps (a run `with_caps`), it keeps the leases of the breakers'
//! permits too ([`LeaseTable`], what `scripts/lease_permits.lua` keeps in Redis), on its
//! clock; a restart or a restore loses them.
//!
//! It also keeps the oracle of checks (2) and (3): every write is judged by
//! [`rules::violation`], and every record recreated or replaced from a process's view
//! must follow a loss of history the store really suffered.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::Instant;

use super::rng::Rng;
use super::rules;
use crate::core::lease::{Lease, LeaseTable};
use crate::core::machine::{self, Record};
use crate::core::{saturating_millis, Command, Outcome, Settings, State, TrialToken};

/// A copy of everything the store holds, taken at some point (an RDB save).
#[derive(Debug, Clone)]
struct Copy {
    records: BTreeMap<&'static str, Record>,
    version: Option<u64>,
    changes: BTreeMap<&'static str, u64>,
    taken: Instant,
}

/// How a reader of the change log learns that the store lost history (defect D1, see
/// the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogModel {
    /// Today's `RedisStore::changes`: a reader re-reads everything only when the log's
    /// version is gone or below what it read last. A log recreated after a restart, or
    /// restored from a copy, that reached the reader's version again is taken as the
    /// same log: the reader misses what the loss undid.
    Counter,
    /// The proposed fix: each read of the log also gives the server's run id (`INFO
    /// server`, which changes at every restart and differs on a promoted replica); a
    /// reader that sees another run id than at its last read re-reads everything.
    RunId,
}

/// A trial slot the store granted.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grant {
    pub(super) service: &'static str,
    pub(super) incarnation: u64,
    pub(super) generation: u64,
    /// The store's losses before the grant (a trial of a record the store lost is not
    /// compared with the trials of the one that replaced it).
    pub(super) epoch: u32,
    /// When the lease ends, on the store's clock.
    pub(super) until: Instant,
}

/// What the store did with one command.
pub(super) struct Applied {
    pub(super) outcome: Outcome,
    /// The event the script publishes, if any.
    pub(super) event: Option<String>,
    /// A violation of the rules or of the authority rule, if any.
    pub(super) violation: Option<String>,
    /// A one-line account of the write, for the trace (`None`: nothing written).
    pub(super) wrote: Option<String>,
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counters {
    pub(super) writes: u64,
    pub(super) trips: u64,
    pub(super) trials_granted: u64,
    pub(super) created: u64,
    pub(super) reseeded: u64,
    pub(super) replaced: u64,
    pub(super) restarts: u64,
    pub(super) restores: u64,
}

pub(super) struct Server {
    records: BTreeMap<&'static str, Record>,
    /// `infuse:{ns}:version` (`None`: the key is gone).
    version: Option<u64>,
    /// `infuse:{ns}:changes`: service -> version of its last noted change.
    changes: BTreeMap<&'static str, u64>,
    /// Drawn anew at every restart (Redis's `run_id`).
    pub(super) run_id: u64,
    pub(super) log_model: LogModel,
    incarnations: Rng,
    /// Losses of history so far (restarts and restores).
    pub(super) epoch: u32,
    copies: Vec<Copy>,
    /// Down (restarting) until then: commands are refused.
    pub(super) down_until: Option<Instant>,
    /// The oracle: the highest seq each incarnation of each record ever reached here.
    highest: HashMap<(&'static str, u64), u64>,
    /// Incarnations the store lost (a restart, a restore) or replaced.
    gone: HashSet<(&'static str, u64)>,
    /// Services that ever had a record (records vanish only when the store loses them).
    ever: HashSet<&'static str>,
    pub(super) grants: HashMap<TrialToken, Grant>,
    pub(super) counters: Counters,
    /// The leases of each breaker's permits, by the process's index.
    leases: HashMap<String, LeaseTable>,
    /// When the store last lost its leases (a restart, a restore).
    pub(super) leases_lost: Option<Instant>,
    /// Where the leases' clock starts.
    clock: Instant,
}

impl Server {
    pub(super) fn new(mut incarnations: Rng, log_model: LogModel) -> Server {
        Server {
            run_id: incarnations.next(),
            records: BTreeMap::new(),
            version: None,
            changes: BTreeMap::new(),
            log_model,
            incarnations,
            epoch: 0,
            copies: Vec::new(),
            down_until: None,
            highest: HashMap::new(),
            gone: HashSet::new(),
            ever: HashSet::new(),
            grants: HashMap::new(),
            counters: Counters::default(),
            leases: HashMap::new(),
            leases_lost: None,
            clock: Instant::now(),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        saturating_millis(now.saturating_duration_since(self.clock))
    }

    /// Process `pid` asks for a lease of `service`'s permits (as the script does).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lease(
        &mut self,
        service: &str,
        pid: usize,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
        now: Instant,
    ) -> crate::core::lease::Grant {
        let now_ms = self.ms(now);
        let lease_ms = saturating_millis(lease).max(1);
        self.leases
            .entry(service.to_owned())
            .or_default()
            .request(now_ms, pid as u64, keep, want, cap, lease_ms)
    }

    /// The live lease of process `pid` on `service`'s permits, and the permits all live
    /// leases hold.
    pub(super) fn lease_of(&self, service: &str, pid: usize, now: Instant) -> (Option<Lease>, u32) {
        let now_ms = self.ms(now);
        let Some(table) = self.leases.get(service) else {
            return (None, 0);
        };
        let lease = table
            .leases()
            .iter()
            .find(|lease| lease.process == pid as u64 && lease.until_ms > now_ms)
            .copied();
        (lease, table.held(now_ms))
    }

    fn lose_leases(&mut self, now: Instant) {
        self.leases.clear();
        self.leases_lost = Some(now);
    }

    pub(super) fn is_down(&self, now: Instant) -> bool {
        self.down_until.is_some_and(|until| now < until)
    }

    pub(super) fn record(&self, service: &str) -> Option<&Record> {
        self.records.get(service)
    }

    /// Applies one command (its `instance` already the sending process's).
    pub(super) fn apply(
        &mut self,
        service: &'static str,
        settings: &Settings,
        command: Command,
        now: Instant,
    ) -> Applied {
        let before = self.records.get(service).cloned();
        let mut slot = before.clone();
        let incarnations = &mut self.incarnations;
        let outcome = machine::apply(&mut slot, &command, settings, now, || {
            // 53 bits, never zero, as `fresh_incarnation`.
            (incarnations.next() & ((1 << 53) - 1)).max(1)
        });
        let mut violation = rules::violation(
            before.as_ref(),
            &command,
            slot.as_ref(),
            &outcome,
            settings,
            now,
        );
        let event = self.event(
            service,
            &command,
            before.as_ref(),
            slot.as_ref(),
            &outcome,
            now,
        );
        let mut wrote = None;
        if let Some(after) = &slot {
            if before.as_ref() != Some(after) {
                self.counters.writes += 1;
                if violation.is_none() {
                    violation = self.judge_history(service, &command, before.as_ref(), after);
                }
                if after.state == State::Open
                    && before.as_ref().is_some_and(|b| b.state != State::Open)
                    && !matches!(command, Command::Register { .. })
                {
                    self.counters.trips += 1;
                }
                if let (Command::AcquireTrial { token, .. }, Some((holder, until))) =
                    (command, after.trial)
                {
                    if holder == token {
                        self.counters.trials_granted += 1;
                        self.grants.insert(
                            token,
                            Grant {
                                service,
                                incarnation: after.incarnation,
                                generation: after.generation,
                                epoch: self.epoch,
                                until,
                            },
                        );
                    }
                }
                let high = self
                    .highest
                    .entry((service, after.incarnation))
                    .or_default();
                *high = (*high).max(after.seq);
                self.ever.insert(service);
                wrote = Some(describe(before.as_ref(), after, now));
                self.records.insert(service, after.clone());
            }
        }
        Applied {
            outcome,
            event,
            violation,
            wrote,
        }
    }

    /// Check (3): a record is created or replaced from a process's view only when the
    /// store lost history that the view knows of.
    fn judge_history(
        &mut self,
        service: &'static str,
        command: &Command,
        before: Option<&Record>,
        after: &Record,
    ) -> Option<String> {
        let Command::Register { seed } = command else {
            return None;
        };
        let Some(b) = before else {
            self.counters.created += 1;
            // Created where there was none: the first ever, or after a loss.
            return match seed {
                Some(_) if !self.ever.contains(service) => Some(format!(
                    "{service}: a record was created from a process's view ({seed:?}) although the store never had one to lose"
                )),
                Some(_) => {
                    self.counters.reseeded += 1;
                    None
                }
                None => None,
            };
        };
        if b.incarnation == after.incarnation {
            return None;
        }
        self.counters.replaced += 1;
        self.gone.insert((service, b.incarnation));
        let Some(seed) = seed else {
            return Some(format!(
                "{service}: a register without a seed replaced the record"
            ));
        };
        let Some(confirmed) = seed.confirmed else {
            return Some(format!(
                "{service}: a view that never read the record replaced it ({seed:?})"
            ));
        };
        if confirmed.incarnation == b.incarnation {
            let held = self
                .highest
                .get(&(service, b.incarnation))
                .copied()
                .unwrap_or(0);
            if held < confirmed.seq {
                return Some(format!(
                    "{service}: replaced record {}:{} on the word of a process that confirmed seq {} this store never held (highest {held}): a version that did not come from the store",
                    b.incarnation, b.seq, confirmed.seq
                ));
            }
            if held <= b.seq {
                return Some(format!(
                    "{service}: replaced record {}:{} that had lost nothing",
                    b.incarnation, b.seq
                ));
            }
            None
        } else if !self.gone.contains(&(service, confirmed.incarnation)) {
            Some(format!(
                "{service}: replaced record {}:{} (gen {}) because the process had read incarnation {}, which the store never lost",
                b.incarnation, b.seq, b.generation, confirmed.incarnation
            ))
        } else {
            None
        }
    }

    /// The event the script publishes (scripts/*.lua: `publish`, `publish_reply`).
    fn event(
        &self,
        service: &str,
        command: &Command,
        before: Option<&Record>,
        after: Option<&Record>,
        outcome: &Outcome,
        now: Instant,
    ) -> Option<String> {
        let after = after?;
        let wrote = before != Some(after);
        let state_changed = before.is_none_or(|b| b.state != after.state);
        let fail_before = before.map_or(0, |b| b.fail);
        let publish = match command {
            Command::Register { .. } => outcome.applied,
            Command::Snapshot => false,
            Command::RecordFailure { .. } => outcome.applied && (state_changed || fail_before == 0),
            Command::RecordSuccess { .. } => outcome.applied,
            Command::RecordCalls { .. } => {
                outcome.applied && (state_changed || (fail_before == 0) != (after.fail == 0))
            }
            Command::AcquireTrial { .. } => outcome.applied && wrote,
            Command::RecordTrial { .. } | Command::ReleaseTrial { .. } => outcome.applied,
            Command::Force(_) => true,
            Command::SetShadow { .. } => wrote,
        };
        publish.then(|| event_payload(service, after, now))
    }

    /// `note_change.lua`.
    pub(super) fn note_change(&mut self, service: &'static str) -> u64 {
        let version = self.version.unwrap_or(0) + 1;
        self.version = Some(version);
        self.changes.insert(service, version);
        version
    }

    /// `changes.lua`: the version (`None`: the log is gone) and what changed after `last`.
    pub(super) fn changes(&self, last: u64) -> (Option<u64>, Vec<String>) {
        let Some(version) = self.version else {
            return (None, Vec::new());
        };
        if version <= last {
            return (Some(version), Vec::new());
        }
        let mut changed: Vec<(u64, &str)> = self
            .changes
            .iter()
            .filter(|&(_, &v)| v > last)
            .map(|(&s, &v)| (v, s))
            .collect();
        changed.sort_unstable();
        (
            Some(version),
            changed.into_iter().map(|(_, s)| s.to_owned()).collect(),
        )
    }

    /// An RDB save.
    pub(super) fn save_copy(&mut self, now: Instant) {
        self.copies.push(Copy {
            records: self.records.clone(),
            version: self.version,
            changes: self.changes.clone(),
            taken: now,
        });
    }

    pub(super) fn has_copy(&self) -> bool {
        !self.copies.is_empty()
    }

    /// Restarts empty (no persistence, a flush): down for `downtime`.
    pub(super) fn restart_empty(&mut self, now: Instant, downtime: Duration) {
        for (service, record) in &self.records {
            self.gone.insert((service, record.incarnation));
        }
        self.records.clear();
        self.version = None;
        self.changes.clear();
        self.copies.clear();
        self.lose_leases(now);
        self.epoch += 1;
        self.run_id = self.incarnations.next();
        self.counters.restarts += 1;
        self.down_until = Some(now + downtime);
    }

    /// Restarts from the copy `back` saves ago (0: the last), losing every write since.
    /// Returns how old the copy is.
    pub(super) fn restore(&mut self, back: usize, now: Instant, downtime: Duration) -> Duration {
        let index = self.copies.len() - 1 - back.min(self.copies.len() - 1);
        let copy = self.copies[index].clone();
        self.copies.truncate(index + 1);
        for (service, record) in &self.records {
            match copy.records.get(service) {
                Some(old) if old.incarnation == record.incarnation => {}
                _ => {
                    self.gone.insert((service, record.incarnation));
                }
            }
        }
        self.records = copy.records;
        self.version = copy.version;
        self.changes = copy.changes;
        // A copy's leases (ended, or of another lease's holder) are taken as lost.
        self.lose_leases(now);
        self.epoch += 1;
        self.run_id = self.incarnations.next();
        self.counters.restores += 1;
        self.down_until = Some(now + downtime);
        now.saturating_duration_since(copy.taken)
    }
}

/// An event as the scripts publish it (wire.rs: `EVENT_FIELDS`), times in whole
/// milliseconds as Redis's `PTTL` gives them.
fn event_payload(service: &str, r: &Record, now: Instant) -> String {
    let snapshot = r.snapshot(now);
    let ms = |d: Option<Duration>| d.map_or(-1, |d| saturating_millis(d) as i64);
    let open = if r.state == State::Open {
        ms(Some(snapshot.open_remaining.unwrap_or_default()))
    } else {
        -1
    };
    let trial = if r.state == State::Closed {
        -1
    } else {
        ms(snapshot.trial_remaining)
    };
    let shadow = match r.shadow {
        None => -1,
        Some(on) => i64::from(on),
    };
    format!(
        "{} {} {} {} {} {} {open} {trial} {shadow} {service}",
        r.incarnation,
        r.generation,
        r.seq,
        r.state.code(),
        r.fail,
        r.success
    )
}

/// A record's change, in a line.
fn describe(before: Option<&Record>, after: &Record, now: Instant) -> String {
    let mut line = String::new();
    match before {
        Some(b) if b.incarnation == after.incarnation => {
            let _ = write!(line, "{} g{} s{}", b.state, b.generation, b.seq);
        }
        Some(b) => {
            let _ = write!(
                line,
                "[{:x}] {} g{} s{}",
                b.incarnation & 0xffff,
                b.state,
                b.generation,
                b.seq
            );
        }
        None => line.push_str("absent"),
    }
    let _ = write!(
        line,
        " -> [{:x}] {} g{} s{} fail {}",
        after.incarnation & 0xffff,
        after.state,
        after.generation,
        after.seq,
        after.fail
    );
    if let Some(until) = after.open_until {
        let _ = write!(line, " open {:?}", until.saturating_duration_since(now));
    }
    if let Some((token, until)) = after.trial {
        let _ = write!(
            line,
            " trial {:x} {:?}",
            token.0 as u16,
            until.saturating_duration_since(now)
        );
    }
    line
}
