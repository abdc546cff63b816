//! The declared state a peering replays after every reconnect: exchanges and queues it
//! declared, bindings it made (deduplicated; an unbind removes one), its consumers and its
//! qos, in the order they were first asked for.
//!
//! An entry is recorded when the owner asks for it, not when the remote confirms it, so a
//! declaration made while the link is down is sent once it is up; the owner's future
//! resolves at the first confirmation, on whichever connection that is. The remote
//! refusing an entry (a channel or connection error answering it) removes it.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::protocol::ShortString;
use crate::protocol::arguments::arguments_key;
use crate::protocol::generated::methods::Method;

use super::error::PeeringError;

/// Resolves a request with the remote's answer.
pub(crate) type Waiter = oneshot::Sender<Result<Method, PeeringError>>;

/// What identifies an entry: a later entry with the same key replaces it (a re-declare
/// with other arguments) or, for bindings, is the same binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Exchange(ShortString),
    Queue(ShortString),
    /// queue or exchange destination, source, routing key, arguments (normalised).
    QueueBinding(ShortString, ShortString, ShortString, Bytes),
    ExchangeBinding(ShortString, ShortString, ShortString, Bytes),
    Consumer(ShortString),
    Qos,
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub id: u64,
    pub method: Method,
    key: Key,
    /// Owners waiting for the first confirmation.
    pub waiters: Vec<Waiter>,
}

/// Entries by id (ids grow, so id order is the order first asked for) and by key: a link
/// may hold tens of thousands of bindings, and each record, confirmation and delivery
/// looks one up.
#[derive(Debug, Default)]
pub(crate) struct Declared {
    entries: BTreeMap<u64, Entry>,
    by_key: HashMap<Key, u64>,
    next_id: u64,
}

fn key_of(method: &Method) -> Option<Key> {
    Some(match method {
        Method::ExchangeDeclare(m) => Key::Exchange(m.exchange.clone()),
        Method::QueueDeclare(m) => Key::Queue(m.queue.clone()),
        Method::QueueBind(m) => Key::QueueBinding(
            m.queue.clone(),
            m.exchange.clone(),
            m.routing_key.clone(),
            arguments_key(&m.arguments),
        ),
        Method::ExchangeBind(m) => Key::ExchangeBinding(
            m.destination.clone(),
            m.source.clone(),
            m.routing_key.clone(),
            arguments_key(&m.arguments),
        ),
        Method::BasicConsume(m) => Key::Consumer(m.consumer_tag.clone()),
        Method::BasicQos(_) => Key::Qos,
        _ => return None,
    })
}

/// Whether `method` is part of the declared state (and so replayed).
#[cfg(test)]
pub(crate) fn is_declaration(method: &Method) -> bool {
    key_of(method).is_some()
}

