//! The storage interface: a store applies [`Command`]s, one atomic transition of one
//! breaker each, never get/set primitives.
//!
//! A [`Store`] keeps the authoritative state of every breaker (in process memory, or in
//! Redis for the fleet). Each process keeps a local view on top of it for the fast path;
//! the view only talks to the store when something changes. Every answer carries the
//! breaker's state *after* the command, so any answer can refresh the view. The rules of
//! every command are in [`machine`] (`core/machine.rs`); every store must pass the
//! conformance suite (`tests/src/conformance`). A store that shares the fleet's budgets
//! (a breaker's concurrency permits and retry tokens) among processes also implements
//! [`Budgets`], and passes that suite's budget cases.
//!
//! Hidden from the docs, and no stable interface: a registry's store is one of the
//! built-in ones (`backend.rs`), so a user's [`Store`] could not be plugged in. This
//! module is here for the conformance suite, the benchmarks and the `infuse` command
//! (which reads the key layout, [`redis::keys`]).

pub mod memory;
pub mod redis;

use std::future::Future;
use std::time::Duration;

pub use crate::core::lease;
pub use crate::core::lease::Grant;
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

/// Where the fleet's budgets of a breaker live: the leases of its `max_concurrent`
/// permits (the rule: [`lease::LeaseTable`]) and its retry tokens (the rule:
/// [`retry_budget::BudgetWindow`]). The Redis store runs one script for each; the memory
/// store applies the rules themselves on tokio's clock, the reference the conformance
/// suite checks the scripts against (a single process keeps its budgets in its cell, not
/// here).
pub trait Budgets: Send + Sync + 'static {
    /// Process `process` asks to hold `want` of `service`'s `cap` permits for `lease`,
    /// keeping at least `keep` (its calls running now) when the cap allows: answers how
    /// many it may use for new calls and how many its lease holds (see
    /// [`lease::LeaseTable::request`]).
    fn lease_permits(
        &self,
        service: &str,
        process: u64,
        keep: u32,
        want: u32,
        cap: u32,
        lease: Duration,
    ) -> impl Future<Output = Result<Grant, StorageError>> + Send;

    /// Counts `first_attempts` of `service`'s calls and asks for `wanted` retry tokens
    /// under `settings`' `retry_budget` and `retry_min_per_sec`: answers how many were
    /// granted (see [`retry_budget::BudgetWindow::take`]).
    fn retry_tokens(
        &self,
        service: &str,
        settings: &Settings,
        first_attempts: u64,
        wanted: u64,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send;
}
