//! `infuse::tower::CircuitBreakerLayer` in a hyper client stack against real axum servers
//! on loopback, whose answers the tests choose and whose request counts they read.

use std::error::Error as _;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State as Extract;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use infuse::tower::{CircuitBreakerLayer, Error, RetryPolicy};
use infuse::{Breaker, BreakerError, Config, Registry, ServiceOverride, State};
use infuse_tests::support::calls::{breaker_with, eventually};
use infuse_tests::support::redis_server::RedisServer;
use tower::retry::RetryLayer;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

type Request = http::Request<Empty<Bytes>>;
type Response = http::Response<Incoming>;
type HyperClient = Client<HttpConnector, Empty<Bytes>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A server on a free loopback port: `/` answers the status the test sets, `/hang`
/// never answers. Counts the requests that reach it.
struct Server {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    status: AtomicU16,
}

impl Server {
    async fn start() -> Server {
        let seen = Arc::new(Seen {
            requests: AtomicU64::new(0),
            status: AtomicU16::new(200),
        });
        let app = Router::new()
            .route("/", get(answer))
            .route("/hang", get(hang))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { addr, seen, task }
    }

    fn answer_with(&self, status: u16) {
        self.seen.status.store(status, Ordering::SeqCst);
    }

    fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn authority(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(Extract(seen): Extract<Arc<Seen>>) -> StatusCode {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    StatusCode::from_u16(seen.status.load(Ordering::SeqCst)).unwrap()
}

async fn hang(Extract(seen): Extract<Arc<Seen>>) -> StatusCode {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    std::future::pending().await
}

fn client() -> HyperClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(url: &str) -> Request {
    http::Request::get(url).body(Empty::new()).unwrap()
}

/// Counts the calls of the inner service's `call`: a rejected request must not even
/// reach it (hyper's client starts connecting there).
#[derive(Clone)]
struct CountCalls<S> {
    inner: S,
    calls: Arc<AtomicU64>,
}

impl<S: Service<R>, R> Service<R> for CountCalls<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.call(request)
    }
}

/// `fail_max` failures open the breaker for `reset`.
fn trips_after(fail_max: u32, reset: Duration) -> ServiceOverride {
    ServiceOverride::new()
        .fail_max(fail_max)
        .reset_timeout(reset)
}

async fn status_of<S>(
    service: &mut S,
    url: &str,
) -> Result<u16, Error<hyper_util::client::legacy::Error>>
where
    S: Service<Request, Response = Response, Error = Error<hyper_util::client::legacy::Error>>,
{
    let response = service.ready().await?.call(request(url)).await?;
    Ok(response.status().as_u16())
}

