//! Fanout exchanges: a message goes to every destination bound, whatever its routing
//! key and headers.
//!
//! The destinations are kept in a vector, unique, so routing is one copy; a map from
//! destination to its slot and binding count makes binding and unbinding O(1) too
//! (bindings to one queue under several keys or arguments count once).

use super::Destination;
use crate::broker::hash::HashMap;

#[derive(Debug, Clone, Default)]
pub(super) struct FanoutIndex {
    dests: Vec<Destination>,
    /// Slot in `dests` and number of bindings, per destination.
    slots: HashMap<Destination, (usize, usize)>,
}

impl FanoutIndex {
    pub(super) fn add(&mut self, dest: &Destination) {
        match self.slots.get_mut(dest) {
            Some((_, n)) => *n += 1,
            None => {
                self.slots.insert(dest.clone(), (self.dests.len(), 1));
                self.dests.push(dest.clone());
            }
        }
    }

    /// Forgets one binding to `dest`.
    pub(super) fn remove(&mut self, dest: &Destination) {
        let Some((slot, n)) = self.slots.get_mut(dest) else {
            return;
        };
        if *n > 1 {
            *n -= 1;
            return;
        }
        let slot = *slot;
        self.slots.remove(dest);
        if slot < self.dests.len() {
            self.dests.swap_remove(slot);
            // The last destination moved into the freed slot.
            if let Some(moved) = self.dests.get(slot)
                && let Some((s, _)) = self.slots.get_mut(moved)
            {
                *s = slot;
            }
        }
    }

    pub(super) fn route(&self, out: &mut Vec<Destination>) {
        out.extend_from_slice(&self.dests);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{binding, q, routed, table};
    use super::super::{Destination, ExchangeKind, RoutingTable};
    use crate::protocol::{FieldTable, FieldValue};

    #[test]
    fn every_destination_once_whatever_the_key() {
        let mut t = RoutingTable::new(ExchangeKind::Fanout);
        let x = Destination::Exchange(super::super::tests::ss("x"));
        for (d, k) in [
            (q("a"), "k1"),
            (q("a"), "k2"),
            (q("b"), ""),
            (x.clone(), "#"),
        ] {
            assert_eq!(t.bind(binding(d, k, FieldTable::new())), Ok(true));
        }
        assert_eq!(t.len(), 4);
        let h = table(&[("k", FieldValue::Void)]);
        for key in ["", "k1", "anything.at.all", "#"] {
            assert_eq!(routed(&t, key, None), [q("a"), q("b"), x.clone()]);
            assert_eq!(routed(&t, key, Some(&h)), [q("a"), q("b"), x.clone()]);
        }
    }

    #[test]
    fn unbinding_keeps_slots_consistent() {
        let mut t = RoutingTable::new(ExchangeKind::Fanout);
        for name in ["a", "b", "c", "d"] {
            t.bind(binding(q(name), "", FieldTable::new())).unwrap();
        }
        t.bind(binding(q("b"), "other", FieldTable::new())).unwrap();
        // "a" leaves: "d" moves into its slot and must still be removable.
        assert!(t.unbind(&binding(q("a"), "", FieldTable::new())));
        assert_eq!(routed(&t, "", None), [q("b"), q("c"), q("d")]);
        assert!(t.unbind(&binding(q("d"), "", FieldTable::new())));
        assert_eq!(routed(&t, "", None), [q("b"), q("c")]);
        // "b" has two bindings: one unbind keeps it.
        assert!(t.unbind(&binding(q("b"), "", FieldTable::new())));
        assert_eq!(routed(&t, "", None), [q("b"), q("c")]);
        assert_eq!(t.remove_destination(&q("b")).len(), 1);
        assert_eq!(routed(&t, "", None), [q("c")]);
        assert!(t.unbind(&binding(q("c"), "", FieldTable::new())));
        assert!(routed(&t, "", None).is_empty());
        assert!(t.is_empty());
    }
}
