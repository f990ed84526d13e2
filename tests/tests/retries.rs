//! `Breaker::call_retrying`: which failures are retried, the backoff, the breaker
//! stopping retries, and the in-memory retry budget (per process), on paused clocks.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use infuse::{
    Breaker, BreakerError, CallOptions, Config, Listener, Registry, ServiceOverride, State,
};

#[derive(Default)]
struct Counts {
    retries: AtomicU32,
    exhausted: AtomicU32,
}

impl Listener for Counts {
    fn on_retry(&self, _: &str, _: u32) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    fn on_retry_budget_exhausted(&self, _: &str) {
        self.exhausted.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug, PartialEq)]
enum ApiError {
    Unavailable,
    NotFound,
    BadRequest,
    Breaker(BreakerError),
}

impl From<BreakerError> for ApiError {
    fn from(error: BreakerError) -> Self {
        ApiError::Breaker(error)
    }
}

async fn breaker(service: &'static str, settings: ServiceOverride) -> (Breaker, Arc<Counts>) {
    let registry = Registry::new(Config::in_memory().service(service, settings))
        .await
        .unwrap();
    let breaker = registry.breaker(service);
    let counts = Arc::new(Counts::default());
    breaker.add_listener(counts.clone());
    (breaker, counts)
}

/// Calls `breaker` once through `call_retrying_with`, each attempt answering `answer`
/// for its number (1 = the first attempt); returns the result and the attempts that ran
/// (a rejected attempt's future is made but never polled).
async fn attempts(
    breaker: &Breaker,
    options: CallOptions<ApiError>,
    retry_if: Option<fn(&ApiError) -> bool>,
    answer: impl Fn(u32) -> Result<u32, ApiError>,
) -> (Result<u32, ApiError>, u32) {
    let made = AtomicU32::new(0);
    let result = breaker
        .call_retrying_with(options, retry_if, || async {
            let n = made.fetch_add(1, Ordering::Relaxed) + 1;
            answer(n)
        })
        .await;
    (result, made.load(Ordering::Relaxed))
}

