//! The checked protocol model: what the spec files say once merged and validated.
//!
//! Everything downstream (the Rust emitters, the peer agent) reads this model and may
//! rely on it being consistent: every field has a resolved primitive type, indexes and
//! names are unique, every response names a method of its class.

use crate::error::Loc;

/// The wire types AMQP 0-9-1 fields are built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Primitive {
    Bit,
    Octet,
    Short,
    Long,
    LongLong,
    ShortStr,
    LongStr,
    Timestamp,
    Table,
}

impl Primitive {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "bit" => Primitive::Bit,
            "octet" => Primitive::Octet,
            "short" => Primitive::Short,
            "long" => Primitive::Long,
            "longlong" => Primitive::LongLong,
            "shortstr" => Primitive::ShortStr,
            "longstr" => Primitive::LongStr,
            "timestamp" => Primitive::Timestamp,
            "table" => Primitive::Table,
            _ => return None,
        })
    }
}

/// Soft errors close a channel, hard errors the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Soft,
    Hard,
}

/// The Rust type a plain constant is emitted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstantType {
    Octet,
    Short,
    Long,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Constant {
    pub name: String,
    pub value: u32,
    pub ty: ConstantType,
    /// Set for reply codes that are errors; `reply-success` has none but is a reply code too.
    pub class: Option<ErrorClass>,
    pub doc: Option<String>,
    pub loc: Loc,
}

impl Constant {
    /// Reply codes are the constants named `reply-*` or carrying an error class.
    pub fn is_reply_code(&self) -> bool {
        self.class.is_some() || self.name.starts_with("reply-")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub name: String,
    pub ty: Primitive,
    pub loc: Loc,
}

/// A method field or a content property.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub domain: String,
    pub ty: Primitive,
    /// Reserved fields are written as zero/empty and ignored on receipt.
    pub reserved: bool,
    pub doc: Option<String>,
    pub loc: Loc,
}

/// Which chassis receives a method. `peer`: a tunnel method, which either side of a
/// tunnel may send and receive; it is neither a client's nor a server's method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Receivers {
    pub client: bool,
    pub server: bool,
    pub peer: bool,
}

/// The class ids reserved for tunnel services (see `spec/README.md`).
pub const SERVICE_CLASS_IDS: std::ops::RangeInclusive<u16> = 1000..=1999;

#[derive(Debug, Clone, PartialEq)]
pub struct Method {
    pub name: String,
    pub index: u16,
    pub synchronous: bool,
    pub content: bool,
    /// Names of the methods (same class) that answer this one.
    pub responses: Vec<String>,
    pub receivers: Receivers,
    pub fields: Vec<Field>,
    pub doc: Option<String>,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    pub name: String,
    pub index: u16,
    /// Content properties, in property-flag order.
    pub properties: Vec<Field>,
    pub methods: Vec<Method>,
    /// A tunnel service's protocol version (`<class version=…>`); only service classes
    /// (ids in [`SERVICE_CLASS_IDS`]) have one.
    pub version: Option<u16>,
    pub doc: Option<String>,
    pub loc: Loc,
}

impl Class {
    /// A tunnel service: a class in the reserved range, whose methods travel in tunnels.
    pub fn is_service(&self) -> bool {
        SERVICE_CLASS_IDS.contains(&self.index)
    }

    pub fn method(&self, name: &str) -> Option<&Method> {
        self.methods.iter().find(|m| m.name == name)
    }
}

/// The merged, checked protocol.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub major: u8,
    pub minor: u8,
    pub revision: u8,
    pub port: u16,
    pub constants: Vec<Constant>,
    pub domains: Vec<Domain>,
    pub classes: Vec<Class>,
}

impl Spec {
    pub fn class(&self, name: &str) -> Option<&Class> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// Looks up `class.method` (the dotted name used across the spec files).
    pub fn method(&self, dotted: &str) -> Option<(&Class, &Method)> {
        let (c, m) = dotted.split_once('.')?;
        let class = self.class(c)?;
        Some((class, class.method(m)?))
    }

    /// Every method with its class, in class then method index order.
    pub fn methods(&self) -> impl Iterator<Item = (&Class, &Method)> {
        self.classes
            .iter()
            .flat_map(|c| c.methods.iter().map(move |m| (c, m)))
    }
}
