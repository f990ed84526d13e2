//! The errors infuse returns.

use std::time::Duration;

/// A call did not run, or its failure tripped the breaker (with `error_on_trip`).
///
/// Convert it into your error type with `From`; `#[circuit_breaker]` requires
/// `E: From<BreakerError>`. The `Display` text names the service and carries pybreaker's
/// wording.
///
/// ```
/// use infuse::BreakerError;
/// let err = BreakerError::Open { service: "users", retry_after: None };
/// assert_eq!(err.service(), "users");
/// assert_eq!(err.status_code(), 503);
/// assert!(err.to_string().contains("Timeout not elapsed yet, circuit breaker still open"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerError {
    /// The call was rejected without running: the breaker is open (or half-open with its
    /// trial call already taken).
    #[error("{service}: Timeout not elapsed yet, circuit breaker still open{}", retry_hint(.retry_after))]
    Open {
        /// The target service.
        service: &'static str,
        /// Time left until a trial call is allowed, when known.
        retry_after: Option<Duration>,
    },
    /// This call's failure reached `fail_max` and opened the breaker (`error_on_trip = true`).
    #[error("{service}: Failures threshold reached, circuit breaker opened")]
    Tripped {
        /// The target service.
        service: &'static str,
    },
    /// This trial call failed and re-opened the breaker (`error_on_trip = true`).
    #[error("{service}: Trial call failed, circuit breaker opened")]
    TrialFailed {
        /// The target service.
        service: &'static str,
    },
}

fn retry_hint(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry in {} ms)", d.as_millis()),
        None => String::new(),
    }
}

impl BreakerError {
    /// The service whose breaker produced this error.
    pub fn service(&self) -> &'static str {
        match self {
            BreakerError::Open { service, .. }
            | BreakerError::Tripped { service }
            | BreakerError::TrialFailed { service } => service,
        }
    }

    /// The HTTP status to answer with: 503 Service Unavailable, as infuse did.
    pub fn status_code(&self) -> u16 {
        503
    }

    /// The time left until a trial call is allowed, for `Open`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BreakerError::Open { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The breaker error becomes an `io::Error` of kind `Other`; recover it with
/// `err.get_ref().and_then(|e| e.downcast_ref::<BreakerError>())`.
impl From<BreakerError> for std::io::Error {
    fn from(err: BreakerError) -> Self {
        std::io::Error::other(err)
    }
}

/// The shared breaker state could not be read or written.
///
/// Calls never see this error: when storage fails, the configured
/// [`UnavailablePolicy`](crate::UnavailablePolicy) decides. Inspection and control methods
/// (`state()`, `open()`, …) return it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The store did not answer within its deadline.
    #[error("{operation} on the breaker store timed out after {} ms", .after.as_millis())]
    Timeout {
        /// What was being done.
        operation: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The store could not be reached or refused the command.
    #[error("breaker store unavailable: {0}")]
    Unavailable(String),
    /// The store holds data infuse did not write (wrong type, garbage) or a script failed.
    #[error("breaker store holds unexpected data: {0}")]
    Corrupt(String),
}

/// `infuse::init` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// `init` was already called in this process.
    #[error("infuse::init was already called in this process")]
    AlreadyInitialized,
    /// Two annotated functions declare different settings for one service.
    #[error("service `{service}` is declared with conflicting settings: `{first}` ({first_settings}) and `{second}` ({second_settings}); make them agree, or declare the settings once")]
    ConflictingSettings {
        /// The service.
        service: &'static str,
        /// One declaring function (`module::fn` at `file:line`).
        first: String,
        /// Its settings.
        first_settings: String,
        /// Another declaring function.
        second: String,
        /// Its settings.
        second_settings: String,
    },
    /// A setting (from `Config` or an environment variable) is invalid.
    #[error("invalid setting {origin}: {reason}")]
    InvalidSetting {
        /// Where it came from (an environment variable name, or `Config::service("…")`).
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be set up (e.g. Redis unreachable at boot).
    #[error(transparent)]
    Storage(#[from] StorageError),
}
