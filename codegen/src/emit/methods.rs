//! Emits `methods.rs`: one struct per method, the `Method` enum, its decoder keyed by
//! (class, method), and the per-method metadata table.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::{
    decode_expr, decode_reserved, doc_attrs, doc_text, encode_reserved, encode_stmt, field_arg,
    num, rust_type,
};
use crate::model::{Class, Field, Method, Primitive, Spec};
use crate::naming;

pub fn emit(spec: &Spec) -> TokenStream {
    let structs = spec
        .methods()
        .enumerate()
        .map(|(i, (c, m))| method_struct(c, m, Some(i)));
    let all: Vec<_> = spec.methods().collect();
    let variants = all.iter().map(|(c, m)| {
        let ty = naming::method_type(&c.name, &m.name);
        let doc = doc_text(&format!("`{}`", naming::dotted(&c.name, &m.name)));
        quote! { #doc #ty(#ty) }
    });
    let decode_arms = all.iter().map(|(c, m)| {
        let ty = naming::method_type(&c.name, &m.name);
        let (ci, mi) = (num(c.index.into()), num(m.index.into()));
        quote! { (#ci, #mi) => Method::#ty(#ty::decode_arguments(d)?), }
    });
    let each = |body: &dyn Fn(&proc_macro2::Ident, usize) -> TokenStream| -> Vec<TokenStream> {
        all.iter()
            .enumerate()
            .map(|(i, (c, m))| {
                let ty = naming::method_type(&c.name, &m.name);
                let b = body(&ty, i);
                quote! { Method::#ty(m) => #b, }
            })
            .collect()
    };
    let encode_arms = each(&|_, _| quote!({ m.encode(buf) }));
    let info_arms = all.iter().enumerate().map(|(i, (c, m))| {
        let ty = naming::method_type(&c.name, &m.name);
        let i = num(i as u64);
        quote! { Method::#ty(_) => &METHODS[#i], }
    });
    let info_by_id = all.iter().enumerate().map(|(i, (c, m))| {
        let (ci, mi) = (num(c.index.into()), num(m.index.into()));
        let i = num(i as u64);
        quote! { (#ci, #mi) => Some(&METHODS[#i]), }
    });
    let infos = all.iter().map(|(c, m)| method_info(spec, c, m));
    let froms = all.iter().map(|(c, m)| {
        let ty = naming::method_type(&c.name, &m.name);
        quote! {
            impl From<#ty> for Method {
                fn from(m: #ty) -> Method {
                    Method::#ty(m)
                }
            }
        }
    });
    let count = num(all.len() as u64);

    quote! {
        use bytes::{Bytes, BytesMut};

        use crate::protocol::error::DecodeError;
        use crate::protocol::field_table::FieldTable;
        use crate::protocol::short_string::ShortString;
        use crate::protocol::wire::{encode, Decoder};

        /// What the spec says about one method, available at run time.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct MethodInfo {
            pub class_id: u16,
            pub method_id: u16,
            /// `class.method`, as in the spec.
            pub name: &'static str,
            /// The sender waits for one of `responses`.
            pub synchronous: bool,
            /// The (class id, method id) pairs that answer it.
            pub responses: &'static [(u16, u16)],
            /// A content header and body frames follow it.
            pub has_content: bool,
            /// Clients may receive it (the server may send it).
            pub received_by_client: bool,
            /// Servers may receive it (clients may send it).
            pub received_by_server: bool,
            /// A tunnel method (chassis `peer`): it travels only in tunnels, either way,
            /// and only between brokers that announced the `tunnels` capability.
            pub tunnel: bool,
        }

        /// Every method the spec defines, in (class, method) order.
        pub const METHODS: [MethodInfo; #count] = [#(#infos),*];

        /// The metadata of (class id, method id), if such a method exists.
        pub fn method_info(class_id: u16, method_id: u16) -> Option<&'static MethodInfo> {
            match (class_id, method_id) {
                #(#info_by_id)*
                _ => None,
            }
        }

        #(#structs)*

        /// Any method of the protocol.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Method {
            #(#variants,)*
        }

        impl Method {
            /// Decodes the payload of a method frame: class id, method id, then arguments.
            /// The payload must hold exactly one method. It is read where it lies (in the
            /// read buffer, typically); the few long-string fields are copied out.
            pub fn decode(payload: &[u8]) -> Result<Method, DecodeError> {
                let mut d = Decoder::from_slice(payload);
                let class_id = d.short()?;
                let method_id = d.short()?;
                let method = Method::decode_arguments(class_id, method_id, &mut d)?;
                d.finish()?;
                Ok(method)
            }

            /// Decodes the arguments of the method (class id, method id).
            pub fn decode_arguments(class_id: u16, method_id: u16, d: &mut Decoder<'_>) -> Result<Method, DecodeError> {
                Ok(match (class_id, method_id) {
                    #(#decode_arms)*
                    _ => return Err(DecodeError::UnknownMethod { class_id, method_id }),
                })
            }

            /// Writes the method frame payload: class id, method id, then arguments.
            pub fn encode(&self, buf: &mut BytesMut) {
                match self {
                    #(#encode_arms)*
                }
            }

            /// What the spec says about this method.
            pub fn info(&self) -> &'static MethodInfo {
                match self {
                    #(#info_arms)*
                }
            }

            pub fn class_id(&self) -> u16 {
                self.info().class_id
            }

            pub fn method_id(&self) -> u16 {
                self.info().method_id
            }

            /// `class.method`, as in the spec.
            pub fn name(&self) -> &'static str {
                self.info().name
            }
        }

        #(#froms)*
    }
}

fn method_info(spec: &Spec, c: &Class, m: &Method) -> TokenStream {
    let (ci, mi) = (num(c.index.into()), num(m.index.into()));
    let name = naming::dotted(&c.name, &m.name);
    let sync = m.synchronous;
    let content = m.content;
    let responses = m.responses.iter().map(|r| {
        // The checker guarantees every response names a method of the class.
        let idx = num(c.method(r).map(|rm| rm.index).unwrap_or_default().into());
        quote!((#ci, #idx))
    });
    let _ = spec;
    let (client, server, tunnel) = (m.receivers.client, m.receivers.server, m.receivers.peer);
    quote! {
        MethodInfo {
            class_id: #ci,
            method_id: #mi,
            name: #name,
            synchronous: #sync,
            responses: &[#(#responses),*],
            has_content: #content,
            received_by_client: #client,
            received_by_server: #server,
            tunnel: #tunnel,
        }
    }
}

/// A field's Rust identifier, or None for reserved fields (they get no struct field).
fn field_ident(f: &Field) -> Option<proc_macro2::Ident> {
    (!f.reserved).then(|| naming::field(&f.name))
}

/// Fields split into wire steps: a single non-bit field, or a run of up to 8 bits
/// packed into one octet (first bit in the least significant position).
enum Step<'a> {
    Value(&'a Field),
    Bits(Vec<&'a Field>),
}

fn steps(fields: &[Field]) -> Vec<Step<'_>> {
    let mut out: Vec<Step<'_>> = Vec::new();
    for f in fields {
        if f.ty == Primitive::Bit {
            if let Some(Step::Bits(run)) = out.last_mut() {
                if run.len() < 8 {
                    run.push(f);
                    continue;
                }
            }
            out.push(Step::Bits(vec![f]));
        } else {
            out.push(Step::Value(f));
        }
    }
    out
}

/// One method's struct with its encoder and decoder. `info_index` is its place in
/// `METHODS`; `None` for a method outside the broker's spec (a test overlay's), which
/// has no metadata there.
pub(crate) fn method_struct(c: &Class, m: &Method, info_index: Option<usize>) -> TokenStream {
    let ty = naming::method_type(&c.name, &m.name);
    let dotted = naming::dotted(&c.name, &m.name);
    let mut doc = format!("`{dotted}`");
    if let Some(d) = &m.doc {
        doc.push_str(": ");
        doc.push_str(d);
    }
    let doc = doc_text(&doc);
    let (ci, mi) = (num(c.index.into()), num(m.index.into()));
    let info_fn = info_index.map(|i| {
        let i = num(i as u64);
        quote! {
            /// What the spec says about this method.
            pub fn info() -> &'static MethodInfo {
                &METHODS[#i]
            }
        }
    });

    let fields = m.fields.iter().filter_map(|f| {
        let name = field_ident(f)?;
        let t = rust_type(f.ty);
        let doc = doc_attrs(f.doc.as_deref());
        Some(quote! { #doc pub #name: #t })
    });

    let mut enc = Vec::new();
    let mut dec = Vec::new();
    let mut bit_octet = 0usize;
    for step in steps(&m.fields) {
        match step {
            Step::Value(f) => match field_ident(f) {
                Some(name) => {
                    enc.push(encode_stmt(f.ty, field_arg(f.ty, &name)));
                    let e = decode_expr(f.ty);
                    dec.push(quote! { let #name = #e; });
                }
                None => {
                    enc.push(encode_reserved(f.ty));
                    dec.push(decode_reserved(f.ty));
                }
            },
            Step::Bits(run) => {
                let octet = format_ident!("bits{}", bit_octet);
                bit_octet += 1;
                let terms: Vec<TokenStream> = run
                    .iter()
                    .enumerate()
                    .filter_map(|(i, f)| {
                        let name = field_ident(f)?;
                        Some(if i == 0 {
                            quote!(u8::from(self.#name))
                        } else {
                            let i = num(i as u64);
                            quote!((u8::from(self.#name) << #i))
                        })
                    })
                    .collect();
                if terms.is_empty() {
                    enc.push(quote! { encode::octet(buf, 0); });
                } else {
                    enc.push(quote! { encode::octet(buf, #(#terms)|*); });
                }
                if run.iter().all(|f| f.reserved) {
                    dec.push(quote! { let _ = d.octet()?; });
                    continue;
                }
                dec.push(quote! { let #octet = d.octet()?; });
                for (i, f) in run.iter().enumerate() {
                    if let Some(name) = field_ident(f) {
                        let mask = num(1u64 << i);
                        dec.push(quote! { let #name = #octet & #mask != 0; });
                    }
                }
            }
        }
    }
    let names: Vec<_> = m.fields.iter().filter_map(field_ident).collect();
    let decoder_arg = if m.fields.is_empty() {
        quote!(_d: &mut Decoder<'_>)
    } else {
        quote!(d: &mut Decoder<'_>)
    };
    let buf_arg = if m.fields.is_empty() {
        quote!(_buf: &mut BytesMut)
    } else {
        quote!(buf: &mut BytesMut)
    };

    quote! {
        #doc
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct #ty {
            #(#fields,)*
        }

        impl #ty {
            pub const CLASS_ID: u16 = #ci;
            pub const METHOD_ID: u16 = #mi;
            pub const NAME: &'static str = #dotted;

            #info_fn

            /// Writes the method frame payload: class id, method id, then arguments.
            pub fn encode(&self, buf: &mut BytesMut) {
                encode::short(buf, #ci);
                encode::short(buf, #mi);
                self.encode_arguments(buf);
            }

            /// Writes the arguments alone, in wire order.
            pub fn encode_arguments(&self, #buf_arg) {
                #(#enc)*
            }

            /// Reads the arguments alone, in wire order.
            pub fn decode_arguments(#decoder_arg) -> Result<Self, DecodeError> {
                #(#dec)*
                Ok(#ty { #(#names),* })
            }
        }
    }
}
