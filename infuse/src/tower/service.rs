//! The service a [`CircuitBreakerLayer`](crate::tower::CircuitBreakerLayer) wraps around
//! another.

use std::fmt::Debug;
use std::mem;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::tower::classify::Classify;
use crate::tower::error::Error;
use crate::tower::future::ResponseFuture;
use crate::tower::target::{Choice, PerKey, Single};

/// A service behind a circuit breaker: `T` chooses the breaker ([`Single`] or
/// [`PerKey`]), `C` classifies responses.
///
/// `poll_ready` only asks the inner service: admission is decided when the response
/// future is first polled, so readiness never takes a trial slot that the request
/// might not use.
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S, T, C> {
    inner: S,
    target: T,
    classifier: C,
}

impl<S, T, C> CircuitBreaker<S, T, C> {
    pub(crate) fn new(inner: S, target: T, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            target,
            classifier,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The inner service that was made ready, for the response future to call; a clone
    /// stays (tower's idiom: the clone has not been polled ready).
    #[inline]
    fn take_ready<Req>(&mut self) -> S
    where
        S: Service<Req> + Clone,
    {
        let clone = self.inner.clone();
        mem::replace(&mut self.inner, clone)
    }
}

impl<S, Req, C> Service<Req> for CircuitBreaker<S, Single, C>
where
    S: Service<Req> + Clone,
    S::Error: Debug,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S, Req, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let breaker = self.target.breaker.clone();
        let service = self.take_ready();
        ResponseFuture::guarded(breaker, service, request, self.classifier.clone())
    }
}

/// With [`PerKey`]: a request whose key function returns `None` goes to the inner
/// service unguarded, as does one whose name has no breaker once the registry is full
/// ([`Config::max_breakers`](crate::Config::max_breakers)); one whose key is not a valid
/// service name fails with [`Error::InvalidName`] without being sent.
impl<S, Req, F, C> Service<Req> for CircuitBreaker<S, PerKey<F>, C>
where
    S: Service<Req> + Clone,
    S::Error: Debug,
    F: Fn(&Req) -> Option<&str>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S, Req, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::Inner)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.target.choose(&request) {
            Choice::Guard(breaker) => {
                let service = self.take_ready();
                ResponseFuture::guarded(breaker, service, request, self.classifier.clone())
            }
            Choice::Pass => ResponseFuture::unguarded(self.inner.call(request)),
            Choice::Invalid(error) => ResponseFuture::invalid(error),
        }
    }
}
