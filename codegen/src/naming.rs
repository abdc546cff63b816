//! How spec names become Rust names, in one place so every emitter agrees.
//!
//! `basic` + `get-ok` becomes the type `BasicGetOk` (also the `Method` variant),
//! the field `routing-key` becomes `routing_key`, a field named like a keyword gets a raw
//! identifier (`r#type`), and `precondition-failed` becomes `ReplyCode::PreconditionFailed`.

use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use proc_macro2::{Ident, Span};

/// The struct (and `Method` variant) for `class.method`.
pub fn method_type(class: &str, method: &str) -> Ident {
    ident(&format!("{class}-{method}").to_upper_camel_case())
}

/// The handler trait for the methods of `class` that `side` (`server` or `client`)
/// receives: `basic` + `server` becomes `BasicServer`.
pub fn class_handler_trait(class: &str, side: &str) -> Ident {
    ident(&format!("{class}-{side}").to_upper_camel_case())
}

/// The handler for `class.method`, in its class's handler trait.
pub fn handler_fn(class: &str, method: &str) -> Ident {
    field(&format!("{class}-{method}"))
}

/// A struct field or function name.
pub fn field(name: &str) -> Ident {
    let snake = name.to_snake_case();
    if is_keyword(&snake) {
        Ident::new_raw(&snake, Span::call_site())
    } else {
        ident(&snake)
    }
}

/// A type or enum variant name.
pub fn type_name(name: &str) -> Ident {
    ident(&name.to_upper_camel_case())
}

/// A `const` item name.
pub fn constant(name: &str) -> Ident {
    ident(&name.to_shouty_snake_case())
}

/// The struct holding a class's content properties: `BasicProperties`.
pub fn properties_type(class: &str) -> Ident {
    ident(&format!("{class}-properties").to_upper_camel_case())
}

/// The dotted name used in messages and metadata: `basic.get-ok`.
pub fn dotted(class: &str, method: &str) -> String {
    format!("{class}.{method}")
}

fn ident(s: &str) -> Ident {
    Ident::new(s, Span::call_site())
}

fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "as" | "async"
            | "await"
            | "break"
            | "const"
            | "continue"
            | "crate"
            | "dyn"
            | "else"
            | "enum"
            | "extern"
            | "false"
            | "fn"
            | "for"
            | "gen"
            | "if"
            | "impl"
            | "in"
            | "let"
            | "loop"
            | "match"
            | "mod"
            | "move"
            | "mut"
            | "pub"
            | "ref"
            | "return"
            | "static"
            | "struct"
            | "trait"
            | "true"
            | "type"
            | "unsafe"
            | "use"
            | "where"
            | "while"
            | "abstract"
            | "become"
            | "box"
            | "do"
            | "final"
            | "macro"
            | "override"
            | "priv"
            | "try"
            | "typeof"
            | "unsized"
            | "virtual"
            | "yield"
    )
}
