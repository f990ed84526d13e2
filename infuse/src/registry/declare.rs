//! What `#[circuit_breaker]` declares: a service with its settings, collected
//! binary-wide so that `init` knows every service before its first call; and how its
//! call reaches the breaker ([`Returns`]). Plumbing of the attribute, reached through
//! `infuse::__private`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::OnceLock;

use crate::breaker::{Breaker, CallOptions, Guarded, GuardedResult};
use crate::core::{BreakerError, InitError, Settings};

/// One `#[circuit_breaker]` declaration: which service, with which settings, where.
#[derive(Debug)]
pub struct BreakerSpec {
    /// The target service.
    pub service: &'static str,
    /// The declared settings.
    pub settings: Settings,
    /// `module::function` that declared it.
    pub function: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}

impl BreakerSpec {
    /// A declaration (built in `const` context by the attribute).
    pub const fn new(
        service: &'static str,
        settings: Settings,
        function: &'static str,
        file: &'static str,
        line: u32,
    ) -> BreakerSpec {
        BreakerSpec {
            service,
            settings,
            function,
            file,
            line,
        }
    }

    pub(crate) fn describe(&self) -> String {
        format!("{} at {}:{}", self.function, self.file, self.line)
    }
}

/// A registered declaration, collected binary-wide so `init` knows every service.
pub struct Declaration(pub &'static BreakerSpec);

inventory::collect!(Declaration);

/// Registers a `static` [`BreakerSpec`] so that `init` creates its breaker and checks it
/// against other declarations of the same service. `#[circuit_breaker]` emits this.
#[doc(hidden)]
#[macro_export]
macro_rules! __infuse_register {
    ($spec:path) => {
        $crate::__private::inventory::submit! { $crate::__private::Declaration(&$spec) }
    };
}

/// Every declaration in the binary.
pub fn declarations() -> impl Iterator<Item = &'static BreakerSpec> {
    inventory::iter::<Declaration>.into_iter().map(|d| d.0)
}

/// The breaker of one declaration, resolved once and cached: what a `#[circuit_breaker]`
/// function keeps in a `static`, so calls do no lookup.
pub struct StaticBreaker {
    spec: &'static BreakerSpec,
    cell: OnceLock<Breaker>,
}

impl StaticBreaker {
    /// Caches the breaker of `spec` on first use.
    pub const fn new(spec: &'static BreakerSpec) -> StaticBreaker {
        StaticBreaker {
            spec,
            cell: OnceLock::new(),
        }
    }

    /// The breaker, from the process-wide registry.
    #[inline]
    pub fn get(&self) -> &Breaker {
        match self.cell.get() {
            Some(breaker) => breaker,
            None => self.init(),
        }
    }

    #[cold]
    fn init(&self) -> &Breaker {
        self.cell.get_or_init(|| {
            let spec = self.spec;
            if let Some(other) = declarations()
                .find(|d| d.service == spec.service && d.settings != spec.settings)
            {
                // `init` refuses this; without `init`, say it once per call site.
                tracing::warn!(
                    service = spec.service,
                    function = %spec.describe(),
                    other = %other.describe(),
                    "service declared with conflicting settings; the first one used wins (infuse::init reports this as an error)"
                );
            }
            crate::registry::global().breaker_with(spec.service, Some(spec.settings))
        })
    }
}

/// How a `#[circuit_breaker]` function calls its breaker, chosen by its return type `R`
/// (autoref specialization: the call is made on `&&Returns<R>`, and method lookup takes the
/// first of these that applies):
///
/// 1. [`Guard`], for `&&Returns<R>` where `R:` [`GuardedResult`]: the call.
/// 2. [`ErrorCarries`], for `&Returns<Result<T, E>>`: `E` cannot carry a `BreakerError`,
///    so the one error is [`CarriesBreakerError`]'s, at the return type.
/// 3. [`IsResult`], for `Returns<R>`: not a `Result` at all; the one error is
///    `GuardedResult`'s.
///
/// Without this, the guard call and its future's type each report the missing
/// `From<BreakerError>`, inside the runtime.
pub struct Returns<R>(PhantomData<fn() -> R>);

