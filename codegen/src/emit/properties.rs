//! Emits `properties.rs`: one struct per class with content properties (in 0-9-1 only
//! `basic`), with the property-flag words and encode/decode.
//!
//! Flags: property `i` is bit `15 - i % 15` of flag word `i / 15`; bit 0 of a word says
//! another word follows. A bit-typed property has no value: its flag is the value.

use proc_macro2::TokenStream;
use quote::quote;

use super::{decode_expr, doc_attrs, doc_text, encode_stmt, field_arg, num, rust_type};
use crate::model::{Class, Primitive, Spec};
use crate::naming;

pub fn emit(spec: &Spec) -> TokenStream {
    let classes = spec.classes.iter().filter(|c| !c.properties.is_empty());
    let structs = classes.clone().map(properties_struct);
    let ids = classes.clone().map(|c| c.index);
    let names = classes.map(|c| naming::properties_type(&c.name));
    quote! {
        use bytes::{Bytes, BytesMut};

        use crate::protocol::error::DecodeError;
        use crate::protocol::field_table::FieldTable;
        use crate::protocol::short_string::ShortString;
        use crate::protocol::wire::{encode, Decoder};

        /// The class ids whose content headers carry properties, with their type's name.
        pub const CONTENT_CLASSES: &[(u16, &str)] = &[#( (#ids, stringify!(#names)) ),*];

        #(#structs)*
    }
}

fn properties_struct(c: &Class) -> TokenStream {
    let ty = naming::properties_type(&c.name);
    let ci = num(c.index.into());
    let count = c.properties.len();
    let words_n = count.div_ceil(15).max(1);
    let words = num(words_n as u64);
    let doc = doc_text(&format!(
        "The content properties of class `{}`: each is optional and present only when its flag is set.",
        c.name
    ));
    let fields = c.properties.iter().map(|p| {
        let name = naming::field(&p.name);
        let doc = doc_attrs(p.doc.as_deref());
        if p.ty == Primitive::Bit {
            quote! { #doc pub #name: bool }
        } else {
            let t = rust_type(p.ty);
            quote! { #doc pub #name: Option<#t> }
        }
    });
    let flag_of = |i: usize| -> (proc_macro2::Literal, u16) {
        (num((i / 15) as u64), 1u16 << (15 - (i % 15)))
    };
    // Flag masks read best in hex; a formatted hex literal always parses.
    let hex =
        |v: u16| -> TokenStream { format!("{v:#06x}").parse().unwrap_or_else(|_| quote!(#v)) };

    let set_flags = c.properties.iter().enumerate().map(|(i, p)| {
        let name = naming::field(&p.name);
        let (w, bit) = flag_of(i);
        if p.ty == Primitive::Bit {
            let bit = hex(bit);
            quote! { if self.#name { flags[#w] |= #bit; } }
        } else {
            let bit = hex(bit);
            quote! { if self.#name.is_some() { flags[#w] |= #bit; } }
        }
    });
    let encode_values = c
        .properties
        .iter()
        .filter(|p| p.ty != Primitive::Bit)
        .map(|p| {
            let name = naming::field(&p.name);
            let stmt = encode_stmt(p.ty, quote!(v));
            let place = field_arg(p.ty, &name);
            quote! { if let Some(v) = #place { #stmt } }
        });
    let decode_values = c.properties.iter().enumerate().map(|(i, p)| {
        let name = naming::field(&p.name);
        let (w, bit) = flag_of(i);
        let bit = hex(bit);
        if p.ty == Primitive::Bit {
            quote! { let #name = flags[#w] & #bit != 0; }
        } else {
            let e = decode_expr(p.ty);
            quote! { let #name = if flags[#w] & #bit != 0 { Some(#e) } else { None }; }
        }
    });
    let names: Vec<_> = c
        .properties
        .iter()
        .map(|p| naming::field(&p.name))
        .collect();
    // Flag bits that name no property must be zero (bit 0 is the continuation bit).
    let continuation = if words_n > 1 {
        quote! {
            for word in flags.iter_mut().take(#words - 1) {
                *word |= 1;
            }
        }
    } else {
        TokenStream::new()
    };
    let known_masks = (0..words_n).map(|w| {
        let mut mask = 0u16;
        for i in (w * 15)..count.min(w * 15 + 15) {
            mask |= flag_of(i).1;
        }
        let mask = hex(mask);
        quote!(#mask)
    });

    quote! {
        #doc
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct #ty {
            #(#fields,)*
        }

        impl #ty {
            pub const CLASS_ID: u16 = #ci;
            /// How many flag words the properties need.
            pub const FLAG_WORDS: usize = #words;
            const KNOWN_FLAGS: [u16; #words] = [#(#known_masks),*];

            /// The property flag words, continuation bits included.
            pub fn flags(&self) -> [u16; #words] {
                let mut flags = [0u16; #words];
                #(#set_flags)*
                #continuation
                flags
            }

            /// Writes the flag words then each present property, in order.
            pub fn encode(&self, buf: &mut BytesMut) {
                for word in self.flags() {
                    encode::short(buf, word);
                }
                #(#encode_values)*
            }

            /// Reads the flag words and the properties they announce.
            pub fn decode(d: &mut Decoder) -> Result<Self, DecodeError> {
                let mut flags = [0u16; #words];
                let mut w = 0;
                loop {
                    let word = d.short()?;
                    if w >= #words {
                        return Err(DecodeError::BadPropertyFlags(word));
                    }
                    let more = word & 1 != 0;
                    let value = word & !1;
                    if value & !Self::KNOWN_FLAGS[w] != 0 {
                        return Err(DecodeError::BadPropertyFlags(word));
                    }
                    flags[w] = value;
                    w += 1;
                    if !more {
                        break;
                    }
                }
                #(#decode_values)*
                Ok(#ty { #(#names),* })
            }

            /// Decodes properties that fill `raw` exactly (the tail of a content header).
            pub fn decode_bytes(raw: Bytes) -> Result<Self, DecodeError> {
                let mut d = Decoder::new(raw);
                let props = Self::decode(&mut d)?;
                d.finish()?;
                Ok(props)
            }
        }
    }
}
