//! The `#[circuit_breaker]` attribute of [infuse](https://docs.rs/infuse). Use it through
//! the `infuse` crate (`#[infuse::circuit_breaker(...)]`); this crate has no API of its own.
//!
//! # Usage
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "users", fail_max = 5, reset_timeout = "15s")]
//! async fn get_user(id: u64) -> Result<User, ApiError> {
//!     let user = http_get(format!("/users/{id}")).await?;
//!     Ok(user)
//! }
//! ```
//!
//! The function keeps its attributes, documentation, visibility and signature; only its
//! body changes: it runs through the breaker of its service, shared by every function
//! naming the same `service`. While the breaker is open the body does not run and the
//! call returns `Err(BreakerError::Open { .. }.into())`.
//!
//! The function must be an `async fn` (free function, inherent method with any receiver,
//! or an `async fn` of a trait impl) returning `Result<T, E>` where
//! `E: From<infuse::BreakerError> + Debug`. Aliases such as `anyhow::Result<T>` and
//! `std::io::Result<T>` work. `return` and `?` in the body behave as before.
//!
//! # Arguments
//!
//! Arguments are `name = value`, separated by commas, in any order. Only `service` is
//! required; each of the others at most once.
//!
//! ## `service = "name"` (required)
//!
//! The target service this breaker protects. Every function naming the same service
//! shares one breaker (and, with Redis, one state across the fleet). Must not be empty and
//! must not contain `{` or `}` (they are reserved for Redis key hash tags).
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments")]
//! ```
//!
//! ## `fail_max = N`
//!
//! Consecutive failures that open the breaker; an integer literal ≥ 1 that fits in `u32`.
//! Default: `5`.
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments", fail_max = 3)]
//! ```
//!
//! ## `reset_timeout = "15s"`
//!
//! How long the breaker stays open before a trial call is let through: a string with an
//! integer amount and a unit `ms`, `s` or `m` (`"500ms"`, `"15s"`, `"2m"`), or an integer
//! literal number of seconds (`reset_timeout = 15`). Must be greater than zero and at
//! most 24 hours (`"1440m"`, `86400`). Default: 60 seconds.
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments", reset_timeout = "500ms")]
//! ```
//!
//! ## `success_threshold = N`
//!
//! Successful trial calls needed in the half-open state to close the breaker again; an
//! integer literal ≥ 1. Default: `1`.
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments", success_threshold = 2)]
//! ```
//!
//! ## `timeout = "2s"`
//!
//! A call still running after this long is dropped (cancelled), counts as a failure and
//! returns `BreakerError::Timeout`, converted into `E`. A duration as for
//! `reset_timeout`, greater than zero and at most 1 hour (`"60m"`). Default: no limit.
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments", timeout = "2s")]
//! ```
//!
//! ## `trial_timeout = "5s"`
//!
//! The limit of a half-open trial call, when it should differ from `timeout` (a trial
//! may be given longer, to let a cold service answer). Greater than zero, at most 1 hour.
//! Default: `timeout`.
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments", timeout = "2s", trial_timeout = "5s")]
//! ```
//!
//! ## `slow_call = "500ms"`
//!
//! Calls slower than this count as slow (they still return their own result): the breaker
//! trips when slow calls reach `slow_call_rate` percent of the calls in the `window`.
//! Greater than zero, at most 1 hour, shorter than `timeout`; requires `slow_call_rate`.
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments", slow_call = "500ms", slow_call_rate = 50)]
//! ```
//!
//! ## `slow_call_rate = 50`
//!
//! The percentage (an integer literal from 1 to 100) of slow calls in the window that
//! trips the breaker; requires `slow_call`.
//!
//! ## `failure_rate = 50`
//!
//! The percentage (an integer literal from 1 to 100) of failed calls in the window that
//! trips the breaker. `fail_max` still applies: whichever rule trips first opens the
//! breaker.
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments", failure_rate = 50, window = "30s", min_calls = 10)]
//! ```
//!
//! ## `window = "10s"`
//!
//! The sliding window over which `failure_rate` and `slow_call_rate` are measured: at
//! least 1 second, at most 1 hour. Default: 10 seconds. Only with a rate: alone it would
//! have no effect, so it is an error.
//!
//! ## `min_calls = 20`
//!
//! No rate decision is taken below this many calls in the window (with Redis, the fleet's
//! calls); an integer literal ≥ 1. Default: `20`. Only with a rate.
//!
//! ## `min_instances = 2`
//!
//! With Redis: a trip needs failures (or slow calls) reported by at least this many
//! processes — in the window for a rate rule, in the current failure streak for
//! `fail_max` — so that one sick caller cannot open the breaker for the whole fleet; an
//! integer literal ≥ 1. Default: `1`.
//!
//! ## `max_reset_timeout = "5m"`
//!
//! Backoff: each re-open after a failed trial doubles the open time (less some jitter), up
//! to this bound; closing resets it. At least `reset_timeout`, at most 24 hours. Default:
//! no backoff, every open lasts `reset_timeout`.
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments", reset_timeout = "10s", max_reset_timeout = "5m")]
//! ```
//!
//! ## `exclude = path::to_fn`
//!
//! A path to a function `fn(&E) -> bool` (`E` is the function's error type). Errors for
//! which it returns `true` are returned unchanged but are not failures: they count as
//! successes, like pybreaker's excluded exceptions.
//!
//! ```ignore
//! fn is_not_found(e: &ApiError) -> bool { matches!(e, ApiError::NotFound) }
//!
//! #[infuse::circuit_breaker(service = "users", exclude = is_not_found)]
//! async fn get_user(id: u64) -> Result<User, ApiError> { /* ... */ }
//! ```
//!
//! ## `ignore = path::to_fn`
//!
//! A path to a function `fn(&E) -> bool`. Errors for which it returns `true` are returned
//! unchanged and count as neither success nor failure: they leave every counter and the
//! window as they were (Resilience4j's ignored exceptions). Checked before `exclude`.
//!
//! ```ignore
//! fn is_cancelled(e: &ApiError) -> bool { matches!(e, ApiError::Cancelled) }
//!
//! #[infuse::circuit_breaker(service = "users", ignore = is_cancelled)]
//! ```
//!
//! ## `error_on_trip = true`
//!
//! With `true`, the call whose failure opens the breaker (and a failing trial call)
//! returns `BreakerError::Tripped` / `BreakerError::TrialFailed`, converted into `E`,
//! instead of its own error (pybreaker's `throw_new_error_on_trip`). Default: `false`.
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "users", error_on_trip = true)]
//! ```
//!
//! ## `crate = "path"`
//!
//! Where the generated code finds the infuse runtime, for crates that use infuse through
//! a re-export. Default: `::infuse`.
//!
//! ```ignore
//! mod reexport { pub use ::infuse; }
//!
//! #[reexport::infuse::circuit_breaker(service = "users", crate = "crate::reexport::infuse")]
//! async fn get_user(id: u64) -> Result<User, ApiError> { /* ... */ }
//! ```
//!
//! # Expansion
//!
//! ```text
//! #[infuse::circuit_breaker(service = "users", fail_max = 5, reset_timeout = "15s")]
//! async fn get_user(id: u64) -> Result<User, ApiError> { BODY }
//! ```
//!
//! becomes, in essence (registration and breaker lookup happen once, in statics; a call
//! allocates nothing and looks nothing up; the real body of the async block also starts
//! with an unreachable `return` of the declared type, to fix its output type before the
//! body is checked; `infuse::__private` is the runtime's hidden plumbing for the macro,
//! not an interface):
//!
//! ```text
//! async fn get_user(id: u64) -> Result<User, ApiError> {
//!     static __INFUSE_SPEC: ::infuse::__private::BreakerSpec =
//!         ::infuse::__private::BreakerSpec::new(
//!             "users",
//!             ::infuse::Settings::DEFAULT
//!                 .fail_max(5)
//!                 .reset_timeout(::core::time::Duration::from_millis(15000)),
//!             ::core::concat!(::core::module_path!(), "::", "get_user"),
//!             ::core::file!(),
//!             ::core::line!(),
//!         );
//!     static __INFUSE_BREAKER: ::infuse::__private::StaticBreaker =
//!         ::infuse::__private::StaticBreaker::new(&__INFUSE_SPEC);
//!     ::infuse::__private::register!(__INFUSE_SPEC);
//!     __INFUSE_BREAKER
//!         .get()
//!         .guard::<Result<User, ApiError>, _>(::infuse::CallOptions::new(), async move { BODY })
//!         .await
//! }
//! ```
//!
//! # Errors
//!
//! Every misuse is a compile error at the offending token that says what to write
//! instead, and all of them are reported at once; the function is then left as written,
//! so no follow-on errors appear. A return type that is not a guardable `Result` is
//! reported at the return type.

