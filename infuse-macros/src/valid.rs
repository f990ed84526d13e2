//! The annotated function: parsed without parsing its body, and checked for a shape the
//! breaker can wrap.

use proc_macro2::{Delimiter, Group, Punct, Spacing, Span, TokenStream, TokenTree};
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Attribute, Error, Result, ReturnType, Signature, Token, Type, Visibility};

use crate::Errors;

/// A function whose body is kept as tokens: it is moved, never inspected.
pub(crate) struct ItemFn {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub sig: Signature,
    /// `#![...]` at the top of the body; they stay on the function.
    pub inner_attrs: Vec<Attribute>,
    /// The body without its inner attributes, braces (and their span) included.
    pub block: Group,
}

impl Parse for ItemFn {
    fn parse(input: ParseStream) -> Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let is_fn = input.peek(Token![fn])
            || input.peek(Token![async])
            || input.peek(Token![const])
            || input.peek(Token![unsafe])
            || input.peek(Token![extern]);
        if !is_fn {
            return Err(input.error(
                "#[circuit_breaker] can only be applied to an `async fn` returning `Result<T, E>`",
            ));
        }
        let sig: Signature = input.parse()?;
        if input.peek(Token![;]) {
            return Err(input.error(
                "#[circuit_breaker] needs the function's body: put it on the `async fn` of the \
                 `impl` block, not on the trait's declaration",
            ));
        }
        let block = input.step(|cursor| match cursor.group(Delimiter::Brace) {
            Some((content, span, rest)) => {
                let mut group = Group::new(Delimiter::Brace, content.token_stream());
                group.set_span(span.join());
                Ok((group, rest))
            }
            None => Err(cursor.error("expected the function's body `{ ... }`")),
        })?;
        let (inner_attrs, block) = split_inner_attrs(block);
        Ok(ItemFn {
            attrs,
            vis,
            sig,
            inner_attrs,
            block,
        })
    }
}

fn split_inner_attrs(block: Group) -> (Vec<Attribute>, Group) {
    let parser = |input: ParseStream| {
        let inner = input.call(Attribute::parse_inner)?;
        let rest: TokenStream = input.parse()?;
        Ok((inner, rest))
    };
    match parser.parse2(block.stream()) {
        Ok((inner, rest)) if !inner.is_empty() => {
            let mut stripped = Group::new(Delimiter::Brace, rest);
            stripped.set_span(block.span());
            (inner, stripped)
        }
        _ => (Vec::new(), block),
    }
}

/// Checks the signature and returns the declared return type.
pub(crate) fn check(item: &ItemFn) -> Result<Type> {
    let sig = &item.sig;
    let mut errors = Errors::default();
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
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => Some((**ty).clone()),
        ReturnType::Default => {
            errors.push(Error::new_spanned(
                spanning(sig.ident.span(), sig.paren_token.span.close()),
                "a #[circuit_breaker] function must return `Result<T, E>` with \
                 `E: From<infuse::BreakerError>`: add a return type, e.g. `-> Result<(), MyError>`",
            ));
            None
        }
    };
    errors.finish()?;
    Ok(ret.expect("checked above"))
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
    use quote::quote;

    fn messages(tokens: TokenStream) -> Vec<String> {
        let result = syn::parse2::<ItemFn>(tokens).and_then(|item| check(&item).map(|_| ()));
        match result {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
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
            assert_eq!(messages(tokens.clone()), Vec::<String>::new(), "{tokens}");
        }
    }

    #[test]
    fn inner_attributes_are_split_off() {
        let item: ItemFn = syn::parse2(quote!(
            async fn f() -> R {
                #![allow(unused)]
                x
            }
        ))
        .unwrap();
        assert_eq!(item.inner_attrs.len(), 1);
        assert_eq!(item.block.stream().to_string(), "x");
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
            (
                quote!(
                    struct S;
                ),
                "can only be applied to an `async fn`",
            ),
            (
                quote!(
                    async fn f(&self) -> R;
                ),
                "needs the function's body",
            ),
        ];
        for (tokens, expected) in cases {
            let found = messages(tokens.clone());
            assert!(
                found.iter().any(|m| m.contains(expected)),
                "{tokens}: expected {expected:?}, found {found:?}"
            );
        }
        assert_eq!(
            messages(quote!(
                fn f() {}
            ))
            .len(),
            2
        );
    }
}
