//! Code generation: the function, unchanged but for a body that runs the original body
//! through the function's static breaker. The input has passed `valid.rs`; the generated
//! code names the runtime only by absolute paths, to its public API and its hidden
//! `__private` module.

use infuse_settings::Kind as SettingKind;
use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{Path, ReturnType, Token, Type, TypeInfer};

use crate::attr::{arguments, Arg, Attr, Kind, Target, Value};
use crate::item::ItemFn;

/// What the attribute emits when there are errors: the errors, and the function as
/// written, so that the errors are the only ones (no cascade from a missing function).
pub(crate) fn fallback(error: syn::Error, item: TokenStream) -> TokenStream {
    let mut tokens = error.to_compile_error();
    tokens.extend(item);
    tokens
}

pub(crate) fn expand(attr: &Attr, item: &ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        inner_attrs,
        block,
    } = item;
    let default_krate: Path = syn::parse_quote!(::infuse);
    let krate = attr.krate().unwrap_or(&default_krate);
    // The plumbing the runtime keeps out of its documentation.
    let private = quote!(#krate::__private);
    let service = attr.service().expect("validated: `service` is required");
    let ReturnType::Type(_, ret) = &sig.output else {
        unreachable!("validated: the function has a return type")
    };

    // Each setting and call option is a builder call of the argument's name, in the
    // table's order.
    let ret_span = ret.span();
    let mut settings = quote!(#krate::Settings::DEFAULT);
    let mut options = quote_spanned!(ret_span=> #krate::CallOptions::new());
    for arg in arguments().iter().filter_map(|argument| attr.get(argument)) {
        match arg.argument.target {
            Target::Settings => settings.extend(builder_call(arg)),
            Target::CallOptions => options.extend(builder_call(arg)),
            Target::Spec | Target::Crate | Target::Retry => {}
        }
    }

    // The body becomes an async block whose output must be the declared return type. An
    // unreachable `return` of that type, placed first (as tracing-attributes does), fixes
    // the output before the body is checked, so `return` and `?` in the body keep their
    // meaning and a mismatch is reported where it would be without the attribute.
    // `guard::<R, _>` reports a return type that is not a guardable `Result` at the
    // return type.
    let guarded = erase_impl_trait(ret);
    let fake = Ident::new("__infuse_return", Span::mixed_site().located_at(ret_span));
    let body = quote_spanned! {ret_span=>
        async move {
            #[allow(
                unknown_lints,
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::let_with_type_underscore,
                clippy::needless_return,
                clippy::unreachable
            )]
            if false {
                let #fake: #guarded = loop {};
                return #fake;
            }
            #block
        }
    };
    // The call goes through `Returns<R>`, which picks the breaker's `guard` when `R` is a
    // guardable `Result`, and otherwise a stand-in whose bound fails once, at the return
    // type, saying what to add (`impl From<infuse::BreakerError> for E`). The body is
    // bound first, so that the traits imported for that choice are not in its scope; the
    // options stay in the call, which gives them their error type. The binding has the
    // return type's context (not `mixed_site`), so that an error about it is shown there
    // rather than at the attribute; nothing the user wrote can name it.
    let body_var = Ident::new("__infuse_body", ret_span);
    let retrying = attr.args.iter().any(|arg| arg.argument.name == "retries");
    let call = if retrying {
        // Each attempt runs the body again: a closure that clones every argument (the
        // clone spanned at the argument, so a type that is not `Clone` is reported there)
        // and makes the body's future from the clones.
        let clones = sig.inputs.iter().filter_map(|input| match input {
            syn::FnArg::Typed(pat) => match &*pat.pat {
                syn::Pat::Ident(ident) => {
                    let name = &ident.ident;
                    Some(quote_spanned! {pat.span()=>
                        let #name = #private::retry_argument(&#name);
                    })
                }
                _ => None,
            },
            syn::FnArg::Receiver(_) => None,
        });
        let retry_if = match attr.args.iter().find(|arg| arg.argument.name == "retry_if") {
            Some(Arg {
                value: Value::Predicate(path),
                ..
            }) => quote_spanned!(path.span()=> ::core::option::Option::Some(#path)),
            _ => quote!(::core::option::Option::None),
        };
        quote_spanned! {ret_span=>
            #[allow(unused_mut)]
            let mut #body_var = move || {
                #(#clones)*
                #body
            };
            {
                #[allow(unused_imports)]
                use #private::{ErrorCarries as _, Guard as _, IsResult as _};
                (&&#private::Returns::<#guarded>::new()).guard_retrying(
                    __INFUSE_BREAKER.get(),
                    #options,
                    #retry_if,
                    #body_var,
                )
            }
            .await
        }
    } else {
        quote_spanned! {ret_span=>
            let #body_var = #body;
            {
                #[allow(unused_imports)]
                use #private::{ErrorCarries as _, Guard as _, IsResult as _};
                (&&#private::Returns::<#guarded>::new()).guard(
                    __INFUSE_BREAKER.get(),
                    #options,
                    #body_var,
                )
            }
            .await
        }
    };

    let name = sig.ident.unraw().to_string();
    let location = quote_spanned!(sig.ident.span()=> ::core::file!(), ::core::line!());

    quote! {
        #(#attrs)*
        #vis #sig {
            #(#inner_attrs)*
            static __INFUSE_SPEC: #private::BreakerSpec = #private::BreakerSpec::new(
                #service,
                #settings,
                ::core::concat!(::core::module_path!(), "::", #name),
                #location,
            );
            static __INFUSE_BREAKER: #private::StaticBreaker =
                #private::StaticBreaker::new(&__INFUSE_SPEC);
            #private::register!(__INFUSE_SPEC);
            #call
        }
    }
}

