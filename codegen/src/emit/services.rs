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
use crate::model::Spec;
use crate::naming;

pub fn emit(spec: &Spec) -> TokenStream {
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
            quote! { Method::#ty(m) => { self.0.#f(m); Ok(()) } }
        });
        quote! {
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

                fn handle(&mut self, method: Method) -> Result<(), &'static str> {
                    match method {
                        #(#arms)*
                        other => Err(other.name()),
                    }
                }
            }
        }
    });
    quote! {
        #[allow(unused_imports)]
        use super::methods::*;

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
            /// Hands over one method the other side sent; a method of another class is
            /// refused with its name.
            fn handle(&mut self, method: Method) -> Result<(), &'static str>;
        }

        #(#items)*
    }
}
