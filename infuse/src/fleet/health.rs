//! The health gate: when Redis times out or is unreachable, the whole registry switches
//! once (logged once) to the unavailable-policy, so calls stop waiting on it; a monitor
//! pings with backoff and, once Redis answers, reconciles the breakers with the fleet and
//! switches back ([`recover`]). Garbage in one breaker's keys affects that breaker alone.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{jittered, lock, reseed, Fleet};
use crate::core::{now_nanos, Outcome, State, StorageError};
use crate::local::Cell;
use crate::store::redis::{Changes, LogRead};

/// Whether commands go to Redis, and what this process already reported.
#[derive(Debug)]
pub(super) struct Health {
    /// False while degraded: the policy answers.
    healthy: AtomicBool,
    /// Whether the monitor runs.
    monitoring: AtomicBool,
    /// The breakers whose keys were found holding garbage (logged once each).
    corrupt_reported: Mutex<HashSet<&'static str>>,
}

impl Health {
    pub(super) fn new(healthy: bool) -> Health {
        Health {
            healthy: AtomicBool::new(healthy),
            monitoring: AtomicBool::new(false),
            corrupt_reported: Mutex::default(),
        }
    }

    pub(super) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Switches to the policy; true for the call that switched.
    fn switch_off(&self) -> bool {
        self.healthy.swap(false, Ordering::AcqRel)
    }

    /// Whether this error, met by `service`, is the first sign of garbage in its keys.
    fn first_corruption(&self, service: &'static str) -> bool {
        lock(&self.corrupt_reported).insert(service)
    }
}

/// Reacts to a failed Redis operation: unreachable or slow Redis degrades the whole
/// registry (once); garbage in one breaker's keys affects only that breaker.
pub(super) fn on_error(fleet: &Fleet, service: &'static str, error: &StorageError) {
    match error {
        StorageError::Corrupt(detail) => {
            if fleet.health.first_corruption(service) {
                tracing::error!(service, %detail, policy = %fleet.fallback.policy(),
                    "unexpected data in this breaker's Redis keys; its calls follow the policy (`close()` repairs the keys)");
            }
        }
        // This process's own backlog, not Redis being down (see RedisStore).
        StorageError::Congested { .. } => {
            tracing::debug!(service, %error, "a Redis command waited behind this process's own queue");
        }
        _ => degrade(fleet, error),
    }
}

/// Switches the registry to the policy (once), and starts the monitor.
pub(super) fn degrade(fleet: &Fleet, error: &StorageError) {
    if !fleet.health.switch_off() {
        return;
    }
    tracing::warn!(address = %fleet.address, %error, policy = %fleet.fallback.policy(),
        "Redis unavailable; breakers switch to the policy until it answers again");
    if !fleet.fallback.is_local() {
        for cell in fleet.cells.all() {
            cell.adopt(&fleet.fallback.state_for(&cell));
        }
    }
    start_monitor(fleet);
}

/// Pings Redis with backoff until it answers and [`recover`] succeeds (unless one runs).
pub(super) fn start_monitor(fleet: &Fleet) {
    if fleet.health.monitoring.swap(true, Ordering::AcqRel) {
        return;
    }
    let me = fleet.me.clone();
    let mut closed = fleet.closing.subscribe();
    tokio::spawn(async move {
        let mut delay = Duration::from_millis(50);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(jittered(delay)) => {}
                _ = closed.changed() => return,
            }
            // Capped low: while Redis is down this is the only traffic to it, and a
            // short cap brings the fleet state back soon after Redis returns.
            delay = (delay * 2).min(Duration::from_millis(250));
            let Some(fleet) = me.upgrade() else { return };
            if fleet.store.ping().await.is_ok() && recover(&fleet).await {
                fleet.health.monitoring.store(false, Ordering::Release);
                return;
            }
        }
    });
}