fn rejected<T: std::fmt::Debug>(
    outcome: Result<T, Error<hyper_util::client::legacy::Error>>,
) -> BreakerError {
    match outcome {
        Err(Error::Breaker(error)) if error.is_rejection() => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_is_sent_while_open_and_one_trial_closes_it() {
    let server = Server::start().await;
    let breaker = breaker_with("tower-open", trips_after(2, Duration::from_millis(200))).await;
    let calls = Arc::new(AtomicU64::new(0));
    let mut service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(CountCalls {
            inner: client(),
            calls: calls.clone(),
        });

    server.answer_with(500);
    for _ in 0..2 {
        // The caller gets the server's answer; the breaker counts it as a failure.
        assert_eq!(
            status_of(&mut service, &server.url("/")).await.unwrap(),
            500
        );
    }
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    server.answer_with(200);
    for _ in 0..5 {
        let error = rejected(status_of(&mut service, &server.url("/")).await);
        assert_eq!(error.service(), "tower-open");
        assert!(matches!(error, BreakerError::Open { .. }));
    }
    assert_eq!(
        server.requests(),
        2,
        "a request reached the server while open"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the inner service was called while open"
    );

    tokio::time::sleep(Duration::from_millis(250)).await; // past the reset timeout
    assert_eq!(
        status_of(&mut service, &server.url("/")).await.unwrap(),
        200
    );
    assert_eq!(server.requests(), 3);
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
}

#[tokio::test]
async fn a_dropped_trial_future_gives_the_trial_back() {
    let server = Server::start().await;
    let breaker = breaker_with(
        "tower-dropped-trial",
        trips_after(1, Duration::from_secs(3600)),
    )
    .await;
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(client());
    breaker.half_open().await.unwrap();

    // The trial: polled until the server has it, then dropped (the caller gave up).
    {
        let mut trial = pin!(service
            .ready()
            .await
            .unwrap()
            .call(request(&server.url("/hang"))));
        let reached = eventually(
            Duration::from_secs(10),
            Duration::from_millis(5),
            async || {
                let _ = futures::poll!(trial.as_mut());
                server.requests() == 1
            },
        )
        .await;
        assert!(reached, "the trial did not reach the server");
        assert_eq!(breaker.state().await.unwrap(), State::HalfOpen);
    }

    // The next request is admitted as the trial (the slot is given back in the
    // background: retry a rejected one, which sends nothing).
    let mut answered = None;
    for _ in 0..200 {
        match status_of(&mut service, &server.url("/")).await {
            Ok(status) => {
                answered = Some(status);
                break;
            }
            Err(error) => {
                assert!(error.is_rejection(), "{error:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert_eq!(answered, Some(200), "the trial slot was never given back");
    assert_eq!(server.requests(), 2);
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
}

#[tokio::test]
async fn server_errors_and_429_are_failures_404_is_not() {
    let server = Server::start().await;
    let breaker = breaker_with("tower-classes", trips_after(2, Duration::from_secs(3600))).await;
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(client());

    server.answer_with(404);
    for _ in 0..5 {
        assert_eq!(
            status_of(&mut service, &server.url("/")).await.unwrap(),
            404
        );
    }
    assert_eq!(breaker.fail_counter().await.unwrap(), 0);
    server.answer_with(429);
    assert_eq!(
        status_of(&mut service, &server.url("/")).await.unwrap(),
        429
    );
    assert_eq!(breaker.fail_counter().await.unwrap(), 1);
    server.answer_with(503);
    assert_eq!(
        status_of(&mut service, &server.url("/")).await.unwrap(),
        503
    );
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    rejected(status_of(&mut service, &server.url("/")).await);
    assert_eq!(server.requests(), 7);
}

#[tokio::test]
async fn a_custom_classifier_decides_what_fails() {
    let server = Server::start().await;
    let breaker = breaker_with("tower-custom", trips_after(2, Duration::from_secs(3600))).await;
    let layer = CircuitBreakerLayer::new(breaker.clone())
        .classify(|response: &Response| response.status() == StatusCode::NOT_FOUND);
    let mut service = layer.layer(client());

    server.answer_with(500);
    for _ in 0..3 {
        assert_eq!(
            status_of(&mut service, &server.url("/")).await.unwrap(),
            500
        );
    }
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    server.answer_with(404);
    for _ in 0..2 {
        assert_eq!(
            status_of(&mut service, &server.url("/")).await.unwrap(),
            404
        );
    }
    assert_eq!(breaker.state().await.unwrap(), State::Open);
}

#[tokio::test]
async fn the_inner_services_errors_are_failures() {
    // A port with nothing listening: connection refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let breaker = breaker_with("tower-refused", trips_after(2, Duration::from_secs(3600))).await;
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(client());
    for _ in 0..2 {
        let error = status_of(&mut service, &url).await.unwrap_err();
        assert!(!error.is_rejection());
        assert!(error.inner().unwrap().is_connect(), "{error:?}");
    }
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    rejected(status_of(&mut service, &url).await);
}

#[tokio::test]
async fn per_key_keeps_a_breaker_per_authority() {
    let (a, b) = (Server::start().await, Server::start().await);
    let config = Config::in_memory()
        .env_overrides(false)
        .service(a.authority(), trips_after(2, Duration::from_secs(3600)))
        .service(b.authority(), trips_after(2, Duration::from_secs(3600)));
    let registry = Registry::new(config).await.unwrap();
    let layer = CircuitBreakerLayer::per_key_in(registry.clone(), |request: &Request| {
        request
            .uri()
            .authority()
            .map(|authority| authority.as_str())
    });
    let mut service = layer.layer(client());
    let future = service.call(request(&b.url("/")));
    assert_send(&future);
    drop(future); // never polled: nothing sent, nothing admitted

    a.answer_with(500);
    for _ in 0..2 {
        assert_eq!(status_of(&mut service, &a.url("/")).await.unwrap(), 500);
    }
    for _ in 0..3 {
        rejected(status_of(&mut service, &a.url("/")).await);
        assert_eq!(status_of(&mut service, &b.url("/")).await.unwrap(), 200);
    }
    assert_eq!((a.requests(), b.requests()), (2, 3));
    let state = |server: &Server| registry.breaker(&server.authority());
    assert_eq!(state(&a).state().await.unwrap(), State::Open);
    assert_eq!(state(&b).state().await.unwrap(), State::Closed);
    let debug = format!("{layer:?}");
    assert!(
        debug.contains(&a.authority()) && debug.contains(&b.authority()),
        "{debug}"
    );

    // No authority (a relative URI): `None`, so unguarded; hyper refuses it itself.
    let error = status_of(&mut service, "/relative").await.unwrap_err();
    assert!(matches!(error, Error::Inner(_)), "{error:?}");
}

#[tokio::test]
async fn per_key_fails_a_request_whose_key_is_not_a_name() {
    let server = Server::start().await;
    let calls = Arc::new(AtomicU64::new(0));
    let layer =
        CircuitBreakerLayer::per_key_in(Registry::in_memory(), |_: &Request| Some("bad{name}"));
    let mut service = layer.layer(CountCalls {
        inner: client(),
        calls: calls.clone(),
    });
    let error = status_of(&mut service, &server.url("/")).await.unwrap_err();
    let Error::InvalidName(invalid) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(invalid.name, "bad{name}");
    assert!(error
        .source()
        .unwrap()
        .to_string()
        .contains("must not contain"));
    assert_eq!((server.requests(), calls.load(Ordering::SeqCst)), (0, 0));
}

#[tokio::test]
async fn the_error_converts_into_box_error_and_downcasts_to_the_breaker_error() {
    let server = Server::start().await;
    let breaker = breaker_with("tower-box-error", trips_after(1, Duration::from_secs(3600))).await;
    breaker.open().await.unwrap();
    // A stack whose error is tower's `BoxError`, as most layers above this one make it.
    let mut service = ServiceBuilder::new()
        .map_err(BoxError::from)
        .layer(CircuitBreakerLayer::new(breaker))
        .service(client());
    let error: BoxError = service
        .ready()
        .await
        .unwrap()
        .call(request(&server.url("/")))
        .await
        .unwrap_err();
    let layered = error
        .downcast_ref::<Error<hyper_util::client::legacy::Error>>()
        .expect("the layer's error");
    assert!(layered.is_rejection());
    let breaker_error = error
        .source()
        .and_then(|source| source.downcast_ref::<BreakerError>())
        .expect("the breaker's error is the source");
    assert!(matches!(breaker_error, BreakerError::Open { .. }));
    assert!(breaker_error.retry_after_secs().unwrap() > 3000);
    assert_eq!(layered.breaker_error(), Some(breaker_error));
    assert!(error.to_string().contains("tower-box-error"), "{error}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn poll_ready_admits_nothing() {
    let server = Server::start().await;
    let breaker = breaker_with("tower-ready", trips_after(1, Duration::from_secs(3600))).await;
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(client());

    // Open: ready all the same (readiness is the inner service's).
    breaker.open().await.unwrap();
    let waker = std::task::Waker::noop();
    let poll = service.poll_ready(&mut Context::from_waker(waker));
    assert!(matches!(poll, Poll::Ready(Ok(()))));

    // Half-open: readiness never takes the trial slot; the request made after it does.
    breaker.half_open().await.unwrap();
    for _ in 0..3 {
        service.ready().await.unwrap();
    }
    let mut clone = service.clone();
    clone.ready().await.unwrap();
    drop(clone); // ready, never called
    assert_eq!(
        status_of(&mut service, &server.url("/")).await.unwrap(),
        200
    );
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn non_http_services_choose_a_classifier() {
    use infuse::tower::OkIsSuccess;
    let breaker = breaker_with("tower-non-http", trips_after(1, Duration::from_secs(3600))).await;
    let mut service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).classify(OkIsSuccess))
        .service(tower::service_fn(|n: u32| async move {
            if n == 0 {
                Err(std::io::Error::other("zero"))
            } else {
                Ok::<_, std::io::Error>(n)
            }
        }));
    assert_eq!(service.ready().await.unwrap().call(7).await.unwrap(), 7);
    let error = service.ready().await.unwrap().call(0).await.unwrap_err();
    assert_eq!(error.into_inner().unwrap().to_string(), "zero");
    assert!(service
        .ready()
        .await
        .unwrap()
        .call(7)
        .await
        .unwrap_err()
        .is_rejection());
}

/// The response future can be spawned.
fn assert_send<T: Send>(_: &T) {}

/// Counts the retries listeners hear of.
#[derive(Default)]
struct Retries {
    made: AtomicU64,
    refused: AtomicU64,
}

impl infuse::Listener for Retries {
    fn on_retry(&self, _: &str, _: u32) {
        self.made.fetch_add(1, Ordering::SeqCst);
    }

    fn on_retry_budget_exhausted(&self, _: &str) {
        self.refused.fetch_add(1, Ordering::SeqCst);
    }
}

/// A breaker that retries up to `retries` times (1 ms backoff), in its own registry, and
/// the count of its retries.
async fn retrying(service: &'static str, overrides: ServiceOverride) -> (Breaker, Arc<Retries>) {
    let breaker = breaker_with(
        service,
        overrides
            .fail_max(100)
            .retry_backoff(Duration::from_millis(1)),
    )
    .await;
    let retries = Arc::new(Retries::default());
    breaker.add_listener(retries.clone());
    (breaker, retries)
}

/// A service whose first `failures` calls answer 503, the others 200; counts its calls.
fn flaky(
    failures: u64,
    calls: Arc<AtomicU64>,
) -> impl Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |_: http::Request<()>| {
        let call = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let status = if call < failures { 503 } else { 200 };
            Ok(http::Response::builder().status(status).body(()).unwrap())
        }
    })
}

/// `RetryPolicy` outside the breaker's layer, as documented.
fn with_retries<S>(
    breaker: &Breaker,
    inner: S,
) -> impl Service<http::Request<()>, Response = S::Response, Error = Error<S::Error>>
where
    S: Service<http::Request<()>, Response = http::Response<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(breaker.clone())))
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(inner)
}

