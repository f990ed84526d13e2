//! A circuit breaker in a tower stack (feature `tower`).
//!
//! [`CircuitBreakerLayer`] guards a tower service (an HTTP client, a gRPC channel) with
//! one breaker, or with a breaker per target chosen from each request
//! ([`CircuitBreakerLayer::per_key`]). A rejected request never reaches the inner
//! service — its `call` is not even made — and the caller gets
//! [`Error::Breaker`]. The inner service's errors are failures; responses are judged by
//! a [`Classify`]er: for HTTP, by default, `5xx` and `429` are failures.
//!
//! Admission happens when the response future is first polled, not in `poll_ready`, so
//! a service made ready but never called holds nothing; dropping a response future
//! while it is the half-open trial gives the trial slot back. The healthy path neither
//! boxes nor allocates: [`ResponseFuture`] is a named future holding the breaker's
//! guarded call.
//!
//! ```
//! use std::future::{ready, Ready};
//! use std::task::{Context, Poll};
//!
//! use infuse::tower::CircuitBreakerLayer;
//! use tower_layer::Layer;
//! use tower_service::Service;
//!
//! /// A target that answers 503 to everything.
//! #[derive(Clone)]
//! struct Down;
//!
//! impl Service<http::Request<()>> for Down {
//!     type Response = http::Response<()>;
//!     type Error = std::io::Error;
//!     type Future = Ready<Result<http::Response<()>, std::io::Error>>;
//!
//!     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
//!         Poll::Ready(Ok(()))
//!     }
//!
//!     fn call(&mut self, _: http::Request<()>) -> Self::Future {
//!         let mut response = http::Response::new(());
//!         *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
//!         ready(Ok(response))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let breaker = infuse::breaker("doc-tower"); // default settings: fail_max = 5
//! let mut client = CircuitBreakerLayer::new(breaker).layer(Down);
//! for _ in 0..5 {
//!     // The caller still gets its 503s; the breaker counts them as failures.
//!     let response = client.call(http::Request::new(())).await.unwrap();
//!     assert_eq!(response.status(), 503);
//! }
//! // Open: rejected without calling `Down`.
//! let error = client.call(http::Request::new(())).await.unwrap_err();
//! assert!(error.is_rejection());
//! assert!(error.breaker_error().unwrap().retry_after_secs().is_some());
//! # }
//! ```
//!
//! With tower's `ServiceBuilder`: `ServiceBuilder::new().layer(CircuitBreakerLayer::new(b))
//! .service(client)`. For gRPC, see `infuse::tonic` (feature `tonic`).
//!
//! # Retries and the concurrency cap
//!
//! The breaker's retry settings (`retries`, `retry_backoff`, `max_retry_backoff`,
//! `retry_budget`, `retry_min_per_sec`) apply through tower's own `Retry`, with
//! [`RetryPolicy`] as its policy, placed outside the breaker's layer so that each attempt
//! is a guarded call: `ServiceBuilder::new().layer(RetryLayer::new(RetryPolicy::new(b.clone())))
//! .layer(CircuitBreakerLayer::new(b))`. For a policy of your own, the breaker's budget
//! is a `tower::retry::budget::Budget` ([`Breaker::retry_budget`](crate::Breaker::retry_budget)).
//! Requests must be `Clone` (tower's `Retry` keeps a copy to send again).
//!
//! `max_concurrent` applies to every request through the layer: one over the cap (with
//! `max_wait`, one that waited in vain) fails with [`Error::Breaker`] holding
//! [`BreakerError::Saturated`](crate::BreakerError::Saturated), a rejection, never
//! retried by [`RetryPolicy`].

mod classify;
mod error;
mod future;
mod layer;
mod retry;
mod service;
mod target;

pub use classify::{Classify, DefaultClassifier, OkIsSuccess};
pub use error::Error;
pub use future::ResponseFuture;
pub use layer::CircuitBreakerLayer;
pub use retry::{AnyError, Backoff, RetryIf, RetryPolicy};
pub use service::CircuitBreaker;
pub use target::{PerKey, Single};
