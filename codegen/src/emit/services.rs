//! Emits `services.rs`: for each tunnel service class (ids in
//! [`crate::model::SERVICE_CLASS_IDS`]) the trait its implementation provides, one
//! handler per method, and a wrapper that lets the tunnel runtime drive it.
//!
//! Adding a method to a service's XML adds a handler to its trait, so the compiler
//! asks every implementation for it; adding a service adds a trait and a wrapper,
//! which the runtime takes through the one object-safe [`ServiceHandler`] trait.

use proc_macro2::TokenStream;
use quote::quote;

use super::{doc_attrs, doc_text, num};
use crate::model::{Class, SERVICE_CLASS_IDS, Spec};
use crate::naming;

pub fn emit(spec: &Spec) -> TokenStream {
    let first = num((*SERVICE_CLASS_IDS.start()).into());
    let last = num((*SERVICE_CLASS_IDS.end()).into());
    let services: Vec<_> = spec.classes.iter().filter(|c| c.is_service()).collect();
    let infos = services.iter().map(|c| naming::constant(&c.name));
    let items = services.iter().map(|c| {
        let info = naming::constant(&c.name);
        let name = &c.name;
        let class_id = num(c.index.into());
        let version = num(c.version.unwrap_or_default().into());
        let service_trait = naming::class_handler_trait(&c.name, "service");
        let wrapper = naming::type_name(&c.name);
        let class_doc = doc_attrs(c.doc.as_deref());
        let info_doc = doc_text(&format!("The `{name}` tunnel service: class {}.", c.index));
        let trait_doc = doc_text(&format!(
            "What an implementation of the `{name}` service handles: each method the other side of the tunnel sends, in order and exactly once. Register it wrapped in [`{wrapper}`]."
        ));
        let wrapper_doc = doc_text(&format!(
            "An implementation of [`{service_trait}`] as the tunnel runtime drives it."
        ));
        let handlers = c.methods.iter().map(|m| {
            let f = naming::field(&m.name);
            let ty = naming::method_type(&c.name, &m.name);
            let doc = doc_attrs(m.doc.as_deref());
            quote! { #doc fn #f(&mut self, method: #ty); }
        });
        let arms = c.methods.iter().map(|m| {
            let f = naming::field(&m.name);
            let ty = naming::method_type(&c.name, &m.name);
            quote! { Ok(Method::#ty(m)) => { self.0.#f(m); Ok(()) } }
        });
        let sendable = c.methods.iter().map(|m| {
            let ty = naming::method_type(&c.name, &m.name);
            service_method_impl(&ty)
        });
        quote! {
            #(#sendable)*

            #info_doc
            pub const #info: ServiceInfo = ServiceInfo { name: #name, class_id: #class_id, version: #version };

            #trait_doc
            #class_doc
            pub trait #service_trait: Send {
                #(#handlers)*
            }

            #wrapper_doc
            pub struct #wrapper<S>(pub S);

            impl<S: #service_trait> ServiceHandler for #wrapper<S> {
                fn info(&self) -> &'static ServiceInfo {
                    &#info
                }

                fn handle(&mut self, payload: &[u8]) -> Result<(), &'static str> {
                    match Method::decode(payload) {
                        #(#arms)*
                        Ok(other) => Err(other.name()),
                        Err(_) => Err(UNDECODABLE),
                    }
                }
            }
        }
    });
    quote! {
        #[allow(unused_imports)]
        use super::methods::*;
        use bytes::BytesMut;

        /// A tunnel service as the spec defines it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct ServiceInfo {
            /// The name `tunnel.open` asks for.
            pub name: &'static str,
            /// Its class id, in the range reserved for tunnel services.
            pub class_id: u16,
            /// Its protocol version (`<class version=…>`).
            pub version: u16,
        }

        /// The class ids reserved for tunnel services.
        pub const SERVICE_CLASS_IDS: std::ops::RangeInclusive<u16> = #first..=#last;

        /// The (class id, method id) a method frame's payload starts with, if it is a
        /// tunnel service's method (one the spec defines or not).
        pub fn service_method_ids(payload: &[u8]) -> Option<(u16, u16)> {
            match payload {
                [a, b, c, d, ..] => {
                    let class_id = u16::from_be_bytes([*a, *b]);
                    SERVICE_CLASS_IDS
                        .contains(&class_id)
                        .then(|| (class_id, u16::from_be_bytes([*c, *d])))
                }
                _ => None,
            }
        }

        /// Every tunnel service the spec defines.
        pub const SERVICES: &[ServiceInfo] = &[#(#infos),*];

        /// The service named `name`.
        pub fn service(name: &str) -> Option<&'static ServiceInfo> {
            SERVICES.iter().find(|s| s.name == name)
        }

        /// One side's implementation of a service, as the tunnel runtime drives it.
        pub trait ServiceHandler: Send {
            /// Which service this implements.
            fn info(&self) -> &'static ServiceInfo;
            /// Hands over one method the other side sent, as its method frame's payload
            /// (class id, method id, arguments); a method of another class is refused with
            /// its name, one that does not decode with [`UNDECODABLE`].
            fn handle(&mut self, payload: &[u8]) -> Result<(), &'static str>;
        }

        /// Why [`ServiceHandler::handle`] refused a payload that is no whole method.
        pub const UNDECODABLE: &str = "a method that does not decode";

        /// A method a tunnel can carry to a service: the runtime encodes it once, when it
        /// is sent, and keeps the encoding until the other side has it. Implemented for
        /// each service method, and for [`Method`].
        pub trait ServiceMethod {
            fn class_id(&self) -> u16;
            /// `class.method`, as in the spec.
            fn name(&self) -> &'static str;
            /// Writes the method frame payload: class id, method id, then arguments.
            fn encode_payload(&self, buf: &mut BytesMut);
        }

        impl ServiceMethod for Method {
            fn class_id(&self) -> u16 {
                Method::class_id(self)
            }
            fn name(&self) -> &'static str {
                Method::name(self)
            }
            fn encode_payload(&self, buf: &mut BytesMut) {
                self.encode(buf)
            }
        }

        #(#items)*
    }
}

