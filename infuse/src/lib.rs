//! Circuit breakers for Rust services, shared by a whole fleet through Redis.
//!
//! A breaker sits in front of a target service and *fails fast*: after `fail_max`
//! consecutive failures it opens, and calls are rejected without being sent until
//! `reset_timeout` has passed; then one trial call decides whether the target recovered.
//! There is one breaker per target service; with [`Config::redis`] it is shared by every
//! process of the fleet. Semantics follow Python's pybreaker, minus its known problems.
//!
//! ```
//! use infuse::BreakerError;
//!
//! #[derive(Debug)]
//! enum ApiError {
//!     Down,
//!     Breaker(BreakerError),
//! }
//!
//! impl From<BreakerError> for ApiError {
//!     fn from(err: BreakerError) -> Self {
//!         ApiError::Breaker(err)
//!     }
//! }
//!
//! #[infuse::circuit_breaker(service = "doc-users", fail_max = 2, reset_timeout = "15s")]
//! async fn get_user(up: bool) -> Result<&'static str, ApiError> {
//!     if up { Ok("ada") } else { Err(ApiError::Down) }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! assert!(matches!(get_user(false).await, Err(ApiError::Down)));
//! assert!(matches!(get_user(false).await, Err(ApiError::Down))); // trips the breaker
//! // Open: rejected without running the body, however healthy the target now is.
//! match get_user(true).await {
//!     Err(ApiError::Breaker(err)) => assert!(err.is_rejection()),
//!     other => panic!("{other:?}"),
//! }
//! # }
//! ```
//!
//! Where to go next:
//! - [the guide](guide) — the tour, chapter by chapter: [getting
//!   started](guide::getting_started), [settings](guide::settings),
//!   [semantics](guide::semantics) (when a breaker trips), [fleet mode](guide::fleet)
//!   (Redis, and what it holds), [operator controls](guide::controls),
//!   [events and metrics](guide::observability), [the client stack](guide::integrations),
//!   [testing your code](guide::testing);
//! - [`circuit_breaker`] — the attribute and each of its arguments;
//! - [`Breaker`] — calls without the attribute ([`Breaker::call`], [`Breaker::call_owned`],
//!   [`Breaker::acquire`]), inspection and operator controls;
//! - [`init`] and [`Config`] — the store (in memory, or Redis), overrides, listeners;
//! - [`BreakerError`] — what a rejected call returns, with its retry hint;
//! - [`Snapshot`] — a breaker's shared state, as [`Breaker::snapshot`] reads it (the rules
//!   that change it are one function, `core/machine.rs`, mirrored by the Redis scripts);
//! - [`admin`] — the operator's view of a fleet (breakers, processes, histories, a
//!   change stream) and its controls, without joining the fleet;
//! - [`Listener`] — call and state events ([`Transition`] with its [`TransitionReason`],
//!   [`CallOutcome`]); every transition is also a `tracing` event.
//!
//! Integrations, each behind the cargo feature of the same name (all off by default):
//! `tower` (`infuse::tower::CircuitBreakerLayer`), `reqwest`
//! (`infuse::reqwest::CircuitBreakerMiddleware` for reqwest-middleware), `tonic` (a gRPC
//! classifier for the layer, `From<BreakerError> for tonic::Status`), `axum`
//! (`IntoResponse for BreakerError`: 503 + `Retry-After`) and `metrics`
//! (`Config::metrics`, through the `metrics` facade). The `tls` feature (on by default)
//! adds `rediss://`.
#![warn(missing_docs)]

pub mod guide;

// Layers, lowest first; each depends only on the ones above it in this list.
mod backend;
mod breaker;
mod core;
mod fleet;
mod local;
mod registry;
// The built-in stores and the key layout: for the conformance suite, the benchmarks and
// the `infuse` command, not a stable interface (a registry cannot take a user's store).
#[doc(hidden)]
pub mod store;
// The operator's plane: reads the key layout and runs the controls' scripts, over the
// layers above (never the reverse).
pub mod admin;

// Integrations: each depends on the layers above, never the reverse.
#[cfg(feature = "axum")]
mod axum;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "reqwest")]
pub mod reqwest;
#[cfg(feature = "tonic")]
pub mod tonic;
#[cfg(feature = "tower")]
pub mod tower;

pub use crate::breaker::{
    is_skipping, skip_breaker, Breaker, CallOptions, Concurrency, Guarded, GuardedResult, Permit,
    Retries, RetryBudget, MAX_OPEN_FOR,
};
pub use crate::core::{
    parse_duration, BreakerError, InitError, InvalidName, ParseStateError, RegistryError, RetryAt,
    Settings, Snapshot, State, StorageError, TransitionReason, Verdict, Version,
};
#[doc(hidden)]
pub use crate::fleet::FleetStore;
pub use crate::fleet::{FleetConnection, UnavailablePolicy};
pub use crate::local::{CallOutcome, Listener, Transition};
pub use crate::registry::{
    breaker, env_prefix, init, shutdown, try_breaker, Config, Registry, ServiceOverride,
    MAX_NAME_LEN,
};
pub use crate::store::redis::RedisConnection;

/// Puts a circuit breaker on an `async fn` returning `Result`; see the crate docs.
pub use infuse_macros::circuit_breaker;

/// What `#[circuit_breaker]` expands to, beside public API. Not a stable interface.
#[doc(hidden)]
pub mod __private {
    pub use crate::__infuse_register as register;
    pub use crate::registry::{
        declarations, global, retry_argument, BreakerSpec, CarriesBreakerError, Declaration,
        ErrorCarries, Guard, IsResult, RetryArgument, Returns, StaticBreaker,
    };
    pub use inventory;
}
