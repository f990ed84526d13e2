//! The call path: the breaker handle, permits, the guarded future, per-call options and
//! the bypass scope.

mod counting;
mod guarded;
mod handle;
mod options;
mod permit;
mod skip;

pub use guarded::Guarded;
pub(crate) use handle::Binding;
pub use handle::{Breaker, Verdict, MAX_OPEN_FOR};
pub use options::{CallOptions, GuardedResult};
pub use permit::Permit;
pub use skip::{is_skipping, skip_breaker};
