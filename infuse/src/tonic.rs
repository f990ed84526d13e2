//! gRPC: the tower layer's classifier for tonic, and `From<BreakerError> for tonic::Status`
//! (feature `tonic`).
//!
//! A tonic client is a tower service over a `Channel`, so a breaker goes in front of it
//! with [`CircuitBreakerLayer`](crate::tower::CircuitBreakerLayer) and
//! [`GrpcClassifier`], which reads the gRPC status of each response:
//! `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `RESOURCE_EXHAUSTED` and `UNKNOWN`
//! are failures (the target is unhealthy); other codes are the caller's business
//! (`NOT_FOUND`, `INVALID_ARGUMENT`, …) and count as successes. [`status_error`] turns a
//! rejection into the `UNAVAILABLE` status a generated client returns, with the retry
//! hint in its metadata:
//!
//! ```text
//! let channel = ServiceBuilder::new()
//!     .map_err(infuse::tonic::status_error)
//!     .layer(CircuitBreakerLayer::new(infuse::breaker("users")).classify(GrpcClassifier))
//!     .service(channel);
//! let mut client = UsersClient::new(channel);
//! ```
//!
//! Only the status of a *trailers-only* response is classified: the `grpc-status`
//! header that a server sends when it answers an `Err(Status)` without a body (what a
//! tonic server does for a failed unary call, or a stream that fails before its first
//! message). A status in trailers, after a body, arrives when the breaker has already
//! counted the call (at the response headers, when the channel's future resolves) and
//! is not seen: a stream that fails halfway counts as a success.
//!
//! ```
//! use infuse::tonic::{GrpcClassifier, RETRY_AFTER};
//! use infuse::tower::Classify;
//! use infuse::{BreakerError, RetryAt};
//!
//! let trailers_only = |code: &str| {
//!     http::Response::builder().header("grpc-status", code).body(()).unwrap()
//! };
//! assert!(GrpcClassifier.is_failure(&trailers_only("14"))); // UNAVAILABLE
//! assert!(!GrpcClassifier.is_failure(&trailers_only("5"))); // NOT_FOUND
//! assert!(!GrpcClassifier.is_failure(&http::Response::new(()))); // status in trailers
//!
//! let open = BreakerError::Open { service: "users", retry_at: RetryAt::after(std::time::Duration::from_secs(3)) };
//! let status = tonic::Status::from(open);
//! assert_eq!(status.code(), tonic::Code::Unavailable);
//! assert_eq!(status.metadata().get(RETRY_AFTER).unwrap(), "3");
//! ```
//!
//! # Retries and the concurrency cap
//!
//! tonic's requests (`http::Request<tonic::body::Body>`) are not `Clone`, so tower's
//! `Retry` and [`RetryPolicy`](crate::tower::RetryPolicy) cannot send one again. A gRPC
//! client gets the breaker's retries (`retries`, the backoff, the retry budget) one
//! level up, around the generated client's call, where the request is made from
//! arguments: the attribute on the function that calls it,
//! `#[circuit_breaker(service = "users", retries = 2)]` (its arguments are cloned for
//! each attempt, so they must be `Clone`), or
//! [`Breaker::call_retrying`](crate::Breaker::call_retrying) with a closure that builds
//! each attempt's request. Each attempt is then a guarded call of its own (counted,
//! and held to `max_concurrent`): give the channel no layer of the same breaker, or
//! every call counts twice.
//!
//! `max_concurrent` (and `max_wait`) apply through the tower layer too: a call over the
//! cap is rejected with [`BreakerError::Saturated`], which [`status_error`] makes an
//! `UNAVAILABLE` status (with the retry hint).

use std::error::Error as StdError;
use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::core::BreakerError;
use crate::tower::{Classify, Error};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The metadata key of the retry hint in whole seconds, as HTTP's `Retry-After`.
pub const RETRY_AFTER: &str = "retry-after";