impl<R> Returns<R> {
    /// The chooser for return type `R`.
    #[inline(always)]
    pub const fn new() -> Self {
        Returns(PhantomData)
    }
}

impl<R> Default for Returns<R> {
    fn default() -> Self {
        Returns::new()
    }
}

/// The call of a function whose return type a breaker can guard.
pub trait Guard<R: GuardedResult> {
    /// [`Breaker::guard`].
    fn guard<F: Future<Output = R>>(
        self,
        breaker: &Breaker,
        options: CallOptions<R::Err>,
        body: F,
    ) -> Guarded<&Breaker, R, F>;

    /// [`Breaker::call_retrying_with`], for a function with `retries`: `make` runs the
    /// body again for each attempt.
    fn guard_retrying<F, M>(
        self,
        breaker: &Breaker,
        options: CallOptions<R::Err>,
        retry_if: Option<fn(&R::Err) -> bool>,
        make: M,
    ) -> impl Future<Output = R>
    where
        M: FnMut() -> F,
        F: Future<Output = R>;
}

impl<R: GuardedResult> Guard<R> for &&Returns<R> {
    #[inline(always)]
    fn guard<F: Future<Output = R>>(
        self,
        breaker: &Breaker,
        options: CallOptions<R::Err>,
        body: F,
    ) -> Guarded<&Breaker, R, F> {
        breaker.guard(options, body)
    }

    async fn guard_retrying<F, M>(
        self,
        breaker: &Breaker,
        options: CallOptions<R::Err>,
        retry_if: Option<fn(&R::Err) -> bool>,
        mut make: M,
    ) -> R
    where
        M: FnMut() -> F,
        F: Future<Output = R>,
    {
        let attempt = || {
            let body = make();
            async move { body.await.into_result() }
        };
        R::from_result(breaker.call_retrying_with(options, retry_if, attempt).await)
    }
}

/// An argument of a `#[circuit_breaker]` function with `retries`: cloned for each attempt.
#[diagnostic::on_unimplemented(
    message = "`retries` runs the function's body once per attempt, so each argument must be `Clone`: `{Self}` is not",
    label = "this argument is cloned for every attempt",
    note = "derive or implement `Clone` for it, pass a reference (`&T`) or an `Arc<T>`, or retry by hand with `Breaker::call_retrying`"
)]
pub trait RetryArgument: Clone {}

impl<T: Clone> RetryArgument for T {}

/// A clone of `value`, for one attempt of a `#[circuit_breaker]` function with `retries`.
#[inline(always)]
pub fn retry_argument<T: RetryArgument>(value: &T) -> T {
    value.clone()
}

