//! Emits `constants.rs`: plain constants and the `ReplyCode` enum.

use proc_macro2::TokenStream;
use quote::quote;

use super::{doc_attrs, num};
use crate::model::{ConstantType, ErrorClass, Spec};
use crate::naming;

pub fn emit(spec: &Spec) -> TokenStream {
    let plain = spec
        .constants
        .iter()
        .filter(|c| !c.is_reply_code())
        .map(|c| {
            let name = naming::constant(&c.name);
            let doc = doc_attrs(c.doc.as_deref());
            let (ty, value) = match c.ty {
                ConstantType::Octet => (quote!(u8), num(c.value.into())),
                ConstantType::Short => (quote!(u16), num(c.value.into())),
                ConstantType::Long => (quote!(u32), num(c.value.into())),
            };
            quote! { #doc pub const #name: #ty = #value; }
        });

    let mut codes: Vec<_> = spec
        .constants
        .iter()
        .filter(|c| c.is_reply_code())
        .collect();
    codes.sort_by_key(|c| c.value);
    let variants = codes.iter().map(|c| {
        let v = naming::type_name(&c.name);
        let doc = doc_attrs(c.doc.as_deref());
        let value = num(c.value.into());
        quote! { #doc #v = #value }
    });
    let all = codes.iter().map(|c| naming::type_name(&c.name));
    let count = num(codes.len() as u64);
    let from_code = codes.iter().map(|c| {
        let v = naming::type_name(&c.name);
        let value = num(c.value.into());
        quote! { #value => Some(ReplyCode::#v), }
    });
    let hard: Vec<_> = codes
        .iter()
        .filter(|c| c.class == Some(ErrorClass::Hard))
        .map(|c| naming::type_name(&c.name))
        .collect();
    let soft: Vec<_> = codes
        .iter()
        .filter(|c| c.class == Some(ErrorClass::Soft))
        .map(|c| naming::type_name(&c.name))
        .collect();
    let hard_match = if hard.is_empty() {
        quote!(false)
    } else {
        quote!(matches!(self, #( ReplyCode::#hard )|*))
    };
    let soft_match = if soft.is_empty() {
        quote!(false)
    } else {
        quote!(matches!(self, #( ReplyCode::#soft )|*))
    };
    let names = codes.iter().map(|c| {
        let v = naming::type_name(&c.name);
        let text = naming::constant(&c.name).to_string();
        quote! { ReplyCode::#v => #text, }
    });

    quote! {
        use std::fmt;

        #(#plain)*

        /// The reply codes of `connection.close` and `channel.close` (and `basic.return`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ReplyCode {
            #(#variants,)*
        }

        impl ReplyCode {
            /// Every reply code, in numeric order.
            pub const ALL: [ReplyCode; #count] = [#( ReplyCode::#all ),*];

            /// The numeric code sent on the wire.
            pub const fn code(self) -> u16 {
                self as u16
            }

            /// The reply code with this number, if the spec defines one.
            pub const fn from_code(code: u16) -> Option<ReplyCode> {
                match code {
                    #(#from_code)*
                    _ => None,
                }
            }

            /// A hard error closes the connection; the others close only the channel.
            pub const fn is_hard_error(self) -> bool {
                #hard_match
            }

            /// A soft error closes the channel it happened on.
            pub const fn is_soft_error(self) -> bool {
                #soft_match
            }

            /// The spec's name, as RabbitMQ writes it at the start of reply texts.
            pub const fn name(self) -> &'static str {
                match self {
                    #(#names)*
                }
            }
        }

        impl fmt::Display for ReplyCode {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    }
}
