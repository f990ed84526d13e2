//! Core types and the transition rules: what every other layer builds on. Nothing here
//! does I/O or names a type of a higher layer.

mod clock;
mod command;
mod error;
pub mod lease;
pub(crate) mod local_trip;
pub mod machine;
mod policy;
pub(crate) mod random;
pub mod retry_budget;
mod settings;
mod snapshot;
mod state;
mod transition;
pub mod window;

#[cfg(test)]
pub(crate) use clock::test_epoch;
pub(crate) use clock::{
    later, now_nanos, saturating_millis, saturating_nanos, store_millis, store_ms, MAX_EXPIRY_MS,
};
pub use command::{Command, Seed, Target};
pub use error::{BreakerError, InitError, InvalidName, RegistryError, RetryAt, StorageError};
pub use policy::{TripPolicy, TripReason, Verdict};
pub(crate) use settings::{check_duration, ramp_share};
pub use settings::{parse_duration, Settings};
pub(crate) use snapshot::{fresh_incarnation, process_instance};
pub use snapshot::{Outcome, Snapshot, TrialToken, Version, MAX_GENERATION};
pub use state::{ParseStateError, State};
pub use transition::TransitionReason;
pub use window::{Counts, Totals};
