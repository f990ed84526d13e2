//! A circuit breaker for reqwest clients: a [`reqwest_middleware`] middleware (feature
//! `reqwest`).
//!
//! [`CircuitBreakerMiddleware`] runs every request through a breaker: one named service
//! ([`service`](CircuitBreakerMiddleware::service)), or one breaker per `host:port` of the
//! request's URL ([`per_host`](CircuitBreakerMiddleware::per_host)). While the breaker is
//! open the request is not sent: the call fails with
//! `reqwest_middleware::Error::Middleware`, whose error is a [`BreakerError`] (see
//! [`breaker_error`]).
//!
//! What counts as a failure of the target: a 5xx or 429 response (the response itself is
//! still returned to the caller), and a transport error (connection refused, timeout,
//! reset…). Every other response is a success; a request that could not be built is
//! neither (the target never saw it). [`classify`](CircuitBreakerMiddleware::classify)
//! changes which responses fail.
//!
//! A rejection is an `anyhow::Error` (reqwest-middleware's choice), which captures a
//! backtrace when `RUST_BACKTRACE` is set: about 10 µs per rejected request instead of
//! under 2 µs (`benches/reqwest.rs`). Set `RUST_LIB_BACKTRACE=0` to keep panics'
//! backtraces without paying for errors'.
//!
//! ```
//! use infuse::reqwest::{breaker_error, CircuitBreakerMiddleware};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(CircuitBreakerMiddleware::service("doc-reqwest-users"))
//!     .build();
//!
//! infuse::breaker("doc-reqwest-users").force_open().await?; // as if the service were down
//! let err = client.get("http://127.0.0.1:9/users/7").send().await.unwrap_err();
//! // Not sent: the breaker answered.
//! let rejection = breaker_error(&err).expect("a breaker error");
//! assert!(rejection.is_rejection());
//! assert_eq!(rejection.status_code(), 503);
//! # Ok(()) }
//! ```
//!
//! # Retries
//!
//! With the breaker's [`retries`](crate::Settings::retries) set, the middleware retries
//! a request after a failure it counts — a response classified as a failure, a
//! transport error, or the breaker's `timeout` — as [`Breaker::call_retrying`] does: each attempt a call of the
//! breaker, after a jittered backoff (`retry_backoff`, `max_retry_backoff`), while the
//! breaker lets calls through and its retry budget (`retry_budget`, `retry_min_per_sec`;
//! with Redis, the fleet's) has a token. A rejection is never retried. After the last
//! attempt the caller gets its answer: the failed response itself, or the error. Each
//! attempt sends a copy of the request ([`Request::try_clone`]) and the caller's
//! extensions as the previous attempt left them; a request whose body is a stream
//! cannot be copied, and is sent once.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use infuse::reqwest::CircuitBreakerMiddleware;
//! use infuse::{Config, Registry, ServiceOverride};
//!
//! let users = ServiceOverride::new().retries(2); // up to 3 attempts
//! let registry = Registry::new(Config::in_memory().service("doc-reqwest-retry", users)).await?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(CircuitBreakerMiddleware::new(registry.breaker("doc-reqwest-retry")))
//!     .build();
//! # let _ = client;
//! # Ok(()) }
//! ```
//!
//! # Where it goes in a middleware stack
//!
//! With infuse's own retries there is no need for a retry middleware such as
//! `reqwest-retry`; using both multiplies the attempts (three of one around three of the
//! other: up to nine sends). With one anyway, put the breaker **before** (outside) it:
//!
//! ```text
//! ClientBuilder::new(client)
//!     .with(CircuitBreakerMiddleware::service("users")) // outer: one outcome per logical call
//!     .with(RetryTransientMiddleware::new_with_policy(policy))
//!     .build()
//! ```
//!
//! Then the breaker sees one call per request the application makes: its outcome is the
//! final result after the retries, so a blip that a retry absorbs is not a failure, and
//! `fail_max` keeps its meaning (consecutive failed *calls*). While open, nothing is
//! sent and nothing is retried. Placed after (inside) the retry middleware, every attempt
//! is a call of the breaker: one request with three attempts can trip a `fail_max = 3`
//! breaker on its own, and a rejection ends the retries (reqwest-retry treats middleware
//! errors as fatal), which is what you want only if you mean to count attempts — what
//! infuse's own retries do, with the breaker's budget.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use http::Extensions;
use reqwest::{Request, Response, Url};
use reqwest_middleware::{Middleware, Next};

