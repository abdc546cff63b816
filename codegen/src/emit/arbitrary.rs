//! Emits `tests/support/arbitrary.rs`: a proptest strategy for every method and for the
//! content properties, so the round-trip and cross-implementation tests cover every
//! method the spec defines, including ones added later by an overlay.
//!
//! The primitive strategies (`bit`, `shortstr`, `table`, …) come from the hand-written
//! `tests/support/prims.rs`.

use proc_macro2::TokenStream;
use quote::quote;

use crate::model::{Primitive, Spec};
use crate::naming;

fn prim(p: Primitive) -> TokenStream {
    match p {
        Primitive::Bit => quote!(prims::bit()),
        Primitive::Octet => quote!(prims::octet()),
        Primitive::Short => quote!(prims::short()),
        Primitive::Long => quote!(prims::long()),
        Primitive::LongLong => quote!(prims::longlong()),
        Primitive::Timestamp => quote!(prims::timestamp()),
        Primitive::ShortStr => quote!(prims::shortstr()),
        Primitive::LongStr => quote!(prims::longstr()),
        Primitive::Table => quote!(prims::table()),
    }
}

pub fn emit(spec: &Spec) -> TokenStream {
    let per_method = spec.methods().map(|(c, m)| {
        let ty = naming::method_type(&c.name, &m.name);
        let f = naming::handler_fn(&c.name, &m.name);
        let fields: Vec<_> = m.fields.iter().filter(|x| !x.reserved).collect();
        let names: Vec<_> = fields.iter().map(|x| naming::field(&x.name)).collect();
        let strategies: Vec<_> = fields.iter().map(|x| prim(x.ty)).collect();
        // proptest implements Strategy for tuples of up to 12 elements; nest beyond that.
        let body = if names.is_empty() {
            quote!(Just(#ty {}).boxed())
        } else {
            let chunks: Vec<_> = strategies.chunks(10).map(|c| quote!((#(#c,)*))).collect();
            let pats: Vec<_> = names.chunks(10).map(|c| quote!((#(#c,)*))).collect();
            quote! {
                (#(#chunks,)*).prop_map(|(#(#pats,)*)| #ty { #(#names),* }).boxed()
            }
        };
        quote! {
            pub fn #f() -> BoxedStrategy<#ty> {
                #body
            }
        }
    });
    let all = spec.methods().map(|(c, m)| {
        let ty = naming::method_type(&c.name, &m.name);
        let f = naming::handler_fn(&c.name, &m.name);
        quote!(#f().prop_map(Method::#ty).boxed())
    });
    let props = spec
        .classes
        .iter()
        .filter(|c| !c.properties.is_empty())
        .map(|c| {
            let ty = naming::properties_type(&c.name);
            let f = naming::field(&format!("{}-properties", c.name));
            let names: Vec<_> = c
                .properties
                .iter()
                .map(|p| naming::field(&p.name))
                .collect();
            let strategies: Vec<_> = c
                .properties
                .iter()
                .map(|p| {
                    let s = prim(p.ty);
                    if p.ty == Primitive::Bit {
                        s
                    } else {
                        quote!(proptest::option::of(#s))
                    }
                })
                .collect();
            let chunks: Vec<_> = strategies.chunks(10).map(|c| quote!((#(#c,)*))).collect();
            let pats: Vec<_> = names.chunks(10).map(|c| quote!((#(#c,)*))).collect();
            quote! {
                pub fn #f() -> BoxedStrategy<#ty> {
                    (#(#chunks,)*).prop_map(|(#(#pats,)*)| #ty { #(#names),* }).boxed()
                }
            }
        });
    quote! {
        #![allow(dead_code)]

        use fedamq::protocol::generated::methods::*;
        use fedamq::protocol::generated::properties::*;
        use proptest::prelude::*;
        use proptest::strategy::Union;

        use super::prims;

        #(#per_method)*

        /// Any method of the protocol, each equally likely.
        pub fn any_method() -> BoxedStrategy<Method> {
            Union::new(vec![#(#all),*]).boxed()
        }

        #(#props)*
    }
}
