//! The layer: which breaker, and how responses are judged.

use tower_layer::Layer;

use crate::breaker::Breaker;
use crate::registry::Registry;
use crate::tower::classify::DefaultClassifier;
use crate::tower::service::CircuitBreaker;
use crate::tower::target::{PerKey, Single};

/// Puts a circuit breaker in front of a tower service.
///
/// A request is admitted or rejected when its response future is first polled (never
/// in `poll_ready`); a rejected request is not passed to the inner service at all. An
/// inner `Err` is a failure; an `Ok` response is judged by the classifier
/// ([`DefaultClassifier`] for HTTP: `5xx` and `429` are failures).
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<T, C = DefaultClassifier> {
    target: T,
    classifier: C,
}

impl CircuitBreakerLayer<Single> {
    /// Every request goes through `breaker`.
    pub fn new(breaker: Breaker) -> Self {
        CircuitBreakerLayer {
            target: Single { breaker },
            classifier: DefaultClassifier,
        }
    }
}

impl<F> CircuitBreakerLayer<PerKey<F>> {
    /// Each request goes through the breaker of the service name `key` returns for it
    /// (e.g. the URI's authority: one breaker per target host), from the process-wide
    /// registry ([`infuse::try_breaker`](crate::try_breaker)), created on first use.
    ///
    /// `None` lets the request through unguarded. A name that no breaker can have
    /// (empty, over [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) bytes, `{`, `}` or a control
    /// character) fails the request with
    /// [`Error::InvalidName`](crate::tower::Error::InvalidName) without sending it:
    /// a misconfigured key shows at once instead of silently leaving a target
    /// unprotected. Names should come from a bounded set: each keeps its breaker for the
    /// life of the process. Once the registry holds
    /// [`Config::max_breakers`](crate::Config::max_breakers) breakers, a request whose
    /// name has no breaker yet goes through unguarded, and the first one logs a warning
    /// (once per layer) naming the limit.
    pub fn per_key<Req>(key: F) -> Self
    where
        F: Fn(&Req) -> Option<&str>,
    {
        CircuitBreakerLayer {
            target: PerKey::new(None, key),
            classifier: DefaultClassifier,
        }
    }

    /// Like [`per_key`](CircuitBreakerLayer::per_key), with breakers from `registry`.
    pub fn per_key_in<Req>(registry: Registry, key: F) -> Self
    where
        F: Fn(&Req) -> Option<&str>,
    {
        CircuitBreakerLayer {
            target: PerKey::new(Some(registry), key),
            classifier: DefaultClassifier,
        }
    }
}

impl<T, C> CircuitBreakerLayer<T, C> {
    /// Judges responses with `classifier`: a [`Classify`](crate::tower::Classify)
    /// implementation, or a closure `Fn(&Response) -> bool` returning true for a
    /// failure. It is cloned into every response future: keep it cheap to clone.
    pub fn classify<C2>(self, classifier: C2) -> CircuitBreakerLayer<T, C2> {
        CircuitBreakerLayer {
            target: self.target,
            classifier,
        }
    }
}

impl<S, T: Clone, C: Clone> Layer<S> for CircuitBreakerLayer<T, C> {
    type Service = CircuitBreaker<S, T, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.target.clone(), self.classifier.clone())
    }
}
