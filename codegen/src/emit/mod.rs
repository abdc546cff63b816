//! Turning the checked model into Rust token streams, one module per generated file.
//!
//! Each emitter returns tokens only; [`crate::generate`] adds the preamble, formats and
//! places them. Shared here: doc-comment wrapping and the mapping from wire primitives
//! to Rust types and wire calls.

pub mod arbitrary;
pub mod constants;
pub mod dispatch;
pub mod methods;
pub mod properties;
pub mod services;

use proc_macro2::TokenStream;
use quote::quote;

use crate::model::Primitive;

/// An unsuffixed integer literal (`40`, not `40u16`), so the generated code reads naturally.
pub fn num(v: u64) -> proc_macro2::Literal {
    proc_macro2::Literal::u64_unsuffixed(v)
}

/// `#[doc]` attributes for an optional doc text, wrapped to readable lines.
pub fn doc_attrs(doc: Option<&str>) -> TokenStream {
    match doc {
        Some(text) if !text.trim().is_empty() => lines_to_doc(&wrap(text, 88)),
        _ => TokenStream::new(),
    }
}

/// `#[doc]` attributes for text the generator writes itself.
pub fn doc_text(text: &str) -> TokenStream {
    lines_to_doc(&wrap(text, 88))
}

fn lines_to_doc(lines: &[String]) -> TokenStream {
    let lines = lines.iter().map(|l| format!(" {l}"));
    quote! { #( #[doc = #lines] )* }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The Rust type that holds a field of this primitive.
pub fn rust_type(p: Primitive) -> TokenStream {
    match p {
        Primitive::Bit => quote!(bool),
        Primitive::Octet => quote!(u8),
        Primitive::Short => quote!(u16),
        Primitive::Long => quote!(u32),
        Primitive::LongLong | Primitive::Timestamp => quote!(u64),
        Primitive::ShortStr => quote!(ShortString),
        Primitive::LongStr => quote!(Bytes),
        Primitive::Table => quote!(FieldTable),
    }
}

/// An expression that decodes one non-bit value from the decoder `d`.
pub fn decode_expr(p: Primitive) -> TokenStream {
    match p {
        Primitive::Bit => quote!(d.octet()? != 0),
        Primitive::Octet => quote!(d.octet()?),
        Primitive::Short => quote!(d.short()?),
        Primitive::Long => quote!(d.long()?),
        Primitive::LongLong => quote!(d.longlong()?),
        Primitive::Timestamp => quote!(d.timestamp()?),
        Primitive::ShortStr => quote!(d.shortstr()?),
        Primitive::LongStr => quote!(d.longstr()?),
        Primitive::Table => quote!(d.table()?),
    }
}

/// A statement that moves the decoder `d` past one non-bit value, checking it as
/// [`decode_expr`] would but keeping nothing.
pub fn skip_stmt(p: Primitive) -> TokenStream {
    match p {
        Primitive::Bit | Primitive::Octet => quote!(d.skip(1)?;),
        Primitive::Short => quote!(d.skip(2)?;),
        Primitive::Long => quote!(d.skip(4)?;),
        Primitive::LongLong | Primitive::Timestamp => quote!(d.skip(8)?;),
        Primitive::ShortStr => quote!(d.skip_shortstr()?;),
        Primitive::LongStr => quote!(d.skip_longstr()?;),
        Primitive::Table => quote!(d.skip_table()?;),
    }
}

/// Numbers and bits are passed by value; strings and tables by reference.
pub fn is_copy(p: Primitive) -> bool {
    !matches!(
        p,
        Primitive::ShortStr | Primitive::LongStr | Primitive::Table
    )
}

/// `self.field` as the encoder takes it: by value when [`is_copy`], else borrowed.
pub fn field_arg(p: Primitive, name: &proc_macro2::Ident) -> TokenStream {
    if is_copy(p) {
        quote!(self.#name)
    } else {
        quote!(&self.#name)
    }
}

/// A statement that encodes `v`: a value for [`is_copy`] types, a reference otherwise.
pub fn encode_stmt(p: Primitive, v: TokenStream) -> TokenStream {
    match p {
        Primitive::Bit => quote!(encode::octet(buf, u8::from(#v));),
        Primitive::Octet => quote!(encode::octet(buf, #v);),
        Primitive::Short => quote!(encode::short(buf, #v);),
        Primitive::Long => quote!(encode::long(buf, #v);),
        Primitive::LongLong => quote!(encode::longlong(buf, #v);),
        Primitive::Timestamp => quote!(encode::timestamp(buf, #v);),
        Primitive::ShortStr => quote!(encode::shortstr(buf, #v);),
        Primitive::LongStr => quote!(encode::longstr(buf, #v);),
        Primitive::Table => quote!(encode::table(buf, #v);),
    }
}

/// A statement that writes the zero value of a reserved field.
pub fn encode_reserved(p: Primitive) -> TokenStream {
    match p {
        Primitive::Bit | Primitive::Octet => quote!(encode::octet(buf, 0);),
        Primitive::Short => quote!(encode::short(buf, 0);),
        Primitive::Long => quote!(encode::long(buf, 0);),
        Primitive::LongLong | Primitive::Timestamp => quote!(encode::longlong(buf, 0);),
        // An empty shortstr is its zero length octet.
        Primitive::ShortStr => quote!(encode::octet(buf, 0);),
        Primitive::LongStr => quote!(encode::longstr(buf, &[]);),
        Primitive::Table => quote!(encode::long(buf, 0);),
    }
}

/// A statement that reads and discards a reserved field.
pub fn decode_reserved(p: Primitive) -> TokenStream {
    let e = decode_expr(p);
    quote!(let _ = #e;)
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn wrap_keeps_words_whole_and_lines_short() {
        let text = "one two three four five six seven eight nine ten";
        let lines = wrap(text, 10);
        assert!(lines.iter().all(|l| l.len() <= 10), "{lines:?}");
        assert_eq!(lines.join(" "), text);
    }
}