/// An error type a `#[circuit_breaker]` function may return: one that converts from
/// [`BreakerError`] (what the call returns while the breaker is open).
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` cannot carry an `infuse::BreakerError`",
    label = "a #[circuit_breaker] function returns `Err(BreakerError::Open {{ .. }}.into())` while its breaker is open: its error type needs `From<infuse::BreakerError>`",
    note = "add `impl From<infuse::BreakerError> for {Self}`; for an error type of another crate, return a type of yours that wraps it and has that impl (`std::io::Error` and `anyhow::Error` have it already)"
)]
pub trait CarriesBreakerError {}

impl<E: From<BreakerError>> CarriesBreakerError for E {}

/// Reached only when [`Guard`] does not apply to a `Result<T, E>`: `E` cannot carry a
/// `BreakerError` (or is not `Debug`), which its bound reports once, at the return type.
/// (The options are any `O`, so that the compiler blames the call, not them.)
pub trait ErrorCarries<T, E> {
    /// Never runs: the function does not compile.
    fn guard<O, F: Future<Output = Result<T, E>>>(
        self,
        breaker: &Breaker,
        options: O,
        body: F,
    ) -> F
    where
        E: CarriesBreakerError + Debug;

    /// Never runs: the function does not compile.
    fn guard_retrying<O, P, F: Future<Output = Result<T, E>>, M: FnMut() -> F>(
        self,
        breaker: &Breaker,
        options: O,
        retry_if: P,
        make: M,
    ) -> F
    where
        E: CarriesBreakerError + Debug;
}

impl<T, E> ErrorCarries<T, E> for &Returns<Result<T, E>> {
    fn guard_retrying<O, P, F: Future<Output = Result<T, E>>, M: FnMut() -> F>(
        self,
        _: &Breaker,
        _: O,
        _: P,
        mut make: M,
    ) -> F
    where
        E: CarriesBreakerError + Debug,
    {
        make()
    }

    fn guard<O, F: Future<Output = Result<T, E>>>(self, _: &Breaker, _: O, body: F) -> F
    where
        E: CarriesBreakerError + Debug,
    {
        body
    }
}

/// Reached only for a return type that is no `Result`: `GuardedResult`'s bound says so,
/// once, at the return type.
pub trait IsResult<R> {
    /// Never runs: the function does not compile.
    fn guard<O, F: Future<Output = R>>(self, breaker: &Breaker, options: O, body: F) -> F
    where
        R: GuardedResult;

    /// Never runs: the function does not compile.
    fn guard_retrying<O, P, F: Future<Output = R>, M: FnMut() -> F>(
        self,
        breaker: &Breaker,
        options: O,
        retry_if: P,
        make: M,
    ) -> F
    where
        R: GuardedResult;
}

impl<R> IsResult<R> for Returns<R> {
    fn guard_retrying<O, P, F: Future<Output = R>, M: FnMut() -> F>(
        self,
        _: &Breaker,
        _: O,
        _: P,
        mut make: M,
    ) -> F
    where
        R: GuardedResult,
    {
        make()
    }

    fn guard<O, F: Future<Output = R>>(self, _: &Breaker, _: O, body: F) -> F
    where
        R: GuardedResult,
    {
        body
    }
}

/// Groups declarations by service; conflicting settings are an error naming both
/// functions.
pub(crate) fn check_declarations() -> Result<HashMap<&'static str, &'static BreakerSpec>, InitError>
{
    let mut seen: HashMap<&'static str, &'static BreakerSpec> = HashMap::new();
    let mut all: Vec<_> = declarations().collect();
    all.sort_by_key(|d| (d.service, d.file, d.line));
    for spec in all {
        crate::registry::validate_name(spec.service)?;
        match seen.get(spec.service) {
            Some(first) if first.settings != spec.settings => {
                return Err(InitError::ConflictingSettings {
                    service: spec.service,
                    first: first.describe(),
                    first_settings: describe_settings(&first.settings),
                    second: spec.describe(),
                    second_settings: describe_settings(&spec.settings),
                });
            }
            Some(_) => {}
            None => {
                seen.insert(spec.service, spec);
            }
        }
    }
    Ok(seen)
}

/// The settings as declared: the three of pybreaker, then each other setting that
/// differs from its default (two declarations may differ in those alone).
fn describe_settings(s: &Settings) -> String {
    let parts: Vec<String> = infuse_settings::SETTINGS
        .iter()
        .filter_map(|setting| {
            let value = s.value(setting)?;
            (setting.pybreaker || Some(value) != setting.default).then(|| setting.assignment(value))
        })
        .collect();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn settings_are_described_as_declared() {
        assert_eq!(
            describe_settings(&Settings::DEFAULT),
            "fail_max = 5, reset_timeout = \"1m\", success_threshold = 1"
        );
        let s = Settings::DEFAULT
            .timeout(Duration::from_secs(2))
            .trial_timeout(Duration::from_secs(5))
            .slow_call(Duration::from_millis(500))
            .slow_call_rate(40)
            .failure_rate(50)
            .window(Duration::from_secs(30))
            .min_calls(10)
            .min_instances(2)
            .max_reset_timeout(Duration::from_secs(300));
        assert_eq!(
            describe_settings(&s),
            "fail_max = 5, reset_timeout = \"1m\", success_threshold = 1, timeout = \"2s\", \
             trial_timeout = \"5s\", slow_call = \"500ms\", slow_call_rate = 40, failure_rate = 50, \
             window = \"30s\", min_calls = 10, min_instances = 2, max_reset_timeout = \"5m\""
        );
    }
}
