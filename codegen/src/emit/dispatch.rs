//! Emits `dispatch.rs`: one handler trait per receiving side and its dispatch function.
//!
//! A method's `<chassis>` says who receives it. `ServerMethods` has a handler for every
//! method a server receives, `ClientMethods` for every method a client receives, and the
//! dispatch functions match `Method` exhaustively: a method that may not arrive at that
//! side is refused with the spec's reply code instead of reaching a handler.

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
        }

        impl DispatchError {
            /// The reply code to close with: every case is an invalid command sequence.
            pub fn reply_code(&self) -> ReplyCode {
                match self {
                    DispatchError::WrongSide { .. } => ReplyCode::CommandInvalid,
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
    let (trait_name, fn_name, to_server, who) = match side {
        Side::Server => (
            quote!(ServerMethods),
            quote!(dispatch_to_server),
            true,
            "a server",
        ),
        Side::Client => (
            quote!(ClientMethods),
            quote!(dispatch_to_client),
            false,
            "a client",
        ),
    };
    let received: Vec<(&Class, &Method)> =
        spec.methods().filter(|(_, m)| receives(side, m)).collect();
    let refused: Vec<Ident> = spec
        .methods()
        .filter(|(_, m)| !receives(side, m))
        .map(|(c, m)| naming::method_type(&c.name, &m.name))
        .collect();

    let handlers = received.iter().map(|(c, m)| {
        let f = naming::handler_fn(&c.name, &m.name);
        let ty = naming::method_type(&c.name, &m.name);
        let doc = doc_text(&format!("Handles `{}`.", naming::dotted(&c.name, &m.name)));
        if m.content {
            quote! { #doc fn #f(&mut self, channel: u16, method: #ty, content: Self::Content) -> Self::Output; }
        } else {
            quote! { #doc fn #f(&mut self, channel: u16, method: #ty) -> Self::Output; }
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
    let trait_doc = doc_text(&format!(
        "Every method {who} receives, one handler each. `Content` is what the caller assembled from the header and body frames of a content-bearing method."
    ));
    let fn_doc = doc_text(&format!(
        "Hands a method that arrived at {who} to its handler; refuses methods that may not arrive there."
    ));
    quote! {
        #trait_doc
        pub trait #trait_name {
            type Output;
            type Content;
            #(#handlers)*
        }

        #fn_doc
        pub fn #fn_name<H: #trait_name + ?Sized>(
            handler: &mut H,
            channel: u16,
            method: Method,
            content: Option<H::Content>,
        ) -> Result<H::Output, DispatchError> {
            match method {
                #(#arms)*
                #refused_arm
            }
        }
    }
}
