//! The attribute's arguments: the table of every argument ([`arguments`]: the settings of
//! `infuse-settings`, and the attribute's own) and the parsing pass that turns
//! `#[circuit_breaker(...)]` into [`Attr`], a model of what the user wrote. Parsing checks
//! only the syntax: known names, each at most once, `name = value`, a value of the
//! argument's kind. What the values mean (limits, rules, a non-empty service) is checked
//! by `valid.rs`.

use std::sync::LazyLock;

use infuse_settings::{Kind as SettingKind, Setting, SETTINGS};
use proc_macro2::{Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Error, ExprPath, Ident, Lit, LitBool, LitStr, Path, Result, Token};

use crate::Errors;

/// One argument of the attribute. A breaker setting is an entry of the `infuse-settings`
/// table; parsing, validation, suggestions and expansion follow from its [`Kind`] and
/// [`Target`] (a setting or call option becomes a call of the runtime's builder method of
/// the same name). The attribute's own arguments are [`OWN`].
pub(crate) struct Argument {
    pub name: &'static str,
    /// Names people bring from other breaker libraries, suggested as this argument.
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub target: Target,
    /// A valid use, quoted by error messages.
    pub example: String,
}

/// The value an argument takes: how it is parsed and which rules `valid.rs` applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string literal naming the target service: not empty, no `{` or `}`.
    Service,
    /// A string literal holding the path to the runtime crate.
    CratePath,
    /// A breaker setting: an unsuffixed integer literal (a count, a percentage, or seconds),
    /// a string for a duration (`"500ms"`, `"15s"`, `"2m"`), or `true`/`false` for a switch.
    Setting(&'static Setting),
    /// `true` or `false`.
    Bool,
    /// A path to a function `fn(&E) -> bool`.
    Predicate,
}

/// Where the generated code puts an argument's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The service of the breaker's `BreakerSpec` (`service`).
    Spec,
    /// The path of every reference to the runtime (`crate`).
    Crate,
    /// `Settings::DEFAULT.<name>(value)`.
    Settings,
    /// `CallOptions::new().<name>(value)`.
    CallOptions,
    /// The predicate of the retrying call (`retry_if`).
    Retry,
}

/// The attribute's own arguments, with their place: `service` before the settings, the
/// others after.
const OWN: [(&str, &[&str], Kind, Target, &str); 6] = [
    (
        "service",
        &["name"],
        Kind::Service,
        Target::Spec,
        "\"users\"",
    ),
    (
        "exclude",
        &[],
        Kind::Predicate,
        Target::CallOptions,
        "is_not_found",
    ),
    (
        "ignore",
        &["ignore_exceptions"],
        Kind::Predicate,
        Target::CallOptions,
        "is_cancelled",
    ),
    (
        "retry_if",
        &["retry_on", "retry_on_exception"],
        Kind::Predicate,
        Target::Retry,
        "is_transient",
    ),
    (
        "error_on_trip",
        &["throw_new_error_on_trip"],
        Kind::Bool,
        Target::CallOptions,
        "true",
    ),
    (
        "crate",
        &[],
        Kind::CratePath,
        Target::Crate,
        "\"my_reexport::infuse\"",
    ),
];

/// Every argument, in the order the documentation lists them and the expansion applies
/// them: `service`, the settings in the table's order, then the call options and `crate`.
pub(crate) fn arguments() -> &'static [Argument] {
    static ARGUMENTS: LazyLock<Vec<Argument>> = LazyLock::new(|| {
        let own =
            |(name, aliases, kind, target, example): (&'static str, _, _, _, &str)| Argument {
                name,
                aliases,
                kind,
                target,
                example: format!("{name} = {example}"),
            };
        let settings = SETTINGS.iter().map(|setting| Argument {
            name: setting.name,
            aliases: setting.aliases,
            kind: Kind::Setting(setting),
            target: Target::Settings,
            example: setting.assignment(setting.example_value()),
        });
        let (first, rest) = OWN.split_at(1);
        first
            .iter()
            .copied()
            .map(own)
            .chain(settings)
            .chain(rest.iter().copied().map(own))
            .collect()
    });
    &ARGUMENTS
}

