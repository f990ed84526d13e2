#![doc = include_str!("../../README.md")]
#![warn(missing_docs)]

// Layers, lowest first; each depends only on the ones above it in this list.
mod backend;
mod breaker;
mod core;
mod fleet;
mod local;
mod registry;
pub mod store;

pub use crate::breaker::{
    is_skipping, skip_breaker, Breaker, CallOptions, Guarded, GuardedResult, Permit, Verdict,
    MAX_OPEN_FOR,
};
pub use crate::core::{
    parse_duration, BreakerError, InitError, InvalidName, ParseStateError, RetryAt, Settings,
    State, StorageError,
};
pub use crate::fleet::{FleetStore, UnavailablePolicy};
pub use crate::local::Listener;
pub use crate::registry::{
    breaker, env_prefix, init, try_breaker, Config, Registry, ServiceOverride, MAX_NAME_LEN,
};

/// Puts a circuit breaker on an `async fn` returning `Result`; see the crate docs.
pub use infuse_macros::circuit_breaker;

/// What `#[circuit_breaker]` expands to, beside public API. Not a stable interface.
#[doc(hidden)]
pub mod __private {
    pub use crate::__infuse_register as register;
    pub use crate::registry::{declarations, global, BreakerSpec, Declaration, StaticBreaker};
    pub use inventory;
}
