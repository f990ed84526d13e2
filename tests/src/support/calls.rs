//! Helpers shared by the behaviour tests: an application error type, a breaker alone in
//! its own in-memory registry, a failing and a succeeding call, and polling for an
//! eventual condition.

use std::time::Duration;

use infuse::{Breaker, BreakerError, Config, Registry, ServiceOverride};

/// An application error that can carry the breaker's.
#[derive(Debug, Clone, PartialEq)]
pub enum TestError {
    Boom,
    NotFound,
    Breaker(BreakerError),
}

impl From<BreakerError> for TestError {
    fn from(err: BreakerError) -> Self {
        TestError::Breaker(err)
    }
}

/// The exclusion predicate of the tests: `NotFound` is not a failure.
pub fn not_found(e: &TestError) -> bool {
    matches!(e, TestError::NotFound)
}

pub type R = Result<u32, TestError>;

/// A breaker named `service` alone in its own in-memory registry.
pub async fn breaker_with(service: &'static str, overrides: ServiceOverride) -> infuse::Breaker {
    Registry::new(
        Config::in_memory()
            .env_overrides(false)
            .service(service, overrides),
    )
    .await
    .expect("registry")
    .breaker(service)
}

/// What the downstream of [`fail`] fails with: a stand-in error naming this service.
pub const DOWNSTREAM: &str = "downstream";

/// A guarded call whose downstream fails with `BreakerError::Tripped { service:
/// DOWNSTREAM }` (so that the downstream's own error can be told from the breaker's).
pub async fn fail(breaker: &Breaker) -> Result<(), BreakerError> {
    breaker
        .call(async {
            Err(BreakerError::Tripped {
                service: DOWNSTREAM,
            })
        })
        .await
}

/// A guarded call whose downstream answers.
pub async fn succeed(breaker: &Breaker) -> Result<(), BreakerError> {
    breaker.call(async { Ok(()) }).await
}

/// Polls `f` every `every` until it holds, for at most `within`.
pub async fn eventually(
    within: Duration,
    every: Duration,
    mut f: impl AsyncFnMut() -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}
