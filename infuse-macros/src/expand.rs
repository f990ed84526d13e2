//! Code generation: the function, unchanged but for a body that runs the original body
//! through the function's static breaker.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit_mut::{self, VisitMut};
use syn::{Path, Token, Type, TypeInfer};

use crate::args::Args;
use crate::valid::ItemFn;

pub(crate) fn expand(args: &Args, item: &ItemFn, ret: &Type) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        inner_attrs,
        block,
    } = item;
    let default_krate: Path = syn::parse_quote!(::infuse);
    let krate = args.krate.as_ref().unwrap_or(&default_krate);

    let service = &args.service;
    let mut settings = quote!(#krate::Settings::DEFAULT);
    if let Some(n) = args.fail_max {
        let n = Literal::u32_unsuffixed(n);
        settings.extend(quote!(.fail_max(#n)));
    }
    if let Some(ms) = args.reset_timeout_ms {
        let ms = Literal::u64_unsuffixed(ms);
        settings.extend(quote!(.reset_timeout(::core::time::Duration::from_millis(#ms))));
    }
    if let Some(n) = args.success_threshold {
        let n = Literal::u32_unsuffixed(n);
        settings.extend(quote!(.success_threshold(#n)));
    }

    let ret_span = ret.span();
    let mut options = quote_spanned!(ret_span=> #krate::CallOptions::new());
    if let Some(exclude) = &args.exclude {
        options.extend(quote_spanned!(exclude.span()=> .exclude(#exclude)));
    }
    if let Some(yes) = &args.error_on_trip {
        options.extend(quote_spanned!(yes.span()=> .error_on_trip(#yes)));
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
    let call = quote_spanned! {ret_span=>
        __INFUSE_BREAKER.get().guard::<#guarded, _>(#options, #body).await
    };

    let name = sig.ident.unraw().to_string();
    let location = quote_spanned!(sig.ident.span()=> ::core::file!(), ::core::line!());

    quote! {
        #(#attrs)*
        #vis #sig {
            #(#inner_attrs)*
            static __INFUSE_SPEC: #krate::BreakerSpec = #krate::BreakerSpec::new(
                #service,
                #settings,
                ::core::concat!(::core::module_path!(), "::", #name),
                #location,
            );
            static __INFUSE_BREAKER: #krate::StaticBreaker =
                #krate::StaticBreaker::new(&__INFUSE_SPEC);
            #krate::register!(__INFUSE_SPEC);
            #call
        }
    }
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
    use quote::ToTokens;

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
        let args: Args = syn::parse_quote!(
            service = "users",
            fail_max = 5,
            reset_timeout = "15s",
            exclude = is_not_found,
            error_on_trip = true
        );
        let item: ItemFn = syn::parse_quote!(
            /// Docs.
            pub async fn get_user(id: u64) -> Result<User, ApiError> {
                fetch(id).await
            }
        );
        let ret = crate::valid::check(&item).unwrap();
        let out = expand(&args, &item, &ret).to_string();
        for expected in [
            "# [doc = r\" Docs.\"] pub async fn get_user (id : u64) -> Result < User , ApiError > {",
            "static __INFUSE_SPEC : :: infuse :: BreakerSpec = :: infuse :: BreakerSpec :: new (\"users\" , :: infuse :: Settings :: DEFAULT . fail_max (5) . reset_timeout (:: core :: time :: Duration :: from_millis (15000)) ,",
            ":: core :: concat ! (:: core :: module_path ! () , \"::\" , \"get_user\") , :: core :: file ! () , :: core :: line ! () ,) ;",
            "static __INFUSE_BREAKER : :: infuse :: StaticBreaker = :: infuse :: StaticBreaker :: new (& __INFUSE_SPEC) ;",
            ":: infuse :: register ! (__INFUSE_SPEC) ;",
            "__INFUSE_BREAKER . get () . guard :: < Result < User , ApiError > , _ > (:: infuse :: CallOptions :: new () . exclude (is_not_found) . error_on_trip (true) , async move {",
            "if false { let __infuse_return : Result < User , ApiError > = loop { } ; return __infuse_return ; } { fetch (id) . await } }) . await",
        ] {
            assert!(out.contains(expected), "missing {expected}\nin {out}");
        }
    }

    #[test]
    fn custom_crate_path() {
        let args: Args = syn::parse_quote!(service = "s", crate = "crate::reexport::infuse");
        let item: ItemFn = syn::parse_quote!(
            async fn f() -> R {
                x
            }
        );
        let ret = crate::valid::check(&item).unwrap();
        let out = expand(&args, &item, &ret).to_string();
        assert!(out.contains("crate :: reexport :: infuse :: register ! (__INFUSE_SPEC)"));
        assert!(!out.contains("= :: infuse"), "{out}");
        assert!(out.contains("crate :: reexport :: infuse :: Settings :: DEFAULT ,"));
    }
}
