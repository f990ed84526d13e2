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
//! ## The settings: `fail_max = 5`, `reset_timeout = "15s"`, …
//!
//! Every breaker setting of `infuse::Settings` is an argument of the same name: a count or
//! a percentage as an integer literal (`fail_max = 3`, `failure_rate = 50`), a duration as
//! a string with a unit `ms`, `s` or `m` (`"500ms"`, `"15s"`, `"2m"`) or an integer
//! literal number of seconds (`reset_timeout = 15`). Each is checked here by the same
//! rules, in the same words, as `Settings::validate` and the `INFUSE_<SERVICE>_<SETTING>`
//! environment variables: the table of every setting (type, default, limits, meaning) is
//! in the documentation of [`infuse::Settings`](https://docs.rs/infuse/latest/infuse/struct.Settings.html).
//! A setting that has no effect alone is an error where it is written alone (`window` or
//! `min_calls` without `failure_rate` or `slow_call_rate`).
//!
//! ```ignore
//! #[infuse::circuit_breaker(service = "payments", fail_max = 3, reset_timeout = "500ms")]
//! #[infuse::circuit_breaker(service = "payments", timeout = "2s", trial_timeout = "5s")]
//! #[infuse::circuit_breaker(service = "payments", slow_call = "500ms", slow_call_rate = 50)]
//! #[infuse::circuit_breaker(service = "payments", failure_rate = 50, window = "30s", min_calls = 10)]
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
//! ## Retries: `retries = N`
//!
//! `retries` (a setting, 1–10) runs the body again after a failure as the breaker counts
//! it, up to `N` more times, each attempt a guarded call of its own, after a backoff with
//! full jitter (`retry_backoff`, `max_retry_backoff`) and within the retry budget
//! (`retry_budget`, `retry_min_per_sec`): what `Breaker::call_retrying` does. Since the
//! body runs once per attempt, every argument is cloned for each attempt: arguments must
//! be `Clone` (a reference, an `Arc`, …), bound to a name, and a method's receiver must be
//! `&self`; each of these is a compile error at the argument otherwise.
//!
//! Only a function written with `retries` retries: `INFUSE_<SERVICE>_RETRIES` or a
//! `ServiceOverride` can change the number for it, not make a function without it retry.
//!
//! ## `retry_if = path::to_fn`
//!
//! A path to a function `fn(&E) -> bool` that narrows which errors are retried: those
//! for which it returns `true`. It needs `retries`.
//!
//! ```ignore
//! fn is_transient(e: &ApiError) -> bool { matches!(e, ApiError::Unavailable) }
//!
//! #[infuse::circuit_breaker(service = "users", retries = 2, retry_if = is_transient)]
//! async fn get_user(id: u64) -> Result<User, ApiError> { /* ... */ }
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
//! (The call itself goes through `::infuse::__private::Returns::<Result<User, ApiError>>`,
//! which picks `guard` when the return type can be guarded and otherwise a stand-in whose
//! one error, at the return type, says what is missing.)
//!
//! # Errors
//!
//! Every misuse is a compile error at the offending token that says what to write
//! instead, and all of them are reported at once; the function is then left as written,
//! so no follow-on errors appear. A return type that is not a guardable `Result`, or whose
//! error type cannot carry an `infuse::BreakerError`, is one error at the return type
//! saying what to add (`impl From<infuse::BreakerError> for MyError`).

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
/// Arguments: `service = "name"` (required), every setting of `infuse::Settings` by its
/// name (`fail_max = 5`, `reset_timeout = "15s"`, …), `exclude = path::to_fn`,
/// `ignore = path::to_fn`, `error_on_trip = true|false`, `crate = "path"`. See the
/// [crate documentation](crate) for each.
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
        valid::check_retrying(&attr, func, &mut errors);
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

/// Checks that each case's messages (by `messages`) include its expected text.
#[cfg(test)]
fn assert_each_message(
    cases: impl IntoIterator<Item = (proc_macro2::TokenStream, &'static str)>,
    messages: impl Fn(proc_macro2::TokenStream) -> Vec<String>,
) {
    for (tokens, expected) in cases {
        let found = messages(tokens.clone());
        assert!(
            found.iter().any(|m| m.contains(expected)),
            "{tokens}: expected {expected:?}, found {found:?}"
        );
    }
}