use crate::{Breaker, BreakerError, CallOptions, RegistryError};

/// A `reqwest_middleware` middleware that runs each request through a circuit breaker.
///
/// Cheap to clone: clones share the breakers (and, per host, the cache of breakers).
#[derive(Clone)]
pub struct CircuitBreakerMiddleware {
    target: Target,
    classify: fn(&Response) -> bool,
}

/// Which breaker a request goes through.
#[derive(Clone)]
enum Target {
    Service(Breaker),
    PerHost(Arc<Hosts>),
}

/// The breakers of a `per_host()` middleware, by `host:port`: those mapped with `host()`
/// and those created so far.
#[derive(Default)]
struct Hosts {
    breakers: RwLock<HashMap<String, Breaker>>,
    /// Whether a request was sent unguarded because the registry is full (logged once).
    full: AtomicBool,
}

impl CircuitBreakerMiddleware {
    /// Every request goes through the breaker of `service` (in the process-wide
    /// registry, with its declared or overridden settings).
    ///
    /// # Panics
    ///
    /// If `service` is not a valid name, as [`infuse::breaker`](crate::breaker); use
    /// [`try_service`](CircuitBreakerMiddleware::try_service) for names from input.
    pub fn service(service: &str) -> CircuitBreakerMiddleware {
        CircuitBreakerMiddleware::new(crate::breaker(service))
    }

    /// Like [`service`](CircuitBreakerMiddleware::service), or the reason there is no
    /// breaker for the name (invalid, or the registry is full: see
    /// [`Config::max_breakers`](crate::Config::max_breakers)).
    pub fn try_service(service: &str) -> Result<CircuitBreakerMiddleware, RegistryError> {
        crate::try_breaker(service).map(CircuitBreakerMiddleware::new)
    }

    /// Every request goes through `breaker` (e.g. one of a [`Registry`](crate::Registry)
    /// of your own).
    pub fn new(breaker: Breaker) -> CircuitBreakerMiddleware {
        CircuitBreakerMiddleware {
            target: Target::Service(breaker),
            classify: is_failure,
        }
    }

    /// One breaker per `host:port` of the request's URL (the port the scheme implies
    /// when the URL has none): a request to `http://10.0.0.7:8080/users` goes through the
    /// breaker named `10.0.0.7:8080`. Map the hosts of declared services with
    /// [`host`](CircuitBreakerMiddleware::host), so that their settings and overrides
    /// apply.
    ///
    /// Breakers are created on a host's first request and kept: meant for a client
    /// that talks to a known set of hosts. A request whose URL has no host, or a host
    /// too long to be a breaker name, is sent without a breaker. So is a request to a
    /// new host once the process-wide registry holds
    /// [`Config::max_breakers`](crate::Config::max_breakers) breakers: hosts that have
    /// a breaker keep it, the others are not protected, and the first such request logs
    /// a warning (once per middleware) naming the limit.
    pub fn per_host() -> CircuitBreakerMiddleware {
        CircuitBreakerMiddleware {
            target: Target::PerHost(Arc::default()),
            classify: is_failure,
        }
    }

    /// Requests to `authority` (`host:port`, e.g. `users.internal:8080`) go through the
    /// breaker of `service` rather than one named after the host.
    ///
    /// # Panics
    ///
    /// If this middleware is not [`per_host`](CircuitBreakerMiddleware::per_host), if
    /// `authority` has no port, or if `service` is not a valid name: all mistakes in
    /// code, not in requests.
    pub fn host(self, authority: &str, service: &str) -> CircuitBreakerMiddleware {
        let Target::PerHost(hosts) = &self.target else {
            panic!("CircuitBreakerMiddleware::host() applies to per_host() middlewares");
        };
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        assert!(
            has_port,
            "CircuitBreakerMiddleware::host({authority:?}): give the host with its port, as in \"users.internal:8080\""
        );
        let breaker = crate::breaker(service);
        write(&hosts.breakers).insert(authority.to_ascii_lowercase(), breaker);
        self
    }

    /// Which responses count as failures: `failed(&response)` returns true for one that
    /// does. The default counts 5xx and 429 (Too Many Requests).
    ///
    /// ```
    /// # use infuse::reqwest::CircuitBreakerMiddleware;
    /// // Also count 408 Request Timeout.
    /// let middleware = CircuitBreakerMiddleware::service("doc-classify").classify(|response| {
    ///     let status = response.status().as_u16();
    ///     status >= 500 || status == 429 || status == 408
    /// });
    /// # let _ = middleware;
    /// ```
    pub fn classify(mut self, failed: fn(&Response) -> bool) -> CircuitBreakerMiddleware {
        self.classify = failed;
        self
    }