/// What lets a tunnel carry the method struct `ty`.
fn service_method_impl(ty: &proc_macro2::Ident) -> TokenStream {
    quote! {
        impl ServiceMethod for #ty {
            fn class_id(&self) -> u16 {
                #ty::CLASS_ID
            }
            fn name(&self) -> &'static str {
                #ty::NAME
            }
            fn encode_payload(&self, buf: &mut BytesMut) {
                self.encode(buf)
            }
        }
    }
}

/// Emits a service defined outside the broker's spec (a test overlay's): its method
/// structs (each a `ServiceMethod`, which the tunnel runtime carries without knowing
/// the class), its `ServiceInfo`, its trait and its wrapper, which decodes the
/// payloads. The file is used from outside the broker crate, so every path is
/// `fedamq::`.
pub fn emit_external(classes: &[&Class]) -> TokenStream {
    let items = classes.iter().map(|c| {
        let info = naming::constant(&c.name);
        let name = &c.name;
        let class_id = num(c.index.into());
        let version = num(c.version.unwrap_or_default().into());
        let service_trait = naming::class_handler_trait(&c.name, "service");
        let wrapper = naming::type_name(&c.name);
        let class_doc = doc_attrs(c.doc.as_deref());
        let info_doc = doc_text(&format!("The `{name}` tunnel service: class {}.", c.index));
        let trait_doc = doc_text(&format!(
            "What an implementation of the `{name}` service handles: each method the other side of the tunnel sends, in order and exactly once. Register it wrapped in [`{wrapper}`]."
        ));
        let wrapper_doc = doc_text(&format!(
            "An implementation of [`{service_trait}`] as the tunnel runtime drives it."
        ));
        let not_ours = format!("not a method of the {name} service");
        let structs = c.methods.iter().map(|m| {
            let ty = naming::method_type(&c.name, &m.name);
            let s = super::methods::method_struct(c, m, None);
            let sendable = service_method_impl(&ty);
            quote! {
                #s

                #sendable
            }
        });
        let handlers = c.methods.iter().map(|m| {
            let f = naming::field(&m.name);
            let ty = naming::method_type(&c.name, &m.name);
            let doc = doc_attrs(m.doc.as_deref());
            quote! { #doc fn #f(&mut self, method: #ty); }
        });
        let arms = c.methods.iter().map(|m| {
            let f = naming::field(&m.name);
            let ty = naming::method_type(&c.name, &m.name);
            let mi = num(m.index.into());
            quote! {
                (#class_id, #mi) => {
                    let method = #ty::decode_arguments(&mut d).map_err(|_| UNDECODABLE)?;
                    d.finish().map_err(|_| UNDECODABLE)?;
                    self.0.#f(method);
                    Ok(())
                }
            }
        });
        quote! {
            #(#structs)*

            #info_doc
            pub const #info: ServiceInfo = ServiceInfo { name: #name, class_id: #class_id, version: #version };

            #trait_doc
            #class_doc
            pub trait #service_trait: Send {
                #(#handlers)*
            }

            #wrapper_doc
            pub struct #wrapper<S>(pub S);

            impl<S: #service_trait> ServiceHandler for #wrapper<S> {
                fn info(&self) -> &'static ServiceInfo {
                    &#info
                }

                fn handle(&mut self, payload: &[u8]) -> Result<(), &'static str> {
                    let mut d = Decoder::from_slice(payload);
                    let ids = (d.short().map_err(|_| UNDECODABLE)?, d.short().map_err(|_| UNDECODABLE)?);
                    match ids {
                        #(#arms)*
                        _ => Err(#not_ours),
                    }
                }
            }
        }
    });
    quote! {
        #![allow(dead_code, unused_imports)]

        use bytes::{Bytes, BytesMut};
        use fedamq::protocol::error::DecodeError;
        use fedamq::protocol::field_table::FieldTable;
        use fedamq::protocol::generated::services::{ServiceHandler, ServiceInfo, ServiceMethod, UNDECODABLE};
        use fedamq::protocol::short_string::ShortString;
        use fedamq::protocol::wire::{encode, Decoder};

        #(#items)*
    }
}
