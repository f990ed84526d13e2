//! Where a command goes: to Redis while it is healthy, else to what answers without it
//! (`fallback.rs`). A record Redis lost is recreated from this process's view first; a
//! batch the fleet took may still trip the breaker for this process alone
//! (`core/local_trip.rs`).

use std::sync::Arc;

use super::{health, lock, reseed, Fleet, RedisOptions};
use crate::core::local_trip::{self, OwnCounts};
use crate::core::{
    now_nanos, saturating_nanos, Command, Counts, InitError, Outcome, Settings, Snapshot, State,
    StorageError, TrialToken,
};
use crate::local::Cell;
use crate::store::redis::keys::Audit;
use crate::store::Store;

/// Applies a command to Redis; when Redis cannot answer, calls follow the policy.
///
/// - A trial granted by the local fallback is recorded and released there.
/// - A command about a record Redis lost recreates it from this process's view first
///   (the first writer's view wins), then runs again.
/// - Inspection and control (`Register`, `Snapshot`, `Force`) return Redis's error
///   while Redis is thought healthy; once degraded, the local fallback answers them too
///   (under `LocalFallback`).
pub(super) async fn apply(
    fleet: &Fleet,
    service: &'static str,
    settings: &Settings,
    command: Command,
) -> Result<Outcome, StorageError> {
    apply_audited(fleet, service, settings, command, None).await
}

/// [`apply`], with who asked for a `Force` and why, for the breaker's history in Redis
/// (the fallback keeps no history: there it is dropped).
pub(super) async fn apply_audited(
    fleet: &Fleet,
    service: &'static str,
    settings: &Settings,
    command: Command,
    audit: Option<&Audit>,
) -> Result<Outcome, StorageError> {
    let cell = fleet.cells.get(service);
    if fleet.fallback.holds(&command) {
        return Ok(fleet
            .fallback
            .answer(service, settings, command, cell.as_deref()));
    }
    if fleet.health.is_healthy() {
        match apply_to_redis(fleet, service, settings, command, audit, cell.as_ref()).await {
            // Degraded meanwhile (another operation timed out): the views follow the
            // policy now, and this late answer would overwrite them. A trial Redis
            // granted meanwhile is given back, or the fleet would wait out its lease.
            Ok(outcome) if !fleet.health.is_healthy() => {
                if let Command::AcquireTrial { token, .. } = command {
                    if outcome.applied {
                        release_in_redis(fleet, service, settings, token);
                    }
                }
            }
            Ok(outcome) => {
                if let Command::RecordCalls { counts, .. } = command {
                    protect_locally(fleet, cell, service, settings, &counts, &outcome);
                }
                return Ok(outcome);
            }
            // This process's own backlog, not Redis being down: this command's outcome
            // is unknown (a call reports it as not counted), the registry stays on Redis.
            Err(error @ StorageError::Congested { .. }) => {
                tracing::debug!(service, %error, "a Redis command waited behind this process's own queue");
                if let Command::AcquireTrial { token, .. } | Command::RecordTrial { token, .. } =
                    command
                {
                    release_in_redis(fleet, service, settings, token);
                }
                return Err(error);
            }
            Err(error) => {
                health::on_error(fleet, service, &error);
                if let Command::AcquireTrial { token, .. } | Command::RecordTrial { token, .. } =
                    command
                {
                    // The script may still run once Redis answers, handing the fleet's
                    // trial slot to a token nobody will report: release it right behind
                    // (same connection, so it runs after; token-fenced, so it is safe).
                    release_in_redis(fleet, service, settings, token);
                }
                if is_admin(&command) {
                    return Err(error);
                }
            }
        }
    }
    if !fleet.fallback.is_local() && is_admin(&command) {
        return Err(StorageError::Unavailable(format!(
            "Redis at {} is unavailable (calls follow the policy: {})",
            fleet.address,
            fleet.fallback.policy()
        )));
    }
    let outcome = fleet
        .fallback
        .answer(service, settings, command, cell.as_deref());
    if let (Command::RecordCalls { counts, .. }, true) = (command, fleet.fallback.is_local()) {
        protect_locally(fleet, cell, service, settings, &counts, &outcome);
    }
    Ok(outcome)
}