/// The metadata key of gRPC's standard retry pushback, in milliseconds (gRFC A6).
pub const RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// Classifies tonic responses by their gRPC status (see the [module docs](self)).
///
/// A response whose HTTP status is not `200` (a proxy's answer) is judged as tonic
/// would map it: a failure, except `401`, `403` and `404` (`UNAUTHENTICATED`,
/// `PERMISSION_DENIED`, `UNIMPLEMENTED`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcClassifier;

impl GrpcClassifier {
    /// Whether a call ending with `code` is a failure: `UNAVAILABLE`,
    /// `DEADLINE_EXCEEDED`, `INTERNAL`, `RESOURCE_EXHAUSTED` or `UNKNOWN`.
    pub fn is_failure_code(code: Code) -> bool {
        matches!(
            code,
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Internal
                | Code::ResourceExhausted
                | Code::Unknown
        )
    }
}

impl<B> Classify<http::Response<B>> for GrpcClassifier {
    fn is_failure(&self, response: &http::Response<B>) -> bool {
        if response.status() != http::StatusCode::OK {
            return !matches!(response.status().as_u16(), 401 | 403 | 404);
        }
        match response.headers().get(Status::GRPC_STATUS) {
            Some(code) => Self::is_failure_code(Code::from_bytes(code.as_bytes())),
            // The status comes in trailers, after the body: not seen (module docs).
            None => false,
        }
    }
}

/// `UNAVAILABLE` for a rejection (the target is not called, try again later), or
/// `DEADLINE_EXCEEDED` for a call the breaker's `timeout` cancelled (what gRPC says of a
/// call that ran out of time), with the breaker's message.
///
/// Every error but a timeout carries the retry hint in metadata: [`RETRY_AFTER`] in
/// whole seconds ([`BreakerError::retry_after_secs`]) and [`RETRY_PUSHBACK_MS`] in
/// milliseconds. The status's `source()` is the `BreakerError`.
impl From<BreakerError> for Status {
    fn from(error: BreakerError) -> Self {
        let mut status = match error {
            BreakerError::Timeout { .. } => Status::deadline_exceeded(error.to_string()),
            _ => Status::unavailable(error.to_string()),
        };
        if let Some(secs) = error.retry_after_secs() {
            let millis = match error.retry_after() {
                Some(wait) => wait.as_nanos().div_ceil(1_000_000).max(1),
                None => u128::from(secs) * 1000,
            };
            let metadata = status.metadata_mut();
            metadata.insert(RETRY_AFTER, MetadataValue::from(secs));
            let millis = u64::try_from(millis).unwrap_or(u64::MAX);
            metadata.insert(RETRY_PUSHBACK_MS, MetadataValue::from(millis));
        }
        status.set_source(Arc::new(error));
        status
    }
}

/// Maps the error of a service behind the breaker for a tonic client: the breaker's
/// error becomes its [`Status`] (so that a generated client returns `UNAVAILABLE` with
/// the retry hint rather than `UNKNOWN`), an invalid `per_key` name `INTERNAL`; the
/// inner error is passed on for tonic to map as usual. Use it with tower's
/// `ServiceBuilder::map_err` outside the layer.
pub fn status_error<E: Into<BoxError>>(error: Error<E>) -> BoxError {
    match error {
        Error::Breaker(error) => Box::new(Status::from(error)),
        Error::InvalidName(invalid) => {
            let mut status = Status::internal(invalid.to_string());
            status.set_source(Arc::new(invalid));
            Box::new(status)
        }
        Error::Inner(error) => error.into(),
    }
}

/// The breaker's error behind a status a tonic client returned, found in its `source()`
/// chain (through [`status_error`], or the layer's [`Error`] when tonic made it an
/// `UNKNOWN` status).
pub fn breaker_error(status: &Status) -> Option<&BreakerError> {
    let mut source = status.source();
    while let Some(error) = source {
        if let Some(found) = error.downcast_ref::<BreakerError>() {
            return Some(found);
        }
        source = error.source();
    }
    None
}
