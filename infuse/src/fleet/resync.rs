//! Keeping the views on the fleet's records: the pub/sub subscription brings other
//! processes' writes at once; a periodic resync repairs whatever pub/sub lost (it is
//! at-most-once) or a reconnect missed, reading the namespace's change log to re-read
//! only the breakers that changed.

use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::connection::Events;
use super::{health, jittered, lock, presence, reseed, Fleet};
use crate::core::StorageError;
use crate::store::redis::{parse_event, Changes};

/// Re-reads the breakers that changed since the last resync and applies what they hold
/// (repairs lost pub/sub messages): one read of the namespace's change log, then one
/// script per breaker that changed. Every breaker is re-read (recreating records Redis
/// lost, from this process's view) the first time, when the log is gone (Redis restarted
/// empty, flushed), or every `max(`[`FULL_RESYNC_EVERY`]`, B)` resyncs (B breakers: at
/// most one more command per resync, amortised).
///
/// [`FULL_RESYNC_EVERY`]: crate::store::redis::FULL_RESYNC_EVERY
pub(crate) async fn resync(fleet: &Fleet) {
    if !fleet.health.is_healthy() {
        return;
    }
    let pending = presence::pending(fleet);
    let read = fleet
        .store
        .changes(fleet.cells.len(), pending.announcement.as_ref())
        .await;
    presence::announced(fleet, pending, read.as_ref().ok());
    let cells = match read.map(|read| read.changes) {
        Ok(Changes::All) => {
            lock(&fleet.fresh).clear();
            let cells = fleet.cells.all();
            presence::touch(fleet, &cells); // keeps them listed in the change log
            cells
        }
        Ok(Changes::Services(services)) => {
            let fresh = std::mem::take(&mut *lock(&fleet.fresh));
            if !fresh.is_empty() {
                presence::touch(fleet, &fleet.cells.of(|service| fresh.contains(&service)));
            }
            // The breakers an earlier pass read the log past but could not re-read.
            let owed = lock(&fleet.unreconciled).clone();
            if services.is_empty() && owed.is_empty() {
                return;
            }
            let mut changed: HashSet<&str> = services.iter().map(String::as_str).collect();
            changed.extend(owed);
            fleet.cells.of(|service| changed.contains(service))
        }
        // Garbage in the log's keys: read everything (the log is not the record).
        Err(StorageError::Corrupt(_)) => fleet.cells.all(),
        Err(StorageError::Congested { .. }) => return,
        Err(error) => return health::degrade(fleet, &error),
    };
    let answers = reseed::reconcile(&*fleet.store, &cells).await;
    for (i, (cell, answer)) in cells.iter().zip(answers).enumerate() {
        match answer {
            Ok(outcome) => {
                lock(&fleet.unreconciled).remove(cell.service);
                reseed::tell_reseeded(cell, &outcome);
                cell.confirm(outcome.snapshot.version);
                cell.observe(&outcome.snapshot);
            }
            // Behind this process's own backlog. The log was read past its change: the
            // breaker is owed to the next resync (or the recovery), or its view would
            // stay stale until a full pass.
            Err(StorageError::Congested { .. }) => {
                lock(&fleet.unreconciled).insert(cell.service);
            }
            Err(error) => {
                health::on_error(fleet, cell.service, &error);
                if !fleet.health.is_healthy() {
                    // These are owed to the recovery, as above.
                    let owed = cells[i..].iter().map(|cell| cell.service);
                    lock(&fleet.unreconciled).extend(owed);
                    return;
                }
                // Garbage in this breaker's keys: its calls follow the policy (a closed
                // breaker's healthy calls never ask Redis, so tell the view).
                cell.adopt(&fleet.fallback.state_for(cell));
            }
        }
    }
}

/// Brings one breaker's view to what another process wrote (an event of the namespace's
/// channel).
pub(crate) fn on_event(fleet: &Fleet, payload: &str) {
    if !fleet.health.is_healthy() {
        // While degraded the views follow the policy; recovery re-reads every breaker.
        // (An event now may come from a script that timed out and ran late.)
        return;
    }
    match parse_event(payload) {
        Some((service, snapshot)) => {
            if let Some(cell) = fleet.cells.get(service) {
                cell.confirm(snapshot.version);
                cell.observe(&snapshot);
            }
        }
        None => tracing::debug!(payload, "ignoring an unparseable infuse event"),
    }
}

/// Keeps a subscription to the namespace's events, reconnecting with backoff (to the next
/// cluster node, or to the master the Sentinels name now) and resyncing after every
/// (re)subscribe.
pub(crate) async fn subscribe(
    fleet: Weak<Fleet>,
    mut events: Events,
    channel: String,
    mut closed: watch::Receiver<()>,
) {
    let mut delay = Duration::from_millis(100);
    let mut lost = false;
    loop {
        let connect = async {
            let mut pubsub = events.pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        if let Ok(Ok(pubsub)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            delay = Duration::from_millis(100);
            if std::mem::take(&mut lost) {
                tracing::info!(%channel, "infuse event subscription restored");
            }
            let Some(f) = fleet.upgrade() else { return };
            tokio::spawn(async move { resync(&f).await });
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    message = messages.next() => match message {
                        Some(message) => {
                            let Some(f) = fleet.upgrade() else { return };
                            if let Ok(payload) = message.get_payload::<String>() {
                                on_event(&f, &payload);
                            }
                        }
                        None => break,
                    },
                    _ = closed.changed() => return,
                }
            }
        }
        if !std::mem::replace(&mut lost, true) {
            tracing::warn!(%channel, "infuse event subscription lost; reconnecting (periodic resync goes on)");
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(delay)) => {}
            _ = closed.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

pub(crate) async fn resync_periodically(
    fleet: Weak<Fleet>,
    interval: Duration,
    mut closed: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(jittered(interval)) => {}
            _ = closed.changed() => return,
        }
        let Some(f) = fleet.upgrade() else { return };
        resync(&f).await;
    }
}