impl Argument {
    pub(crate) fn named(text: &str) -> Option<&'static Argument> {
        arguments().iter().find(|argument| argument.name == text)
    }

    /// What a value of this argument looks like.
    pub(crate) fn expects(&self) -> String {
        let Argument { name, example, .. } = self;
        match self.kind {
            Kind::Service => format!(
                "`{name}` expects a string literal naming the target service, e.g. `{example}`"
            ),
            Kind::CratePath => format!(
                "`{name}` expects a string literal holding the path to the infuse crate, \
                 e.g. `{example}`"
            ),
            Kind::Setting(setting) => setting.expects(),
            Kind::Bool => format!("`{name}` expects `true` or `false`, e.g. `{example}`"),
            Kind::Predicate => {
                format!("`{name}` expects a path to a function `fn(&E) -> bool`, e.g. `{example}`")
            }
        }
    }
}

/// What the user wrote in `#[circuit_breaker(...)]`, as far as it parsed.
#[derive(Default)]
pub(crate) struct Attr {
    /// The well-formed arguments, in the order written; each name at most once.
    pub args: Vec<Arg>,
    /// Arguments already reported by this pass (a malformed value, or the suggestion for
    /// an unknown name): a misspelled `service` is not also missing.
    pub reported: Vec<&'static Argument>,
}

/// One well-formed `name = value`.
pub(crate) struct Arg {
    pub argument: &'static Argument,
    /// The name as written (its span locates the argument).
    pub name: Ident,
    pub value: Value,
}

/// An argument's value, as written, parsed according to its [`Kind`].
pub(crate) enum Value {
    Service(LitStr),
    CratePath(LitStr, Path),
    /// A setting's literal and the value it reads as (`valid.rs` checks its limits).
    Setting(Lit, infuse_settings::Value),
    Bool(LitBool),
    Predicate(ExprPath),
}

impl Value {
    pub(crate) fn span(&self) -> Span {
        match self {
            Value::Service(lit) | Value::CratePath(lit, _) => lit.span(),
            Value::Setting(lit, _) => lit.span(),
            Value::Bool(lit) => lit.span,
            Value::Predicate(path) => syn::spanned::Spanned::span(path),
        }
    }
}

impl Attr {
    /// The argument's value, if it was given and well-formed.
    pub(crate) fn get(&self, argument: &Argument) -> Option<&Arg> {
        self.args
            .iter()
            .find(|arg| arg.argument.name == argument.name)
    }

    pub(crate) fn service(&self) -> Option<&LitStr> {
        self.args.iter().find_map(|arg| match &arg.value {
            Value::Service(lit) => Some(lit),
            _ => None,
        })
    }

    pub(crate) fn krate(&self) -> Option<&Path> {
        self.args.iter().find_map(|arg| match &arg.value {
            Value::CratePath(_, path) => Some(path),
            _ => None,
        })
    }
}

