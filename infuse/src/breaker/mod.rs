//! The call path: the breaker handle, permits, the guarded future, per-call options and
//! the bypass scope. Lowest first: `options` and `skip`; `shared` (the handle type and
//! what its clones share); `admission`; `recording` and `counting`; `permit`; `guarded`; `retry`;
//! `handle` (every method of [`Breaker`]).

mod admission;
mod control;
mod counting;
mod guarded;
mod handle;
mod options;
mod permit;
mod recording;
mod retry;
mod shared;
mod skip;

pub use control::{Control, MAX_OPEN_FOR};
pub use guarded::Guarded;
pub use handle::{Concurrency, Retries};
pub use options::{CallOptions, GuardedResult};
pub use permit::Permit;
pub use retry::RetryBudget;
pub(crate) use shared::Binding;
pub use shared::Breaker;
pub use skip::{is_skipping, skip_breaker};
