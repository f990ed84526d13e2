//! Deciding from a response whether the call failed.

/// Decides whether a response the inner service returned is a failure for the breaker.
///
/// The inner service's own `Err` is always a failure; a classifier only judges `Ok`
/// responses (an HTTP 503 is an `Ok` for an HTTP client). Closures
/// `Fn(&Response) -> bool` are classifiers.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot classify a `{Resp}`",
    label = "no classifier for this response type",
    note = "the default classifier judges `http::Response`s; for other responses use `.classify(infuse::tower::OkIsSuccess)` or a closure `|response: &{Resp}| -> bool`"
)]
pub trait Classify<Resp> {
    /// Whether `response` counts as a failure.
    fn is_failure(&self, response: &Resp) -> bool;
}

impl<Resp, F: Fn(&Resp) -> bool> Classify<Resp> for F {
    #[inline]
    fn is_failure(&self, response: &Resp) -> bool {
        self(response)
    }
}

/// The default classifier, for HTTP: a `5xx` or `429 Too Many Requests` response is a
/// failure (the target is down or shedding load), any other status a success (a `404`
/// is the caller's problem, not the target's health).
///
/// It only judges `http::Response`s; for other responses choose [`OkIsSuccess`] or a
/// closure with [`CircuitBreakerLayer::classify`](crate::tower::CircuitBreakerLayer::classify).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassifier;

impl<B> Classify<http::Response<B>> for DefaultClassifier {
    #[inline]
    fn is_failure(&self, response: &http::Response<B>) -> bool {
        let status = response.status();
        status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS
    }
}

/// Every `Ok` response is a success: only the inner service's errors are failures. For
/// services whose responses are not HTTP responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OkIsSuccess;

impl<Resp> Classify<Resp> for OkIsSuccess {
    #[inline]
    fn is_failure(&self, _: &Resp) -> bool {
        false
    }
}
