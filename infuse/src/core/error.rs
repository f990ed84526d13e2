//! The errors infuse returns.

use std::fmt;
use std::time::Duration;

use crate::core::clock::{now_nanos, saturating_nanos};

/// A call did not run (the breaker rejected it), or its failure opened the breaker (with
/// `error_on_trip`).
///
/// Convert it into your error type with `From`; `#[circuit_breaker]` requires
/// `E: From<BreakerError>`. The `Display` text names the service; an open breaker's
/// rejection carries pybreaker's wording.
///
/// ```
/// use std::time::Duration;
/// use infuse::{BreakerError, RetryAt};
///
/// let err = BreakerError::Open { service: "users", retry_at: RetryAt::after(Duration::from_secs(2)) };
/// assert_eq!(err.service(), "users");
/// assert!(err.is_rejection());
/// assert_eq!(err.status_code(), 503);
/// assert!(err.retry_after().unwrap() <= Duration::from_secs(2));
/// assert!(err.to_string().contains("Timeout not elapsed yet, circuit breaker still open"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BreakerError {
    /// Rejected without running: the breaker is open.
    #[error("{service}: Timeout not elapsed yet, circuit breaker still open (retry in {} ms)", .retry_at.remaining_ms())]
    Open {
        /// The target service.
        service: &'static str,
        /// When a trial call will be allowed.
        retry_at: RetryAt,
    },
    /// Rejected without running: the breaker is half-open and another call (of this
    /// process, or of the fleet) is the trial.
    #[error("{service}: circuit breaker half-open, a trial call is in flight (retry in {} ms)", .retry_at.remaining_ms())]
    TrialInFlight {
        /// The target service.
        service: &'static str,
        /// When to ask again: the trial's result will be in by then (its lease ends).
        retry_at: RetryAt,
    },
    /// Rejected without running: an operator holds the breaker open until it is closed
    /// by hand ([`Breaker::force_open`](crate::Breaker::force_open)).
    #[error("{service}: circuit breaker held open by an operator until closed by hand")]
    ForcedOpen {
        /// The target service.
        service: &'static str,
    },
    /// Rejected without running: the breaker closed again a moment ago and is in slow
    /// start (`slow_start`), admitting a growing share of calls so the recovering target
    /// is not hit by every caller at once; this call was not among them.
    #[error("{service}: circuit breaker recovering, slow start admits only a share of calls (retry in {} ms)", .retry_at.remaining_ms())]
    Recovering {
        /// The target service.
        service: &'static str,
        /// When to try again: soon, as the share admitted grows.
        retry_at: RetryAt,
    },
    /// Rejected without running: `max_concurrent` calls to the service are in flight
    /// (with Redis, across the fleet), and none ended within `max_wait`.
    #[error(
        "{service}: too many calls in flight (max_concurrent reached), rejected without running"
    )]
    Saturated {
        /// The target service.
        service: &'static str,
    },
    /// This call's failure opened the breaker (`error_on_trip = true`).
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
    /// The call ran longer than the breaker's `timeout` (or `trial_timeout` for a trial)
    /// and was dropped, which cancels it; it counts as a failure.
    #[error("{service}: call timed out after {} ms and was cancelled", .after.as_millis())]
    Timeout {
        /// The target service.
        service: &'static str,
        /// The limit the call exceeded.
        after: Duration,
    },
}