    /// The breaker for a request to `url`; `None`: send it unguarded.
    fn breaker_for(hosts: &Hosts, url: &Url) -> Option<Breaker> {
        let key = host_key(url)?;
        if let Some(breaker) = read(&hosts.breakers).get(key.as_ref()) {
            return Some(breaker.clone());
        }
        match crate::try_breaker(&key) {
            Ok(breaker) => Some(
                write(&hosts.breakers)
                    .entry(key.into_owned())
                    .or_insert(breaker)
                    .clone(),
            ),
            Err(RegistryError::TooManyBreakers { limit, .. }) => {
                if !hosts.full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        host = %key,
                        limit,
                        "the registry holds Config::max_breakers breakers: requests to hosts without a breaker are sent unguarded (logged once)"
                    );
                }
                None
            }
            Err(error) => {
                tracing::warn!(%error, "request sent without a circuit breaker");
                None
            }
        }
    }

    async fn handle_request(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        match &self.target {
            Target::Service(breaker) => self.guard(breaker, req, extensions, next).await,
            Target::PerHost(hosts) => match Self::breaker_for(hosts, req.url()) {
                Some(breaker) => self.guard(&breaker, req, extensions, next).await,
                None => next.run(req, extensions).await,
            },
        }
    }

    /// Sends `req` down the stack through `breaker`. The rest of the stack is only
    /// started inside the guarded future, so a rejected request is never sent.
    async fn guard(
        &self,
        breaker: &Breaker,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let classify = self.classify;
        if breaker.settings().retries.is_some() {
            if let Some(copy) = req.try_clone() {
                return Self::guard_retrying(breaker, classify, req, copy, extensions, next).await;
            }
        }
        let call = async move {
            match next.run(req, extensions).await {
                Ok(response) if classify(&response) => Err(Failure::Status(response)),
                Ok(response) => Ok(response),
                Err(error) => Err(Failure::Error(error)),
            }
        };
        answer(breaker.call_with(OPTIONS, call).await)
    }
}

impl CircuitBreakerMiddleware {
    /// Sends `req` through `breaker` with [`Breaker::call_retrying`]'s attempts, backoff
    /// and budget; `copy` is a copy of `req`, cloned again for each retry.
    async fn guard_retrying(
        breaker: &Breaker,
        classify: fn(&Response) -> bool,
        req: Request,
        copy: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // Each attempt works on the extensions as the previous one left them; a
        // copy, so that an attempt the breaker's timeout cancels loses none.
        let shared = Mutex::new(std::mem::take(extensions));
        let mut first = Some(req);
        let mut copy = Some(copy);
        let make = || {
            let req = first.take().or_else(|| match copy.as_ref()?.try_clone() {
                Some(req) => Some(req),
                None => copy.take(), // cloned once: not expected; the last attempt
            });
            let (next, shared) = (next.clone(), &shared);
            async move {
                let Some(req) = req else {
                    return Err(Failure::Uncopied);
                };
                let mut extensions = lock(shared).clone();
                let result = next.run(req, &mut extensions).await;
                *lock(shared) = extensions;
                match result {
                    Ok(response) if classify(&response) => Err(Failure::Status(response)),
                    Ok(response) => Ok(response),
                    Err(error) => Err(Failure::Error(error)),
                }
            }
        };
        let result = breaker.call_retrying_with(OPTIONS, None, make).await;
        *extensions = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
        answer(result)
    }
}

impl Middleware for CircuitBreakerMiddleware {
    // What `#[async_trait]` expands the trait's `async fn handle` to, written out so that
    // infuse does not depend on `async-trait` for one method.
    fn handle<'this, 'ext, 'next, 'fut>(
        &'this self,
        req: Request,
        extensions: &'ext mut Extensions,
        next: Next<'next>,
    ) -> Pin<Box<dyn Future<Output = reqwest_middleware::Result<Response>> + Send + 'fut>>
    where
        'this: 'fut,
        'ext: 'fut,
        'next: 'fut,
        Self: 'fut,
    {
        Box::pin(self.handle_request(req, extensions, next))
    }
}

