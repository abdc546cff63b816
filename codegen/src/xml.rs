//! A small element tree over quick-xml, keeping the line each element starts on.
//!
//! The spec files are small, so reading them into a tree first keeps the readers of each
//! file format simple, and every element knows its line for error messages.

use std::path::Path;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::error::{Error, Loc, Result};

/// One XML element with its attributes, child elements and text.
#[derive(Debug, Clone)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
    pub loc: Loc,
}

impl Element {
    /// An attribute's value, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An attribute that must be present.
    pub fn required(&self, name: &str) -> Result<&str> {
        self.attr(name).ok_or_else(|| {
            Error::spec(
                &self.loc,
                format!("<{}> is missing the `{name}` attribute", self.name),
            )
        })
    }

    /// A boolean flag written as `1`/`0` (the AMQP XML's convention); absent means false.
    pub fn flag(&self, name: &str) -> Result<bool> {
        match self.attr(name) {
            None | Some("0") => Ok(false),
            Some("1") => Ok(true),
            Some(other) => Err(Error::spec(
                &self.loc,
                format!("`{name}` must be 0 or 1, not {other:?}"),
            )),
        }
    }

    /// A numeric attribute that must be present and fit `T`.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T> {
        let raw = self.required(name)?;
        raw.parse().map_err(|_| {
            Error::spec(
                &self.loc,
                format!(
                    "`{name}` of <{}> must be a number in range, not {raw:?}",
                    self.name
                ),
            )
        })
    }

    /// Child elements with the given name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first `<doc>` child, whitespace folded; None if there is none.
    pub fn doc(&self) -> Option<String> {
        self.children_named("doc")
            .next()
            .map(|d| d.text.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// Refuses child elements other than the listed ones, so a typo is an error, not ignored.
    pub fn only_children(&self, allowed: &[&str]) -> Result<()> {
        for c in &self.children {
            if !allowed.contains(&c.name.as_str()) {
                return Err(Error::spec(
                    &c.loc,
                    format!("unexpected <{}> inside <{}>", c.name, self.name),
                ));
            }
        }
        Ok(())
    }

    /// Refuses attributes other than the listed ones.
    pub fn only_attrs(&self, allowed: &[&str]) -> Result<()> {
        for (k, _) in &self.attrs {
            if !allowed.contains(&k.as_str()) {
                return Err(Error::spec(
                    &self.loc,
                    format!("unexpected attribute `{k}` on <{}>", self.name),
                ));
            }
        }
        Ok(())
    }
}

/// Reads a file into its root element.
pub fn read_file(path: &Path) -> Result<Element> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses XML text; `path` is only used for error locations.
pub fn parse(path: &Path, text: &str) -> Result<Element> {
    let line_of = |offset: u64| -> u32 {
        let end = (offset as usize).min(text.len());
        1 + text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u32
    };
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let before = reader.buffer_position();
        let event = reader.read_event().map_err(|e| {
            Error::spec(
                &Loc::new(path, line_of(reader.error_position())),
                format!("malformed XML: {e}"),
            )
        })?;
        // Skip leading whitespace so the line is the one the tag starts on.
        let start_offset = text.as_bytes()[(before as usize).min(text.len())..]
            .iter()
            .take_while(|b| b.is_ascii_whitespace())
            .count() as u64
            + before;
        let loc = Loc::new(path, line_of(start_offset));
        match event {
            Event::Start(tag) => stack.push(element(path, &tag, loc)?),
            Event::Empty(tag) => {
                let el = element(path, &tag, loc)?;
                attach(&mut stack, &mut root, el, path)?;
            }
            Event::End(_) => {
                // quick-xml checks that end tags match their start tags.
                if let Some(el) = stack.pop() {
                    attach(&mut stack, &mut root, el, path)?;
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = quick_xml::escape::unescape(&t.xml10_content())
                        .map_err(|e| Error::spec(&loc, format!("bad text: {e}")))?
                        .into_owned();
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let ch = match &*r {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        other => {
                            return Err(Error::spec(&loc, format!("unknown entity &{other};")));
                        }
                    };
                    top.text.push_str(ch);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(open) = stack.pop() {
        return Err(Error::spec(
            &open.loc,
            format!("<{}> is never closed", open.name),
        ));
    }
    root.ok_or_else(|| Error::spec(&Loc::new(path, 1), "no root element"))
}

fn element(path: &Path, tag: &BytesStart<'_>, loc: Loc) -> Result<Element> {
    let name = tag.name().as_ref().to_string();
    let mut attrs = Vec::new();
    for attr in tag.attributes() {
        let attr = attr.map_err(|e| Error::spec(&loc, format!("bad attribute: {e}")))?;
        let key = attr.key.as_ref().to_string();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| Error::spec(&loc, format!("bad attribute value: {e}")))?
            .into_owned();
        attrs.push((key, value));
    }
    let _ = path;
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
        loc,
    })
}

fn attach(
    stack: &mut [Element],
    root: &mut Option<Element>,
    el: Element,
    path: &Path,
) -> Result<()> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_none() => *root = Some(el),
        None => {
            return Err(Error::spec(
                &Loc::new(path, el.loc.line),
                "more than one root element",
            ));
        }
    }
    Ok(())
}