/// Parses the attribute's arguments. Every syntax error is pushed to `errors` and parsing
/// goes on with the next argument, so that all of them are reported at once; the result
/// holds the arguments that parsed.
pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Attr {
    let mut parsing = Parsing {
        attr: Attr::default(),
        seen: Vec::new(),
        errors,
    };
    let parser = |input: ParseStream| {
        while !input.is_empty() {
            if let Err(error) = parsing.argument(input) {
                parsing.errors.push(error);
                // Skips the rest of an argument whose name or `=` is wrong.
                take_until_comma(input)?;
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        parsing.errors.push(error);
    }
    parsing.attr
}

struct Parsing<'a> {
    attr: Attr,
    /// Every known name written so far, well-formed or not.
    seen: Vec<&'static Argument>,
    errors: &'a mut Errors,
}

impl Parsing<'_> {
    /// Parses one `name = value`. Errors in the name or the `=` are returned (the caller
    /// skips to the next comma); errors in the value are pushed, and the value is always
    /// consumed up to the next comma.
    fn argument(&mut self, input: ParseStream) -> Result<()> {
        let ident = input.call(Ident::parse_any).map_err(|_| {
            input.error(format!(
                "expected arguments of the form `name = value`, e.g. `service = \"users\"`; \
                 valid arguments are {}",
                valid_names()
            ))
        })?;
        let text = ident.unraw().to_string();
        let Some(argument) = Argument::named(&text) else {
            let suggestion = suggest(&text);
            self.attr.reported.extend(suggestion);
            return Err(unknown_argument(&ident, suggestion));
        };
        if self.seen.iter().any(|seen| seen.name == argument.name) {
            return Err(Error::new(
                ident.span(),
                format!("expected only a single `{}` argument", argument.name),
            ));
        }
        self.seen.push(argument);
        if !input.peek(Token![=]) {
            self.attr.reported.push(argument);
            let span = if input.is_empty() || input.peek(Token![,]) {
                ident.span()
            } else {
                input.span()
            };
            return Err(Error::new(
                span,
                format!(
                    "expected `=` after `{}`, e.g. `{}`",
                    argument.name, argument.example
                ),
            ));
        }
        let eq: Token![=] = input.parse()?;
        let tokens = take_until_comma(input)?;
        let value = if tokens.is_empty() {
            Err(Error::new(
                eq.span,
                format!(
                    "expected a value after `{} =`, e.g. `{}`",
                    argument.name, argument.example
                ),
            ))
        } else {
            value(argument, tokens)
        };
        match value {
            Ok(value) => self.attr.args.push(Arg {
                argument,
                name: ident,
                value,
            }),
            Err(error) => {
                self.attr.reported.push(argument);
                self.errors.push(error);
            }
        }
        Ok(())
    }
}

/// Parses the whole of a value according to the argument's kind.
fn value(argument: &'static Argument, tokens: TokenStream) -> Result<Value> {
    let wrong = |span: Span| Error::new(span, argument.expects());
    Ok(match argument.kind {
        Kind::Service => Value::Service(parse_value(argument, tokens, |input| input.parse())?),
        Kind::CratePath => {
            let lit: LitStr = parse_value(argument, tokens, |input| input.parse())?;
            let path = lit.parse_with(Path::parse_mod_style).map_err(|_| {
                Error::new(
                    lit.span(),
                    format!("`{:?}` is not a path; {}", lit.value(), argument.expects()),
                )
            })?;
            Value::CratePath(lit, path)
        }
        Kind::Setting(setting) => {
            let lit: Lit = parse_value(argument, tokens, |input| input.parse())?;
            let value = match (&lit, setting.kind) {
                // syn reads `-1` as one (negative) literal; the checks refuse it.
                (Lit::Int(int), SettingKind::Count | SettingKind::Percent)
                    if int.suffix().is_empty() =>
                {
                    let value = int.base10_parse::<i128>().unwrap_or(i128::MAX);
                    Ok(infuse_settings::Value(value))
                }
                // A duration: a string, or an integer number of seconds.
                (Lit::Int(int), SettingKind::Duration) if int.suffix().is_empty() => {
                    setting.read(int.base10_digits())
                }
                (Lit::Str(text), SettingKind::Duration) => setting.read(&text.value()),
                // A switch: the literal `true` or `false` only (not `"yes"`, not `1`).
                (Lit::Bool(on), SettingKind::Bool) => Ok(infuse_settings::Value::bool(on.value)),
                _ => return Err(wrong(lit.span())),
            };
            let value = value.map_err(|reason| Error::new(lit.span(), reason))?;
            Value::Setting(lit, value)
        }
        Kind::Bool => Value::Bool(parse_value(argument, tokens, |input| input.parse())?),
        Kind::Predicate => Value::Predicate(parse_value(argument, tokens, |input| input.parse())?),
    })
}

