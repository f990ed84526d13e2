//! The attribute's arguments: parsed and validated into [`Args`], every misuse reported
//! at its own token and all of them together.

use crate::Errors;
use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Error, ExprPath, Ident, Lit, LitBool, LitInt, LitStr, Path, Result, Token};

/// The validated arguments of one `#[circuit_breaker(...)]`.
pub(crate) struct Args {
    pub service: LitStr,
    pub fail_max: Option<u32>,
    pub reset_timeout_ms: Option<u64>,
    pub success_threshold: Option<u32>,
    pub exclude: Option<ExprPath>,
    pub error_on_trip: Option<LitBool>,
    pub krate: Option<Path>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Name {
    Service,
    FailMax,
    ResetTimeout,
    SuccessThreshold,
    Exclude,
    ErrorOnTrip,
    Crate,
}

impl Name {
    const ALL: [Name; 7] = [
        Name::Service,
        Name::FailMax,
        Name::ResetTimeout,
        Name::SuccessThreshold,
        Name::Exclude,
        Name::ErrorOnTrip,
        Name::Crate,
    ];

    /// Names people bring from other breaker libraries, mapped to ours.
    const ALIASES: [(&'static str, Name); 6] = [
        ("name", Name::Service),
        ("failure_threshold", Name::FailMax),
        ("max_failures", Name::FailMax),
        ("timeout", Name::ResetTimeout),
        ("recovery_timeout", Name::ResetTimeout),
        ("throw_new_error_on_trip", Name::ErrorOnTrip),
    ];

    fn as_str(self) -> &'static str {
        match self {
            Name::Service => "service",
            Name::FailMax => "fail_max",
            Name::ResetTimeout => "reset_timeout",
            Name::SuccessThreshold => "success_threshold",
            Name::Exclude => "exclude",
            Name::ErrorOnTrip => "error_on_trip",
            Name::Crate => "crate",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Name::Service => "service = \"users\"",
            Name::FailMax => "fail_max = 5",
            Name::ResetTimeout => "reset_timeout = \"15s\"",
            Name::SuccessThreshold => "success_threshold = 2",
            Name::Exclude => "exclude = is_not_found",
            Name::ErrorOnTrip => "error_on_trip = true",
            Name::Crate => "crate = \"my_reexport::infuse\"",
        }
    }

    /// What a value of this argument looks like.
    fn expects(self) -> String {
        match self {
            Name::Service => "`service` expects a string literal naming the target service, \
                              e.g. `service = \"users\"`"
                .into(),
            Name::FailMax | Name::SuccessThreshold => format!(
                "`{}` expects an integer literal ≥ 1, e.g. `{}`",
                self.as_str(),
                self.example()
            ),
            Name::ResetTimeout => "`reset_timeout` expects a duration like \"500ms\", \"15s\" \
                                   or \"2m\", or an integer number of seconds"
                .into(),
            Name::Exclude => "`exclude` expects a path to a function `fn(&E) -> bool`, \
                              e.g. `exclude = is_not_found`"
                .into(),
            Name::ErrorOnTrip => "`error_on_trip` expects `true` or `false`, \
                                  e.g. `error_on_trip = true`"
                .into(),
            Name::Crate => "`crate` expects a string literal holding the path to the infuse \
                            crate, e.g. `crate = \"my_reexport::infuse\"`"
                .into(),
        }
    }

