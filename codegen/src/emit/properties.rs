//! Emits `properties.rs`: one struct per class with content properties (in 0-9-1 only
//! `basic`), with the property-flag words and encode/decode.
//!
//! Flags: property `i` is bit `15 - i % 15` of flag word `i / 15`; bit 0 of a word says
//! another word follows. A bit-typed property has no value: its flag is the value.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{
    decode_expr, doc_attrs, doc_text, encode_stmt, field_arg, is_copy, num, rust_type, skip_stmt,
};
use crate::model::{Class, Primitive, Spec};
use crate::naming;

pub fn emit(spec: &Spec) -> TokenStream {
    let classes = spec.classes.iter().filter(|c| !c.properties.is_empty());
    let structs = classes.clone().map(properties_struct);
    let encoded = classes.clone().map(encoded_struct);
    let ids = classes.clone().map(|c| c.index);
    let names = classes.map(|c| naming::properties_type(&c.name));
    quote! {
        use bytes::{Bytes, BytesMut};

        use crate::protocol::error::DecodeError;
        use crate::protocol::field_table::FieldTable;
        use crate::protocol::short_string::ShortString;
        use crate::protocol::wire::{encode, Decoder};

        /// Values read back from bytes that were checked on arrival cannot fail to decode;
        /// one that did would be a bug here: caught in debug builds, absent in release.
        fn read_checked<T>(r: Result<T, DecodeError>) -> Option<T> {
            debug_assert!(r.is_ok(), "checked properties failed to decode: {:?}", r.as_ref().err());
            r.ok()
        }

        /// The class ids whose content headers carry properties, with their type's name.
        pub const CONTENT_CLASSES: &[(u16, &str)] = &[#( (#ids, stringify!(#names)) ),*];

        #(#structs)*

        #(#encoded)*
    }
}

/// Flag masks read best in hex; a formatted hex literal always parses.
fn hex(v: u16) -> TokenStream {
    format!("{v:#06x}").parse().unwrap_or_else(|_| quote!(#v))
}

/// A call reading one value of type `p` from the decoder `d`, as a `Result`.
fn read_call(p: Primitive) -> TokenStream {
    match p {
        Primitive::Bit | Primitive::Octet => quote!(d.octet()),
        Primitive::Short => quote!(d.short()),
        Primitive::Long => quote!(d.long()),
        Primitive::LongLong => quote!(d.longlong()),
        Primitive::Timestamp => quote!(d.timestamp()),
        Primitive::ShortStr => quote!(d.shortstr()),
        Primitive::LongStr => quote!(d.longstr()),
        Primitive::Table => quote!(d.table()),
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
            pub fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
                let flags = Self::decode_flags(d)?;
                #(#decode_values)*
                Ok(#ty { #(#names),* })
            }

            /// Reads the flag words, continuation bits cleared; a bit for no property,
            /// or more words than the class needs, is an error.
            fn decode_flags(d: &mut Decoder<'_>) -> Result<[u16; #words], DecodeError> {
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
                Ok(flags)
            }

            /// Decodes properties that fill `raw` exactly (the tail of a content header).
            /// Long strings in `headers` are slices of `raw`, not copies.
            pub fn decode_bytes(raw: &Bytes) -> Result<Self, DecodeError> {
                let mut d = Decoder::new(raw);
                let props = Self::decode(&mut d)?;
                d.finish()?;
                Ok(props)
            }
        }
    }
}

/// The encoded form, checked and indexed: what a broker keeps with a message. One pass on
/// arrival checks every property (tables included, building nothing) and notes where each
/// value starts, so a single property is read without decoding the others, and the bytes
/// go back out on delivery as they came in.
fn encoded_struct(c: &Class) -> TokenStream {
    let props_ty = naming::properties_type(&c.name);
    let ty = format_ident!("Encoded{}", props_ty);
    let words = num(c.properties.len().div_ceil(15).max(1) as u64);
    let valued: Vec<_> = c
        .properties
        .iter()
        .enumerate()
        .filter(|(_, p)| p.ty != Primitive::Bit)
        .collect();
    let slots = num(valued.len() as u64);
    let flag_octets = num(2 * c.properties.len().div_ceil(15).max(1) as u64);
    let doc = doc_text(&format!(
        "The content properties of class `{}` as encoded on the wire, checked, with where each value starts: a property is read without decoding the others, and the bytes are sent on as they came.",
        c.name
    ));
    let flag_of = |i: usize| -> (proc_macro2::Literal, TokenStream) {
        (num((i / 15) as u64), hex(1u16 << (15 - (i % 15))))
    };
    // Checking pass: note the offset, then skip the value.
    let index_values = valued.iter().enumerate().map(|(slot, (i, p))| {
        let (w, bit) = flag_of(*i);
        let slot = num(slot as u64);
        let skip = skip_stmt(p.ty);
        quote! {
            if flags[#w] & #bit != 0 {
                at[#slot] = offset(&d);
                #skip
            }
        }
    });
    // Encoding pass: note the offset, then write the value.
    let encode_values = valued.iter().enumerate().map(|(slot, (_, p))| {
        let name = naming::field(&p.name);
        let slot = num(slot as u64);
        let stmt = encode_stmt(p.ty, quote!(v));
        let place = if is_copy(p.ty) {
            quote!(props.#name)
        } else {
            quote!(&props.#name)
        };
        quote! {
            if let Some(v) = #place {
                at[#slot] = u32::try_from(buf.len()).unwrap_or(u32::MAX);
                #stmt
            }
        }
    });
    let accessors = c.properties.iter().enumerate().map(|(i, p)| {
        let name = naming::field(&p.name);
        let doc = doc_attrs(p.doc.as_deref());
        if p.ty == Primitive::Bit {
            let (w, bit) = flag_of(i);
            quote! {
                #doc
                pub fn #name(&self) -> bool {
                    self.flags[#w] & #bit != 0
                }
            }
        } else {
            let slot = num(valued.iter().position(|(j, _)| *j == i).unwrap_or(0) as u64);
            let t = rust_type(p.ty);
            let read = read_call(p.ty);
            quote! {
                #doc
                pub fn #name(&self) -> Option<#t> {
                    let mut d = self.value(#slot)?;
                    read_checked(#read)
                }
            }
        }
    });

    quote! {
        #doc
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct #ty {
            raw: Bytes,
            flags: [u16; #words],
            /// Where each valued property starts in `raw`, in property order; 0 (inside the
            /// flag words, so never a value) when absent.
            at: [u32; #slots],
        }

        impl Default for #ty {
            /// No properties: zero flag words.
            fn default() -> Self {
                Self {
                    raw: Bytes::from_static(&[0u8; #flag_octets]),
                    flags: [0u16; #words],
                    at: [0u32; #slots],
                }
            }
        }

        impl #ty {
            /// Checks `raw` (flag words, then the properties they announce, filling it
            /// exactly) and indexes it. Long strings stay slices of `raw`.
            pub fn decode(raw: Bytes) -> Result<Self, DecodeError> {
                let mut d = Decoder::new(&raw);
                let flags = #props_ty::decode_flags(&mut d)?;
                let offset = |d: &Decoder<'_>| -> u32 {
                    u32::try_from(raw.len() - d.remaining()).unwrap_or(u32::MAX)
                };
                let mut at = [0u32; #slots];
                #(#index_values)*
                d.finish()?;
                Ok(Self { raw, flags, at })
            }

            /// Encodes `props`.
            pub fn encode(props: &#props_ty) -> Self {
                let mut buf = BytesMut::new();
                let flags = props.flags();
                for word in flags {
                    encode::short(&mut buf, word);
                }
                let buf = &mut buf;
                let mut at = [0u32; #slots];
                #(#encode_values)*
                Self { raw: buf.split().freeze(), flags: flags.map(|w| w & !1), at }
            }

            /// The encoded bytes, as they go in a content header after the body size.
            pub fn as_bytes(&self) -> &Bytes {
                &self.raw
            }

            /// Every property, decoded.
            pub fn to_properties(&self) -> #props_ty {
                read_checked(#props_ty::decode_bytes(&self.raw)).unwrap_or_default()
            }

            /// A decoder at the start of valued property `slot`, if present.
            fn value(&self, slot: usize) -> Option<Decoder<'_>> {
                let start = usize::try_from(*self.at.get(slot)?).ok()?;
                if start == 0 {
                    return None;
                }
                let mut d = Decoder::new(&self.raw);
                d.skip(start).ok()?;
                Some(d)
            }

            #(#accessors)*
        }
    }
}
