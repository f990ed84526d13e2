//! Per-call-site options, and the bound that makes a function's return type guardable.

use std::fmt::Debug;

use crate::core::BreakerError;

/// How one call site treats its results: which errors are not failures, and which error
/// the tripping call returns.
///
/// ```
/// #[derive(Debug)]
/// enum ApiError { NotFound, Breaker(infuse::BreakerError) }
/// fn not_found(e: &ApiError) -> bool { matches!(e, ApiError::NotFound) }
///
/// let options = infuse::CallOptions::new().exclude(not_found).error_on_trip(true);
/// # let _ = options;
/// ```
// Laid out by hand (measured, BENCHMARKS.md § 5.1): with the two predicates side by side,
// a healthy call awaited in a tokio runtime took 20–24 ns instead of 14 ns, most likely
// because one 16-byte store zeroes both and narrower loads read them back as the future
// moves.
#[repr(C)]
pub struct CallOptions<E> {
    pub(crate) exclude: Option<fn(&E) -> bool>,
    pub(crate) error_on_trip: bool,
    pub(crate) ignore: Option<fn(&E) -> bool>,
}

impl<E> CallOptions<E> {
    /// No exclusions; the tripping call returns its own error.
    pub const fn new() -> Self {
        CallOptions {
            exclude: None,
            ignore: None,
            error_on_trip: false,
        }
    }

    /// Errors for which `predicate` returns true are not failures: as in pybreaker they
    /// are returned unchanged and count as successes.
    pub const fn exclude(mut self, predicate: fn(&E) -> bool) -> Self {
        self.exclude = Some(predicate);
        self
    }

    /// With `true`, the call that trips the breaker (and a failing trial) returns
    /// [`BreakerError::Tripped`] / [`BreakerError::TrialFailed`] instead of its own error
    /// (pybreaker's `throw_new_error_on_trip`).
    pub const fn error_on_trip(mut self, yes: bool) -> Self {
        self.error_on_trip = yes;
        self
    }

    /// Errors for which `predicate` returns true count as neither success nor failure
    /// (Resilience4j's `ignoreExceptions`): they leave every counter and the window as
    /// they were, and a trial call ending in one gives its slot back without a verdict.
    /// Checked before [`exclude`](CallOptions::exclude).
    pub const fn ignore(mut self, predicate: fn(&E) -> bool) -> Self {
        self.ignore = Some(predicate);
        self
    }

    pub(crate) fn is_ignored(&self, error: &E) -> bool {
        self.ignore.is_some_and(|f| f(error))
    }

    pub(crate) fn is_excluded(&self, error: &E) -> bool {
        self.exclude.is_some_and(|f| f(error))
    }
}

impl<E> Default for CallOptions<E> {
    fn default() -> Self {
        CallOptions::new()
    }
}

impl<E> Clone for CallOptions<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for CallOptions<E> {}

/// A return type a breaker can guard: `Result<T, E>` (under any alias) whose error can
/// carry a [`BreakerError`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be guarded by a circuit breaker",
    label = "a #[circuit_breaker] function must return `Result<T, E>` with `E: From<infuse::BreakerError> + Debug`",
    note = "return a `Result` whose error type implements `From<infuse::BreakerError>` (e.g. `impl From<infuse::BreakerError> for MyError`, or use `std::io::Error` / `anyhow::Error`)"
)]
pub trait GuardedResult: Sized {
    /// The success type.
    type Ok;
    /// The error type.
    type Err: From<BreakerError> + Debug;
    /// Splits into a `Result`.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
    /// Looks at the outcome without moving it (so the healthy path hands the caller's
    /// value back untouched).
    fn as_result(&self) -> Result<&Self::Ok, &Self::Err>;
    /// Rebuilds from a `Result`.
    fn from_result(result: Result<Self::Ok, Self::Err>) -> Self;
}

impl<T, E: From<BreakerError> + Debug> GuardedResult for Result<T, E> {
    type Ok = T;
    type Err = E;

    #[inline]
    fn into_result(self) -> Result<T, E> {
        self
    }

    #[inline]
    fn as_result(&self) -> Result<&T, &E> {
        self.as_ref()
    }

    #[inline]
    fn from_result(result: Result<T, E>) -> Self {
        result
    }
}
