//! The annotated function, parsed without parsing its body. Whether the breaker can wrap
//! it is checked by `valid.rs`.

use proc_macro2::{Delimiter, Group, TokenStream};
use syn::parse::{Parse, ParseStream, Parser};
use syn::{Attribute, Result, Signature, Token, Visibility};

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

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn parses_any_function_with_a_body() {
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
                const fn f() {}
            ),
            quote!(
                extern "C" fn f() {}
            ),
        ] {
            if let Err(error) = syn::parse2::<ItemFn>(tokens.clone()) {
                panic!("{tokens}: {error}");
            }
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
    fn rejects_what_is_not_a_function_with_a_body() {
        let cases = [
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
            let error = syn::parse2::<ItemFn>(tokens.clone()).err().unwrap();
            assert!(error.to_string().contains(expected), "{tokens}: {error}");
        }
    }
}