/// The valid names, quoted, in the table's order.
fn valid_names() -> String {
    let names: Vec<String> = arguments()
        .iter()
        .map(|argument| format!("`{}`", argument.name))
        .collect();
    names.join(", ")
}

fn unknown_argument(ident: &Ident, suggestion: Option<&Argument>) -> Error {
    let text = ident.unraw().to_string();
    let message = match suggestion {
        Some(argument) => format!(
            "unknown argument `{text}`; did you mean `{}`?",
            argument.name
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
fn suggest(text: &str) -> Option<&'static Argument> {
    let lower = text.to_ascii_lowercase().replace('-', "_");
    let arguments = arguments();
    arguments
        .iter()
        .find(|argument| argument.aliases.contains(&lower.as_str()))
        .or_else(|| {
            let names = arguments.iter().map(|argument| (argument.name, argument));
            infuse_settings::closest(&lower, names)
        })
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

/// Parses the whole of `value` with `parse`. Anything else is reported with the
/// argument's expected form, spanning the offending value.
fn parse_value<T>(
    argument: &Argument,
    value: TokenStream,
    parse: impl FnOnce(ParseStream) -> Result<T>,
) -> Result<T> {
    let whole = value.clone();
    let parser = move |input: ParseStream| {
        let wrong = || Error::new_spanned(&whole, argument.expects());
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

#[cfg(test)]
mod tests {
    use super::*;
    use quote::{quote, ToTokens};

    fn parsed(tokens: TokenStream) -> (Attr, Vec<String>) {
        let mut errors = Errors::default();
        let attr = parse(tokens, &mut errors);
        (attr, errors.messages())
    }

    fn messages(tokens: TokenStream) -> Vec<String> {
        parsed(tokens).1
    }

    fn value(attr: &Attr, name: &str) -> String {
        let arg = attr
            .get(Argument::named(name).unwrap())
            .unwrap_or_else(|| panic!("no {name}"));
        match &arg.value {
            Value::Service(lit) => lit.value(),
            Value::CratePath(_, path) => path.to_token_stream().to_string(),
            Value::Setting(_, value) => match arg.argument.kind {
                Kind::Setting(setting) => setting.text(*value),
                _ => unreachable!("a setting's value"),
            },
            Value::Bool(lit) => lit.value.to_string(),
            Value::Predicate(path) => path.to_token_stream().to_string(),
        }
    }

    #[test]
    fn table() {
        let arguments = arguments();
        for (i, argument) in arguments.iter().enumerate() {
            assert!(
                arguments[..i]
                    .iter()
                    .all(|other| other.name != argument.name),
                "{} twice",
                argument.name
            );
            assert!(
                argument
                    .example
                    .starts_with(&format!("{} = ", argument.name)),
                "{}",
                argument.example
            );
            let example: TokenStream = argument.example.parse().unwrap();
            assert!(messages(example).is_empty(), "{}", argument.example);
            // The settings are documented by their table (in infuse's `Settings`).
            let section = format!("//! ## `{} = ", argument.name);
            assert!(
                matches!(argument.kind, Kind::Setting(_))
                    || include_str!("lib.rs").contains(&section),
                "{} is not documented",
                argument.name
            );
            for alias in argument.aliases {
                assert!(Argument::named(alias).is_none(), "{alias} is an argument");
            }
        }
        assert_eq!(arguments.len(), OWN.len() + SETTINGS.len());
    }

    #[test]
    fn suggestions() {
        let suggested = |text| suggest(text).map(|argument| argument.name);
        assert_eq!(suggested("fail_mx"), Some("fail_max"));
        assert_eq!(suggested("servce"), Some("service"));
        assert_eq!(suggested("FailMax"), Some("fail_max"));
        assert_eq!(suggested("reset-timeout"), Some("reset_timeout"));
        assert_eq!(suggested("succes_threshold"), Some("success_threshold"));
        assert_eq!(suggested("failure_threshold"), Some("fail_max"));
        assert_eq!(suggested("recovery_timeout"), Some("reset_timeout"));
        assert_eq!(suggested("call_timeout"), Some("timeout"));
        assert_eq!(suggested("timout"), Some("timeout"));
        assert_eq!(suggested("trial_timout"), Some("trial_timeout"));
        assert_eq!(suggested("slowcall"), Some("slow_call"));
        assert_eq!(suggested("failure_rate_threshold"), Some("failure_rate"));
        assert_eq!(
            suggested("slow_call_rate_threshold"),
            Some("slow_call_rate")
        );
        assert_eq!(suggested("sliding_window"), Some("window"));
        assert_eq!(suggested("minimum_number_of_calls"), Some("min_calls"));
        assert_eq!(suggested("min_instance"), Some("min_instances"));
        assert_eq!(suggested("max_reset_timout"), Some("max_reset_timeout"));
        assert_eq!(suggested("ignored"), Some("ignore"));
        assert_eq!(suggested("max_retries"), Some("retries"));
        assert_eq!(suggested("retry_on"), Some("retry_if"));
        assert_eq!(suggested("bulkhead"), Some("max_concurrent"));
        assert_eq!(suggested("priority"), None);
        assert_eq!(suggested("x"), None);
    }

    /// Every argument at once, each at its example: all parse, each reads back as written.
    #[test]
    fn full() {
        let all: Vec<&str> = arguments().iter().map(|a| a.example.as_str()).collect();
        let (attr, errors) = parsed(all.join(", ").parse().unwrap());
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(attr.args.len(), arguments().len());
        for setting in SETTINGS {
            assert_eq!(
                value(&attr, setting.name),
                setting.example,
                "{}",
                setting.name
            );
        }
        assert_eq!(attr.service().unwrap().value(), "users");
        assert_eq!(value(&attr, "exclude"), "is_not_found");
        assert_eq!(value(&attr, "ignore"), "is_cancelled");
        assert_eq!(value(&attr, "error_on_trip"), "true");
        let krate = attr.krate().unwrap();
        assert_eq!(quote!(#krate).to_string(), "my_reexport :: infuse");
    }

    /// Both duration syntaxes, and paths into modules.
    #[test]
    fn forms() {
        let (attr, errors) = parsed(quote!(
            service = "users",
            reset_timeout = "2m",
            trial_timeout = 5,
            slow_call = "1500ms",
            exclude = errors::is_not_found,
        ));
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(value(&attr, "reset_timeout"), "2m");
        assert_eq!(value(&attr, "trial_timeout"), "5s");
        assert_eq!(value(&attr, "slow_call"), "1500ms");
        assert_eq!(value(&attr, "exclude"), "errors :: is_not_found");
    }

    #[test]
    fn minimal() {
        let (attr, errors) = parsed(quote!(service = "users"));
        assert!(errors.is_empty());
        assert_eq!(attr.args.len(), 1);
        let (attr, _) = parsed(quote!(service = "users", reset_timeout = 15));
        assert_eq!(value(&attr, "reset_timeout"), "15s");
    }

    /// Values that are well-formed but out of range parse: `valid.rs` rejects them.
    #[test]
    fn ranges_are_not_checked_here() {
        let (attr, errors) = parsed(quote!(
            service = "",
            fail_max = 0,
            success_threshold = 4294967296,
            reset_timeout = "1441m"
        ));
        assert_eq!(errors, Vec::<String>::new());
        assert_eq!(value(&attr, "reset_timeout"), "1441m");
        assert_eq!(value(&attr, "success_threshold"), "4294967296");
    }

    #[test]
    fn each_syntax_error() {
        let cases: Vec<(TokenStream, &str)> = vec![
            (
                quote!(service = "a", service = "b"),
                "expected only a single `service` argument",
            ),
            (
                quote!(service = users),
                "`service` expects a string literal",
            ),
            (
                quote!(service = "a", fail_max = "5"),
                "`fail_max` expects a whole number ≥ 1",
            ),
            (
                quote!(service = "a", fail_max = 5u8),
                "`fail_max` expects a whole number ≥ 1",
            ),
            (
                quote!(service = "a", reset_timeout = 1.5),
                "`reset_timeout` expects a duration",
            ),
            (
                quote!(service = "a", reset_timeout = 15u64),
                "`reset_timeout` expects a duration",
            ),
            (
                quote!(service = "a", reset_timeout = "24h"),
                "`reset_timeout` expects a duration",
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
                quote!(service = "a", ignore = "f"),
                "`ignore` expects a path to a function `fn(&E) -> bool`, e.g. `ignore = is_cancelled`",
            ),
            (
                quote!(service = "a", ignore = |e| false),
                "`ignore` expects a path",
            ),
            (
                quote!(service = "a", failure_rate = "50%"),
                "`failure_rate` expects a percentage, a whole number from 1 to 100, \
                 e.g. `failure_rate = 50`",
            ),
            (
                quote!(service = "a", slow_call_rate = 0.5),
                "`slow_call_rate` expects a percentage",
            ),
            (
                quote!(service = "a", failure_rate = 50u32),
                "`failure_rate` expects a percentage",
            ),
            (
                quote!(service = "a", min_calls = "20"),
                "`min_calls` expects a whole number ≥ 1, e.g. `min_calls = 20`",
            ),
            (
                quote!(service = "a", min_instances = true),
                "`min_instances` expects a whole number ≥ 1, e.g. `min_instances = 2`",
            ),
            (
                quote!(service = "a", timeout = "2 seconds"),
                "`timeout` expects a duration",
            ),
            (
                quote!(service = "a", trial_timeout = 1.5),
                "`trial_timeout` expects a duration",
            ),
            (
                quote!(service = "a", slow_call = slow),
                "`slow_call` expects a duration",
            ),
            (
                quote!(service = "a", window = "1h"),
                "`window` expects a duration",
            ),
            (
                quote!(service = "a", max_reset_timeout = 5m),
                "`max_reset_timeout` expects a duration",
            ),
            (
                quote!(service = "a", timeout = "1s", timeout = "2s"),
                "expected only a single `timeout` argument",
            ),
            (
                quote!(service = "a", ignore = f, ignore = g),
                "expected only a single `ignore` argument",
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
                quote!(service = "a", priority = 3),
                "unknown argument `priority`; valid arguments are `service`, `fail_max`, \
                 `reset_timeout`, `success_threshold`, ",
            ),
            (
                quote!(service = "a", fail_mx = 3),
                "unknown argument `fail_mx`; did you mean `fail_max`?",
            ),
        ];
        crate::assert_each_message(cases, messages);
        // The list names every argument, in the table's order.
        let names: Vec<String> = arguments()
            .iter()
            .map(|a| format!("`{}`", a.name))
            .collect();
        let listed = format!("valid arguments are {}", names.join(", "));
        assert!(messages(quote!(priority = 3))[0].ends_with(&listed));
    }

    #[test]
    fn recovers_after_malformed_argument() {
        let (attr, found) =
            parsed(quote!(fail_max 5, servce = "", success_threshold = x, error_on_trip = true));
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(attr.args.len(), 1);
        let reported: Vec<&str> = attr.reported.iter().map(|a| a.name).collect();
        assert_eq!(reported, ["fail_max", "service", "success_threshold"]);
    }

    #[test]
    fn a_switch_takes_the_literal_true_or_false() {
        let (attr, found) = parsed(quote!(service = "a", shadow = true));
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(value(&attr, "shadow"), "true");
        let expected = "`shadow` expects `true` or `false`, e.g. `shadow = true`";
        for tokens in [
            quote!(shadow = "yes"),
            quote!(shadow = 1),
            quote!(shadow = "true"),
            quote!(shadow = on),
        ] {
            assert_eq!(messages(tokens.clone()), [expected], "{tokens}");
        }
    }
}