impl Declared {
    /// Records `method` (a declaration: see [`is_declaration`]) and returns its entry's
    /// id, and whether it must be sent: a binding already recorded is not sent again (its
    /// waiter joins the entry: resolved now if `confirmed`, else at its confirmation).
    pub(crate) fn record(&mut self, method: Method) -> Option<(u64, bool)> {
        let key = key_of(&method)?;
        let same_binding = matches!(key, Key::QueueBinding(..) | Key::ExchangeBinding(..));
        if let Some(&id) = self.by_key.get(&key) {
            if same_binding {
                return Some((id, false));
            }
            if let Some(e) = self.entries.get_mut(&id) {
                e.method = method;
            }
            return Some((id, true));
        }
        self.next_id += 1;
        let id = self.next_id;
        self.by_key.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                id,
                method,
                key,
                waiters: Vec::new(),
            },
        );
        Some((id, true))
    }

    /// For an unbind or a cancel: forgets the binding or consumer it undoes.
    pub(crate) fn forget_undone(&mut self, method: &Method) {
        let undone = match method {
            Method::QueueUnbind(m) => Key::QueueBinding(
                m.queue.clone(),
                m.exchange.clone(),
                m.routing_key.clone(),
                arguments_key(&m.arguments),
            ),
            Method::ExchangeUnbind(m) => Key::ExchangeBinding(
                m.destination.clone(),
                m.source.clone(),
                m.routing_key.clone(),
                arguments_key(&m.arguments),
            ),
            Method::BasicCancel(m) => Key::Consumer(m.consumer_tag.clone()),
            Method::QueueDelete(m) => Key::Queue(m.queue.clone()),
            Method::ExchangeDelete(m) => Key::Exchange(m.exchange.clone()),
            _ => return,
        };
        self.forget(&undone);
    }

    fn forget(&mut self, key: &Key) {
        if let Some(id) = self.by_key.remove(key) {
            self.entries.remove(&id);
        }
    }

    /// Whether the consumer `tag` was asked for with `no_ack`.
    pub(crate) fn consumer_no_ack(&self, tag: &ShortString) -> bool {
        self.by_key
            .get(&Key::Consumer(tag.clone()))
            .and_then(|id| self.entries.get(id))
            .is_some_and(|e| matches!(&e.method, Method::BasicConsume(c) if c.no_ack))
    }

    /// Forgets a consumer the remote cancelled (its queue was deleted, say).
    pub(crate) fn forget_consumer(&mut self, tag: &ShortString) {
        self.forget(&Key::Consumer(tag.clone()));
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.by_key.remove(&e.key);
        Some(e)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Entry> {
        self.entries.get_mut(&id)
    }

    /// Every entry, in replay order.
    pub(crate) fn entries_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.entries.values_mut()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FieldValue;
    use crate::protocol::generated::methods::{BasicCancel, QueueBind, QueueUnbind};

    fn ss(s: &'static str) -> ShortString {
        ShortString::from_static(s)
    }

    fn bind(key: &'static str, args: &[(&'static str, i64)]) -> Method {
        Method::QueueBind(QueueBind {
            queue: ss("q"),
            exchange: ss("x"),
            routing_key: ss(key),
            no_wait: false,
            arguments: args
                .iter()
                .map(|(k, v)| (ss(k), FieldValue::I64(*v)))
                .collect(),
        })
    }

    #[test]
    fn bindings_are_deduplicated_on_key_and_normalised_arguments() {
        let mut d = Declared::default();
        let (a, send) = d.record(bind("k", &[("a", 1), ("b", 2)])).unwrap();
        assert!(send);
        let (b, send) = d.record(bind("k", &[("b", 2), ("a", 1)])).unwrap();
        assert_eq!((a, send), (b, false));
        let (c, send) = d.record(bind("k", &[("a", 1)])).unwrap();
        assert!(send && c != a);
        assert_eq!(d.len(), 2);

        d.forget_undone(&Method::QueueUnbind(QueueUnbind {
            queue: ss("q"),
            exchange: ss("x"),
            routing_key: ss("k"),
            arguments: [(ss("b"), FieldValue::I64(2)), (ss("a"), FieldValue::I64(1))]
                .into_iter()
                .collect(),
        }));
        assert_eq!(d.len(), 1);
        assert!(d.get_mut(c).is_some());
    }

    #[test]
    fn consumers_are_forgotten_by_cancel() {
        let mut d = Declared::default();
        let consume = Method::BasicConsume(crate::protocol::generated::methods::BasicConsume {
            queue: ss("q"),
            consumer_tag: ss("t1"),
            ..Default::default()
        });
        d.record(consume).unwrap();
        assert_eq!(d.len(), 1);
        d.forget_undone(&Method::BasicCancel(BasicCancel {
            consumer_tag: ss("t1"),
            no_wait: false,
        }));
        assert_eq!(d.len(), 0);
        assert!(!is_declaration(
            &Method::BasicCancel(BasicCancel::default())
        ));
    }
}
