//! The validation pass: what parsed must also make sense. Every misuse becomes an error at
//! its own token and all of them are collected, so that one compilation reports them all.

use infuse_settings::{Site, Slot};
use proc_macro2::{Punct, Spacing, Span, TokenStream, TokenTree};
use syn::{Error, LitStr, Result, ReturnType};

use crate::attr::{Arg, Attr, Kind, Value};
use crate::item::ItemFn;
use crate::Errors;

/// Checks the arguments: the service, and the settings by the checks of `infuse-settings`
/// (each value within its limits, then the rules between them, in the words of every other
/// entry point), each error at its own argument; then the required `service`.
pub(crate) fn check_attr(attr: &Attr, errors: &mut Errors) {
    if let Some(lit) = attr.service() {
        if let Err(error) = service(lit) {
            errors.push(error);
        }
    }
    for error in check_settings(attr) {
        errors.push(error);
    }
    let service_mentioned = attr.service().is_some()
        || attr
            .reported
            .iter()
            .any(|argument| argument.kind == Kind::Service);
    if !service_mentioned {
        errors.push(Error::new(
            Span::call_site(),
            "missing `service = \"...\"`: name the target service this breaker protects, \
             e.g. `#[circuit_breaker(service = \"users\")]`",
        ));
    }
}

/// The refusals of the settings as written, each spanned at its value or argument. A
/// setting whose value was malformed (already reported) counts as given but is compared
/// with nothing.
fn check_settings(attr: &Attr) -> Vec<Error> {
    let arg = |name: &str| attr.args.iter().find(|arg| arg.argument.name == name);
    let slot = |setting: &infuse_settings::Setting| match arg(setting.name) {
        Some(Arg {
            value: Value::Setting(_, value),
            ..
        }) => Slot::Set(*value),
        _ if attr.reported.iter().any(|a| a.name == setting.name) => Slot::Invalid,
        _ => Slot::Unset,
    };
    infuse_settings::check(slot, true)
        .into_iter()
        .filter_map(|refusal| {
            let arg = arg(refusal.setting.name)?;
            Some(match refusal.site {
                Site::Value => Error::new(arg.value.span(), refusal.message),
                Site::Argument => {
                    Error::new_spanned(spanning(arg.name.span(), arg.value.span()), refusal.message)
                }
            })
        })
        .collect()
}

fn service(lit: &LitStr) -> Result<()> {
    let value = lit.value();
    if value.trim().is_empty() {
        return Err(Error::new(
            lit.span(),
            "`service` must not be empty: name the target service this breaker protects, \
             e.g. `service = \"users\"`",
        ));
    }
    if value.contains(['{', '}']) {
        return Err(Error::new(
            lit.span(),
            "`service` must not contain `{` or `}`: they are reserved for Redis key hash tags; \
             write a plain name, e.g. `service = \"users\"`",
        ));
    }
    Ok(())
}

