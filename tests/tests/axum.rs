//! `IntoResponse for BreakerError` out of a real axum server on loopback, read over TCP
//! by a reqwest client: 503 with `Retry-After` for every breaker that is open (open,
//! half-open with a trial in flight, forced open, just tripped), 504 for a timeout, and a
//! handler's own error enum that delegates in one line.

use std::net::SocketAddr;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use infuse::{BreakerError, CallOptions};

#[allow(dead_code)]
#[infuse::circuit_breaker(service = "ax-timeout", timeout = "50ms")]
async fn declare_timeout() -> Result<(), BreakerError> {
    Ok(())
}

#[allow(dead_code)]
#[infuse::circuit_breaker(service = "ax-trip", fail_max = 1, reset_timeout = "30s")]
async fn declare_trip() -> Result<(), BreakerError> {
    Ok(())
}

/// A handler's own error type.
#[derive(Debug)]
enum ApiError {
    NotFound,
    Down,
    Breaker(BreakerError),
}

impl From<BreakerError> for ApiError {
    fn from(err: BreakerError) -> Self {
        ApiError::Breaker(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND.into_response(),
            ApiError::Down => StatusCode::BAD_GATEWAY.into_response(),
            ApiError::Breaker(err) => err.into_response(),
        }
    }
}

/// `/call/{service}`: an instant call through the service's breaker, the breaker's
/// error as the handler's.
async fn call(Path(service): Path<String>) -> Result<&'static str, BreakerError> {
    infuse::breaker(&service).call(async { Ok("ok") }).await
}

/// `/timeout`: a call that never ends, cut by the breaker's 50 ms timeout.
async fn timeout() -> Result<&'static str, BreakerError> {
    infuse::breaker("ax-timeout")
        .call(std::future::pending())
        .await
}

/// `/typed/{service}/{id}`: the handler's own error enum; id 0 does not exist.
async fn typed(Path((service, id)): Path<(String, u64)>) -> Result<String, ApiError> {
    let user = async move {
        match id {
            0 => Err(ApiError::NotFound),
            id => Ok(format!("user-{id}")),
        }
    };
    infuse::breaker(&service).call(user).await
}

/// `/trip`: a failing call that trips `ax-trip` and returns `Tripped` (`error_on_trip`).
async fn trip() -> Result<&'static str, ApiError> {
    let options = CallOptions::new().error_on_trip(true);
    infuse::breaker("ax-trip")
        .call_with(options, async { Err(ApiError::Down) })
        .await
}

async fn start() -> SocketAddr {
    let app = Router::new()
        .route("/call/{service}", get(call))
        .route("/timeout", get(timeout))
        .route("/typed/{service}/{id}", get(typed))
        .route("/trip", get(trip));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// What came back over the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    content_type: Option<String>,
    body: String,
}

async fn fetch(addr: SocketAddr, path: &str) -> Answer {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let retry_after = header(reqwest::header::RETRY_AFTER).map(|v| v.parse().unwrap());
    let content_type = header(reqwest::header::CONTENT_TYPE);
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    Answer {
        status,
        retry_after,
        content_type,
        body,
    }
}

/// A breaker's 503: `Retry-After` between 1 and `max` seconds, a JSON body with `code`.
fn assert_unavailable(answer: &Answer, service: &str, code: &str, max: u64) {
    assert_eq!(answer.status, 503, "{answer:?}");
    let secs = answer.retry_after.expect("Retry-After");
    assert!((1..=max).contains(&secs), "{answer:?}");
    assert_eq!(answer.content_type.as_deref(), Some("application/json"));
    let expected = format!(r#"{{"error":"{code}","service":"{service}","retry_after_s":{secs}}}"#);
    assert_eq!(answer.body, expected);
}

#[tokio::test]
async fn an_open_breaker_answers_503_with_retry_after() {
    let addr = start().await;
    assert_eq!(fetch(addr, "/call/ax-open").await.status, 200);
    infuse::breaker("ax-open").open().await.unwrap();
    let answer = fetch(addr, "/call/ax-open").await;
    assert_unavailable(&answer, "ax-open", "circuit_open", 60);
}

#[tokio::test]
async fn a_trial_in_flight_answers_503_with_retry_after() {
    let addr = start().await;
    let breaker = infuse::breaker("ax-half-open");
    breaker.half_open().await.unwrap();
    // This test holds the trial: the handler's call is rejected.
    let trial = breaker.acquire_owned().await.unwrap();
    let answer = fetch(addr, "/call/ax-half-open").await;
    assert_unavailable(&answer, "ax-half-open", "circuit_half_open", 60);

    trial.success().await;
    assert_eq!(fetch(addr, "/call/ax-half-open").await.status, 200);
}

#[tokio::test]
async fn a_forced_open_breaker_answers_503_with_its_reset_timeout() {
    let addr = start().await;
    infuse::breaker("ax-forced").force_open().await.unwrap();
    let answer = fetch(addr, "/call/ax-forced").await;
    assert_unavailable(&answer, "ax-forced", "circuit_forced_open", 60);
    assert_eq!(answer.retry_after, Some(60), "the default reset_timeout");
}

#[tokio::test]
async fn the_tripping_call_answers_503_with_the_reset_timeout() {
    let addr = start().await;
    let answer = fetch(addr, "/trip").await;
    assert_unavailable(&answer, "ax-trip", "circuit_tripped", 30);
    assert_eq!(answer.retry_after, Some(30));
    assert_unavailable(&fetch(addr, "/trip").await, "ax-trip", "circuit_open", 30);
}

#[tokio::test]
async fn a_timed_out_call_answers_504_without_retry_after() {
    let addr = start().await;
    let answer = fetch(addr, "/timeout").await;
    assert_eq!(answer.status, 504, "{answer:?}");
    assert_eq!(answer.retry_after, None);
    assert_eq!(answer.body, r#"{"error":"timeout","service":"ax-timeout"}"#);
}

#[tokio::test]
async fn a_handlers_error_enum_delegates_to_the_breakers_response() {
    let addr = start().await;
    assert_eq!(fetch(addr, "/typed/ax-typed/7").await.body, "user-7");
    assert_eq!(fetch(addr, "/typed/ax-typed/0").await.status, 404);
    infuse::breaker("ax-typed").open().await.unwrap();
    let answer = fetch(addr, "/typed/ax-typed/7").await;
    assert_unavailable(&answer, "ax-typed", "circuit_open", 60);
}

#[tokio::test]
async fn a_call_over_the_concurrency_cap_answers_503() {
    let response = BreakerError::Saturated {
        service: "ax-capped",
    }
    .into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A permit frees when a call ends: a short hint, not the open timeout.
    assert_eq!(response.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.starts_with(r#"{"error":"circuit_saturated","service":"ax-capped""#),
        "{body}"
    );
}