impl BreakerError {
    /// The service whose breaker produced this error.
    pub fn service(&self) -> &'static str {
        match self {
            BreakerError::Open { service, .. }
            | BreakerError::TrialInFlight { service, .. }
            | BreakerError::ForcedOpen { service }
            | BreakerError::Recovering { service, .. }
            | BreakerError::Saturated { service }
            | BreakerError::Tripped { service }
            | BreakerError::TrialFailed { service }
            | BreakerError::Timeout { service, .. } => service,
        }
    }

    /// Whether the call was rejected without running (`Open`, `TrialInFlight`,
    /// `ForcedOpen`, `Recovering`, `Saturated`), as opposed to a call that ran and opened
    /// the breaker.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            BreakerError::Open { .. }
                | BreakerError::TrialInFlight { .. }
                | BreakerError::ForcedOpen { .. }
                | BreakerError::Recovering { .. }
                | BreakerError::Saturated { .. }
        )
    }

    /// The HTTP status to answer with: 503 Service Unavailable, as infuse did, or 504
    /// Gateway Timeout for a call that timed out.
    pub fn status_code(&self) -> u16 {
        match self {
            BreakerError::Timeout { .. } => 504,
            _ => 503,
        }
    }

    /// How long until calling again may be admitted, computed now: the open time left,
    /// the trial's lease, or slow start's hint. `None` when no time is known (held open by an operator, or
    /// not a rejection).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_at().map(RetryAt::remaining)
    }

    /// When calling again may be admitted, as a point in time (see
    /// [`retry_after`](BreakerError::retry_after)).
    pub fn retry_at(&self) -> Option<RetryAt> {
        match self {
            BreakerError::Open { retry_at, .. }
            | BreakerError::TrialInFlight { retry_at, .. }
            | BreakerError::Recovering { retry_at, .. } => Some(*retry_at),
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

/// A point in time (on tokio's clock) when a rejected call may be tried again.
///
/// A rejection stores the deadline and computes the time left only when asked, so that
/// rejecting a call never reads the clock.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RetryAt(pub(crate) u64);

impl RetryAt {
    /// The point `after` from now.
    pub fn after(after: Duration) -> RetryAt {
        RetryAt(now_nanos().saturating_add(saturating_nanos(after)))
    }

    /// The time left until then (zero once passed).
    pub fn remaining(self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(now_nanos()))
    }

    /// The time left in whole milliseconds, rounded up (what messages print).
    fn remaining_ms(&self) -> u128 {
        self.remaining().as_nanos().div_ceil(1_000_000)
    }
}

impl fmt::Debug for RetryAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RetryAt(in {:?})", self.remaining())
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
    /// The store did not answer within its deadline, but it answered other commands
    /// meanwhile and this process had many commands queued ahead of this one: the delay
    /// was this process's own queue, not the store being down. The command's outcome is
    /// unknown; the registry stays on the store (no switch to the unavailable-policy).
    #[error("{operation} on the breaker store timed out after {} ms behind {queued} commands of this process (the store answered others meanwhile)", .after.as_millis())]
    Congested {
        /// What was being done.
        operation: &'static str,
        /// The deadline that passed.
        after: Duration,
        /// How many commands of this process were in flight when it was sent.
        queued: usize,
    },
    /// The store could not be reached or refused the command.
    #[error("breaker store unavailable: {0}")]
    Unavailable(String),
    /// The store holds data infuse did not write (a wrong type, a key without expiry, a
    /// number out of range: the message names the key and field), or a record whose
    /// generation is at [`MAX_GENERATION`](crate::store::MAX_GENERATION) met a transition.
    /// Nothing was written. The breaker's calls follow the unavailable-policy; `close()`
    /// (any force) repairs it.
    #[error("breaker store holds unexpected data (close() repairs it): {0}")]
    Corrupt(String),
    /// The request was refused before reaching the store (e.g. an `open_for` duration
    /// above its maximum); nothing changed.
    #[error("invalid request: {0}")]
    InvalidInput(String),
}