/// `.name(value)`, at the value's span: a type error is reported at the argument.
fn builder_call(arg: &Arg) -> TokenStream {
    let method = Ident::new(arg.argument.name, arg.name.span());
    let span = arg.value.span();
    let value = match &arg.value {
        Value::Setting(_, value) => match arg.argument.kind {
            Kind::Setting(setting) if setting.kind == SettingKind::Duration => {
                let millis = value.as_duration().as_millis();
                let millis = u64::try_from(millis).expect("validated: a duration fits in u64 ms");
                let millis = Literal::u64_unsuffixed(millis);
                quote_spanned!(span=> ::core::time::Duration::from_millis(#millis))
            }
            Kind::Setting(setting) if setting.kind == SettingKind::Bool => {
                let on = syn::LitBool::new(value.0 != 0, span);
                on.into_token_stream()
            }
            _ => {
                let n = u32::try_from(value.0).expect("validated: a count fits in u32");
                let mut lit = Literal::u32_unsuffixed(n);
                lit.set_span(span);
                lit.into_token_stream()
            }
        },
        Value::Service(lit) | Value::CratePath(lit, _) => lit.to_token_stream(),
        Value::Bool(lit) => lit.to_token_stream(),
        Value::Predicate(path) => path.to_token_stream(),
    };
    quote_spanned!(span=> .#method(#value))
}

/// `impl Trait` may not be named in a turbofish: replace it with `_` (the async block's
/// output supplies it), wherever it appears in the type.
fn erase_impl_trait(ty: &Type) -> Type {
    let mut ty = ty.clone();
    ImplTraitEraser.visit_type_mut(&mut ty);
    ty
}

struct ImplTraitEraser;

impl VisitMut for ImplTraitEraser {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            let span = impl_trait.impl_token.span;
            *ty = Type::Infer(TypeInfer {
                underscore_token: Token![_](span),
            });
        } else {
            visit_mut::visit_type_mut(self, ty);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expansion of valid arguments and function.
    fn expanded(args: TokenStream, item: TokenStream) -> String {
        let out = crate::circuit_breaker_impl(args, item).to_string();
        assert!(!out.contains("compile_error"), "{out}");
        out
    }

    fn erased(ty: Type) -> String {
        erase_impl_trait(&ty).into_token_stream().to_string()
    }

    #[test]
    fn erases_impl_trait() {
        assert_eq!(
            erased(syn::parse_quote!(Result<impl Display, E>)),
            "Result < _ , E >"
        );
        assert_eq!(
            erased(syn::parse_quote!(
                Result<(Vec<impl Iterator<Item = u8>>, &'a str), E>
            )),
            "Result < (Vec < _ > , & 'a str) , E >"
        );
        assert_eq!(
            erased(syn::parse_quote!(anyhow::Result<u32>)),
            "anyhow :: Result < u32 >"
        );
        assert_eq!(
            erased(syn::parse_quote!(
                Result<[impl Display; 2], &'a (dyn Debug + 'a)>
            )),
            "Result < [_ ; 2] , & 'a (dyn Debug + 'a) >"
        );
    }

    #[test]
    fn expands_to_the_runtime_api() {
        let out = expanded(
            quote!(
                service = "users",
                fail_max = 5,
                reset_timeout = "15s",
                exclude = is_not_found,
                error_on_trip = true
            ),
            quote!(
                /// Docs.
                pub async fn get_user(id: u64) -> Result<User, ApiError> {
                    fetch(id).await
                }
            ),
        );
        for expected in [
            "# [doc = r\" Docs.\"] pub async fn get_user (id : u64) -> Result < User , ApiError > {",
            "static __INFUSE_SPEC : :: infuse :: __private :: BreakerSpec = :: infuse :: __private :: BreakerSpec :: new (\"users\" , :: infuse :: Settings :: DEFAULT . fail_max (5) . reset_timeout (:: core :: time :: Duration :: from_millis (15000)) ,",
            ":: core :: concat ! (:: core :: module_path ! () , \"::\" , \"get_user\") , :: core :: file ! () , :: core :: line ! () ,) ;",
            "static __INFUSE_BREAKER : :: infuse :: __private :: StaticBreaker = :: infuse :: __private :: StaticBreaker :: new (& __INFUSE_SPEC) ;",
            ":: infuse :: __private :: register ! (__INFUSE_SPEC) ;",
            "let __infuse_body = async move {",
            "if false { let __infuse_return : Result < User , ApiError > = loop { } ; return __infuse_return ; } { fetch (id) . await } } ;",
            "{ # [allow (unused_imports)] use :: infuse :: __private :: { ErrorCarries as _ , Guard as _ , IsResult as _ } ; \
             (&& :: infuse :: __private :: Returns :: < Result < User , ApiError > > :: new ()) \
             . guard (__INFUSE_BREAKER . get () , :: infuse :: CallOptions :: new () . exclude (is_not_found) . error_on_trip (true) , __infuse_body ,) } . await",
        ] {
            assert!(out.contains(expected), "missing {expected}\nin {out}");
        }
    }

    #[test]
    fn backpressure_arguments_are_builder_calls() {
        let out = expanded(
            quote!(
                ignore = errors::is_cancelled,
                max_reset_timeout = "5m",
                min_instances = 2,
                min_calls = 20,
                window = "10s",
                failure_rate = 50,
                slow_call_rate = 40,
                slow_call = "500ms",
                trial_timeout = "5s",
                timeout = 2,
                exclude = is_not_found,
                service = "users"
            ),
            quote!(
                async fn f() -> Result<(), E> {
                    x
                }
            ),
        );
        let settings = ":: infuse :: Settings :: DEFAULT \
             . timeout (:: core :: time :: Duration :: from_millis (2000)) \
             . trial_timeout (:: core :: time :: Duration :: from_millis (5000)) \
             . slow_call (:: core :: time :: Duration :: from_millis (500)) \
             . slow_call_rate (40) \
             . failure_rate (50) \
             . window (:: core :: time :: Duration :: from_millis (10000)) \
             . min_calls (20) \
             . min_instances (2) \
             . max_reset_timeout (:: core :: time :: Duration :: from_millis (300000)) ,";
        assert!(out.contains(settings), "{out}");
        let options = ":: infuse :: CallOptions :: new () . exclude (is_not_found) \
             . ignore (errors :: is_cancelled) , __infuse_body";
        assert!(out.contains(options), "{out}");
    }

    #[test]
    fn custom_crate_path() {
        let out = expanded(
            quote!(service = "s", crate = "crate::reexport::infuse"),
            quote!(
                async fn f() -> R {
                    x
                }
            ),
        );
        assert!(
            out.contains("crate :: reexport :: infuse :: __private :: register ! (__INFUSE_SPEC)")
        );
        assert!(!out.contains("= :: infuse"), "{out}");
        assert!(out.contains("crate :: reexport :: infuse :: Settings :: DEFAULT ,"));
    }

    #[test]
    fn builder_calls_follow_the_table_not_the_written_order() {
        let item = quote!(
            async fn f() -> R {
                x
            }
        );
        let settings = ". success_threshold (2) . fail_max (3)";
        let out = expanded(
            quote!(success_threshold = 2, fail_max = 3, service = "s"),
            item.clone(),
        );
        assert!(!out.contains(settings), "{out}");
        assert!(
            out.contains(
                ":: infuse :: Settings :: DEFAULT . fail_max (3) . success_threshold (2) ,"
            ),
            "{out}"
        );
    }

    #[test]
    fn on_error_the_function_is_left_as_written() {
        let item = quote!(
            /// Docs.
            fn f(x: u8) -> R {
                x
            }
        );
        let out = crate::circuit_breaker_impl(quote!(fail_max = 0), item.clone()).to_string();
        let errors = out.matches("compile_error").count();
        assert_eq!(errors, 3, "{out}");
        assert!(out.ends_with(&item.to_string()), "{out}");
    }
}