async fn apply_to_redis(
    fleet: &Fleet,
    service: &'static str,
    settings: &Settings,
    command: Command,
    audit: Option<&Audit>,
    cell: Option<&Arc<Cell>>,
) -> Result<Outcome, StorageError> {
    let outcome = match (command, audit) {
        (Command::Force(target), Some(audit)) => {
            fleet
                .store
                .force_audited(service, settings, target, audit)
                .await?
        }
        _ => fleet.store.apply(service, settings, command).await?,
    };
    if outcome.snapshot.exists() || matches!(command, Command::Register { .. }) {
        if let Some(cell) = cell {
            cell.confirm(outcome.snapshot.version);
        }
        return Ok(outcome);
    }
    // The record is gone (Redis restarted empty, flushed, evicted): recreate it from what
    // this process's breaker knows, then run the command on it. Without a breaker (a
    // `FleetStore` driven by hand) there is no view: absent stays absent.
    let Some(cell) = cell else {
        return Ok(outcome);
    };
    let seed = Some(cell.seed());
    let reseeded = fleet
        .store
        .apply(service, settings, Command::Register { seed })
        .await?;
    reseed::tell_reseeded(cell, &reseeded);
    let outcome = fleet.store.apply(service, settings, command).await?;
    cell.confirm(outcome.snapshot.version);
    Ok(outcome)
}

/// Loads (or creates) a breaker's shared state for its first call, under the call
/// deadline; the policy answers if Redis cannot.
pub(super) async fn load(fleet: &Fleet, service: &'static str, settings: &Settings) -> Snapshot {
    if fleet.health.is_healthy() {
        let deadline = fleet.store.deadlines().call;
        // Under the call deadline, timed by the store itself: behind this process's own
        // backlog (thousands of breakers loading at once) a timeout is `Congested`, not
        // Redis being down.
        let register = Command::Register { seed: None };
        let result = fleet
            .store
            .apply_within(service, settings, register, deadline)
            .await;
        match result {
            Ok(outcome) => {
                if let Some(cell) = fleet.cells.get(service) {
                    cell.confirm(outcome.snapshot.version);
                }
                return outcome.snapshot;
            }
            Err(error) => health::on_error(fleet, service, &error),
        }
    }
    let cell = fleet.cells.get(service);
    let answer = fleet
        .fallback
        .answer(service, settings, Command::Snapshot, cell.as_deref());
    answer.snapshot
}

/// Sends a trial release to Redis without waiting for it.
fn release_in_redis(fleet: &Fleet, service: &'static str, settings: &Settings, token: TrialToken) {
    let (Some(fleet), Ok(runtime)) = (fleet.me.upgrade(), tokio::runtime::Handle::try_current())
    else {
        return; // the lease expires on its own
    };
    let settings = *settings;
    runtime.spawn(async move {
        let release = Command::ReleaseTrial { token };
        let _ = fleet.store.apply(service, &settings, release).await;
    });
}

/// Adds a batch to this process's own counts of the breaker; when the fleet's breaker
/// stays closed although they alone trip a rule (`min_instances` not met), opens the
/// breaker for this process only, for `reset_timeout`.
fn protect_locally(
    fleet: &Fleet,
    cell: Option<Arc<Cell>>,
    service: &'static str,
    settings: &Settings,
    counts: &Counts,
    outcome: &Outcome,
) {
    if !local_trip::applies(settings) {
        return;
    }
    let fleet_closed = outcome.applied && outcome.snapshot.state == State::Closed;
    let now = tokio::time::Instant::now();
    let trips = {
        let mut own = lock(&fleet.own_counts);
        let own: &mut OwnCounts = own.entry(service).or_default();
        local_trip::trips_alone(own, settings, counts, fleet_closed, now)
    };
    if !trips {
        return;
    }
    tracing::warn!(
        service,
        min_instances = settings.min_instances,
        "this process's calls alone trip the breaker, but too few processes report failures for a fleet-wide trip: open for this process only"
    );
    if let Some(cell) = cell {
        cell.quarantine(now_nanos().saturating_add(saturating_nanos(settings.reset_timeout)));
    }
}

/// Inspection and control: errors go back to the caller instead of to the policy.
fn is_admin(command: &Command) -> bool {
    matches!(
        command,
        Command::Register { .. } | Command::Snapshot | Command::Force(_)
    )
}

/// The fleet layer as a store of its own: the Redis store behind the health gate, the
/// unavailable-policy and the local fallback — what [`Config::redis`] gives the breakers
/// of a registry. Built by [`Config::fleet_store`]; for the store conformance suite, or to
/// drive breaker records by hand. No stable interface.
///
/// [`Config::redis`]: crate::Config::redis
/// [`Config::fleet_store`]: crate::Config::fleet_store
#[derive(Debug, Clone)]
pub struct FleetStore {
    fleet: Arc<Fleet>,
}

impl FleetStore {
    pub(crate) async fn connect(options: &RedisOptions) -> Result<FleetStore, InitError> {
        Ok(FleetStore {
            fleet: Fleet::connect(options).await?,
        })
    }

    /// Whether commands currently go to Redis (`false` while the policy answers).
    pub fn is_healthy(&self) -> bool {
        self.fleet.health.is_healthy()
    }
}

impl Store for FleetStore {
    async fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> Result<Outcome, StorageError> {
        apply(&self.fleet, service, settings, command).await
    }
}
