//! Distinct bindings: what binding-state subscribers see.
//!
//! A federation link mirrors an exchange's bindings upstream, but it cares only whether
//! *some* binding with a given routing key and arguments exists, not how many queues
//! share it. So each exchange keeps a count per distinct key: a binding is *created*
//! when the first binding with its key appears and *destroyed* when the last one goes,
//! however it goes (unbind, queue or exchange deletion, an exclusive owner closing,
//! auto-delete).
//!
//! The distinct key follows the exchange's type: direct and topic exchanges route on the
//! routing key, so it is (routing key, arguments); a headers exchange ignores the key,
//! so it is the arguments; a fanout exchange ignores both, so it has a single key.
//! Arguments compare by [`crate::protocol::arguments`]'s one rule.

use bytes::Bytes;

use crate::broker::hash::HashMap;
use crate::broker::routing::ExchangeKind;
use crate::protocol::arguments::arguments_key;
use crate::protocol::{FieldTable, ShortString};

/// One distinct binding of an exchange, as the first binding with its key made it.
#[derive(Debug, Clone, PartialEq)]
pub struct DistinctBinding {
    pub exchange: ShortString,
    pub routing_key: ShortString,
    pub arguments: FieldTable,
    /// Whether the queue of the first binding with this key was exclusive.
    pub exclusive: bool,
}

/// What a binding-state subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum BindingNotice {
    /// The first binding with this key appeared (`seq`: the topology event that did it).
    Created { seq: u64, binding: DistinctBinding },
    /// The last binding with this key went.
    Destroyed { seq: u64, binding: DistinctBinding },
    /// The subscriber fell too far behind and lost notices: this is the whole state as
    /// of topology event `seq`; the notices after it follow.
    Resync {
        seq: u64,
        bindings: Vec<DistinctBinding>,
    },
}

/// The distinct key of a binding (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    routing_key: Option<ShortString>,
    arguments: Option<Bytes>,
}

impl Key {
    fn of(kind: ExchangeKind, routing_key: &ShortString, arguments: &FieldTable) -> Key {
        match kind {
            ExchangeKind::Fanout | ExchangeKind::FederationUpstream => Key {
                routing_key: None,
                arguments: None,
            },
            ExchangeKind::Headers => Key {
                routing_key: None,
                arguments: Some(arguments_key(arguments)),
            },
            ExchangeKind::Direct | ExchangeKind::Topic => Key {
                routing_key: Some(routing_key.clone()),
                arguments: Some(arguments_key(arguments)),
            },
        }
    }
}

#[derive(Debug)]
struct Counted {
    binding: DistinctBinding,
    count: usize,
}

/// Every exchange's distinct bindings with their counts.
#[derive(Debug, Default)]
pub(super) struct DistinctBindings {
    by_exchange: HashMap<ShortString, HashMap<Key, Counted>>,
}

impl DistinctBindings {
    /// Counts a binding made; returns the distinct binding if it is new.
    pub fn added(
        &mut self,
        kind: ExchangeKind,
        exchange: &ShortString,
        routing_key: &ShortString,
        arguments: &FieldTable,
        exclusive: bool,
    ) -> Option<DistinctBinding> {
        let key = Key::of(kind, routing_key, arguments);
        let keys = self.by_exchange.entry(exchange.clone()).or_default();
        match keys.get_mut(&key) {
            Some(c) => {
                c.count += 1;
                None
            }
            None => {
                let binding = DistinctBinding {
                    exchange: exchange.clone(),
                    routing_key: routing_key.clone(),
                    arguments: arguments.clone(),
                    exclusive,
                };
                keys.insert(
                    key,
                    Counted {
                        binding: binding.clone(),
                        count: 1,
                    },
                );
                Some(binding)
            }
        }
    }

    /// Counts a binding removed; returns the distinct binding if it was the last.
    pub fn removed(
        &mut self,
        kind: ExchangeKind,
        exchange: &ShortString,
        routing_key: &ShortString,
        arguments: &FieldTable,
    ) -> Option<DistinctBinding> {
        let key = Key::of(kind, routing_key, arguments);
        let keys = self.by_exchange.get_mut(exchange)?;
        let c = keys.get_mut(&key)?;
        c.count -= 1;
        if c.count > 0 {
            return None;
        }
        let gone = keys.remove(&key).map(|c| c.binding);
        if keys.is_empty() {
            self.by_exchange.remove(exchange);
        }
        gone
    }

    /// The distinct bindings of one exchange, or of all.
    pub fn snapshot(&self, exchange: Option<&ShortString>) -> Vec<DistinctBinding> {
        let of = |keys: &HashMap<Key, Counted>| {
            keys.values().map(|c| c.binding.clone()).collect::<Vec<_>>()
        };
        match exchange {
            Some(name) => self.by_exchange.get(name).map(of).unwrap_or_default(),
            None => self.by_exchange.values().flat_map(of).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FieldValue;

    fn ss(s: &str) -> ShortString {
        ShortString::try_from(s).unwrap()
    }

    #[test]
    fn the_distinct_key_follows_the_exchange_type() {
        let mut d = DistinctBindings::default();
        let none = FieldTable::new();
        let mut args = FieldTable::new();
        args.insert(ss("x-match"), FieldValue::LongString("all".into()));
        // Fanout: one key whatever the routing key.
        assert!(
            d.added(ExchangeKind::Fanout, &ss("f"), &ss("a"), &none, false)
                .is_some()
        );
        assert!(
            d.added(ExchangeKind::Fanout, &ss("f"), &ss("b"), &args, false)
                .is_none()
        );
        // Headers: the arguments, not the routing key.
        assert!(
            d.added(ExchangeKind::Headers, &ss("h"), &ss("a"), &args, true)
                .is_some()
        );
        assert!(
            d.added(ExchangeKind::Headers, &ss("h"), &ss("b"), &args, false)
                .is_none()
        );
        assert!(
            d.added(ExchangeKind::Headers, &ss("h"), &ss("a"), &none, false)
                .is_some()
        );
        // Direct: both.
        assert!(
            d.added(ExchangeKind::Direct, &ss("d"), &ss("a"), &none, false)
                .is_some()
        );
        assert!(
            d.added(ExchangeKind::Direct, &ss("d"), &ss("b"), &none, false)
                .is_some()
        );
        assert!(
            d.added(ExchangeKind::Direct, &ss("d"), &ss("a"), &args, false)
                .is_some()
        );
        assert_eq!(d.snapshot(Some(&ss("h"))).len(), 2);
        assert!(d.snapshot(Some(&ss("h"))).iter().any(|b| b.exclusive));
        assert_eq!(d.snapshot(None).len(), 6);
        // Destroyed only with the last binding of a key.
        assert!(
            d.removed(ExchangeKind::Fanout, &ss("f"), &ss("a"), &none)
                .is_none()
        );
        let gone = d.removed(ExchangeKind::Fanout, &ss("f"), &ss("zzz"), &none);
        assert_eq!(gone.map(|b| b.routing_key), Some(ss("a")));
        assert!(d.snapshot(Some(&ss("f"))).is_empty());
    }
}