fn generous() -> ServiceOverride {
    ServiceOverride::new().fail_max(1_000).retries(3)
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_retried_until_a_success_or_the_last_attempt() {
    let (b, counts) = breaker("retry-basic", generous()).await;
    let (result, made) = attempts(&b, CallOptions::new(), None, |n| {
        if n < 3 {
            Err(ApiError::Unavailable)
        } else {
            Ok(n)
        }
    })
    .await;
    assert_eq!((result, made), (Ok(3), 3));
    let (result, made) =
        attempts(&b, CallOptions::new(), None, |_| Err(ApiError::Unavailable)).await;
    assert_eq!(
        (result, made),
        (Err(ApiError::Unavailable), 4),
        "1 + retries"
    );
    assert_eq!(counts.retries.load(Ordering::Relaxed), 2 + 3);
    // Every attempt was a call of its own: the breaker counted each failure.
    assert_eq!(b.fail_counter().await.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn without_retries_it_is_one_call() {
    let (b, _) = breaker("retry-none", ServiceOverride::new().fail_max(1_000)).await;
    let (result, made) =
        attempts(&b, CallOptions::new(), None, |_| Err(ApiError::Unavailable)).await;
    assert_eq!((result, made), (Err(ApiError::Unavailable), 1));
}

#[tokio::test(start_paused = true)]
async fn rejections_excluded_and_ignored_errors_and_declined_errors_are_not_retried() {
    let (b, counts) = breaker("retry-which", generous()).await;
    let options = CallOptions::new()
        .exclude(|e: &ApiError| *e == ApiError::NotFound)
        .ignore(|e: &ApiError| *e == ApiError::BadRequest);
    for kind in [ApiError::NotFound, ApiError::BadRequest] {
        let expected = format!("{kind:?}");
        let (result, made) = attempts(&b, options, None, |_| {
            Err(match expected.as_str() {
                "NotFound" => ApiError::NotFound,
                _ => ApiError::BadRequest,
            })
        })
        .await;
        assert_eq!(made, 1, "{expected}: {result:?}");
    }
    let transient: fn(&ApiError) -> bool = |e| matches!(e, ApiError::Unavailable);
    let (result, made) = attempts(&b, options, Some(transient), |n| {
        if n == 1 {
            Err(ApiError::Unavailable)
        } else {
            Err(ApiError::NotFound)
        }
    })
    .await;
    assert_eq!(
        (result, made),
        (Err(ApiError::NotFound), 2),
        "retry_if said yes once"
    );
    let decline: fn(&ApiError) -> bool = |_| false;
    let (_, made) = attempts(&b, options, Some(decline), |_| Err(ApiError::Unavailable)).await;
    assert_eq!(made, 1, "retry_if declined");

    b.force_open().await.unwrap();
    let (result, made) = attempts(&b, options, None, |_| Ok(1)).await;
    assert_eq!(made, 0, "rejected: never made");
    assert!(
        matches!(
            result,
            Err(ApiError::Breaker(BreakerError::ForcedOpen { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(counts.retries.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_that_trips_the_breaker_ends_the_retries() {
    let (b, _) = breaker("retry-trip", ServiceOverride::new().fail_max(2).retries(5)).await;
    let (result, made) =
        attempts(&b, CallOptions::new(), None, |_| Err(ApiError::Unavailable)).await;
    assert_eq!(
        (result, made),
        (Err(ApiError::Unavailable), 2),
        "the second failure tripped it"
    );
    assert_eq!(b.state().await.unwrap(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_retried_and_backoff_stays_under_its_caps() {
    let settings = generous()
        .timeout(Duration::from_millis(100))
        .retry_backoff(Duration::from_millis(40))
        .max_retry_backoff(Duration::from_millis(100));
    let (b, _) = breaker("retry-timeout", settings).await;
    let made = AtomicU32::new(0);
    let started = tokio::time::Instant::now();
    let result: Result<(), ApiError> = b
        .call_retrying(|| async {
            made.fetch_add(1, Ordering::Relaxed);
            std::future::pending().await
        })
        .await;
    assert!(
        matches!(result, Err(ApiError::Breaker(BreakerError::Timeout { .. }))),
        "{result:?}"
    );
    assert_eq!(made.load(Ordering::Relaxed), 4);
    // Four timeouts of 100 ms, and backoffs of at most 40, 80 and 100 ms.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took <= Duration::from_millis(620),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_budget_allows_its_share_of_first_attempts_plus_the_floor() {
    let settings = generous().retry_budget(20).retry_min_per_sec(5);
    let (b, counts) = breaker("retry-budget", settings).await;
    // 100 failing calls within one second, each wanting 3 retries.
    for _ in 0..100 {
        let _ = attempts(&b, CallOptions::new(), None, |_| Err(ApiError::Unavailable)).await;
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    let retries = counts.retries.load(Ordering::Relaxed);
    let exhausted = counts.exhausted.load(Ordering::Relaxed);
    assert!(
        (20..=25).contains(&retries),
        "20 % of 100 first attempts, plus at most 5 this second: {retries}"
    );
    assert!(exhausted >= 75, "the rest were refused: {exhausted}");

    // Ten seconds later the window has moved on: only the floor is left.
    tokio::time::advance(Duration::from_secs(11)).await;
    let before = counts.retries.load(Ordering::Relaxed);
    let _ = attempts(&b, CallOptions::new(), None, |_| Err(ApiError::Unavailable)).await;
    assert_eq!(
        counts.retries.load(Ordering::Relaxed) - before,
        3,
        "the floor: 5 a second"
    );
}

/// `Unavailable` is worth another attempt; nothing else is.
fn is_transient(error: &ApiError) -> bool {
    matches!(error, ApiError::Unavailable)
}

#[infuse::circuit_breaker(service = "retry-attr", fail_max = 100, retries = 2, retry_if = is_transient)]
async fn fetch(attempts: Arc<AtomicU32>, failing: u32, error: &str) -> Result<u32, ApiError> {
    let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= failing {
        return Err(match error {
            "unavailable" => ApiError::Unavailable,
            _ => ApiError::NotFound,
        });
    }
    Ok(n)
}

struct Client {
    attempts: AtomicU32,
}

impl Client {
    #[infuse::circuit_breaker(service = "retry-method", fail_max = 100, retries = 1)]
    async fn get(&self, path: String) -> Result<String, ApiError> {
        match self.attempts.fetch_add(1, Ordering::Relaxed) {
            0 => Err(ApiError::Unavailable),
            _ => Ok(path),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_attribute_retries_with_cloned_arguments_and_retry_if() {
    let attempts = Arc::new(AtomicU32::new(0));
    assert_eq!(fetch(attempts.clone(), 2, "unavailable").await, Ok(3));
    attempts.store(0, Ordering::Relaxed);
    assert_eq!(
        fetch(attempts.clone(), 5, "unavailable").await,
        Err(ApiError::Unavailable),
        "1 + 2 attempts"
    );
    assert_eq!(attempts.load(Ordering::Relaxed), 3);
    attempts.store(0, Ordering::Relaxed);
    assert_eq!(
        fetch(attempts.clone(), 5, "not found").await,
        Err(ApiError::NotFound)
    );
    assert_eq!(attempts.load(Ordering::Relaxed), 1, "retry_if declined");

    let client = Client {
        attempts: AtomicU32::new(0),
    };
    assert_eq!(
        client.get("/users".to_owned()).await,
        Ok("/users".to_owned())
    );
    assert_eq!(client.attempts.load(Ordering::Relaxed), 2);
}
