//! The functions `#[circuit_breaker]` must accept, run end to end. Breakers are
//! process-global, so every function names its own service.

use std::fmt::Display;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use infuse::{circuit_breaker, BreakerError, Settings, State};

#[derive(Debug, PartialEq)]
enum ApiError {
    Breaker(BreakerError),
    NotFound,
    Down,
}

impl From<BreakerError> for ApiError {
    fn from(error: BreakerError) -> Self {
        ApiError::Breaker(error)
    }
}

mod errors {
    pub fn is_not_found(error: &super::ApiError) -> bool {
        matches!(error, super::ApiError::NotFound)
    }

    pub fn is_down(error: &super::ApiError) -> bool {
        matches!(error, super::ApiError::Down)
    }
}

// ---- free functions -------------------------------------------------------------------

#[circuit_breaker(service = "shapes-free-fn")]
async fn double(x: u32) -> Result<u32, ApiError> {
    Ok(x * 2)
}

#[tokio::test]
async fn free_fn() {
    assert_eq!(double(21).await, Ok(42));
    assert_eq!(
        infuse::breaker("shapes-free-fn").state().await.unwrap(),
        State::Closed
    );
}

#[tokio::test]
async fn registers_a_declaration() {
    let _ = double(1).await;
    let spec = infuse::__private::declarations()
        .find(|spec| spec.service == "shapes-free-fn")
        .expect("the attribute registers its spec");
    assert_eq!(spec.function, "macro_shapes::double");
    assert!(spec.file.ends_with("macro_shapes.rs"), "{}", spec.file);
    let source = include_str!("macro_shapes.rs");
    let line = source
        .lines()
        .position(|line| line.starts_with("async fn double("))
        .unwrap()
        + 1;
    assert_eq!(spec.line as usize, line);
}

#[circuit_breaker(
    service = "shapes-settings",
    fail_max = 3,
    reset_timeout = "1500ms",
    success_threshold = 2
)]
async fn configured() -> Result<(), ApiError> {
    Ok(())
}

#[circuit_breaker(service = "shapes-settings-seconds", reset_timeout = 7)]
async fn configured_in_seconds() -> Result<(), ApiError> {
    Ok(())
}

#[tokio::test]
async fn settings_reach_the_breaker() {
    configured().await.unwrap();
    assert_eq!(
        infuse::breaker("shapes-settings").settings(),
        Settings::DEFAULT
            .fail_max(3)
            .reset_timeout(Duration::from_millis(1500))
            .success_threshold(2)
    );
    configured_in_seconds().await.unwrap();
    assert_eq!(
        infuse::breaker("shapes-settings-seconds").settings(),
        Settings::DEFAULT.reset_timeout(Duration::from_secs(7))
    );
}

#[circuit_breaker(
    service = "shapes-backpressure",
    reset_timeout = "10s",
    timeout = "2s",
    trial_timeout = 5,
    slow_call = "500ms",
    slow_call_rate = 50,
    failure_rate = 50,
    window = "10s",
    min_calls = 20,
    min_instances = 2,
    max_reset_timeout = "5m",
    exclude = errors::is_not_found,
    ignore = errors::is_down
)]
async fn with_backpressure(x: u32) -> Result<u32, ApiError> {
    Ok(x + 1)
}

#[circuit_breaker(service = "shapes-failure-rate", failure_rate = 25)]
async fn with_failure_rate_only() -> Result<(), ApiError> {
    Ok(())
}

