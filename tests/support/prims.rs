//! Proptest strategies for the wire primitives, field values and field tables.

use bytes::Bytes;
use fedamq::protocol::{FieldTable, FieldValue, ShortString};
use proptest::prelude::*;

pub fn bit() -> impl Strategy<Value = bool> {
    any::<bool>()
}

pub fn octet() -> impl Strategy<Value = u8> {
    any::<u8>()
}

pub fn short() -> impl Strategy<Value = u16> {
    any::<u16>()
}

pub fn long() -> impl Strategy<Value = u32> {
    any::<u32>()
}

pub fn longlong() -> impl Strategy<Value = u64> {
    any::<u64>()
}

pub fn timestamp() -> impl Strategy<Value = u64> {
    any::<u64>()
}

/// Short strings of every length up to the limit, with any bytes (not only UTF-8).
pub fn shortstr() -> impl Strategy<Value = ShortString> {
    prop_oneof![
        "[a-zA-Z0-9._*#-]{0,40}".prop_map(|s| ShortString::new(Bytes::from(s)).unwrap()),
        proptest::collection::vec(any::<u8>(), 0..=255)
            .prop_map(|v| ShortString::new(Bytes::from(v)).unwrap()),
    ]
}

pub fn longstr() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

/// Finite floats only: NaN never equals itself, so a round trip could not be compared.
fn f32_finite() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("finite", |f| f.is_finite())
}

fn f64_finite() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

/// Field values of every RabbitMQ type letter, with nested tables and arrays.
pub fn field_value() -> impl Strategy<Value = FieldValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        f32_finite().prop_map(FieldValue::F32),
        f64_finite().prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        longstr().prop_map(FieldValue::LongString),
        longstr().prop_map(FieldValue::ByteArray),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| FieldValue::Table(unique(entries))),
        ]
    })
}

fn key() -> impl Strategy<Value = ShortString> {
    "[a-z][a-z0-9-]{0,12}".prop_map(|s| ShortString::new(Bytes::from(s)).unwrap())
}

/// Keeps the first entry per key, so the table is what a real peer would send.
fn unique(entries: Vec<(ShortString, FieldValue)>) -> FieldTable {
    let mut table = FieldTable::new();
    for (k, v) in entries {
        if table.get(k.as_str().unwrap_or_default()).is_none() {
            table.insert(k, v);
        }
    }
    table
}

/// Field tables with nested tables and arrays.
pub fn table() -> impl Strategy<Value = FieldTable> {
    proptest::collection::vec((key(), field_value()), 0..8).prop_map(unique)
}
