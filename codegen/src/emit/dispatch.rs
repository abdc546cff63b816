//! Emits `dispatch.rs`: per receiving side, one handler trait per class and a dispatch
//! function.
//!
//! A method's `<chassis>` says who receives it. For each class a server receives methods
//! of there is a trait (`ConnectionServer`, `BasicServer`, …) with a handler per such
//! method, all sharing `ServerHandler`'s `Output` and `Content`; `ServerMethods` is every
//! one of them together, implemented for whatever implements them all. The client side is
//! the same (`ConnectionClient`, …, `ClientMethods`). Splitting by class lets an
//! implementor keep one class per file, and makes a new class ask for exactly one new
//! impl. The dispatch functions match `Method` exhaustively: a method that may not arrive
//! at that side is refused with the spec's reply code instead of reaching a handler.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::doc_text;
use crate::model::{Class, Method, Spec};
use crate::naming;

pub fn emit(spec: &Spec) -> TokenStream {
    let server = side(spec, Side::Server);
    let client = side(spec, Side::Client);
    quote! {
        use super::constants::ReplyCode;
        use super::methods::*;

        /// Why a method could not be handed to a handler.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum DispatchError {
            /// The method may not be sent to this side (e.g. `basic.deliver` sent to a server).
            WrongSide { name: &'static str, to_server: bool },
            /// A content-bearing method arrived without its content.
            MissingContent { name: &'static str },
            /// Content was supplied with a method that carries none.
            UnexpectedContent { name: &'static str },
            /// A tunnel method (chassis `peer`): the tunnel runtime takes these, not a
            /// client's or a server's handlers.
            TunnelMethod { name: &'static str },
        }

        impl DispatchError {
            /// The reply code to close with: every case is an invalid command sequence.
            pub fn reply_code(&self) -> ReplyCode {
                match self {
                    DispatchError::WrongSide { .. } | DispatchError::TunnelMethod { .. } => {
                        ReplyCode::CommandInvalid
                    }
                    DispatchError::MissingContent { .. } | DispatchError::UnexpectedContent { .. } => {
                        ReplyCode::UnexpectedFrame
                    }
                }
            }
        }

        impl std::fmt::Display for DispatchError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self {
                    DispatchError::WrongSide { name, to_server: true } => {
                        write!(f, "{name} is sent by servers, not to them")
                    }
                    DispatchError::WrongSide { name, to_server: false } => {
                        write!(f, "{name} is sent by clients, not to them")
                    }
                    DispatchError::MissingContent { name } => write!(f, "{name} arrived without its content"),
                    DispatchError::UnexpectedContent { name } => write!(f, "{name} carries no content"),
                    DispatchError::TunnelMethod { name } => write!(f, "{name} travels only in tunnels"),
                }
            }
        }

        impl std::error::Error for DispatchError {}

        #server
        #client
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Server,
    Client,
}

fn receives(side: Side, m: &Method) -> bool {
    match side {
        Side::Server => m.receivers.server,
        Side::Client => m.receivers.client,
    }
}

fn side(spec: &Spec, side: Side) -> TokenStream {
    let (base, umbrella, fn_name, to_server, who, side_word) = match side {
        Side::Server => (
            quote!(ServerHandler),
            quote!(ServerMethods),
            quote!(dispatch_to_server),
            true,
            "a server",
            "server",
        ),
        Side::Client => (
            quote!(ClientHandler),
            quote!(ClientMethods),
            quote!(dispatch_to_client),
            false,
            "a client",
            "client",
        ),
    };
    let received: Vec<(&Class, &Method)> =
        spec.methods().filter(|(_, m)| receives(side, m)).collect();
    let refused: Vec<Ident> = spec
        .methods()
        .filter(|(_, m)| !receives(side, m) && !m.receivers.peer)
        .map(|(c, m)| naming::method_type(&c.name, &m.name))
        .collect();
    let tunnel: Vec<Ident> = spec
        .methods()
        .filter(|(_, m)| m.receivers.peer)
        .map(|(c, m)| naming::method_type(&c.name, &m.name))
        .collect();

    // One trait per class this side receives methods of, so a new class asks its
    // implementor for exactly one new impl.
    let classes: Vec<&Class> = spec
        .classes
        .iter()
        .filter(|c| c.methods.iter().any(|m| receives(side, m)))
        .collect();
    let class_traits: Vec<Ident> = classes
        .iter()
        .map(|c| naming::class_handler_trait(&c.name, side_word))
        .collect();
    let class_trait_items = classes.iter().zip(&class_traits).map(|(c, name)| {
        let handlers = c
            .methods
            .iter()
            .filter(|m| receives(side, m))
            .map(|m| handler(c, m));
        let doc = doc_text(&format!(
            "The `{}` class's methods {who} receives, one handler each.",
            c.name
        ));
        quote! {
            #doc
            pub trait #name: #base {
                #(#handlers)*
            }
        }
    });

    let arms = received.iter().map(|(c, m)| {
        let f = naming::handler_fn(&c.name, &m.name);
        let ty = naming::method_type(&c.name, &m.name);
        let name = naming::dotted(&c.name, &m.name);
        if m.content {
            quote! {
                Method::#ty(m) => match content {
                    Some(content) => Ok(handler.#f(channel, m, content)),
                    None => Err(DispatchError::MissingContent { name: #name }),
                },
            }
        } else {
            quote! {
                Method::#ty(m) => match content {
                    None => Ok(handler.#f(channel, m)),
                    Some(_) => Err(DispatchError::UnexpectedContent { name: #name }),
                },
            }
        }
    });
    let refused_arm = if refused.is_empty() {
        TokenStream::new()
    } else {
        quote! {
            #( Method::#refused(_) )|* => Err(DispatchError::WrongSide { name: method.name(), to_server: #to_server }),
        }
    };
    let tunnel_arm = if tunnel.is_empty() {
        TokenStream::new()
    } else {
        quote! {
            #( Method::#tunnel(_) )|* => Err(DispatchError::TunnelMethod { name: method.name() }),
        }
    };
    let base_doc = doc_text(&format!(
        "What every handler trait of {who} shares. `Content` is what the caller assembled from the header and body frames of a content-bearing method."
    ));
    let umbrella_doc = doc_text(&format!(
        "Every method {who} receives: implemented for any type that implements each class's handler trait."
    ));
    let fn_doc = doc_text(&format!(
        "Hands a method that arrived at {who} to its handler; refuses methods that may not arrive there."
    ));
    quote! {
        #base_doc
        pub trait #base {
            type Output;
            type Content;
        }

        #(#class_trait_items)*

        #umbrella_doc
        pub trait #umbrella: #base #( + #class_traits )* {}

        impl<T> #umbrella for T where T: #base #( + #class_traits )* + ?Sized {}

        #fn_doc
        pub fn #fn_name<H: #umbrella + ?Sized>(
            handler: &mut H,
            channel: u16,
            method: Method,
            content: Option<H::Content>,
        ) -> Result<H::Output, DispatchError> {
            match method {
                #(#arms)*
                #refused_arm
                #tunnel_arm
            }
        }
    }
}

/// One handler declaration: content-bearing methods also take their content.
fn handler(c: &Class, m: &Method) -> TokenStream {
    let f = naming::handler_fn(&c.name, &m.name);
    let ty = naming::method_type(&c.name, &m.name);
    let doc = doc_text(&format!("Handles `{}`.", naming::dotted(&c.name, &m.name)));
    if m.content {
        quote! { #doc fn #f(&mut self, channel: u16, method: #ty, content: Self::Content) -> Self::Output; }
    } else {
        quote! { #doc fn #f(&mut self, channel: u16, method: #ty) -> Self::Output; }
    }
}