/// Back to shared state: reconcile the breakers that may differ from their records (a
/// record older than this process's view is replaced by the view; see
/// [`Command::Register`](crate::core::Command::Register)), then adopt what Redis holds
/// and drop the local fallback.
///
/// Under the local fallback those are the breakers this process used on its own
/// meanwhile and the ones the change log says changed since its last read: a short
/// outage costs a few scripts, not one per breaker (with every process recovering at
/// once, that would be processes × breakers scripts on a Redis that just came back).
/// Every breaker is reconciled when the log is gone or went back (Redis restarted empty
/// or was flushed: lost records are recreated from the views), when a full pass is due,
/// and under the other policies (every view holds the policy's state).
async fn recover(fleet: &Fleet) -> bool {
    if fleet.store.load_scripts().await.is_err() {
        return false;
    }
    let mut cells = if fleet.fallback.is_local() {
        match fleet.store.changes(fleet.cells.len(), None).await {
            Ok(LogRead {
                changes: Changes::Services(changed),
                ..
            }) => {
                let mut wanted: HashSet<&str> = changed.iter().map(String::as_str).collect();
                wanted.extend(fleet.fallback.seeded());
                wanted.extend(lock(&fleet.unreconciled).iter());
                fleet.cells.of(|service| wanted.contains(service))
            }
            Ok(_) => fleet.cells.all(),
            Err(_) => return false,
        }
    } else {
        fleet.cells.all()
    };
    let mut answers = reseed::reconcile(&*fleet.store, &cells).await;
    loop {
        // Redis down or slow again: the next attempt. A breaker's own garbage, or a
        // script behind this process's own backlog, is no reason to stay degraded: the
        // first follows the policy, the second is owed to the next resync.
        let down = |answer: &Result<Outcome, StorageError>| matches!(answer, Err(e) if !matches!(e, StorageError::Congested { .. } | StorageError::Corrupt(_)));
        if answers.iter().any(down) {
            // The change log was read past these: the next attempt must not forget them.
            lock(&fleet.unreconciled).extend(cells.iter().map(|cell| cell.service));
            return false;
        }
        // Breakers first used on the fallback while those were reconciled: theirs too,
        // or their views would keep the fallback's state (its decisions) as if it were
        // the fleet's once healthy. (No await from the last check to the switch below.)
        let seeded = fleet.fallback.seeded();
        let late: Vec<Arc<Cell>> = fleet
            .cells
            .of(|service| seeded.contains(service))
            .into_iter()
            .filter(|cell| !cells.iter().any(|done| done.service == cell.service))
            .collect();
        if late.is_empty() {
            break;
        }
        answers.extend(reseed::reconcile(&*fleet.store, &late).await);
        cells.extend(late);
    }
    let local_trips = fleet.fallback.reset();
    lock(&fleet.unreconciled).clear();
    fleet.health.healthy.store(true, Ordering::Release);
    let now = now_nanos();
    let mut behind = Vec::new();
    for (cell, answer) in cells.iter().zip(answers) {
        let outcome = match answer {
            Ok(outcome) => outcome,
            Err(StorageError::Congested { .. }) => {
                behind.push(cell.service);
                continue;
            }
            Err(error) => {
                on_error(fleet, cell.service, &error);
                cell.adopt(&fleet.fallback.state_for(cell));
                continue;
            }
        };
        reseed::tell_reseeded(cell, &outcome);
        cell.confirm(outcome.snapshot.version);
        cell.adopt(&outcome.snapshot);
        // A trip of the fallback's that the fleet did not make: it keeps protecting this
        // process until its own open period ends (or the fleet's record moves on), and
        // the record stays the fleet's.
        let tripped_here = local_trips.get(cell.service).copied();
        if let Some(until) = tripped_here.filter(|&until| until > now) {
            if !outcome.applied && outcome.snapshot.state == State::Closed {
                tracing::info!(service = cell.service,
                    "Redis is back and the fleet's breaker is closed: the trip this process made on its fallback protects this process alone until its open time ends");
                cell.quarantine(until);
            }
        }
    }
    lock(&fleet.unreconciled).extend(behind); // for the next resync
    tracing::info!(address = %fleet.address, reconciled = cells.len(),
        "Redis available again; breakers follow the fleet state");
    true
}