/// A service name that a breaker cannot have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid service name {name:?}: {reason}")]
pub struct InvalidName {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Why a registry gives no breaker for a service: the name is not one a breaker can have,
/// or the registry already holds as many breakers as
/// [`Config::max_breakers`](crate::Config::max_breakers) allows.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), infuse::InitError> {
/// use infuse::{Config, Registry, RegistryError};
///
/// let registry = Registry::new(Config::in_memory().max_breakers(1)).await?;
/// assert!(registry.try_breaker("users").is_ok());
/// let error = registry.try_breaker("orders").unwrap_err();
/// assert!(matches!(error, RegistryError::TooManyBreakers { limit: 1, .. }));
/// assert!(error.to_string().contains("Config::max_breakers"));
/// assert!(matches!(registry.try_breaker("a{b}"), Err(RegistryError::InvalidName(_))));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name is not one a breaker can have (see [`InvalidName`]).
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The name is fine, but the registry already has `limit` breakers, the most
    /// [`Config::max_breakers`](crate::Config::max_breakers) allows. Breakers are kept for
    /// the life of the registry, so names taken from unbounded input (request paths,
    /// user ids, every host a client meets) would otherwise grow it without end.
    #[error("no breaker for `{service}`: the registry already has {limit} breakers, the most Config::max_breakers allows (raise it if this many services are expected; otherwise name breakers after a bounded set of services, not after input)")]
    TooManyBreakers {
        /// The service whose breaker was asked for.
        service: String,
        /// The limit ([`Config::max_breakers`](crate::Config::max_breakers)).
        limit: usize,
    },
}

/// `infuse::init` failed.
///
/// Its `Debug` is its message (as `Display`), hint included: `main` returning
/// `Result<(), InitError>` (or a boxed error holding one) then tells a person what to do,
/// not a struct dump. Match on the variant to tell the cases apart in code.
#[derive(thiserror::Error)]
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
    /// An override (`Config::service` or an `INFUSE_<SERVICE>_…` variable) names a
    /// service that nothing declares — most often a typo, which would otherwise be
    /// silently ignored.
    #[error("{origin} overrides service `{service}`, which no #[circuit_breaker] declares and no breaker uses{}; if the service is only created at run time, accept it with Config::allow_undeclared_overrides(true)", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownService {
        /// The override (`Config::service("user")`, or the variable's name).
        origin: String,
        /// The service it names.
        service: String,
        /// The closest declared service.
        suggestion: Option<String>,
    },
    /// A service name is invalid (see [`try_breaker`](crate::try_breaker)).
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// Redis could not be reached at boot.
    #[error("cannot reach Redis at {address}: {reason}; to boot anyway, with breakers under the unavailable-policy until Redis answers, use Config::start_degraded(true)")]
    Unreachable {
        /// The server (never with its password).
        address: String,
        /// What failed.
        reason: String,
    },
    /// The store could not be set up.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl fmt::Debug for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{BreakerError, InitError, RetryAt};

    /// Slow start's rejection is a rejection like an open breaker's: 503, a retry hint.
    #[tokio::test(start_paused = true)]
    async fn a_call_slow_start_turned_away_is_a_rejection_with_a_hint() {
        let error = BreakerError::Recovering {
            service: "users",
            retry_at: RetryAt::after(Duration::from_millis(700)),
        };
        assert!(error.is_rejection());
        assert_eq!(error.service(), "users");
        assert_eq!(error.status_code(), 503);
        assert_eq!(error.retry_after(), Some(Duration::from_millis(700)));
        assert_eq!(
            error.to_string(),
            "users: circuit breaker recovering, slow start admits only a share of calls (retry in 700 ms)"
        );
    }

    /// What `main` returning `Result<(), InitError>` prints is the message and its hint.
    #[test]
    fn an_init_error_debugs_as_its_message() {
        let error = InitError::Unreachable {
            address: "127.0.0.1:6379".to_owned(),
            reason: "connection refused".to_owned(),
        };
        assert_eq!(format!("{error:?}"), error.to_string());
        assert!(format!("{error:?}").contains("Config::start_degraded(true)"));
        let boxed: Box<dyn std::error::Error> = Box::new(error);
        assert!(format!("{boxed:?}").starts_with("cannot reach Redis at 127.0.0.1:6379"));
    }
}
