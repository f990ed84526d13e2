//! `infuse::tonic` with tonic-health's generated `HealthClient` over a `Channel` behind
//! `CircuitBreakerLayer`, against a real tonic server on loopback whose answers the
//! tests choose (a server-side interceptor fails calls with the code they set) and whose
//! request count they read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use infuse::tonic::{breaker_error, status_error, GrpcClassifier, RETRY_AFTER, RETRY_PUSHBACK_MS};
use infuse::tower::{CircuitBreaker, CircuitBreakerLayer, Single};
use infuse::{Breaker, BreakerError, RetryAt, ServiceOverride, State};
use infuse_tests::support::calls::breaker_with;
use tonic::service::InterceptorLayer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::HealthReporter;
use tower::util::MapErr;
use tower::ServiceBuilder;

/// A health server on a free loopback port. Every call is counted; while `code` is not
/// 0, the interceptor fails it with that code (a trailers-only response).
struct GrpcServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
    reporter: HealthReporter,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    code: AtomicI32,
}

impl GrpcServer {
    async fn start() -> GrpcServer {
        let (reporter, health) = tonic_health::server::health_reporter();
        let seen = Arc::new(Seen::default());
        let counted = seen.clone();
        let intercept = move |request: tonic::Request<()>| {
            counted.requests.fetch_add(1, Ordering::SeqCst);
            match counted.code.load(Ordering::SeqCst) {
                0 => Ok(request),
                code => Err(Status::new(Code::from(code), "set by the test")),
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::builder()
            .layer(InterceptorLayer::new(intercept))
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener));
        let task = tokio::spawn(async move { server.await.unwrap() });
        GrpcServer {
            addr,
            seen,
            reporter,
            task,
        }
    }

    fn fail_with(&self, code: Code) {
        self.seen.code.store(code as i32, Ordering::SeqCst);
    }

    fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::SeqCst)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.to_owned(),
    }
}

fn trips_after(fail_max: u32) -> ServiceOverride {
    ServiceOverride::new()
        .fail_max(fail_max)
        .reset_timeout(Duration::from_secs(3600))
}

/// The layered channel, named (a generated client needs to see its body type).
type Guarded = MapErr<CircuitBreaker<Channel, Single, GrpcClassifier>, MapRejection>;
type MapRejection = fn(infuse::tower::Error<tonic::transport::Error>) -> tonic::codegen::StdError;

/// The generated client over the layered channel, rejections mapped to their status.
async fn client(server: &GrpcServer, breaker: Breaker) -> HealthClient<Guarded> {
    let channel = ServiceBuilder::new()
        .map_err(status_error as MapRejection)
        .layer(CircuitBreakerLayer::new(breaker).classify(GrpcClassifier))
        .service(server.channel().await);
    HealthClient::new(channel)
}

#[tokio::test]
async fn calls_are_rejected_without_reaching_the_server_while_open() {
    let server = GrpcServer::start().await;
    let breaker = breaker_with("tonic-open", trips_after(2)).await;
    let mut client = client(&server, breaker.clone()).await;

    assert!(client.check(check("")).await.is_ok());
    server.fail_with(Code::Unavailable);
    for _ in 0..2 {
        let status = client.check(check("")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "set by the test"); // the server's own status
        assert!(breaker_error(&status).is_none());
    }
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    server.fail_with(Code::Ok);
    for _ in 0..3 {
        let status = client.check(check("")).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable);
        let secs: u64 = status
            .metadata()
            .get(RETRY_AFTER)
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(secs > 3000, "{secs}");
        assert!(status.metadata().get(RETRY_PUSHBACK_MS).is_some());
        let rejection = breaker_error(&status).expect("the breaker's error");
        assert!(matches!(
            rejection,
            BreakerError::Open {
                service: "tonic-open",
                ..
            }
        ));
    }
    assert_eq!(server.requests(), 3, "a call reached the server while open");
}

#[tokio::test]
async fn the_classifier_fails_unhealthy_codes_only() {
    let server = GrpcServer::start().await;
    let failures = [
        Code::Unavailable,
        Code::DeadlineExceeded,
        Code::Internal,
        Code::ResourceExhausted,
        Code::Unknown,
    ];
    let successes = [
        Code::Ok,
        Code::NotFound,
        Code::InvalidArgument,
        Code::PermissionDenied,
        Code::Unauthenticated,
        Code::FailedPrecondition,
        Code::AlreadyExists,
        Code::Aborted,
        Code::Unimplemented,
        Code::Cancelled,
    ];
    for (codes, failing) in [(&failures[..], true), (&successes[..], false)] {
        for &code in codes {
            assert_eq!(GrpcClassifier::is_failure_code(code), failing, "{code:?}");
            let name: &'static str =
                Box::leak(format!("tonic-code-{}", code as i32).into_boxed_str());
            let breaker = breaker_with(name, trips_after(1)).await;
            let mut client = client(&server, breaker.clone()).await;
            server.fail_with(code);
            let _ = client.check(check("")).await;
            let _ = client.check(check("")).await;
            let expected = if failing { State::Open } else { State::Closed };
            assert_eq!(breaker.state().await.unwrap(), expected, "{code:?}");
        }
    }
}

