//! When two argument tables are "the same arguments": one rule for bindings, peering
//! replay, binding-state subscriptions and re-declarations, in two forms (a comparison
//! and a hashable key) that a property test holds equal.

use bytes::Bytes;

use super::wire::encode;
use super::{FieldTable, FieldValue, ShortString};

/// **The one rule for "same arguments"** (bindings, peering replay, binding-state
/// subscriptions, exchange re-declaration). RabbitMQ sorts argument tables by key (a
/// stable sort, top level only) and then compares the decoded terms exactly: type tags
/// included, so `I32(1)` and `I64(1)` are different arguments; floats by bit pattern;
/// nested tables in order. [`arguments_key`] is the same rule as bytes, for hashing:
/// two tables are the same arguments exactly when their keys are equal.
pub fn same_arguments(a: &FieldTable, b: &FieldTable) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let same = |(ka, va): (&ShortString, &FieldValue), (kb, vb): (&ShortString, &FieldValue)| {
        ka == kb && values_identical(va, vb)
    };
    // The common case, the same table sent again, needs no sorting.
    if a.iter().zip(b.iter()).all(|(x, y)| same(x, y)) {
        return true;
    }
    a.sorted_by_key()
        .into_iter()
        .zip(b.sorted_by_key())
        .all(|(x, y)| same(x, y))
}

/// Exact equality of two values as Erlang's `=:=` sees RabbitMQ's decoded form: same
/// type, same value, floats by bit pattern (so it is reflexive, even for NaN), tables in
/// order. One quirk carried over: RabbitMQ decodes both an empty array and an empty
/// table to `[]`, so those two are equal.
pub fn values_identical(a: &FieldValue, b: &FieldValue) -> bool {
    use FieldValue as V;
    match (a, b) {
        (V::F32(x), V::F32(y)) => x.to_bits() == y.to_bits(),
        (V::F64(x), V::F64(y)) => x.to_bits() == y.to_bits(),
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_identical(p, q))
        }
        (V::Table(x), V::Table(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((kp, p), (kq, q))| kp == kq && values_identical(p, q))
        }
        (V::Array(x), V::Table(y)) | (V::Table(y), V::Array(x)) => x.is_empty() && y.is_empty(),
        _ => a.type_letter() == b.type_letter() && a == b,
    }
}

/// [`same_arguments`] as a hashable key: the table sorted by key (stable), encoded, with
/// empty arrays written as empty tables (the quirk in [`values_identical`]).
pub fn arguments_key(table: &FieldTable) -> Bytes {
    fn canonical(v: &FieldValue) -> FieldValue {
        match v {
            FieldValue::Array(a) if a.is_empty() => FieldValue::Table(FieldTable::new()),
            FieldValue::Array(a) => FieldValue::Array(a.iter().map(canonical).collect()),
            FieldValue::Table(t) => {
                // Entry by entry, duplicates kept: collecting would merge repeated keys
                // that `values_identical` tells apart.
                let mut out = FieldTable::with_capacity(t.len());
                for (k, v) in t.iter() {
                    out.push(k.clone(), canonical(v));
                }
                FieldValue::Table(out)
            }
            other => other.clone(),
        }
    }
    let mut sorted = FieldTable::with_capacity(table.len());
    for (k, v) in table.sorted_by_key() {
        sorted.push(k.clone(), canonical(v));
    }
    let mut buf = bytes::BytesMut::new();
    encode::table(&mut buf, &sorted);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::field_table::strategies;
    use proptest::prelude::*;

    fn ss(s: &str) -> ShortString {
        ShortString::try_from(s).unwrap()
    }

    #[test]
    fn key_order_does_not_matter_but_types_do() {
        let mut ab = FieldTable::new();
        ab.insert(ss("a"), FieldValue::I32(1));
        ab.insert(ss("b"), FieldValue::Array(vec![]));
        let mut ba = FieldTable::new();
        ba.insert(ss("b"), FieldValue::Table(FieldTable::new()));
        ba.insert(ss("a"), FieldValue::I32(1));
        assert!(same_arguments(&ab, &ba));
        assert_eq!(arguments_key(&ab), arguments_key(&ba));
        let mut wider = FieldTable::new();
        wider.insert(ss("a"), FieldValue::I64(1));
        wider.insert(ss("b"), FieldValue::Array(vec![]));
        assert!(!same_arguments(&ab, &wider));
        assert_ne!(arguments_key(&ab), arguments_key(&wider));
    }

    #[test]
    fn nested_tables_with_repeated_keys_keep_them_apart() {
        let nested = |first: i32, second: i32| {
            let mut t = FieldTable::new();
            t.push(ss("k"), FieldValue::I32(first));
            t.push(ss("k"), FieldValue::I32(second));
            let mut outer = FieldTable::new();
            outer.insert(ss("n"), FieldValue::Table(t));
            outer
        };
        // Merging repeated keys would leave both as {k: 9}.
        let (a, b) = (nested(2, 9), nested(3, 9));
        assert!(!same_arguments(&a, &b));
        assert_ne!(arguments_key(&a), arguments_key(&b));
    }

    proptest! {
        /// The two forms of the rule agree, on tables that are often alike.
        #[test]
        fn the_key_is_the_comparison(
            a in strategies::field_table(),
            b in strategies::field_table(),
            shuffle in any::<bool>(),
        ) {
            let b = if shuffle {
                let mut rev: Vec<_> = a.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                rev.reverse();
                let mut t = FieldTable::new();
                for (k, v) in rev { t.push(k, v); }
                t
            } else { b };
            prop_assert_eq!(same_arguments(&a, &b), arguments_key(&a) == arguments_key(&b));
        }
    }
}
