#![doc = include_str!("../../README.md")]
#![warn(missing_docs)]

mod backend;
mod breaker;
mod call;
mod config;
mod error;
mod fleet;
mod guarded;
mod listener;
mod registry;
mod settings;
mod skip;
mod state;
pub mod store;
mod view;

pub use breaker::{Breaker, Permit, Verdict};
pub use call::{CallOptions, GuardedResult};
pub use config::{env_prefix, Config, ServiceOverride};
pub use error::{BreakerError, InitError, StorageError};
pub use fleet::UnavailablePolicy;
pub use guarded::Guarded;
pub use listener::Listener;
pub use registry::{
    breaker, declarations, global, init, BreakerSpec, Declaration, Registry, StaticBreaker,
};
pub use settings::{parse_duration, Settings};
pub use skip::{is_skipping, skip_breaker};
pub use state::{ParseStateError, State};

/// Puts a circuit breaker on an `async fn` returning `Result`; see the crate docs.
pub use infuse_macros::circuit_breaker;

#[doc(hidden)]
pub use inventory as __inventory;

/// What `#[circuit_breaker]` expands to, beside public API. Not a stable interface.
#[doc(hidden)]
pub mod __private {
    pub use crate::register;
    pub use crate::registry::declarations;
    pub use crate::registry::{BreakerSpec, Declaration, StaticBreaker};
    pub use inventory;
}
