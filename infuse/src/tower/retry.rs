//! Tower's own `Retry` with a breaker's retry settings: a [`Policy`] that retries what the
//! breaker counts as failures, and the breaker's budget as tower's [`Budget`].

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::time::Sleep;
use tower::retry::budget::Budget;
use tower::retry::Policy;

use crate::tower::{Classify, DefaultClassifier, Error};
use crate::{Breaker, RetryBudget};

/// The breaker's retry budget (`retry_budget`, `retry_min_per_sec`; with Redis, the
/// fleet's) for a tower policy of your own. [`RetryBudget::withdraw`] never waits: see
/// [`RetryBudget`] for what that means with Redis.
impl Budget for RetryBudget {
    fn deposit(&self) {
        RetryBudget::deposit(self);
    }

    fn withdraw(&self) -> bool {
        RetryBudget::withdraw(self)
    }
}

/// A [`tower::retry::Policy`] with a breaker's retry settings, for tower's
/// `RetryLayer`: a request is retried after a failure the breaker counts — the inner
/// service's error, a response the [`Classify`]er calls a failure (by default a `5xx` or
/// `429`), or the breaker's `timeout` — up to `retries` times, after the breaker's
/// jittered backoff (`retry_backoff`, `max_retry_backoff`), while the breaker lets calls
/// through and its retry budget has a token. A rejection ([`Error::is_rejection`]) is
/// never retried. Listeners hear of each retry (`on_retry`, after its backoff) and of a
/// retry the budget refused (`on_retry_budget_exhausted`), as with
/// [`Breaker::call_retrying`]. Without `retries` set, nothing is retried (and requests
/// are not cloned).
///
/// Put the retry layer **outside** the breaker's, so that each attempt is a call of the
/// breaker (counted, and rejected once it opens):
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
///
/// use infuse::tower::{CircuitBreakerLayer, OkIsSuccess, RetryPolicy};
/// use infuse::{Config, Registry, ServiceOverride};
/// use tower::retry::RetryLayer;
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let flaky = ServiceOverride::new().retries(2);
/// let registry = Registry::new(Config::in_memory().service("doc-retry", flaky)).await?;
/// let breaker = registry.breaker("doc-retry");
///
/// // Fails twice, then answers.
/// let calls = Arc::new(AtomicU32::new(0));
/// let seen = calls.clone();
/// let inner = service_fn(move |request: &'static str| {
///     let call = seen.fetch_add(1, Ordering::Relaxed) + 1;
///     async move {
///         match call {
///             1 | 2 => Err(std::io::Error::other("connection reset")),
///             _ => Ok(format!("{request}: pong")),
///         }
///     }
/// });
/// let mut client = ServiceBuilder::new()
///     .layer(RetryLayer::new(RetryPolicy::new(breaker.clone()).classify(OkIsSuccess)))
///     .layer(CircuitBreakerLayer::new(breaker).classify(OkIsSuccess))
///     .service(inner);
///
/// let answer = client.ready().await?.call("ping").await?;
/// assert_eq!(answer, "ping: pong");
/// assert_eq!(calls.load(Ordering::Relaxed), 3, "two retries");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RetryPolicy<C = DefaultClassifier, R = AnyError> {
    budget: RetryBudget,
    classify: C,
    retry_if: R,
    /// Retries made for this request: tower clones the policy for each request.
    retries: u32,
}

impl RetryPolicy {
    /// Retries with `breaker`'s settings and budget, judging responses as
    /// [`CircuitBreakerLayer`](crate::tower::CircuitBreakerLayer) does by default.
    pub fn new(breaker: Breaker) -> RetryPolicy {
        RetryPolicy {
            budget: breaker.retry_budget(),
            classify: DefaultClassifier,
            retry_if: AnyError,
            retries: 0,
        }
    }
}

impl<C, R> RetryPolicy<C, R> {
    /// Which responses are failures to retry: give the layer's classifier, so that what
    /// the breaker counts and what is retried agree (`OkIsSuccess` for non-HTTP
    /// services, a closure `|response: &Resp| -> bool`).
    pub fn classify<D>(self, classify: D) -> RetryPolicy<D, R> {
        RetryPolicy {
            budget: self.budget,
            classify,
            retry_if: self.retry_if,
            retries: self.retries,
        }
    }

    /// Which of the inner service's errors are retried: those for which `retry_if`
    /// returns true (a closure `|error: &E| -> bool`), as the attribute's `retry_if`.
    /// All of them by default. Responses are judged by the classifier.
    ///
    /// ```
    /// # use infuse::tower::RetryPolicy;
    /// let policy = RetryPolicy::new(infuse::breaker("doc-retry-if"))
    ///     .retry_if(|error: &std::io::Error| error.kind() != std::io::ErrorKind::InvalidInput);
    /// # let _ = policy;
    /// ```
    pub fn retry_if<S>(self, retry_if: S) -> RetryPolicy<C, S> {
        RetryPolicy {
            budget: self.budget,
            classify: self.classify,
            retry_if,
            retries: self.retries,
        }
    }

    /// The breaker whose settings and budget this policy follows.
    pub fn breaker(&self) -> &Breaker {
        self.budget.breaker()
    }
}

impl<Req, Res, E, C, R> Policy<Req, Res, Error<E>> for RetryPolicy<C, R>
where
    Req: Clone,
    C: Classify<Res>,
    R: RetryIf<E>,
{
    type Future = Backoff;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, Error<E>>) -> Option<Backoff> {
        let failed = match result {
            Ok(response) => self.classify.is_failure(response),
            Err(Error::Inner(error)) => self.retry_if.retry(error),
            // A rejection is not retried; the breaker's timeout is a counted failure.
            Err(Error::Breaker(error)) => !error.is_rejection(),
            Err(Error::InvalidName(_)) => false,
        };
        if !failed {
            return None;
        }
        let wait = self.budget.next_retry(self.retries)?;
        self.retries += 1;
        Some(Backoff {
            sleep: tokio::time::sleep(wait),
            budget: self.budget.clone(),
            retry: self.retries,
        })
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        if self.retries == 0 {
            // The request's first attempt (tower asks again before each retry).
            self.budget.breaker().settings().retries?;
            self.budget.deposit();
        }
        Some(request.clone())
    }
}

/// Which of the inner service's errors a [`RetryPolicy`] retries
/// ([`RetryPolicy::retry_if`]). Closures `Fn(&E) -> bool` are `RetryIf`s.
pub trait RetryIf<E> {
    /// Whether to retry after `error` (when the breaker and its budget allow).
    fn retry(&self, error: &E) -> bool;
}

impl<E, F: Fn(&E) -> bool> RetryIf<E> for F {
    #[inline]
    fn retry(&self, error: &E) -> bool {
        self(error)
    }
}

/// Every error of the inner service is retried: [`RetryPolicy`]'s default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnyError;

impl<E> RetryIf<E> for AnyError {
    #[inline]
    fn retry(&self, _: &E) -> bool {
        true
    }
}

pin_project_lite::pin_project! {
    /// The wait before a retry of [`RetryPolicy`]; listeners hear of the retry when it
    /// ends.
    #[derive(Debug)]
    pub struct Backoff {
        #[pin]
        sleep: Sleep,
        budget: RetryBudget,
        retry: u32,
    }
}

impl Future for Backoff {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        ready!(this.sleep.poll(cx));
        this.budget.retrying(*this.retry);
        Poll::Ready(())
    }
}
