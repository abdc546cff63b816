//! Field tables and their values: the typed key/value maps AMQP uses for arguments,
//! client/server properties and message headers.
//!
//! Type letters are those RabbitMQ and Qpid use (and every mainstream client sends), not
//! the ones in the 0-9-1 spec's own table, which nobody implements; see the RabbitMQ
//! AMQP 0-9-1 errata. The wire format lives in [`crate::protocol::wire`]; this module is
//! only the data model.

use bytes::Bytes;

use super::ShortString;

/// One value in a field table or field array. The comment on each variant is its type
/// letter on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `t`. Decoding treats any non-zero octet as true, as RabbitMQ does.
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s`
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: `value` × 10^-`scale`.
    Decimal { scale: u8, value: u32 },
    /// `S`: long string, not UTF-8 validated.
    LongString(Bytes),
    /// `x`
    ByteArray(Bytes),
    /// `A`
    Array(Vec<FieldValue>),
    /// `T`: seconds since the epoch.
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `V`
    Void,
}

impl FieldValue {
    /// The octet that introduces this value on the wire.
    pub fn type_letter(&self) -> u8 {
        match self {
            Self::Bool(_) => b't',
            Self::I8(_) => b'b',
            Self::U8(_) => b'B',
            Self::I16(_) => b's',
            Self::U16(_) => b'u',
            Self::I32(_) => b'I',
            Self::U32(_) => b'i',
            Self::I64(_) => b'l',
            Self::F32(_) => b'f',
            Self::F64(_) => b'd',
            Self::Decimal { .. } => b'D',
            Self::LongString(_) => b'S',
            Self::ByteArray(_) => b'x',
            Self::Array(_) => b'A',
            Self::Timestamp(_) => b'T',
            Self::Table(_) => b'F',
            Self::Void => b'V',
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Any integer type widened to i64 (`None` for a u64 timestamp or non-integers).
    /// Clients disagree on which width they send for things like `x-max-length`, so
    /// argument checks want "an integer", not a particular letter.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v.into()),
            Self::U8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => None,
        }
    }

    /// The octets of a long string or byte array.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::LongString(b) | Self::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    /// A long string that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::LongString(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&FieldTable> {
        match self {
            Self::Table(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[FieldValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $variant:ident),* $(,)?) => {
        $(impl From<$t> for FieldValue {
            fn from(v: $t) -> Self {
                Self::$variant(v)
            }
        })*
    };
}

from_scalar! {
    bool => Bool, i8 => I8, u8 => U8, i16 => I16, u16 => U16, i32 => I32, u32 => U32,
    i64 => I64, f32 => F32, f64 => F64, Vec<FieldValue> => Array, FieldTable => Table,
}

/// Strings become long strings (`S`), which is what clients send for text.
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        Self::LongString(Bytes::copy_from_slice(v.as_bytes()))
    }
}

impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        Self::LongString(Bytes::from(v))
    }
}

/// Raw bytes become a long string too: in AMQP a long string is just octets. Use
/// [`FieldValue::ByteArray`] explicitly for `x`.
impl From<Bytes> for FieldValue {
    fn from(v: Bytes) -> Self {
        Self::LongString(v)
    }
}

impl From<ShortString> for FieldValue {
    fn from(v: ShortString) -> Self {
        Self::LongString(v.into_bytes())
    }
}

/// A field table. Ordered (insertion order preserved, so re-encoding is byte-identical to
/// what was received); keys are [`ShortString`]. Duplicate keys received from the wire are
/// kept as they came; lookups see the first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldTable(Vec<(ShortString, FieldValue)>);

impl FieldTable {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    // Linear search: tables are small (a handful of arguments or headers), where a scan
    // beats hashing and keeps the wire order for free.
    fn position(&self, key: &[u8]) -> Option<usize> {
        self.0.iter().position(|(k, _)| k.as_bytes() == key)
    }

    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.get_bytes(key.as_bytes())
    }

    /// Lookup by raw key, for keys that are not UTF-8.
    pub fn get_bytes(&self, key: &[u8]) -> Option<&FieldValue> {
        self.0
            .iter()
            .find(|(k, _)| k.as_bytes() == key)
            .map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key.as_bytes()).is_some()
    }

    /// Replaces an existing key in place (keeping its position), else appends.
    pub fn insert(&mut self, key: ShortString, v: FieldValue) {
        match self.position(key.as_bytes()) {
            Some(i) => {
                if let Some(slot) = self.0.get_mut(i) {
                    slot.1 = v;
                }
            }
            None => self.0.push((key, v)),
        }
    }

    /// Removes the first entry with this key, keeping the order of the rest.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let i = self.position(key.as_bytes())?;
        Some(self.0.remove(i).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ShortString, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends without looking for an existing key: what the decoder uses, so that a table
    /// re-encodes exactly as it arrived.
    pub(crate) fn push(&mut self, key: ShortString, v: FieldValue) {
        self.0.push((key, v));
    }

    /// The entries sorted by key octets, stable (entries with equal keys keep their
    /// order, as Erlang's `lists:keysort`).
    pub fn sorted_by_key(&self) -> Vec<(&ShortString, &FieldValue)> {
        let mut entries: Vec<_> = self.iter().collect();
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        entries
    }
}

impl FromIterator<(ShortString, FieldValue)> for FieldTable {
    /// Later duplicates replace earlier ones, as with repeated [`FieldTable::insert`].
    fn from_iter<I: IntoIterator<Item = (ShortString, FieldValue)>>(iter: I) -> Self {
        let mut t = Self::new();
        for (k, v) in iter {
            t.insert(k, v);
        }
        t
    }
}

impl IntoIterator for FieldTable {
    type Item = (ShortString, FieldValue);
    type IntoIter = std::vec::IntoIter<(ShortString, FieldValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a FieldTable {
    type Item = (&'a ShortString, &'a FieldValue);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (ShortString, FieldValue)>,
        fn(&'a (ShortString, FieldValue)) -> (&'a ShortString, &'a FieldValue),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// Reusable proptest strategies for tables and values, for this crate's unit tests.
#[cfg(test)]
pub mod strategies {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    pub fn short_string() -> impl Strategy<Value = ShortString> {
        vec(any::<u8>(), 0..=20).prop_map(|v| {
            // 0..=20 octets can never exceed the limit.
            ShortString::new(v).unwrap_or_default()
        })
    }

    fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
    }

    /// Every value that is not a container. Floats are never NaN, so tables compare equal
    /// to their decoded copies.
    pub fn scalar_value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            any::<bool>().prop_map(FieldValue::Bool),
            any::<i8>().prop_map(FieldValue::I8),
            any::<u8>().prop_map(FieldValue::U8),
            any::<i16>().prop_map(FieldValue::I16),
            any::<u16>().prop_map(FieldValue::U16),
            any::<i32>().prop_map(FieldValue::I32),
            any::<u32>().prop_map(FieldValue::U32),
            any::<i64>().prop_map(FieldValue::I64),
            any::<f32>()
                .prop_filter("NaN != NaN", |v| !v.is_nan())
                .prop_map(FieldValue::F32),
            any::<f64>()
                .prop_filter("NaN != NaN", |v| !v.is_nan())
                .prop_map(FieldValue::F64),
            (any::<u8>(), any::<u32>())
                .prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
            bytes(40).prop_map(FieldValue::LongString),
            bytes(40).prop_map(FieldValue::ByteArray),
            any::<u64>().prop_map(FieldValue::Timestamp),
            Just(FieldValue::Void),
        ]
    }

    /// Builds a table from generated entries with `push`, so duplicate keys survive, as
    /// they may on the wire.
    fn table_of(
        entry: impl Strategy<Value = (ShortString, FieldValue)>,
    ) -> impl Strategy<Value = FieldTable> {
        vec(entry, 0..6).prop_map(|entries| {
            let mut t = FieldTable::new();
            for (k, v) in entries {
                t.push(k, v);
            }
            t
        })
    }

    /// Any value, with tables and arrays nested up to `depth` levels.
    pub fn field_value_with_depth(depth: u32) -> impl Strategy<Value = FieldValue> {
        scalar_value().prop_recursive(depth, 64, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
                table_of((short_string(), inner)).prop_map(FieldValue::Table),
            ]
        })
    }

    pub fn field_value() -> impl Strategy<Value = FieldValue> {
        field_value_with_depth(4)
    }

    /// A table whose values nest at most 4 levels below it.
    pub fn field_table() -> impl Strategy<Value = FieldTable> {
        table_of((short_string(), field_value_with_depth(3)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ss(s: &'static str) -> ShortString {
        ShortString::from_static(s)
    }

    #[test]
    fn insert_replaces_in_place() {
        let mut t = FieldTable::new();
        t.insert(ss("a"), 1i32.into());
        t.insert(ss("b"), 2i32.into());
        t.insert(ss("c"), 3i32.into());
        t.insert(ss("b"), "two".into());
        let keys: Vec<_> = t.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(t.get("b"), Some(&FieldValue::from("two")));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn remove_keeps_order() {
        let mut t: FieldTable = [
            (ss("a"), FieldValue::Void),
            (ss("b"), FieldValue::Bool(true)),
            (ss("c"), FieldValue::U8(1)),
        ]
        .into_iter()
        .collect();
        assert_eq!(t.remove("b"), Some(FieldValue::Bool(true)));
        assert_eq!(t.remove("b"), None);
        let keys: Vec<_> = (&t).into_iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, ["a", "c"]);
        assert!(!t.contains_key("b"));
        assert!(t.contains_key("c"));
    }

    #[test]
    fn get_missing_and_empty() {
        let t = FieldTable::new();
        assert!(t.is_empty());
        assert_eq!(t.get("x"), None);
        assert_eq!(FieldTable::default(), t);
        assert_eq!(FieldTable::with_capacity(4), t);
    }

    #[test]
    fn non_utf8_keys() {
        let mut t = FieldTable::new();
        t.insert(ShortString::new(vec![0xff]).unwrap(), FieldValue::Void);
        assert_eq!(t.get_bytes(&[0xff]), Some(&FieldValue::Void));
    }

    #[test]
    fn duplicates_from_push_stay_and_first_wins() {
        let mut t = FieldTable::new();
        t.push(ss("k"), FieldValue::U8(1));
        t.push(ss("k"), FieldValue::U8(2));
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("k"), Some(&FieldValue::U8(1)));
        // insert replaces the first; from_iter collapses.
        t.insert(ss("k"), FieldValue::U8(3));
        let vals: Vec<_> = t.clone().into_iter().map(|(_, v)| v).collect();
        assert_eq!(vals, [FieldValue::U8(3), FieldValue::U8(2)]);
        let collapsed: FieldTable = t.into_iter().collect();
        assert_eq!(collapsed.len(), 1);
        assert_eq!(collapsed.get("k"), Some(&FieldValue::U8(2)));
    }

    #[test]
    fn conversions() {
        assert_eq!(FieldValue::from(true), FieldValue::Bool(true));
        assert_eq!(FieldValue::from(-1i8), FieldValue::I8(-1));
        assert_eq!(FieldValue::from(1u8), FieldValue::U8(1));
        assert_eq!(FieldValue::from(-2i16), FieldValue::I16(-2));
        assert_eq!(FieldValue::from(2u16), FieldValue::U16(2));
        assert_eq!(FieldValue::from(-3i32), FieldValue::I32(-3));
        assert_eq!(FieldValue::from(3u32), FieldValue::U32(3));
        assert_eq!(FieldValue::from(-4i64), FieldValue::I64(-4));
        assert_eq!(FieldValue::from(0.5f32), FieldValue::F32(0.5));
        assert_eq!(FieldValue::from(0.25f64), FieldValue::F64(0.25));
        assert_eq!(
            FieldValue::from("s"),
            FieldValue::LongString(Bytes::from_static(b"s"))
        );
        assert_eq!(
            FieldValue::from(String::from("s")),
            FieldValue::LongString(Bytes::from_static(b"s"))
        );
        assert_eq!(
            FieldValue::from(Bytes::from_static(b"b")),
            FieldValue::LongString(Bytes::from_static(b"b"))
        );
        assert_eq!(
            FieldValue::from(ss("k")),
            FieldValue::LongString(Bytes::from_static(b"k"))
        );
        assert_eq!(
            FieldValue::from(vec![FieldValue::Void]),
            FieldValue::Array(vec![FieldValue::Void])
        );
        assert_eq!(
            FieldValue::from(FieldTable::new()),
            FieldValue::Table(FieldTable::new())
        );
    }

    #[test]
    fn accessors() {
        assert_eq!(FieldValue::Bool(true).as_bool(), Some(true));
        assert_eq!(FieldValue::U8(1).as_bool(), None);
        for (v, want) in [
            (FieldValue::I8(-1), Some(-1)),
            (FieldValue::U8(255), Some(255)),
            (FieldValue::I16(-300), Some(-300)),
            (FieldValue::U16(65535), Some(65535)),
            (FieldValue::I32(i32::MIN), Some(i64::from(i32::MIN))),
            (FieldValue::U32(u32::MAX), Some(i64::from(u32::MAX))),
            (FieldValue::I64(i64::MIN), Some(i64::MIN)),
            (FieldValue::Timestamp(1), None),
            (FieldValue::F64(1.0), None),
        ] {
            assert_eq!(v.as_i64(), want, "{v:?}");
        }
        assert_eq!(FieldValue::from("t").as_str(), Some("t"));
        assert_eq!(FieldValue::from("t").as_bytes(), Some(&b"t"[..]));
        assert_eq!(
            FieldValue::ByteArray(Bytes::from_static(b"\xff")).as_bytes(),
            Some(&b"\xff"[..])
        );
        assert_eq!(FieldValue::ByteArray(Bytes::new()).as_str(), None);
        assert_eq!(
            FieldValue::LongString(Bytes::from_static(b"\xff")).as_str(),
            None
        );
        assert_eq!(FieldValue::Void.as_bytes(), None);
        let t = FieldTable::new();
        assert_eq!(FieldValue::Table(t.clone()).as_table(), Some(&t));
        assert_eq!(FieldValue::Void.as_table(), None);
        assert_eq!(
            FieldValue::Array(vec![FieldValue::Void]).as_array(),
            Some(&[FieldValue::Void][..])
        );
        assert_eq!(FieldValue::Void.as_array(), None);
    }

    #[test]
    fn type_letters_are_rabbitmq_s() {
        let letters: Vec<u8> = [
            FieldValue::Bool(false),
            FieldValue::I8(0),
            FieldValue::U8(0),
            FieldValue::I16(0),
            FieldValue::U16(0),
            FieldValue::I32(0),
            FieldValue::U32(0),
            FieldValue::I64(0),
            FieldValue::F32(0.0),
            FieldValue::F64(0.0),
            FieldValue::Decimal { scale: 0, value: 0 },
            FieldValue::LongString(Bytes::new()),
            FieldValue::ByteArray(Bytes::new()),
            FieldValue::Array(vec![]),
            FieldValue::Timestamp(0),
            FieldValue::Table(FieldTable::new()),
            FieldValue::Void,
        ]
        .iter()
        .map(FieldValue::type_letter)
        .collect();
        assert_eq!(letters, b"tbBsuIilfdDSxATFV");
    }
}