#[tokio::test]
async fn backpressure_settings_reach_the_breaker() {
    assert_eq!(with_backpressure(1).await, Ok(2));
    assert_eq!(
        infuse::breaker("shapes-backpressure").settings(),
        Settings::DEFAULT
            .reset_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(2))
            .trial_timeout(Duration::from_secs(5))
            .slow_call(Duration::from_millis(500))
            .slow_call_rate(50)
            .failure_rate(50)
            .window(Duration::from_secs(10))
            .min_calls(20)
            .min_instances(2)
            .max_reset_timeout(Duration::from_secs(300))
    );
    with_failure_rate_only().await.unwrap();
    let settings = infuse::breaker("shapes-failure-rate").settings();
    assert_eq!(settings, Settings::DEFAULT.failure_rate(25));
    assert_eq!(
        (settings.window, settings.min_calls, settings.min_instances),
        (Duration::from_secs(10), 20, 1),
        "the defaults of the window"
    );
}

// ---- methods --------------------------------------------------------------------------

#[derive(Debug)]
struct Client {
    calls: u32,
}

impl Client {
    #[circuit_breaker(service = "shapes-ref-self")]
    async fn by_ref(&self, x: u32) -> Result<u32, ApiError> {
        Ok(self.calls + x)
    }

    #[circuit_breaker(service = "shapes-mut-self")]
    async fn by_mut(&mut self) -> Result<u32, ApiError> {
        self.calls += 1;
        Ok(self.calls)
    }

    #[circuit_breaker(service = "shapes-arc-self")]
    async fn by_arc(self: Arc<Self>) -> Result<u32, ApiError> {
        Ok(self.calls * 10)
    }

    #[circuit_breaker(service = "shapes-value-self")]
    async fn by_value(mut self) -> Result<Self, ApiError> {
        self.calls = 100;
        Ok(self)
    }

    #[circuit_breaker(service = "shapes-assoc-fn")]
    async fn new_checked(calls: u32) -> Result<Self, ApiError> {
        Ok(Self { calls })
    }
}

struct Wrapper<T>(T);

impl<T: Clone> Wrapper<T> {
    #[circuit_breaker(service = "shapes-generic-impl")]
    async fn get(&self) -> Result<T, ApiError> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn methods() {
    let mut client = Client::new_checked(1).await.unwrap();
    assert_eq!(client.by_ref(1).await, Ok(2));
    assert_eq!(client.by_mut().await, Ok(2));
    assert_eq!(client.calls, 2);
    assert_eq!(Arc::new(Client { calls: 3 }).by_arc().await, Ok(30));
    assert_eq!(client.by_value().await.unwrap().calls, 100);
    assert_eq!(Wrapper("a").get().await, Ok("a"));
    assert_eq!(Wrapper(vec![1]).get().await, Ok(vec![1]));
}

trait Repository {
    async fn find(&self, id: u64) -> Result<String, ApiError>;
}

impl Repository for Client {
    #[circuit_breaker(service = "shapes-trait-impl")]
    async fn find(&self, id: u64) -> Result<String, ApiError> {
        Ok(format!("user-{id}-{}", self.calls))
    }
}

#[tokio::test]
async fn trait_impl_async_fn() {
    let client = Client { calls: 5 };
    assert_eq!(client.find(7).await, Ok("user-7-5".to_owned()));
}

// ---- generics, lifetimes, impl Trait ----------------------------------------------------

#[circuit_breaker(service = "shapes-generic")]
async fn render<T: Display, U>(
    value: T,
    suffix: impl AsRef<str>,
    _marker: U,
) -> Result<String, ApiError>
where
    U: Send,
{
    Ok(format!("{value}{}", suffix.as_ref()))
}

#[circuit_breaker(service = "shapes-impl-trait-return")]
async fn displayable(n: u8) -> Result<impl Display, ApiError> {
    if n == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(n)
}

#[circuit_breaker(service = "shapes-lifetimes")]
async fn first_word<'a>(text: &'a str) -> Result<&'a str, ApiError> {
    text.split_whitespace().next().ok_or(ApiError::NotFound)
}

#[circuit_breaker(service = "shapes-elided-lifetime")]
async fn field(client: &Client) -> Result<&u32, ApiError> {
    Ok(&client.calls)
}