#[tokio::test(start_paused = true)]
async fn the_retry_policy_retries_counted_failures_up_to_retries() {
    let (breaker, retries) = retrying("tower-retry", ServiceOverride::new().retries(2)).await;
    // Recovers on the third attempt.
    let calls = Arc::new(AtomicU64::new(0));
    let mut service = with_retries(&breaker, flaky(2, calls.clone()));
    let response = service.ready().await.unwrap().call(http::Request::new(()));
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(retries.made.load(Ordering::SeqCst), 2);

    // Never recovers: three attempts, then the last failure is the answer.
    let calls = Arc::new(AtomicU64::new(0));
    let mut service = with_retries(&breaker, flaky(u64::MAX, calls.clone()));
    let response = service.ready().await.unwrap().call(http::Request::new(()));
    assert_eq!(response.await.unwrap().status(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(retries.made.load(Ordering::SeqCst), 4);
    assert_eq!(
        breaker.fail_counter().await.unwrap(),
        3,
        "each attempt counted"
    );

    // The inner service's errors are retried too.
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let mut service = with_retries(
        &breaker,
        tower::service_fn(move |_: http::Request<()>| {
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                match first {
                    true => Err(std::io::Error::other("reset")),
                    false => Ok(http::Response::new(())),
                }
            }
        }),
    );
    let response = service.ready().await.unwrap().call(http::Request::new(()));
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Unless `retry_if` declines them.
    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let mut service = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(breaker.clone()).retry_if(
            |error: &std::io::Error| error.kind() != std::io::ErrorKind::InvalidInput,
        )))
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(tower::service_fn(move |_: http::Request<()>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                Err::<http::Response<()>, _>(std::io::Error::from(std::io::ErrorKind::InvalidInput))
            }
        }));
    let response = service.ready().await.unwrap().call(http::Request::new(()));
    assert!(response.await.unwrap_err().inner().is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "declined: not retried");
}