use proc_macro::TokenStream;

mod attr;
mod expand;
mod item;
mod valid;

/// Guards an `async fn` with the circuit breaker of a target service.
///
/// ```ignore
/// #[infuse::circuit_breaker(service = "users", fail_max = 5, reset_timeout = "15s")]
/// async fn get_user(id: u64) -> Result<User, ApiError> { /* ... */ }
/// ```
///
/// Arguments: `service = "name"` (required), `fail_max = N`, `reset_timeout = "15s"`,
/// `success_threshold = N`, `timeout = "2s"`, `trial_timeout = "5s"`,
/// `slow_call = "500ms"`, `slow_call_rate = N`, `failure_rate = N`, `window = "10s"`,
/// `min_calls = N`, `min_instances = N`, `max_reset_timeout = "5m"`,
/// `exclude = path::to_fn`, `ignore = path::to_fn`, `error_on_trip = true|false`,
/// `crate = "path"`. See the [crate documentation](crate) for each.
#[proc_macro_attribute]
pub fn circuit_breaker(args: TokenStream, item: TokenStream) -> TokenStream {
    circuit_breaker_impl(args.into(), item.into()).into()
}

/// Parse, validate, expand; on any error, the errors and the function as written.
fn circuit_breaker_impl(
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let mut errors = Errors::default();
    let attr = attr::parse(args, &mut errors);
    valid::check_attr(&attr, &mut errors);
    let func = syn::parse2::<item::ItemFn>(item.clone())
        .map_err(|error| errors.push(error))
        .ok();
    if let Some(func) = &func {
        valid::check_fn(func, &mut errors);
    }
    if let Err(error) = errors.finish() {
        return expand::fallback(error, item);
    }
    expand::expand(
        &attr,
        &func.expect("a function that did not parse left an error"),
    )
}

/// Collects errors, so that every misuse is reported in one compilation.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }

    #[cfg(test)]
    fn messages(self) -> Vec<String> {
        self.0
            .into_iter()
            .flatten()
            .map(|error| error.to_string())
            .collect()
    }
}