#[tokio::test]
async fn generics_and_lifetimes() {
    assert_eq!(render(1.5, "s", ()).await, Ok("1.5s".to_owned()));
    assert_eq!(
        render("x", String::from("y"), 0u8).await,
        Ok("xy".to_owned())
    );
    assert_eq!(displayable(3).await.unwrap().to_string(), "3");
    assert!(displayable(0).await.is_err());
    let text = String::from("hello world");
    assert_eq!(first_word(&text).await, Ok("hello"));
    let client = Client { calls: 9 };
    assert_eq!(field(&client).await, Ok(&9));
}

// ---- Result aliases ---------------------------------------------------------------------

#[circuit_breaker(service = "shapes-anyhow")]
async fn parse_anyhow(text: &str) -> anyhow::Result<u32> {
    let n: u32 = text.parse()?;
    Ok(n)
}

#[circuit_breaker(service = "shapes-io")]
async fn read_io(fail: bool) -> std::io::Result<Vec<u8>> {
    if fail {
        Err(std::io::Error::other("disk on fire"))?;
    }
    Ok(vec![1, 2])
}

#[tokio::test]
async fn result_aliases() {
    assert_eq!(parse_anyhow("12").await.unwrap(), 12);
    assert!(parse_anyhow("twelve").await.is_err());
    assert_eq!(read_io(false).await.unwrap(), [1, 2]);
    assert_eq!(read_io(true).await.unwrap_err().to_string(), "disk on fire");
}

// ---- control flow in the body -----------------------------------------------------------

fn lookup(id: u32) -> Result<u32, ApiError> {
    if id == 0 {
        Err(ApiError::NotFound)
    } else {
        Ok(id + 1)
    }
}

#[circuit_breaker(service = "shapes-control-flow")]
async fn control_flow(id: u32) -> Result<&'static str, ApiError> {
    if id == 1 {
        return Ok("early");
    }
    let next = lookup(id)?;
    for _ in 0..next {
        if next > 100 {
            return Err(ApiError::Down);
        }
    }
    Ok("late")
}

#[tokio::test]
async fn return_and_question_mark() {
    assert_eq!(control_flow(1).await, Ok("early"));
    assert_eq!(control_flow(0).await, Err(ApiError::NotFound));
    assert_eq!(control_flow(200).await, Err(ApiError::Down));
    assert_eq!(control_flow(2).await, Ok("late"));
}

// ---- tripping, exclude, error_on_trip ---------------------------------------------------

static TRIP_BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[circuit_breaker(service = "shapes-trip", fail_max = 2, reset_timeout = "1m")]
async fn always_down() -> Result<(), ApiError> {
    TRIP_BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(ApiError::Down)
}

#[tokio::test]
async fn trips_and_rejects_without_running_the_body() {
    assert_eq!(always_down().await, Err(ApiError::Down));
    assert_eq!(always_down().await, Err(ApiError::Down));
    let breaker = infuse::breaker("shapes-trip");
    assert_eq!(breaker.state().await.unwrap(), State::Open);
    match always_down().await {
        Err(ApiError::Breaker(error @ BreakerError::Open { .. })) => {
            assert_eq!(error.service(), "shapes-trip");
        }
        other => panic!("expected BreakerError::Open, got {other:?}"),
    }
    assert_eq!(TRIP_BODY_RUNS.load(Ordering::SeqCst), 2);
}

static EXCLUDE_BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[circuit_breaker(service = "shapes-exclude", fail_max = 1, exclude = errors::is_not_found)]
async fn not_found() -> Result<(), ApiError> {
    EXCLUDE_BODY_RUNS.fetch_add(1, Ordering::SeqCst);
    Err(ApiError::NotFound)
}

#[tokio::test]
async fn excluded_errors_are_not_failures() {
    for _ in 0..3 {
        assert_eq!(not_found().await, Err(ApiError::NotFound));
    }
    let breaker = infuse::breaker("shapes-exclude");
    assert_eq!(breaker.state().await.unwrap(), State::Closed);
    assert_eq!(breaker.fail_counter().await.unwrap(), 0);
    assert_eq!(EXCLUDE_BODY_RUNS.load(Ordering::SeqCst), 3);
}