    fn from_ident(ident: &Ident) -> Option<Name> {
        let text = ident.unraw().to_string();
        Name::ALL.into_iter().find(|name| name.as_str() == text)
    }
}

fn valid_names() -> String {
    let names: Vec<String> = Name::ALL
        .iter()
        .map(|name| format!("`{}`", name.as_str()))
        .collect();
    names.join(", ")
}

#[derive(Default)]
struct Draft {
    seen: Vec<Name>,
    /// Known names offered for unknown ones: a misspelled `service` is not also missing.
    suggested: Vec<Name>,
    errors: Errors,
    service: Option<LitStr>,
    fail_max: Option<u32>,
    reset_timeout_ms: Option<u64>,
    success_threshold: Option<u32>,
    exclude: Option<ExprPath>,
    error_on_trip: Option<LitBool>,
    krate: Option<Path>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> Result<Self> {
        let mut draft = Draft::default();
        while !input.is_empty() {
            match draft.argument(input) {
                Ok(()) if input.is_empty() => {}
                Ok(()) => {
                    input.parse::<Token![,]>()?;
                }
                Err(error) => {
                    draft.errors.push(error);
                    skip_past_comma(input)?;
                }
            }
        }
        draft.finish()
    }
}

impl Draft {
    /// Parses one `name = value`. Errors in the name or the `=` are returned (the caller
    /// skips to the next comma); errors in the value are collected, and the value is always
    /// consumed up to the next comma.
    fn argument(&mut self, input: ParseStream) -> Result<()> {
        let ident = input.call(Ident::parse_any).map_err(|_| {
            input.error(format!(
                "expected arguments of the form `name = value`, e.g. `service = \"users\"`; \
                 valid arguments are {}",
                valid_names()
            ))
        })?;
        let Some(name) = Name::from_ident(&ident) else {
            let suggestion = suggest(&ident.unraw().to_string());
            self.suggested.extend(suggestion);
            return Err(unknown_argument(&ident, suggestion));
        };
        if self.seen.contains(&name) {
            return Err(Error::new(
                ident.span(),
                format!("expected only a single `{}` argument", name.as_str()),
            ));
        }
        self.seen.push(name);
        if !input.peek(Token![=]) {
            let span = if input.is_empty() || input.peek(Token![,]) {
                ident.span()
            } else {
                input.span()
            };
            return Err(Error::new(
                span,
                format!(
                    "expected `=` after `{}`, e.g. `{}`",
                    name.as_str(),
                    name.example()
                ),
            ));
        }
        let eq: Token![=] = input.parse()?;
        let value = take_until_comma(input)?;
        if value.is_empty() {
            self.errors.push(Error::new(
                eq.span,
                format!(
                    "expected a value after `{} =`, e.g. `{}`",
                    name.as_str(),
                    name.example()
                ),
            ));
            return Ok(());
        }
        if let Err(error) = self.value(name, value) {
            self.errors.push(error);
        }
        Ok(())
    }