#[tokio::test]
async fn not_serving_is_an_answer_not_a_failure() {
    let server = GrpcServer::start().await;
    let breaker = breaker_with("tonic-not-serving", trips_after(1)).await;
    let mut client = client(&server, breaker.clone()).await;
    server
        .reporter
        .set_service_status("users", tonic_health::ServingStatus::NotServing)
        .await;
    for _ in 0..3 {
        let reply = client.check(check("users")).await.unwrap().into_inner();
        assert_eq!(reply.status(), ServingStatus::NotServing);
    }
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn without_status_error_a_rejection_is_unknown_with_the_breaker_error_as_source() {
    let server = GrpcServer::start().await;
    let breaker = breaker_with("tonic-unmapped", trips_after(1)).await;
    breaker.open().await.unwrap();
    let channel = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker).classify(GrpcClassifier))
        .service(server.channel().await);
    let mut client = HealthClient::new(channel);
    let status = client.check(check("")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
    assert!(breaker_error(&status).unwrap().is_rejection());
    assert_eq!(server.requests(), 0);
}

#[test]
fn a_breaker_error_becomes_a_status_with_its_retry_hint() {
    let open = BreakerError::Open {
        service: "tonic-hint",
        retry_at: RetryAt::after(Duration::from_millis(2_500)),
    };
    let status = Status::from(open.clone());
    assert_eq!(status.code(), Code::Unavailable);
    // The message is the error's text (its "retry in … ms" computed when it is made).
    assert!(
        status
            .message()
            .starts_with("tonic-hint: Timeout not elapsed yet, circuit breaker still open"),
        "{}",
        status.message()
    );
    assert_eq!(status.metadata().get(RETRY_AFTER).unwrap(), "3");
    let pushback: u64 = status
        .metadata()
        .get(RETRY_PUSHBACK_MS)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2_500).contains(&pushback), "{pushback}");
    assert_eq!(breaker_error(&status), Some(&open));

    // Held open by an operator: no end, so the hint is the reset timeout (default 60 s).
    let forced = Status::from(BreakerError::ForcedOpen {
        service: "tonic-forced",
    });
    assert_eq!(forced.code(), Code::Unavailable);
    assert_eq!(forced.metadata().get(RETRY_AFTER).unwrap(), "60");
    assert_eq!(forced.metadata().get(RETRY_PUSHBACK_MS).unwrap(), "60000");

    // A call the breaker's timeout cancelled: out of time, and no hint.
    let timeout = Status::from(BreakerError::Timeout {
        service: "tonic-timeout",
        after: Duration::from_millis(100),
    });
    assert_eq!(timeout.code(), Code::DeadlineExceeded);
    assert!(timeout.metadata().get(RETRY_AFTER).is_none());
    assert!(timeout.metadata().get(RETRY_PUSHBACK_MS).is_none());
}

#[test]
fn a_call_over_the_concurrency_cap_is_unavailable() {
    let saturated = BreakerError::Saturated {
        service: "tonic-capped",
    };
    assert!(saturated.is_rejection());
    let status = Status::from(saturated.clone());
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(breaker_error(&status), Some(&saturated));
    assert_eq!(status.metadata().get(RETRY_AFTER).unwrap(), "1");
    assert_eq!(status.metadata().get(RETRY_PUSHBACK_MS).unwrap(), "1000");
    let boxed = infuse::tonic::status_error(infuse::tower::Error::<std::io::Error>::Breaker(
        saturated.clone(),
    ));
    let status = boxed.downcast_ref::<Status>().expect("a status");
    assert_eq!(status.code(), Code::Unavailable);
}

#[test]
fn only_a_trailers_only_status_is_classified() {
    use infuse::tower::Classify;
    let response = |status: u16, grpc_status: Option<&str>| {
        let mut builder = http::Response::builder().status(status);
        if let Some(code) = grpc_status {
            builder = builder.header("grpc-status", code);
        }
        builder.body(()).unwrap()
    };
    assert!(GrpcClassifier.is_failure(&response(200, Some("14"))));
    assert!(!GrpcClassifier.is_failure(&response(200, Some("0"))));
    // Headers without a status: it comes in trailers, after the body, and is not seen.
    assert!(!GrpcClassifier.is_failure(&response(200, None)));
    // Not 200 (a proxy answered): as tonic maps it.
    assert!(GrpcClassifier.is_failure(&response(503, None)));
    assert!(GrpcClassifier.is_failure(&response(429, None)));
    assert!(!GrpcClassifier.is_failure(&response(404, None)));
}