#[circuit_breaker(service = "shapes-error-on-trip", fail_max = 2, error_on_trip = true)]
async fn trips_with_error() -> Result<(), ApiError> {
    Err(ApiError::Down)
}

#[tokio::test]
async fn error_on_trip_returns_tripped() {
    assert_eq!(trips_with_error().await, Err(ApiError::Down));
    assert!(matches!(
        trips_with_error().await,
        Err(ApiError::Breaker(BreakerError::Tripped {
            service: "shapes-error-on-trip",
            ..
        }))
    ));
    assert!(matches!(
        trips_with_error().await,
        Err(ApiError::Breaker(BreakerError::Open { .. }))
    ));
}

#[circuit_breaker(
    service = "shapes-error-on-trip-false",
    fail_max = 1,
    error_on_trip = false
)]
async fn trips_quietly() -> Result<(), ApiError> {
    Err(ApiError::Down)
}

#[tokio::test]
async fn error_on_trip_false_returns_own_error() {
    assert_eq!(trips_quietly().await, Err(ApiError::Down));
    assert!(matches!(
        trips_quietly().await,
        Err(ApiError::Breaker(BreakerError::Open { .. }))
    ));
}

// ---- crate path, attributes ---------------------------------------------------------------

mod reexport {
    pub use ::infuse;
}

#[reexport::infuse::circuit_breaker(service = "shapes-reexport", crate = "crate::reexport::infuse")]
async fn through_reexport() -> Result<u8, ApiError> {
    Ok(7)
}

#[tokio::test]
async fn crate_path() {
    assert_eq!(through_reexport().await, Ok(7));
}

#[deny(non_snake_case, unused_variables)]
mod attributes {
    use super::ApiError;

    /// Documented: the doc comment, `#[allow]` and `#[must_use]` stay on the function
    /// (without the `allow`, `deny(non_snake_case)` would reject the name;
    /// `tests/ui/must_use_kept.rs` checks `#[must_use]`).
    #[infuse::circuit_breaker(service = "shapes-attributes")]
    #[allow(non_snake_case)]
    #[must_use = "the answer matters"]
    #[inline]
    pub async fn KeptAttributes() -> Result<u8, ApiError> {
        Ok(42)
    }

    // The inner `allow` stays in force for the body (else `deny(unused_variables)`).
    #[infuse::circuit_breaker(service = "shapes-inner-attributes")]
    pub async fn inner_attributes() -> Result<u8, ApiError> {
        #![allow(unused_variables)]
        let unused = 1;
        Ok(43)
    }
}

#[tokio::test]
async fn attributes_are_kept() {
    assert_eq!(attributes::KeptAttributes().await, Ok(42));
    assert_eq!(attributes::inner_attributes().await, Ok(43));
}

// ---- futures are Send ---------------------------------------------------------------------

fn assert_send<T: Send>(value: T) -> T {
    value
}

#[tokio::test]
async fn futures_are_send() {
    let client = Client { calls: 0 };
    assert_send(double(1)).await.unwrap();
    assert_send(client.by_ref(1)).await.unwrap();
    assert_send(client.find(1)).await.unwrap();
    tokio::spawn(double(2)).await.unwrap().unwrap();
}

// ---- unsafe fn ------------------------------------------------------------------------------

/// # Safety
/// `p` must be valid for reads.
#[circuit_breaker(service = "shapes-unsafe")]
async unsafe fn read_raw(p: *const u32) -> Result<u32, ApiError> {
    Ok(*p)
}

#[tokio::test]
async fn unsafe_fn() {
    let value = 5;
    assert_eq!(unsafe { read_raw(&value) }.await, Ok(5));
}
