//! The storage interface: a store applies [`Command`]s, one atomic transition of one
//! breaker each, never get/set primitives.
//!
//! A [`Store`] keeps the authoritative state of every breaker (in process memory, or in
//! Redis for the fleet). Each process keeps a local view on top of it for the fast path;
//! the view only talks to the store when something changes. Every answer carries the
//! breaker's state *after* the command, so any answer can refresh the view. The rules of
//! every command are in [`machine`] (`core/machine.rs`); every store must pass the
//! conformance suite (`tests/src/conformance`).
//!
//! Hidden from the docs, and no stable interface: a registry's store is one of the
//! built-in ones (`backend.rs`), so a user's [`Store`] could not be plugged in. This
//! module is here for the conformance suite, the benchmarks and the `infuse` command
//! (which reads the key layout, [`redis::keys`]).

pub mod memory;
pub mod redis;

use std::future::Future;

pub use crate::core::lease;
pub use crate::core::machine;
pub use crate::core::retry_budget;
pub use crate::core::window;
pub use crate::core::{
    Command, Counts, Outcome, Seed, Snapshot, Target, Totals, TrialToken, TripPolicy, TripReason,
    Version, MAX_GENERATION,
};
use crate::core::{Settings, StorageError};

/// Where breaker state lives.
pub trait Store: Send + Sync + 'static {
    /// Applies one command to the breaker of `service` atomically, and answers with the
    /// state after it.
    fn apply(
        &self,
        service: &'static str,
        settings: &Settings,
        command: Command,
    ) -> impl Future<Output = Result<Outcome, StorageError>> + Send;
}
