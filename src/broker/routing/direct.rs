//! Direct exchanges: a message goes to the bindings whose key equals its routing key,
//! byte for byte.
//!
//! One hash lookup per message, whatever the number of bindings. Each key's
//! destinations are kept unique (with a count of the bindings behind each, which may
//! differ in arguments), so a match is copied out without deduplicating.

use super::{Counts, Destination};
use crate::broker::hash::HashMap;
use crate::protocol::ShortString;

#[derive(Debug, Clone, Default)]
pub(super) struct DirectIndex {
    by_key: HashMap<ShortString, Counts<Destination>>,
}

impl DirectIndex {
    pub(super) fn add(&mut self, key: &ShortString, dest: &Destination) {
        self.by_key.entry(key.clone()).or_default().add(dest);
    }

    pub(super) fn remove(&mut self, key: &ShortString, dest: &Destination) {
        if let Some(dests) = self.by_key.get_mut(key.as_bytes()) {
            dests.remove(dest);
            if dests.is_empty() {
                self.by_key.remove(key.as_bytes());
            }
        }
    }

    pub(super) fn route(&self, key: &[u8], out: &mut Vec<Destination>) {
        if let Some(dests) = self.by_key.get(key) {
            out.extend(dests.values().cloned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{binding, q, routed, table};
    use super::super::{ExchangeKind, RoutingTable};
    use crate::protocol::{FieldTable, FieldValue};

    fn direct(bindings: &[(&str, &str)]) -> RoutingTable {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        for (dest, key) in bindings {
            assert_eq!(t.bind(binding(q(dest), key, FieldTable::new())), Ok(true));
        }
        t
    }

    #[test]
    fn exact_key_only() {
        let t = direct(&[("a", "k"), ("b", "k"), ("c", "k2"), ("d", "")]);
        assert_eq!(routed(&t, "k", None), [q("a"), q("b")]);
        assert_eq!(routed(&t, "k2", None), [q("c")]);
        // The empty key is a key like any other.
        assert_eq!(routed(&t, "", None), [q("d")]);
        assert!(routed(&t, "K", None).is_empty());
        assert!(routed(&t, "k ", None).is_empty());
        assert!(routed(&t, "k.", None).is_empty());
    }

    #[test]
    fn no_wildcards() {
        let t = direct(&[("a", "#"), ("b", "*"), ("c", "a.*")]);
        assert!(routed(&t, "x", None).is_empty());
        assert!(routed(&t, "a.b", None).is_empty());
        assert_eq!(routed(&t, "#", None), [q("a")]);
        assert_eq!(routed(&t, "a.*", None), [q("c")]);
    }

    #[test]
    fn headers_are_ignored() {
        let t = direct(&[("a", "k")]);
        let h = table(&[("k", FieldValue::Void)]);
        assert_eq!(routed(&t, "k", Some(&h)), [q("a")]);
        assert!(routed(&t, "other", Some(&h)).is_empty());
    }

    #[test]
    fn one_copy_per_queue_and_counted_removal() {
        let mut t = direct(&[("a", "k")]);
        let with_args = binding(q("a"), "k", table(&[("x", FieldValue::Bool(true))]));
        assert_eq!(t.bind(with_args.clone()), Ok(true));
        assert_eq!(routed(&t, "k", None), [q("a")]);
        // Removing one of the two bindings keeps the route.
        assert!(t.unbind(&with_args));
        assert_eq!(routed(&t, "k", None), [q("a")]);
        assert!(t.unbind(&binding(q("a"), "k", FieldTable::new())));
        assert!(routed(&t, "k", None).is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn non_utf8_keys() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        let key = crate::protocol::ShortString::new(vec![0xff, 0x00]).unwrap();
        t.bind(super::super::Binding {
            destination: q("a"),
            routing_key: key,
            arguments: FieldTable::new(),
        })
        .unwrap();
        let mut out = Vec::new();
        t.route(&[0xff, 0x00], None, &mut out);
        assert_eq!(out, [q("a")]);
    }
}