#[tokio::test(start_paused = true)]
async fn the_retry_policy_neither_retries_a_rejection_nor_without_retries() {
    let (breaker, retries) = retrying("tower-retry-open", ServiceOverride::new().retries(3)).await;
    breaker.force_open().await.unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let mut service = with_retries(&breaker, flaky(0, calls.clone()));
    let error = service
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap_err();
    assert!(error.is_rejection(), "{error:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(retries.made.load(Ordering::SeqCst), 0);

    let (breaker, retries) = retrying("tower-retry-unset", ServiceOverride::new()).await;
    let mut service = with_retries(&breaker, flaky(u64::MAX, calls.clone()));
    let response = service.ready().await.unwrap().call(http::Request::new(()));
    assert_eq!(response.await.unwrap().status(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one attempt");
    assert_eq!(retries.made.load(Ordering::SeqCst), 0);
    assert_eq!(retries.refused.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn the_retry_policy_spends_the_breakers_budget() {
    // One retry a second, and 1 % of a handful of first attempts adds none.
    let budget = ServiceOverride::new()
        .retries(3)
        .retry_budget(1)
        .retry_min_per_sec(1);
    let (breaker, retries) = retrying("tower-retry-budget", budget).await;
    let calls = Arc::new(AtomicU64::new(0));
    let mut service = with_retries(&breaker, flaky(u64::MAX, calls.clone()));
    for _ in 0..2 {
        let response = service.ready().await.unwrap().call(http::Request::new(()));
        assert_eq!(response.await.unwrap().status(), 503);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one retry in all");
    assert_eq!(retries.made.load(Ordering::SeqCst), 1);
    assert_eq!(retries.refused.load(Ordering::SeqCst), 2);

    // The same budget without tower: `Budget` is the breaker's.
    use tower::retry::budget::Budget;
    let budget = breaker.retry_budget();
    assert!(!Budget::withdraw(&budget), "spent this second");
    tokio::time::advance(Duration::from_secs(1)).await;
    Budget::deposit(&budget);
    assert!(Budget::withdraw(&budget));
    assert!(!Budget::withdraw(&budget));
}

#[tokio::test]
async fn max_concurrent_through_the_layer_rejects_a_call_over_the_cap() {
    let breaker = breaker_with("tower-capped", ServiceOverride::new().max_concurrent(1)).await;
    let entered = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let (inside, held) = (entered.clone(), release.clone());
    let mut service = CircuitBreakerLayer::new(breaker.clone())
        .classify(infuse::tower::OkIsSuccess)
        .layer(tower::service_fn(move |n: u32| {
            let (inside, held) = (inside.clone(), held.clone());
            async move {
                if n == 0 {
                    inside.notify_one();
                    held.notified().await;
                }
                Ok::<_, std::io::Error>(n)
            }
        }));
    let holding = tokio::spawn(service.ready().await.unwrap().call(0));
    entered.notified().await;
    let error = service.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(error.is_rejection(), "{error:?}");
    assert!(
        matches!(error.breaker_error(), Some(BreakerError::Saturated { .. })),
        "{error:?}"
    );
    release.notify_one();
    assert_eq!(holding.await.unwrap().unwrap(), 0);
    assert_eq!(service.ready().await.unwrap().call(2).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_withdrawal_never_waits_and_a_deposit_asks_ahead() {
    let server = RedisServer::start();
    let config = Config::redis(server.url())
        .env_overrides(false)
        .service("tower-fleet-budget", ServiceOverride::new().retries(1))
        .service("tower-fleet-prefetch", ServiceOverride::new().retries(1));
    let registry = Registry::new(config).await.unwrap();

    // No token held: the first withdrawal starts the request and refuses this retry.
    let budget = registry.breaker("tower-fleet-budget").retry_budget();
    assert!(!budget.withdraw());
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            async || { budget.withdraw() }
        )
        .await,
        "the tokens asked for arrive"
    );

    // A first attempt asks ahead: the first failure finds a token.
    let budget = registry.breaker("tower-fleet-prefetch").retry_budget();
    budget.deposit();
    assert!(
        eventually(
            Duration::from_secs(5),
            Duration::from_millis(10),
            async || { budget.withdraw() }
        )
        .await,
        "the prefetched token arrives"
    );
}
