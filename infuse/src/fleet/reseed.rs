//! A breaker's view as the seed of its record (`Command::Register { seed }`): it recreates
//! a record Redis lost (restarted empty, flushed, evicted: the first writer's view wins)
//! and replaces one older than what this process read from Redis before (a restart from
//! an old snapshot, a failover to a lagging replica). Recovery and resync reconcile whole
//! sets of breakers this way; a command that finds its record gone reseeds that one.

use std::sync::Arc;

use super::remote::Remote;
use crate::core::{Command, Outcome, StorageError};
use crate::local::Cell;

/// How many breakers a recovery or a full resync re-reads at once.
const RECONCILE_AT_ONCE: usize = 256;

/// Registers `cells`' breakers with this process's view as the seed. At most
/// [`RECONCILE_AT_ONCE`] scripts in flight: thousands sent at once would wait behind each
/// other past the deadline, fail the recovery and start it over.
pub(super) async fn reconcile(
    store: &dyn Remote,
    cells: &[Arc<Cell>],
) -> Vec<Result<Outcome, StorageError>> {
    let mut answers = Vec::with_capacity(cells.len());
    for chunk in cells.chunks(RECONCILE_AT_ONCE) {
        answers.extend(
            futures_util::future::join_all(chunk.iter().map(|cell| {
                let command = Command::Register {
                    seed: Some(cell.seed()),
                };
                let settings = cell.settings();
                async move { store.apply(cell.service, &settings, command).await }
            }))
            .await,
        );
    }
    answers
}

/// Logs a record this process (re)created from its view: Redis had lost it, or held an
/// older one.
pub(super) fn tell_reseeded(cell: &Cell, outcome: &Outcome) {
    if !outcome.applied {
        return;
    }
    if outcome.from == outcome.snapshot.state {
        tracing::info!(service = cell.service, state = %outcome.snapshot.state,
            generation = outcome.snapshot.generation,
            "Redis had lost this breaker's record: recreated it from this process's view");
    } else {
        tracing::warn!(service = cell.service, from = %outcome.from, to = %outcome.snapshot.state,
            generation = outcome.snapshot.generation,
            "Redis's record of this breaker was older than what this process had read from it (a restart from an old snapshot, or a failover to a lagging replica): replaced it with this process's view");
    }
}
