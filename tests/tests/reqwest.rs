//! `infuse::reqwest::CircuitBreakerMiddleware` against a real axum server on loopback:
//! which answers fail, that nothing is sent while the breaker is open (the server counts
//! what reaches it), how a rejection is recognised, and per-host breakers that take a
//! declared service's settings.
//!
//! Services are declared below with a long `reset_timeout`, so that an open breaker stays
//! open however slow the machine is; trials are reached with `half_open()`, except in the
//! one test of the reset timeout itself.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use infuse::reqwest::{breaker_error, CircuitBreakerMiddleware};
use infuse::{BreakerError, Settings, State};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

// Declarations give these services their settings (no `init` needed).
#[allow(dead_code)]
#[infuse::circuit_breaker(service = "rq-named", fail_max = 2, reset_timeout = "60m")]
async fn declare_named() -> Result<(), BreakerError> {
    Ok(())
}

#[allow(dead_code)]
#[infuse::circuit_breaker(service = "rq-statuses", fail_max = 2, reset_timeout = "60m")]
async fn declare_statuses() -> Result<(), BreakerError> {
    Ok(())
}

#[allow(dead_code)]
#[infuse::circuit_breaker(service = "rq-refused", fail_max = 2, reset_timeout = "60m")]
async fn declare_refused() -> Result<(), BreakerError> {
    Ok(())
}

#[allow(dead_code)]
#[infuse::circuit_breaker(service = "rq-mapped", fail_max = 1, reset_timeout = "60m")]
async fn declare_mapped() -> Result<(), BreakerError> {
    Ok(())
}

#[allow(dead_code)]
#[infuse::circuit_breaker(service = "rq-classify", fail_max = 1, reset_timeout = "60m")]
async fn declare_classify() -> Result<(), BreakerError> {
    Ok(())
}

#[allow(dead_code)]
#[infuse::circuit_breaker(service = "rq-reset", fail_max = 1, reset_timeout = "200ms")]
async fn declare_reset() -> Result<(), BreakerError> {
    Ok(())
}

/// What the server saw, and the switch of its health.
#[derive(Default)]
struct Shared {
    requests: AtomicU64,
    down: AtomicBool,
    /// `/flaky` answers 503 to this many more requests.
    flaky: AtomicU64,
}

