//! `IntoResponse for BreakerError` (feature `axum`): only the impl, documented on it (it
//! shows on [`BreakerError`]'s page).

use std::fmt::Write;

use axum_core::body::Body;
use axum_core::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};

use crate::BreakerError;

/// 503 Service Unavailable (504 Gateway Timeout for [`BreakerError::Timeout`]) with
/// `Retry-After` in whole seconds ([`retry_after_secs`](BreakerError::retry_after_secs):
/// never 0, present for every error but a timeout), and a small JSON body naming the
/// service, e.g. `{"error":"circuit_open","service":"users","retry_after_s":3}`, so that a
/// client can tell the breaker's answer from its backend's own 503. The `error` field is
/// one of `circuit_open`, `circuit_half_open` (a trial is in flight), `circuit_forced_open`,
/// `circuit_tripped`, `circuit_trial_failed` and `timeout`.
///
/// A handler's own error type delegates to it in one line:
///
/// ```
/// use axum_core::response::{IntoResponse, Response};
/// use infuse::BreakerError;
///
/// enum ApiError {
///     NotFound,
///     Breaker(BreakerError),
/// }
///
/// impl IntoResponse for ApiError {
///     fn into_response(self) -> Response {
///         match self {
///             ApiError::NotFound => http::StatusCode::NOT_FOUND.into_response(),
///             ApiError::Breaker(err) => err.into_response(),
///         }
///     }
/// }
///
/// let open = BreakerError::ForcedOpen { service: "users" };
/// let response = ApiError::Breaker(open).into_response();
/// assert_eq!(response.status(), 503);
/// assert!(response.headers().contains_key(http::header::RETRY_AFTER));
/// ```
impl IntoResponse for BreakerError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status_code()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let retry_after = self.retry_after_secs();
        let mut body = format!(r#"{{"error":"{}","service":"#, code(&self));
        push_json_string(&mut body, self.service());
        if let Some(secs) = retry_after {
            let _ = write!(body, r#","retry_after_s":{secs}"#);
        }
        body.push('}');
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The body's `error` field: what happened, in a word a client can match on.
fn code(error: &BreakerError) -> &'static str {
    match error {
        BreakerError::Open { .. } => "circuit_open",
        BreakerError::TrialInFlight { .. } => "circuit_half_open",
        BreakerError::ForcedOpen { .. } => "circuit_forced_open",
        BreakerError::Recovering { .. } => "circuit_recovering",
        BreakerError::Saturated { .. } => "circuit_saturated",
        BreakerError::Tripped { .. } => "circuit_tripped",
        BreakerError::TrialFailed { .. } => "circuit_trial_failed",
        BreakerError::Timeout { .. } => "timeout",
    }
}

/// `text` as a JSON string. The registry refuses control characters in service names, but
/// a `BreakerError` can be built by hand: they are escaped too.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_rejections_are_503_with_retry_after() {
        let error = BreakerError::Recovering {
            service: "users",
            retry_at: crate::RetryAt::after(std::time::Duration::from_millis(400)),
        };
        assert_eq!(code(&error), "circuit_recovering");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
    }

    #[test]
    fn service_names_are_escaped() {
        let mut out = String::new();
        push_json_string(&mut out, r#"a"b\c"#);
        assert_eq!(out, r#""a\"b\\c""#);
    }
}