impl fmt::Debug for CircuitBreakerMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Service(breaker) => f
                .debug_struct("CircuitBreakerMiddleware")
                .field("service", &breaker.service())
                .finish(),
            Target::PerHost(hosts) => {
                let hosts = read(&hosts.breakers);
                let mut names: Vec<_> = hosts.iter().map(|(k, b)| (k, b.service())).collect();
                names.sort_unstable();
                f.debug_struct("CircuitBreakerMiddleware")
                    .field("per_host", &names)
                    .finish()
            }
        }
    }
}

/// The breaker's error inside a middleware error: `Some` when the breaker rejected the
/// request (it was not sent) or, with a `timeout` setting, cancelled it.
///
/// ```
/// # fn answer(err: reqwest_middleware::Error) -> u16 {
/// match infuse::reqwest::breaker_error(&err) {
///     Some(breaker) => breaker.status_code(), // 503, or 504 for a timeout
///     None => 502,                            // the target failed
/// }
/// # }
/// ```
pub fn breaker_error(error: &reqwest_middleware::Error) -> Option<&BreakerError> {
    match error {
        reqwest_middleware::Error::Middleware(error) => error.downcast_ref(),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

/// The caller's answer to a guarded request: a response judged a failure is still a
/// response.
fn answer(result: Result<Response, Failure>) -> reqwest_middleware::Result<Response> {
    match result {
        Ok(response) | Err(Failure::Status(response)) => Ok(response),
        Err(Failure::Error(error)) => Err(error),
        Err(Failure::Breaker(error)) => Err(reqwest_middleware::Error::middleware(error)),
        Err(Failure::Uncopied) => Err(reqwest_middleware::Error::middleware(
            std::io::Error::other("the request could not be copied for a retry"),
        )),
    }
}

/// The default classification: 5xx and 429 are failures.
fn is_failure(response: &Response) -> bool {
    let status = response.status();
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// A guarded request's outcome when it is not a plain success. Private: mapped back to
/// reqwest-middleware's result as soon as the breaker has seen it.
enum Failure {
    /// A response judged a failure; still handed to the caller.
    Status(Response),
    /// What the rest of the stack failed with.
    Error(reqwest_middleware::Error),
    /// The breaker's own error.
    Breaker(BreakerError),
    /// A retry's copy of the request could not be made (its body cloned once, then not):
    /// not sent.
    Uncopied,
}

impl From<BreakerError> for Failure {
    fn from(error: BreakerError) -> Failure {
        Failure::Breaker(error)
    }
}

// By hand: `Response` is `Debug`, but a failure's debug text only needs its kind.
impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(response) => write!(f, "Status({})", response.status()),
            Failure::Error(error) => write!(f, "Error({error})"),
            Failure::Breaker(error) => write!(f, "Breaker({error})"),
            Failure::Uncopied => f.write_str("Uncopied"),
        }
    }
}

/// Neither a success nor a failure: a request that could not be built or copied (the
/// target never saw it), and an inner breaker's rejection (e.g. a per-host breaker inside a
/// per-service one), which says nothing new about the target.
fn not_the_targets(failure: &Failure) -> bool {
    match failure {
        Failure::Error(reqwest_middleware::Error::Reqwest(error)) => error.is_builder(),
        Failure::Error(error) => breaker_error(error).is_some_and(BreakerError::is_rejection),
        Failure::Uncopied => true,
        Failure::Status(_) | Failure::Breaker(_) => false,
    }
}

const OPTIONS: CallOptions<Failure> = CallOptions::new().ignore(not_the_targets);

/// `host:port` of `url`, borrowed from it when the URL spells exactly that.
fn host_key(url: &Url) -> Option<Cow<'_, str>> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    if url.port().is_some() && url.username().is_empty() && url.password().is_none() {
        return Some(Cow::Borrowed(url.authority()));
    }
    Some(Cow::Owned(format!("{host}:{port}")))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys() {
        let key = |url: &str| host_key(&Url::parse(url).unwrap()).map(Cow::into_owned);
        assert_eq!(
            key("http://127.0.0.1:8080/a").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            key("http://Users.Internal/a").as_deref(),
            Some("users.internal:80")
        );
        assert_eq!(
            key("https://u:p@h.example:443/").as_deref(),
            Some("h.example:443")
        );
        assert_eq!(
            key("http://u@h.example:81/").as_deref(),
            Some("h.example:81")
        );
        assert_eq!(key("http://[::1]:9000/").as_deref(), Some("[::1]:9000"));
        assert_eq!(key("data:text/plain,hi"), None);
    }
}