/// An axum server on a free loopback port: `/health` answers 500 while down, else 200;
/// `/throttled` 429; `/missing` 404; `/flaky` 503 to its next `flaky` requests, then 200. Every request is counted.
struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/health", get(health))
            .route(
                "/throttled",
                get(|| async { StatusCode::TOO_MANY_REQUESTS }),
            )
            .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
            .route("/flaky", get(flaky).post(flaky))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), count))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, shared, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn health(AxumState(shared): AxumState<Arc<Shared>>) -> StatusCode {
    if shared.down.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

async fn flaky(AxumState(shared): AxumState<Arc<Shared>>) -> StatusCode {
    let failing = shared
        .flaky
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    match failing {
        true => StatusCode::SERVICE_UNAVAILABLE,
        false => StatusCode::OK,
    }
}

async fn count(
    AxumState(shared): AxumState<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

fn client(middleware: CircuitBreakerMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

/// The status of `GET url`, or the error.
async fn status(
    client: &ClientWithMiddleware,
    url: &str,
) -> Result<u16, reqwest_middleware::Error> {
    Ok(client.get(url).send().await?.status().as_u16())
}

/// `GET url` is rejected by the breaker: the error, after checking that it is the
/// middleware error `reqwest_middleware` documents, downcast the long way.
async fn rejected(client: &ClientWithMiddleware, url: &str) -> BreakerError {
    let err = status(client, url).await.expect_err("rejected");
    let reqwest_middleware::Error::Middleware(inner) = &err else {
        panic!("a rejection is a middleware error, got {err:?}");
    };
    let downcast = inner
        .downcast_ref::<BreakerError>()
        .expect("a BreakerError");
    assert_eq!(breaker_error(&err), Some(downcast));
    assert!(downcast.is_rejection(), "{downcast:?}");
    downcast.clone()
}

#[tokio::test]
async fn server_errors_trip_the_breaker_and_nothing_is_sent_while_open() {
    let server = Server::start().await;
    let breaker = infuse::breaker("rq-named");
    let client = client(CircuitBreakerMiddleware::service("rq-named"));
    let url = server.url("/health");

    assert_eq!(status(&client, &url).await.unwrap(), 200);
    server.set_down(true);
    // A 5xx is still the caller's response; it counts as a failure.
    assert_eq!(status(&client, &url).await.unwrap(), 500);
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    assert_eq!(status(&client, &url).await.unwrap(), 500);
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    assert_eq!(server.requests(), 3);

    for _ in 0..5 {
        let err = rejected(&client, &url).await;
        assert!(
            matches!(
                err,
                BreakerError::Open {
                    service: "rq-named",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert_eq!(
        server.requests(),
        3,
        "nothing is sent while the breaker is open"
    );

    // A failed trial re-opens; a good one closes.
    breaker.half_open().await.unwrap();
    assert_eq!(status(&client, &url).await.unwrap(), 500);
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    rejected(&client, &url).await;
    assert_eq!(server.requests(), 4);

    server.set_down(false);
    breaker.half_open().await.unwrap();
    assert_eq!(status(&client, &url).await.unwrap(), 200);
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    assert_eq!(status(&client, &url).await.unwrap(), 200);
    assert_eq!(server.requests(), 6);
}

#[tokio::test]
async fn too_many_requests_fails_and_not_found_succeeds() {
    let server = Server::start().await;
    let breaker = infuse::breaker("rq-statuses");
    let client = client(CircuitBreakerMiddleware::service("rq-statuses"));

    assert_eq!(
        status(&client, &server.url("/throttled")).await.unwrap(),
        429
    );
    assert_eq!(breaker.fail_counter().await.unwrap(), 1);
    // A 404 is the target answering: a success, which resets the consecutive count.
    assert_eq!(status(&client, &server.url("/missing")).await.unwrap(), 404);
    assert_eq!(breaker.fail_counter().await.unwrap(), 0);
    assert_eq!(breaker.state().await.unwrap(), State::Closed);

    assert_eq!(
        status(&client, &server.url("/throttled")).await.unwrap(),
        429
    );
    assert_eq!(
        status(&client, &server.url("/throttled")).await.unwrap(),
        429
    );
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    rejected(&client, &server.url("/missing")).await;
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn a_refused_connection_is_a_failure() {
    // A port with no listener: bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let breaker = infuse::breaker("rq-refused");
    let client = client(CircuitBreakerMiddleware::service("rq-refused"));
    let url = format!("http://{addr}/health");

    for _ in 0..2 {
        match status(&client, &url).await {
            Err(reqwest_middleware::Error::Reqwest(err)) => {
                assert!(err.is_connect(), "{err:?}");
            }
            other => panic!("expected a connection error, got {other:?}"),
        }
    }
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    let err = rejected(&client, &url).await;
    assert_eq!(err.service(), "rq-refused");
}

#[tokio::test]
async fn per_host_breakers_take_a_mapped_services_settings() {
    let mapped = Server::start().await;
    let unmapped = Server::start().await;
    let middleware =
        CircuitBreakerMiddleware::per_host().host(&mapped.addr.to_string(), "rq-mapped");
    let client = client(middleware);
    mapped.set_down(true);
    unmapped.set_down(true);

    // `rq-mapped` is declared with fail_max = 1: one failure opens it.
    assert_eq!(status(&client, &mapped.url("/health")).await.unwrap(), 500);
    assert_eq!(
        infuse::breaker("rq-mapped").state().await.unwrap(),
        State::Open
    );
    let err = rejected(&client, &mapped.url("/missing")).await;
    assert_eq!(err.service(), "rq-mapped");
    assert_eq!(mapped.requests(), 1);

    // The other host has a breaker of its own, named `host:port`, with the defaults.
    let by_host = infuse::breaker(&unmapped.addr.to_string());
    assert_eq!(by_host.settings().fail_max, Settings::DEFAULT.fail_max);
    for _ in 0..Settings::DEFAULT.fail_max - 1 {
        assert_eq!(
            status(&client, &unmapped.url("/health")).await.unwrap(),
            500
        );
    }
    assert_eq!(by_host.state().await.unwrap(), State::Closed);
    assert_eq!(
        status(&client, &unmapped.url("/health")).await.unwrap(),
        500
    );
    assert_eq!(by_host.state().await.unwrap(), State::Open);
    let err = rejected(&client, &unmapped.url("/health")).await;
    assert_eq!(err.service(), unmapped.addr.to_string());
    assert_eq!(unmapped.requests(), u64::from(Settings::DEFAULT.fail_max));
}

#[tokio::test]
async fn classify_chooses_which_responses_fail() {
    let server = Server::start().await;
    let breaker = infuse::breaker("rq-classify");
    let middleware = CircuitBreakerMiddleware::service("rq-classify")
        .classify(|response| response.status() == reqwest::StatusCode::NOT_FOUND);
    let client = client(middleware);
    server.set_down(true);

    assert_eq!(status(&client, &server.url("/health")).await.unwrap(), 500);
    assert_eq!(
        breaker.state().await.unwrap(),
        State::Closed,
        "500 is a success here"
    );
    assert_eq!(status(&client, &server.url("/missing")).await.unwrap(), 404);
    assert_eq!(breaker.state().await.unwrap(), State::Open);
}

#[tokio::test]
async fn a_trial_after_the_reset_timeout_closes_the_breaker() {
    let server = Server::start().await;
    let breaker = infuse::breaker("rq-reset");
    let client = client(CircuitBreakerMiddleware::service("rq-reset"));
    server.set_down(true);
    assert_eq!(status(&client, &server.url("/health")).await.unwrap(), 500);
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    server.set_down(false);

    // However long the open period really takes on this machine: wait it out, then the
    // next request is the trial, and it is sent.
    let remaining = breaker
        .snapshot()
        .await
        .unwrap()
        .open_remaining
        .unwrap_or_default();
    tokio::time::sleep(remaining + Duration::from_millis(20)).await;
    assert_eq!(status(&client, &server.url("/health")).await.unwrap(), 200);
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_request_that_cannot_be_built_is_not_counted() {
    let breaker = infuse::breaker("rq-builder");
    let client = client(CircuitBreakerMiddleware::new(breaker.clone()));
    // A scheme reqwest cannot send: the client refuses it (a builder error) after the
    // middleware, before anything reaches the network.
    for _ in 0..Settings::DEFAULT.fail_max + 1 {
        match status(&client, "ftp://127.0.0.1:9/file").await {
            Err(reqwest_middleware::Error::Reqwest(err)) => assert!(err.is_builder(), "{err:?}"),
            other => panic!("expected a builder error, got {other:?}"),
        }
    }
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    assert_eq!(breaker.fail_counter().await.unwrap(), 0);
}

/// A breaker that retries up to twice (1 ms backoff), in its own registry.
async fn retrying(service: &'static str) -> infuse::Breaker {
    let overrides = infuse::ServiceOverride::new()
        .retries(2)
        .retry_backoff(Duration::from_millis(1))
        .fail_max(100);
    infuse_tests::support::calls::breaker_with(service, overrides).await
}

#[tokio::test]
async fn a_failed_response_is_retried_with_the_breakers_settings() {
    let server = Server::start().await;
    let breaker = retrying("rq-retry").await;
    let client = client(CircuitBreakerMiddleware::new(breaker.clone()));

    server.shared.flaky.store(1, Ordering::SeqCst);
    assert_eq!(status(&client, &server.url("/flaky")).await.unwrap(), 200);
    assert_eq!(server.requests(), 2, "one retry");

    // Still failing after the last attempt: the caller gets the failed response.
    server.set_down(true);
    assert_eq!(status(&client, &server.url("/health")).await.unwrap(), 500);
    assert_eq!(server.requests(), 5, "three attempts");
    assert_eq!(breaker.fail_counter().await.unwrap(), 3);

    // A 404 is not a failure: not retried.
    assert_eq!(status(&client, &server.url("/missing")).await.unwrap(), 404);
    assert_eq!(server.requests(), 6);

    // Nor is a rejection.
    breaker.force_open().await.unwrap();
    rejected(&client, &server.url("/health")).await;
    assert_eq!(server.requests(), 6);
}

#[tokio::test]
async fn a_request_whose_body_cannot_be_copied_is_sent_once() {
    let server = Server::start().await;
    let client = client(CircuitBreakerMiddleware::new(retrying("rq-stream").await));
    server.shared.flaky.store(1, Ordering::SeqCst);
    // A body that is not bytes in memory: `try_clone` cannot copy it.
    let body = reqwest::Body::wrap(http_body_util::Full::new(&b"order 7"[..]));
    let response = client
        .post(server.url("/flaky"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(server.requests(), 1);

    // The same request with a body in memory is retried.
    server.shared.flaky.store(1, Ordering::SeqCst);
    let response = client
        .post(server.url("/flaky"))
        .body("order 7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.requests(), 3);
}