/// Checks that the function is one the breaker can wrap: an `async fn` with a return type
/// (whether that type is a guardable `Result` is left to the compiler, which reports it
/// at the return type; aliases like `anyhow::Result<T>` cannot be recognised here).
pub(crate) fn check_fn(item: &ItemFn, errors: &mut Errors) {
    let sig = &item.sig;
    if let Some(constness) = &sig.constness {
        errors.push(Error::new(
            constness.span,
            "#[circuit_breaker] cannot wrap a `const fn`: remove `const` and make it an `async fn`",
        ));
    } else if sig.asyncness.is_none() {
        errors.push(Error::new(
            sig.fn_token.span,
            "#[circuit_breaker] requires an `async fn`: write `async fn` here",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(Error::new_spanned(
            abi,
            "#[circuit_breaker] does not support `extern` functions: remove the ABI",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(Error::new_spanned(
            variadic,
            "#[circuit_breaker] does not support variadic functions",
        ));
    }
    if let ReturnType::Default = &sig.output {
        errors.push(Error::new_spanned(
            spanning(sig.ident.span(), sig.paren_token.span.close()),
            "a #[circuit_breaker] function must return `Result<T, E>` with \
             `E: From<infuse::BreakerError>`: add a return type, e.g. `-> Result<(), MyError>`",
        ));
    }
}

/// With `retries`, the body runs again per attempt: each argument must be a name (the
/// expansion clones it per attempt; its type's `Clone` is checked by the compiler, at the
/// argument) and a method's receiver a reference. `retry_if` needs `retries`.
pub(crate) fn check_retrying(attr: &Attr, item: &ItemFn, errors: &mut Errors) {
    let written = |name: &str| attr.args.iter().find(|arg| arg.argument.name == name);
    if written("retries").is_none() {
        if let Some(arg) = written("retry_if") {
            errors.push(Error::new_spanned(
                spanning(arg.name.span(), arg.value.span()),
                "`retry_if` narrows which errors are retried, but nothing is: add `retries = N`",
            ));
        }
        return;
    }
    for input in &item.sig.inputs {
        match input {
            syn::FnArg::Receiver(receiver) if receiver.reference.is_none() => {
                errors.push(Error::new_spanned(
                    receiver,
                    "with `retries`, the body runs once per attempt: take the receiver by \
                     reference (`&self`), or clone what you need before the call",
                ));
            }
            syn::FnArg::Receiver(receiver) if receiver.mutability.is_some() => {
                errors.push(Error::new_spanned(
                    receiver,
                    "with `retries`, the body runs once per attempt, and `&mut self` cannot be \
                     lent to every attempt: take `&self`",
                ));
            }
            syn::FnArg::Typed(pat) if !matches!(*pat.pat, syn::Pat::Ident(_)) => {
                errors.push(Error::new_spanned(
                    &pat.pat,
                    "with `retries`, each argument is cloned for every attempt: bind it to a \
                     name here and destructure it in the body",
                ));
            }
            _ => {}
        }
    }
}

/// Two tokens whose spans start and end an error's range (stable Rust cannot join spans).
fn spanning(start: Span, end: Span) -> TokenStream {
    [start, end]
        .into_iter()
        .map(|span| {
            let mut punct = Punct::new('.', Spacing::Alone);
            punct.set_span(span);
            TokenTree::Punct(punct)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use infuse_settings::{Setting, SETTINGS};
    use quote::quote;

    /// The errors of both passes over the arguments.
    fn messages(tokens: TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        let attr = crate::attr::parse(tokens, &mut errors);
        check_attr(&attr, &mut errors);
        errors.messages()
    }

    fn fn_messages(tokens: TokenStream) -> Vec<String> {
        let mut errors = Errors::default();
        match syn::parse2::<ItemFn>(tokens) {
            Ok(item) => check_fn(&item, &mut errors),
            Err(error) => errors.push(error),
        }
        errors.messages()
    }

    #[test]
    fn accepts_valid_arguments() {
        for tokens in [
            quote!(service = "users"),
            quote!(
                service = "users",
                fail_max = 4294967295,
                success_threshold = 1
            ),
            quote!(service = "users", reset_timeout = 1),
            quote!(service = "users", reset_timeout = "1ms"),
            quote!(service = "users", reset_timeout = "1440m"),
            quote!(service = "users", reset_timeout = "86400s"),
            quote!(service = "users", reset_timeout = 86400),
            quote!(
                service = "users",
                timeout = "2s",
                trial_timeout = "5s",
                slow_call = "500ms",
                slow_call_rate = 50,
                failure_rate = 50,
                window = "10s",
                min_calls = 20,
                min_instances = 2,
                max_reset_timeout = "5m",
                ignore = is_cancelled,
                exclude = is_not_found
            ),
            quote!(service = "users", timeout = "60m", trial_timeout = 3600),
            quote!(service = "users", slow_call = "1ms", slow_call_rate = 1),
            quote!(
                service = "users",
                slow_call = "59m",
                slow_call_rate = 100,
                timeout = "60m"
            ),
            quote!(service = "users", failure_rate = 100, window = "1s"),
            quote!(service = "users", failure_rate = 1, window = "60m"),
            quote!(
                service = "users",
                slow_call = 1,
                slow_call_rate = 5,
                min_calls = 1
            ),
            quote!(service = "users", max_reset_timeout = "1m"),
            quote!(
                service = "users",
                reset_timeout = "1s",
                max_reset_timeout = "1s"
            ),
            quote!(service = "users", max_reset_timeout = "1440m"),
            quote!(service = "users", trial_timeout = "1ms"),
        ] {
            assert_eq!(messages(tokens.clone()), Vec::<String>::new(), "{tokens}");
        }
    }

    #[test]
    fn each_misuse() {
        let cases: Vec<(TokenStream, &str)> = vec![
            (quote!(service = ""), "`service` must not be empty"),
            (quote!(service = "  "), "`service` must not be empty"),
            (quote!(service = "{a}"), "must not contain `{` or `}`"),
            (
                quote!(service = "a", fail_max = 0),
                "`fail_max` must be at least 1, e.g. `fail_max = 5`",
            ),
            (
                quote!(service = "a", fail_max = -1),
                "`fail_max` must be at least 1",
            ),
            (
                quote!(service = "a", fail_max = 4294967296),
                "`fail_max` must be at most 4294967295",
            ),
            (
                quote!(
                    service = "a",
                    fail_max = 999999999999999999999999999999999999999999
                ),
                "`fail_max` must be at most 4294967295",
            ),
            (
                quote!(service = "a", success_threshold = 0),
                "`success_threshold` must be at least 1",
            ),
            (
                quote!(service = "a", reset_timeout = 0),
                "`reset_timeout` must be greater than zero, e.g. `reset_timeout = \"15s\"`",
            ),
            (
                quote!(service = "a", reset_timeout = "0s"),
                "`reset_timeout` must be greater than zero",
            ),
            (
                quote!(service = "a", reset_timeout = -1),
                "`reset_timeout` expects a duration",
            ),
            (
                quote!(service = "a", reset_timeout = "1441m"),
                "`reset_timeout = \"1441m\"` exceeds the maximum of 24h: \
                 use at most `reset_timeout = \"1440m\"`",
            ),
            (
                quote!(service = "a", reset_timeout = 86401),
                "`reset_timeout = \"86401s\"` exceeds the maximum of 24h",
            ),
            (
                quote!(service = "a", reset_timeout = "86400001ms"),
                "exceeds the maximum of 24h",
            ),
            (
                quote!(service = "a", reset_timeout = 18446744073709552),
                "`reset_timeout`: duration \"18446744073709552\" is too large",
            ),
            (
                quote!(fail_max = 5),
                "missing `service = \"...\"`: name the target service",
            ),
            (
                quote!(service = "a", failure_rate = 0),
                "`failure_rate = 0` is not a percentage from 1 to 100, e.g. `failure_rate = 50`",
            ),
            (
                quote!(service = "a", failure_rate = 101),
                "`failure_rate = 101` is not a percentage from 1 to 100",
            ),
            (
                quote!(service = "a", failure_rate = -5),
                "`failure_rate = -5` is not a percentage from 1 to 100",
            ),
            (
                quote!(service = "a", slow_call = "1s", slow_call_rate = 250),
                "`slow_call_rate = 250` is not a percentage from 1 to 100, e.g. `slow_call_rate = 50`",
            ),
            (
                quote!(service = "a", failure_rate = 5, min_calls = 0),
                "`min_calls` must be at least 1, e.g. `min_calls = 20`",
            ),
            (
                quote!(service = "a", failure_rate = 5, min_instances = 0),
                "`min_instances` must be at least 1, e.g. `min_instances = 2`",
            ),
            (
                quote!(service = "a", failure_rate = 5, window = "999ms"),
                "`window = \"999ms\"` is shorter than the minimum of 1s: use at least \
                 `window = \"1s\"`",
            ),
            (
                quote!(service = "a", failure_rate = 5, window = 0),
                "`window = \"0s\"` is shorter than the minimum of 1s",
            ),
            (
                quote!(service = "a", failure_rate = 5, window = "61m"),
                "`window = \"61m\"` exceeds the maximum of 1h: use at most \
                 `window = \"60m\"`",
            ),
            (
                quote!(service = "a", timeout = "0ms"),
                "`timeout` must be greater than zero, e.g. `timeout = \"2s\"`",
            ),
            (
                quote!(service = "a", timeout = 3601),
                "`timeout = \"3601s\"` exceeds the maximum of 1h: use at most \
                 `timeout = \"60m\"`",
            ),
            (
                quote!(service = "a", trial_timeout = 0),
                "`trial_timeout` must be greater than zero, e.g. `trial_timeout = \"5s\"`",
            ),
            (
                quote!(service = "a", trial_timeout = "61m"),
                "`trial_timeout = \"61m\"` exceeds the maximum of 1h",
            ),
            (
                quote!(service = "a", slow_call = "0s", slow_call_rate = 50),
                "`slow_call` must be greater than zero, e.g. `slow_call = \"500ms\"`",
            ),
            (
                quote!(service = "a", slow_call = "61m", slow_call_rate = 50),
                "`slow_call = \"61m\"` exceeds the maximum of 1h",
            ),
            (
                quote!(service = "a", timeout = "2s", slow_call = "2s", slow_call_rate = 50),
                "`slow_call = \"2s\"` must be shorter than `timeout = \"2s\"` (a call that \
                 times out is already a failure)",
            ),
            (
                quote!(service = "a", timeout = 1, slow_call = "1500ms", slow_call_rate = 50),
                "`slow_call = \"1500ms\"` must be shorter than `timeout = \"1s\"`",
            ),
            (
                quote!(service = "a", slow_call = "500ms"),
                "`slow_call` needs `slow_call_rate`: the percentage of slow calls in the window \
                 that trips the breaker, e.g. `slow_call_rate = 50`",
            ),
            (
                quote!(service = "a", slow_call_rate = 50),
                "`slow_call_rate` needs `slow_call`: the duration above which a call is slow, \
                 e.g. `slow_call = \"500ms\"`",
            ),
            (
                quote!(service = "a", window = "10s"),
                "`window` has no effect without `failure_rate` or `slow_call_rate`",
            ),
            (
                quote!(service = "a", min_calls = 20),
                "`min_calls` has no effect without `failure_rate` or `slow_call_rate`",
            ),
            (
                quote!(service = "a", reset_timeout = "10m", max_reset_timeout = "5m"),
                "`max_reset_timeout = \"5m\"` is shorter than `reset_timeout = \"10m\"`",
            ),
            (
                quote!(service = "a", max_reset_timeout = "30s"),
                "`max_reset_timeout = \"30s\"` is shorter than `reset_timeout = \"1m\"` (the default)",
            ),
            (
                quote!(service = "a", max_reset_timeout = "1441m"),
                "`max_reset_timeout = \"1441m\"` exceeds the maximum of 24h",
            ),
            (
                quote!(service = "a", max_reset_timeout = 0),
                "`max_reset_timeout` must be greater than zero",
            ),
        ];
        crate::assert_each_message(cases, messages);
    }

    /// A comparison or a combination is not reported again when one of its arguments is
    /// already wrong on its own.
    #[test]
    fn one_error_per_mistake() {
        for (tokens, expected) in [
            (
                quote!(
                    service = "a",
                    timeout = 0,
                    slow_call = "1s",
                    slow_call_rate = 5
                ),
                "`timeout` must be greater than zero",
            ),
            (
                quote!(service = "a", slow_call = "1s", slow_call_rate = "half"),
                "`slow_call_rate` expects a percentage",
            ),
            (
                quote!(service = "a", slow_call = "soon", slow_call_rate = 5),
                "`slow_call` expects a duration",
            ),
            (
                quote!(
                    service = "a",
                    failure_rate = 1000,
                    window = "5s",
                    min_calls = 5
                ),
                "`failure_rate = 1000` is not a percentage",
            ),
            (
                quote!(service = "a", failure_rate = "x", min_instances = 3),
                "`failure_rate` expects a percentage",
            ),
            (
                quote!(
                    service = "a",
                    reset_timeout = "0s",
                    max_reset_timeout = "5m"
                ),
                "`reset_timeout` must be greater than zero",
            ),
            (
                quote!(
                    service = "a",
                    reset_timeout = "5h",
                    max_reset_timeout = "5m"
                ),
                "`reset_timeout` expects a duration",
            ),
        ] {
            let found = messages(tokens.clone());
            assert_eq!(found.len(), 1, "{tokens}: {found:?}");
            assert!(found[0].contains(expected), "{tokens}: {found:?}");
        }
        // Independent mistakes are all reported.
        let found = messages(quote!(
            service = "a",
            slow_call = "3s",
            timeout = "2s",
            window = "10s",
            max_reset_timeout = "1s"
        ));
        assert_eq!(found.len(), 4, "{found:?}");
    }

    /// Every setting of the table: its example (with what its rules need) is accepted,
    /// and the values just outside its limits are refused in the words of
    /// `Setting::check`, which `Settings::validate` and the environment use too.
    #[test]
    fn every_setting_of_the_table() {
        let tokens = |written: &[(&Setting, infuse_settings::Value)]| -> TokenStream {
            let mut text = String::from("service = \"a\"");
            for (setting, value) in written {
                text.push_str(&format!(", {}", setting.assignment(*value)));
            }
            text.parse().unwrap()
        };
        for setting in SETTINGS {
            let accepted = setting.with_companions();
            assert_eq!(
                messages(tokens(&accepted)),
                Vec::<String>::new(),
                "{}",
                setting.name
            );
            for value in setting.just_outside() {
                let mut written = accepted.clone();
                written[0].1 = value;
                let expected = setting.check(value).unwrap_err();
                assert_eq!(messages(tokens(&written)), [expected], "{}", setting.name);
            }
        }
    }

    #[test]
    fn errors_of_both_passes_are_collected() {
        let found = messages(quote!(fail_mx = 5, fail_max = 0, reset_timeout = "soon"));
        assert_eq!(
            found,
            [
                "unknown argument `fail_mx`; did you mean `fail_max`?",
                "`reset_timeout` expects a duration like \"500ms\", \"15s\" or \"2m\", or a whole number of seconds, e.g. `reset_timeout = \"15s\"`, found \"soon\"",
                "`fail_max` must be at least 1, e.g. `fail_max = 5`",
                "missing `service = \"...\"`: name the target service this breaker protects, e.g. `#[circuit_breaker(service = \"users\")]`",
            ]
        );
    }

    #[test]
    fn a_service_reported_by_parsing_is_not_also_missing() {
        for tokens in [
            quote!(servce = "users"),
            quote!(service = users),
            quote!(service "users"),
            quote!(name = "users"),
        ] {
            assert_eq!(messages(tokens.clone()).len(), 1, "{tokens}");
        }
    }

    #[test]
    fn accepts_async_fns() {
        for tokens in [
            quote!(
                async fn f() -> Result<(), E> {}
            ),
            quote!(
                #[doc = "x"]
                pub(crate) async unsafe fn f<'a, T: X>(&'a self, t: T) -> io::Result<&'a T>
                where
                    T: Y,
                {
                    body()
                }
            ),
            quote!(
                async fn f(self: Arc<Self>) -> anyhow::Result<u32> {
                    #![allow(unused)]
                    Ok(1)
                }
            ),
        ] {
            assert_eq!(
                fn_messages(tokens.clone()),
                Vec::<String>::new(),
                "{tokens}"
            );
        }
    }

    #[test]
    fn rejects_other_shapes() {
        let cases = [
            (
                quote!(
                    fn f() -> R {}
                ),
                "requires an `async fn`",
            ),
            (
                quote!(
                    const fn f() -> R {}
                ),
                "cannot wrap a `const fn`",
            ),
            (
                quote!(
                    async fn f() {}
                ),
                "must return `Result<T, E>`",
            ),
            (
                quote!(
                    async extern "C" fn f() -> R {}
                ),
                "does not support `extern`",
            ),
        ];
        crate::assert_each_message(cases, fn_messages);
        assert_eq!(
            fn_messages(quote!(
                fn f() {}
            ))
            .len(),
            2
        );
    }
}