    fn value(&mut self, name: Name, value: TokenStream) -> Result<()> {
        match name {
            Name::Service => {
                let lit: LitStr = parse_value(name, value, |input| input.parse())?;
                self.service = Some(service(lit)?);
            }
            Name::FailMax => {
                let lit: LitInt = parse_value(name, value, |input| input.parse())?;
                self.fail_max = Some(at_least_one(name, &lit)?);
            }
            Name::SuccessThreshold => {
                let lit: LitInt = parse_value(name, value, |input| input.parse())?;
                self.success_threshold = Some(at_least_one(name, &lit)?);
            }
            Name::ResetTimeout => {
                let lit: Lit = parse_value(name, value, |input| input.parse())?;
                self.reset_timeout_ms = Some(reset_timeout(&lit)?);
            }
            Name::Exclude => {
                self.exclude = Some(parse_value(name, value, |input| input.parse())?);
            }
            Name::ErrorOnTrip => {
                self.error_on_trip = Some(parse_value(name, value, |input| input.parse())?);
            }
            Name::Crate => {
                let lit: LitStr = parse_value(name, value, |input| input.parse())?;
                let path = lit.parse_with(Path::parse_mod_style).map_err(|_| {
                    Error::new(
                        lit.span(),
                        format!("`{:?}` is not a path; {}", lit.value(), name.expects()),
                    )
                })?;
                self.krate = Some(path);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Args> {
        if !self.seen.contains(&Name::Service) && !self.suggested.contains(&Name::Service) {
            self.errors.push(missing_service());
        }
        self.errors.finish()?;
        // Always present here: a `service` that was given but invalid left an error.
        let service = self.service.ok_or_else(missing_service)?;
        Ok(Args {
            service,
            fail_max: self.fail_max,
            reset_timeout_ms: self.reset_timeout_ms,
            success_threshold: self.success_threshold,
            exclude: self.exclude,
            error_on_trip: self.error_on_trip,
            krate: self.krate,
        })
    }
}

fn missing_service() -> Error {
    Error::new(
        Span::call_site(),
        "missing `service = \"...\"`: name the target service this breaker protects, \
         e.g. `#[circuit_breaker(service = \"users\")]`",
    )
}

fn unknown_argument(ident: &Ident, suggestion: Option<Name>) -> Error {
    let text = ident.unraw().to_string();
    let message = match suggestion {
        Some(name) => format!(
            "unknown argument `{text}`; did you mean `{}`?",
            name.as_str()
        ),
        None => format!(
            "unknown argument `{text}`; valid arguments are {}",
            valid_names()
        ),
    };
    Error::new(ident.span(), message)
}

/// The known argument closest to `text`, when close enough to be a typo (or a name from
/// another breaker library).
fn suggest(text: &str) -> Option<Name> {
    let lower = text.to_ascii_lowercase().replace('-', "_");
    if let Some((_, name)) = Name::ALIASES.iter().find(|(alias, _)| *alias == lower) {
        return Some(*name);
    }
    let limit = text.chars().count().max(3) / 3;
    Name::ALL
        .into_iter()
        .map(|name| (edit_distance(&lower, name.as_str()), name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and adjacent
/// transpositions each cost 1.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// Consumes the tokens of one value: everything up to (not including) the next
/// top-level comma.
fn take_until_comma(input: ParseStream) -> Result<TokenStream> {
    input.step(|cursor| {
        let mut rest = *cursor;
        let mut value = TokenStream::new();
        while let Some((tree, next)) = rest.token_tree() {
            if matches!(&tree, TokenTree::Punct(punct) if punct.as_char() == ',') {
                break;
            }
            value.extend([tree]);
            rest = next;
        }
        Ok((value, rest))
    })
}

/// Recovery after a malformed argument: skips to the next argument.
fn skip_past_comma(input: ParseStream) -> Result<()> {
    take_until_comma(input)?;
    if !input.is_empty() {
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

/// Parses the whole of `value` with `parse`. Anything else is reported with the
/// argument's expected form, spanning the offending value.
fn parse_value<T>(
    name: Name,
    value: TokenStream,
    parse: impl FnOnce(ParseStream) -> Result<T>,
) -> Result<T> {
    let whole = value.clone();
    let parser = move |input: ParseStream| {
        let wrong = || Error::new_spanned(&whole, name.expects());
        let parsed = parse(input).map_err(|_| wrong())?;
        if input.is_empty() {
            Ok(parsed)
        } else if input.peek(Ident::peek_any) && input.peek2(Token![=]) {
            Err(input.error("expected `,` between arguments"))
        } else {
            Err(wrong())
        }
    };
    parser.parse2(value)
}

fn service(lit: LitStr) -> Result<LitStr> {
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
    Ok(lit)
}

fn at_least_one(name: Name, lit: &LitInt) -> Result<u32> {
    if !lit.suffix().is_empty() {
        return Err(Error::new(lit.span(), name.expects()));
    }
    // syn also reads `-1` as one (negative) literal.
    let value: i128 = lit.base10_parse().map_err(|_| too_large(name, lit))?;
    if value < 1 {
        return Err(Error::new(
            lit.span(),
            format!(
                "`{}` must be at least 1, e.g. `{}`",
                name.as_str(),
                name.example()
            ),
        ));
    }
    u32::try_from(value).map_err(|_| too_large(name, lit))
}

fn too_large(name: Name, lit: &LitInt) -> Error {
    Error::new(
        lit.span(),
        format!("`{}` must be at most {}", name.as_str(), u32::MAX),
    )
}

fn reset_timeout(lit: &Lit) -> Result<u64> {
    let millis = match lit {
        Lit::Int(int) if int.base10_digits().starts_with('-') => Ok(0),
        Lit::Int(int) if int.suffix().is_empty() => int
            .base10_parse::<u64>()
            .ok()
            .and_then(|secs| secs.checked_mul(1_000))
            .ok_or(DurationError::Overflow),
        Lit::Str(text) => parse_duration_ms(&text.value()),
        _ => Err(DurationError::Invalid),
    };
    let message = match millis {
        Ok(0) => "`reset_timeout` must be greater than zero, e.g. `reset_timeout = \"15s\"`".into(),
        Ok(millis) => return Ok(millis),
        Err(DurationError::Invalid) => Name::ResetTimeout.expects(),
        Err(DurationError::Overflow) => {
            "`reset_timeout` is too large: it must fit in a u64 number of milliseconds".into()
        }
    };
    Err(Error::new(lit.span(), message))
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DurationError {
    Invalid,
    Overflow,
}

/// Milliseconds in a duration: an integer followed by `ms`, `s` or `m`, or a bare integer
/// number of seconds (the same syntax as the runtime's `infuse::parse_duration`, which
/// reads the environment overrides).
pub(crate) fn parse_duration_ms(text: &str) -> std::result::Result<u64, DurationError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(DurationError::Invalid);
    }
    let per_unit: u64 = match unit.trim_start() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        _ => return Err(DurationError::Invalid),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|amount| amount.checked_mul(per_unit))
        .ok_or(DurationError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(tokens: TokenStream) -> Result<Args> {
        syn::parse2(tokens)
    }

    fn messages(tokens: TokenStream) -> Vec<String> {
        match parse(tokens) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("15s"), Ok(15_000));
        assert_eq!(parse_duration_ms("2m"), Ok(120_000));
        assert_eq!(parse_duration_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_ms(" 15 s "), Ok(15_000));
        assert_eq!(parse_duration_ms("0ms"), Ok(0));
        for bad in [
            "",
            "s",
            "15h",
            "1.5s",
            "-1s",
            "fifteen",
            "15 seconds",
            "15sec",
        ] {
            assert_eq!(
                parse_duration_ms(bad),
                Err(DurationError::Invalid),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_duration_ms("99999999999999999999s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_duration_ms("18446744073709552m"),
            Err(DurationError::Overflow)
        );
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("fail_max", "fail_max"), 0);
        assert_eq!(edit_distance("fail_mx", "fail_max"), 1);
        assert_eq!(edit_distance("fial_max", "fail_max"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("fail_mx"), Some(Name::FailMax));
        assert_eq!(suggest("servce"), Some(Name::Service));
        assert_eq!(suggest("FailMax"), Some(Name::FailMax));
        assert_eq!(suggest("reset-timeout"), Some(Name::ResetTimeout));
        assert_eq!(suggest("succes_threshold"), Some(Name::SuccessThreshold));
        assert_eq!(suggest("timeout"), Some(Name::ResetTimeout));
        assert_eq!(suggest("retries"), None);
        assert_eq!(suggest("x"), None);
    }

    #[test]
    fn full() {
        let args = parse(quote!(
            service = "users",
            fail_max = 3,
            reset_timeout = "2m",
            success_threshold = 2,
            exclude = errors::is_not_found,
            error_on_trip = true,
            crate = "my::infuse",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.service.value(), "users");
        assert_eq!(args.fail_max, Some(3));
        assert_eq!(args.reset_timeout_ms, Some(120_000));
        assert_eq!(args.success_threshold, Some(2));
        assert!(args.exclude.is_some());
        assert!(args.error_on_trip.unwrap().value);
        let krate = args.krate.unwrap();
        assert_eq!(quote!(#krate).to_string(), "my :: infuse");
    }

    #[test]
    fn minimal() {
        let args = parse(quote!(service = "users")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(args.service.value(), "users");
        assert!(args.fail_max.is_none() && args.reset_timeout_ms.is_none());
        let args = parse(quote!(service = "users", reset_timeout = 15)).unwrap();
        assert_eq!(args.reset_timeout_ms, Some(15_000));
    }

    #[test]
    fn errors_are_collected() {
        let found = messages(quote!(fail_mx = 5, fail_max = 0, reset_timeout = "soon"));
        assert_eq!(
            found,
            [
                "unknown argument `fail_mx`; did you mean `fail_max`?",
                "`fail_max` must be at least 1, e.g. `fail_max = 5`",
                "`reset_timeout` expects a duration like \"500ms\", \"15s\" or \"2m\", or an integer number of seconds",
                "missing `service = \"...\"`: name the target service this breaker protects, e.g. `#[circuit_breaker(service = \"users\")]`",
            ]
        );
    }

    #[test]
    fn each_misuse() {
        let cases: Vec<(TokenStream, &str)> = vec![
            (
                quote!(service = "a", service = "b"),
                "expected only a single `service` argument",
            ),
            (quote!(service = ""), "`service` must not be empty"),
            (quote!(service = "  "), "`service` must not be empty"),
            (quote!(service = "{a}"), "must not contain `{` or `}`"),
            (
                quote!(service = users),
                "`service` expects a string literal",
            ),
            (
                quote!(service = "a", fail_max = "5"),
                "`fail_max` expects an integer literal ≥ 1",
            ),
            (
                quote!(service = "a", fail_max = -1),
                "`fail_max` must be at least 1",
            ),
            (
                quote!(service = "a", reset_timeout = -1),
                "`reset_timeout` must be greater than zero",
            ),
            (quote!(service = "a", fail_max = -1), "`fail_max`"),
            (
                quote!(service = "a", fail_max = 5u8),
                "`fail_max` expects an integer literal ≥ 1",
            ),
            (
                quote!(service = "a", fail_max = 4294967296),
                "`fail_max` must be at most 4294967295",
            ),
            (
                quote!(service = "a", success_threshold = 0),
                "`success_threshold` must be at least 1",
            ),
            (
                quote!(service = "a", reset_timeout = 0),
                "`reset_timeout` must be greater than zero",
            ),
            (
                quote!(service = "a", reset_timeout = "0s"),
                "`reset_timeout` must be greater than zero",
            ),
            (
                quote!(service = "a", reset_timeout = 1.5),
                "`reset_timeout` expects a duration",
            ),
            (
                quote!(service = "a", reset_timeout = 18446744073709552),
                "`reset_timeout` is too large",
            ),
            (
                quote!(service = "a", exclude = "f"),
                "`exclude` expects a path",
            ),
            (
                quote!(service = "a", exclude = |e| true),
                "`exclude` expects a path",
            ),
            (
                quote!(service = "a", error_on_trip = 1),
                "`error_on_trip` expects `true` or `false`",
            ),
            (quote!(service = "a", crate = "not a path"), "is not a path"),
            (
                quote!(service = "a", crate = infuse),
                "`crate` expects a string literal",
            ),
            (
                quote!(service = "a", fail_max 5),
                "expected `=` after `fail_max`, e.g. `fail_max = 5`",
            ),
            (quote!(service), "expected `=` after `service`"),
            (quote!(service = ), "expected a value after `service =`"),
            (
                quote!(service = "a" fail_max = 5),
                "expected `,` between arguments",
            ),
            (
                quote!("users"),
                "expected arguments of the form `name = value`",
            ),
            (
                quote!(service = "a", retries = 3),
                "unknown argument `retries`; valid arguments are `service`, `fail_max`",
            ),
        ];
        for (tokens, expected) in cases {
            let found = messages(tokens.clone());
            assert!(
                found.iter().any(|m| m.contains(expected)),
                "{tokens}: expected {expected:?}, found {found:?}"
            );
        }
    }

    #[test]
    fn misspelled_service_is_not_also_missing() {
        assert_eq!(
            messages(quote!(servce = "users")),
            ["unknown argument `servce`; did you mean `service`?"]
        );
    }

    #[test]
    fn recovers_after_malformed_argument() {
        let found = messages(quote!(fail_max 5, service = "", success_threshold = 0));
        assert_eq!(found.len(), 3, "{found:?}");
    }
}
