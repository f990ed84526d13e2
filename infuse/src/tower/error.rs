//! The error of a service behind a circuit breaker.

use std::error::Error as StdError;
use std::fmt;

use crate::core::{BreakerError, InvalidName};

/// What a service behind [`CircuitBreakerLayer`](crate::tower::CircuitBreakerLayer)
/// fails with: the breaker's answer, the inner service's own error, or (for
/// [`per_key`](crate::tower::CircuitBreakerLayer::per_key)) a request whose key is not
/// a valid service name.
///
/// It is a `std::error::Error + Send + Sync + 'static` when `E` is, so it converts into
/// tower's `BoxError`; from there, `downcast_ref::<Error<E>>()` recovers it, and its
/// [`source`](StdError::source) is the [`BreakerError`] or the inner error:
///
/// ```
/// use std::error::Error as _;
/// use infuse::tower::Error;
/// use infuse::{BreakerError, RetryAt};
///
/// type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// let open = BreakerError::Open { service: "users", retry_at: RetryAt::after(std::time::Duration::from_secs(1)) };
/// let boxed: BoxError = Error::<std::io::Error>::Breaker(open.clone()).into();
/// let rejection = boxed.source().and_then(|s| s.downcast_ref::<BreakerError>());
/// assert_eq!(rejection, Some(&open));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error<E> {
    /// The breaker answered: a rejection (the request was not sent), or the breaker's
    /// `timeout` cancelled the call.
    Breaker(BreakerError),
    /// The inner service failed (and the failure was counted).
    Inner(E),
    /// `per_key` chose a name that no breaker can have; the request was not sent.
    InvalidName(InvalidName),
}

impl<E> Error<E> {
    /// The breaker's error, if the breaker answered.
    pub fn breaker_error(&self) -> Option<&BreakerError> {
        match self {
            Error::Breaker(error) => Some(error),
            _ => None,
        }
    }

    /// Whether the breaker rejected the request, so that it was never sent (see
    /// [`BreakerError::is_rejection`]).
    pub fn is_rejection(&self) -> bool {
        self.breaker_error().is_some_and(BreakerError::is_rejection)
    }

    /// The inner service's error, if it failed.
    pub fn inner(&self) -> Option<&E> {
        match self {
            Error::Inner(error) => Some(error),
            _ => None,
        }
    }

    /// The inner service's error, if it failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(error) => Some(error),
            _ => None,
        }
    }
}

/// A short description; the details are in [`source`](StdError::source), so that error
/// reports that walk the chain do not print them twice.
impl<E> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Breaker(error) if error.is_rejection() => write!(
                f,
                "request not sent: the circuit breaker of `{}` rejected it",
                error.service()
            ),
            Error::Breaker(error) => {
                write!(
                    f,
                    "the circuit breaker of `{}` failed the call",
                    error.service()
                )
            }
            Error::Inner(_) => f.write_str("the inner service failed"),
            Error::InvalidName(_) => {
                f.write_str("request not sent: no circuit breaker can be named after it")
            }
        }
    }
}

impl<E: StdError + 'static> StdError for Error<E> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Breaker(error) => Some(error),
            Error::Inner(error) => Some(error),
            Error::InvalidName(error) => Some(error),
        }
    }
}

impl<E> From<BreakerError> for Error<E> {
    fn from(error: BreakerError) -> Self {
        Error::Breaker(error)
    }
}
