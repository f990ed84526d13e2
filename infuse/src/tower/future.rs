//! The response future: the inner call, made on the first poll once the breaker admits
//! it, and the response classified.

use std::fmt::{self, Debug};
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tower_service::Service;

use crate::breaker::{Breaker, CallOptions, Guarded};
use crate::core::{BreakerError, InvalidName};
use crate::tower::classify::Classify;
use crate::tower::error::Error;

pin_project_lite::pin_project! {
    /// The future of a request through [`CircuitBreaker`](crate::tower::CircuitBreaker).
    ///
    /// The breaker decides on its first poll, and only an admitted request reaches the
    /// inner service (whose `call` is made then). Dropping it while the request is the
    /// half-open trial gives the trial slot back, so the next request is admitted as
    /// the trial.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
        S::Error: Debug,
    {
        #[pin]
        state: State<S, Req, C>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S, Req, C>
    where
        S: Service<Req>,
        S::Error: Debug,
    {
        Guarded {
            #[pin]
            call: Guarded<Breaker, Judged<S::Response, S::Error>, Lazy<S, Req, C>>,
        },
        Unguarded {
            #[pin]
            future: S::Future,
        },
        Invalid {
            error: Option<InvalidName>,
        },
    }
}

/// The inner call's outcome as the breaker sees it: a response judged a failure is an
/// `Err`, so that the breaker counts it; it goes back to the caller as an `Ok`.
type Judged<Resp, E> = Result<Resp, Failure<Resp, E>>;

/// Why a call failed.
pub(crate) enum Failure<Resp, E> {
    /// The classifier judged the response a failure.
    Response(Resp),
    Inner(E),
    Breaker(BreakerError),
}

impl<Resp, E> From<BreakerError> for Failure<Resp, E> {
    fn from(error: BreakerError) -> Self {
        Failure::Breaker(error)
    }
}

/// By hand: listeners see the failure, and a response need not be `Debug`.
impl<Resp, E: Debug> Debug for Failure<Resp, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Response(_) => f.write_str("Response(classified as a failure)"),
            Failure::Inner(error) => f.debug_tuple("Inner").field(error).finish(),
            Failure::Breaker(error) => f.debug_tuple("Breaker").field(error).finish(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner call, made on the first poll: the guarded future polls it only once
    /// the breaker has admitted the request, so a rejected request never reaches the
    /// inner service's `call` (a hyper client starts sending there).
    pub(crate) struct Lazy<S, Req, C>
    where
        S: Service<Req>,
    {
        call: Option<(S, Req)>,
        classifier: C,
        #[pin]
        future: Option<S::Future>,
    }
}

impl<S, Req, C> Future for Lazy<S, Req, C>
where
    S: Service<Req>,
    C: Classify<S::Response>,
{
    type Output = Judged<S::Response, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some((mut service, request)) = this.call.take() {
            this.future.set(Some(service.call(request)));
        }
        let future = this
            .future
            .as_pin_mut()
            .expect("the inner call is made on the first poll");
        Poll::Ready(match ready!(future.poll(cx)) {
            Ok(response) if this.classifier.is_failure(&response) => {
                Err(Failure::Response(response))
            }
            Ok(response) => Ok(response),
            Err(error) => Err(Failure::Inner(error)),
        })
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Debug,
{
    /// `request` through `breaker`, to the (ready) `service`.
    #[inline]
    pub(crate) fn guarded(breaker: Breaker, service: S, request: Req, classifier: C) -> Self {
        let lazy = Lazy {
            call: Some((service, request)),
            classifier,
            future: None,
        };
        ResponseFuture {
            state: State::Guarded {
                call: Guarded::new(breaker, CallOptions::new(), lazy),
            },
        }
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Debug,
{
    /// A request no breaker guards.
    pub(crate) fn unguarded(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Unguarded { future },
        }
    }

    /// A request that fails without being sent.
    pub(crate) fn invalid(error: InvalidName) -> Self {
        ResponseFuture {
            state: State::Invalid { error: Some(error) },
        }
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Debug,
    C: Classify<S::Response>,
{
    type Output = Result<S::Response, Error<S::Error>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Guarded { call } => Poll::Ready(match ready!(call.poll(cx)) {
                Ok(response) | Err(Failure::Response(response)) => Ok(response),
                Err(Failure::Inner(error)) => Err(Error::Inner(error)),
                Err(Failure::Breaker(error)) => Err(Error::Breaker(error)),
            }),
            StateProj::Unguarded { future } => future.poll(cx).map_err(Error::Inner),
            StateProj::Invalid { error } => Poll::Ready(Err(Error::InvalidName(
                error.take().expect("polled after completion"),
            ))),
        }
    }
}

impl<S, Req, C> Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    S::Error: Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
