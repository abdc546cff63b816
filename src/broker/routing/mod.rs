//! Exchange routing tables: every binding of one exchange, indexed for its kind.
//!
//! Routing runs once per published message, binding changes are rare, so the tables
//! spend memory and bind-time work to make [`RoutingTable::route`] cheap:
//!
//! - direct: a hash map from routing key to destinations, one lookup per message;
//! - fanout: the list of destinations, copied out;
//! - topic: a trie over the words of the binding keys with `*` and `#` edges, walked as
//!   a set of active nodes per word, so the cost follows the key and the matching
//!   patterns, not the number of bindings, and can never blow up exponentially;
//! - headers: each binding is a predicate on the headers, compiled at bind time and
//!   listed under the (key, value) pairs that can lead to it, so a message tests only
//!   the bindings its headers reach.
//!
//! The tables are plain data (no locks, no I/O): the exchange that owns one decides how
//! it is shared. `route` allocates nothing beyond what it pushes into the caller's
//! vector, so a connection can reuse one vector for every publish. (The exceptions: a
//! topic key that keeps more than 64 trie nodes alive at once, see `topic`, and headers
//! routing, which sorts the message's known headers and its matches in vectors sized by
//! them.)
//!
//! Semantics follow RabbitMQ (see each kind's module). What is common to all kinds:
//! a binding is (destination, routing key, arguments); binding the same one twice is a
//! no-op; arguments are compared as tables, insensitive to order, as RabbitMQ sorts
//! them by key before storing a binding (`rabbit_binding:binding_action/3`,
//! `rabbit_misc:sort_field_table/1`); and a message reaches each destination at most
//! once however many of its bindings match.

mod direct;
mod fanout;
mod headers;
mod topic;
pub mod upstream;

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;

use crate::broker::hash::HashMap;
use crate::protocol::arguments::same_arguments;
use crate::protocol::{FieldTable, ShortString};

use direct::DirectIndex;
use fanout::FanoutIndex;
use headers::{HeadersIndex, Matcher};
use topic::TopicIndex;

/// Where a binding delivers: a queue or another exchange (exchange-to-exchange bindings).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(ShortString),
    Exchange(ShortString),
}

impl Destination {
    /// The queue's or exchange's name.
    pub fn name(&self) -> &ShortString {
        match self {
            Destination::Queue(n) | Destination::Exchange(n) => n,
        }
    }
}

/// The four exchange types of AMQP 0-9-1, and RabbitMQ's federation helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
    /// `x-federation-upstream`: a downstream's federation link declares one on its
    /// upstream, bound to its upstream queue. It routes as fanout, but only messages
    /// the downstream should get (see [`upstream::forwards`]).
    FederationUpstream,
}

impl ExchangeKind {
    /// The kind named in `exchange.declare`; names are case-sensitive, as in RabbitMQ.
    pub fn from_name(s: &[u8]) -> Option<Self> {
        match s {
            b"direct" => Some(Self::Direct),
            b"fanout" => Some(Self::Fanout),
            b"topic" => Some(Self::Topic),
            b"headers" => Some(Self::Headers),
            b"x-federation-upstream" => Some(Self::FederationUpstream),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
            Self::FederationUpstream => "x-federation-upstream",
        }
    }
}

/// A binding as declared: (destination, routing key, arguments).
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: ShortString,
    pub arguments: FieldTable,
}

/// All bindings of one exchange, indexed for its kind.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    kind: ExchangeKind,
    index: Index,
    /// The bindings as declared, by destination then routing key. This is what answers
    /// "does this binding exist" and "which bindings go to this queue"; `index` only
    /// answers "where does this message go".
    by_dest: HashMap<Destination, HashMap<ShortString, Vec<Binding>>>,
    len: usize,
}

#[derive(Debug, Clone)]
enum Index {
    Direct(DirectIndex),
    Fanout(FanoutIndex),
    Topic(TopicIndex),
    Headers(HeadersIndex),
}

impl RoutingTable {
    pub fn new(kind: ExchangeKind) -> Self {
        let index = match kind {
            ExchangeKind::Direct => Index::Direct(DirectIndex::default()),
            ExchangeKind::Fanout | ExchangeKind::FederationUpstream => {
                Index::Fanout(FanoutIndex::default())
            }
            ExchangeKind::Topic => Index::Topic(TopicIndex::default()),
            ExchangeKind::Headers => Index::Headers(HeadersIndex::default()),
        };
        RoutingTable {
            kind,
            index,
            by_dest: HashMap::default(),
            len: 0,
        }
    }

    pub fn kind(&self) -> ExchangeKind {
        self.kind
    }

    /// Adds a binding; `Ok(false)` if an identical one (destination, key, arguments
    /// equal) exists. Headers bindings with an invalid `x-match` are refused with
    /// RabbitMQ's message (its channel answers 406 PRECONDITION_FAILED with it); other
    /// kinds never fail.
    pub fn bind(&mut self, b: Binding) -> Result<bool, String> {
        // RabbitMQ validates before it looks for an existing binding.
        let matcher = match self.index {
            Index::Headers(_) => Some(Matcher::compile(&b.arguments)?),
            _ => None,
        };
        let exists = self
            .by_dest
            .get(&b.destination)
            .and_then(|by_key| by_key.get(b.routing_key.as_bytes()))
            .is_some_and(|same| {
                same.iter()
                    .any(|x| same_arguments(&x.arguments, &b.arguments))
            });
        if exists {
            return Ok(false);
        }
        match &mut self.index {
            Index::Direct(i) => i.add(&b.routing_key, &b.destination),
            Index::Fanout(i) => i.add(&b.destination),
            Index::Topic(i) => i.add(b.routing_key.as_bytes(), &b.destination),
            Index::Headers(i) => {
                // Compiled above; compiling again only satisfies the type.
                let m = match matcher {
                    Some(m) => m,
                    None => Matcher::compile(&b.arguments)?,
                };
                i.add(&b.destination, &b.arguments, m);
            }
        }
        self.by_dest
            .entry(b.destination.clone())
            .or_default()
            .entry(b.routing_key.clone())
            .or_default()
            .push(b);
        self.len += 1;
        Ok(true)
    }

    /// Removes a binding; false if absent. Arguments are compared as tables, so their
    /// order does not matter.
    pub fn unbind(&mut self, b: &Binding) -> bool {
        let Some(by_key) = self.by_dest.get_mut(&b.destination) else {
            return false;
        };
        let Some(same_key) = by_key.get_mut(b.routing_key.as_bytes()) else {
            return false;
        };
        let Some(i) = same_key
            .iter()
            .position(|x| same_arguments(&x.arguments, &b.arguments))
        else {
            return false;
        };
        let removed = same_key.swap_remove(i);
        if same_key.is_empty() {
            by_key.remove(b.routing_key.as_bytes());
            if by_key.is_empty() {
                self.by_dest.remove(&b.destination);
            }
        }
        self.unindex(&removed);
        self.len -= 1;
        true
    }

    /// Removes every binding to `dest` (the queue or exchange was deleted), returning
    /// them.
    pub fn remove_destination(&mut self, dest: &Destination) -> Vec<Binding> {
        let Some(by_key) = self.by_dest.remove(dest) else {
            return Vec::new();
        };
        let removed: Vec<Binding> = by_key.into_values().flatten().collect();
        for b in &removed {
            self.unindex(b);
        }
        self.len -= removed.len();
        removed
    }

    fn unindex(&mut self, b: &Binding) {
        match &mut self.index {
            Index::Direct(i) => i.remove(&b.routing_key, &b.destination),
            Index::Fanout(i) => i.remove(&b.destination),
            Index::Topic(i) => i.remove(b.routing_key.as_bytes(), &b.destination),
            Index::Headers(i) => i.remove(&b.destination, &b.arguments),
        }
    }

    /// Pushes each destination matching the message once (two bindings to one queue
    /// deliver one copy), in no particular order. Direct and topic tables look at the
    /// routing key only, headers tables at the headers only, fanout at neither.
    pub fn route(
        &self,
        routing_key: &[u8],
        headers: Option<&FieldTable>,
        out: &mut Vec<Destination>,
    ) {
        match &self.index {
            Index::Direct(i) => i.route(routing_key, out),
            Index::Fanout(i) => i.route(out),
            Index::Topic(i) => i.route(routing_key, out),
            Index::Headers(i) => i.route(headers, out),
        }
    }

    /// The number of bindings.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every binding, in no particular order.
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.by_dest
            .values()
            .flat_map(|by_key| by_key.values().flatten())
    }

    /// Whether any binding delivers to `dest`.
    pub fn has_destination(&self, dest: &Destination) -> bool {
        self.by_dest.contains_key(dest)
    }
}

/// Values (destinations, or ids standing for them) with the number of bindings behind
/// each, unique, so that routing can copy them out without deduplicating. Lists are
/// short (the queues bound with one key, or at one topic pattern), so a vector beats a
/// map.
#[derive(Debug, Clone)]
struct Counts<T>(Vec<(T, usize)>);

impl<T> Default for Counts<T> {
    fn default() -> Self {
        Counts(Vec::new())
    }
}

impl<T: PartialEq + Clone> Counts<T> {
    fn add(&mut self, v: &T) {
        match self.0.iter_mut().find(|(x, _)| x == v) {
            Some((_, n)) => *n += 1,
            None => self.0.push((v.clone(), 1)),
        }
    }

    /// Forgets one binding to `v`.
    fn remove(&mut self, v: &T) {
        if let Some(i) = self.0.iter().position(|(x, _)| x == v) {
            match self.0.get_mut(i) {
                Some((_, n)) if *n > 1 => *n -= 1,
                _ => {
                    self.0.swap_remove(i);
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|(v, _)| v)
    }
}

/// Small integer ids for the values in use, counted, and reused once released, so
/// that hot loops can work on ids (cheap to compare, sort and index by) instead of
/// names. The lowest free id is reused first, keeping ids dense.
#[derive(Debug, Clone)]
struct Interner<T> {
    ids: HashMap<T, (usize, usize)>,
    values: Vec<T>,
    free: BinaryHeap<Reverse<usize>>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            ids: HashMap::default(),
            values: Vec::new(),
            free: BinaryHeap::new(),
        }
    }
}

impl<T: Eq + Hash + Clone> Interner<T> {
    /// The id of `v`, counting one more user.
    fn intern(&mut self, v: &T) -> usize {
        if let Some((id, users)) = self.ids.get_mut(v) {
            *users += 1;
            return *id;
        }
        let id = match self.free.pop() {
            Some(Reverse(id)) if id < self.values.len() => {
                if let Some(slot) = self.values.get_mut(id) {
                    *slot = v.clone();
                }
                id
            }
            _ => {
                self.values.push(v.clone());
                self.values.len() - 1
            }
        };
        self.ids.insert(v.clone(), (id, 1));
        id
    }

    /// One user of `id` fewer; the id is freed with its last user.
    fn release(&mut self, id: usize) {
        let Some(v) = self.values.get(id) else {
            return;
        };
        if let Some((_, users)) = self.ids.get_mut(v) {
            *users -= 1;
            if *users == 0 {
                self.ids.remove(v);
                self.free.push(Reverse(id));
            }
        }
    }

    fn id<Q: Hash + Eq + ?Sized>(&self, q: &Q) -> Option<usize>
    where
        T: Borrow<Q>,
    {
        self.ids.get(q).map(|(id, _)| *id)
    }

    fn get(&self, id: usize) -> Option<&T> {
        self.values.get(id)
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FieldValue;
    use crate::protocol::arguments::values_identical;
    use crate::protocol::field_table::strategies;
    use proptest::prelude::*;

    pub(super) fn ss(s: &str) -> ShortString {
        ShortString::try_from(s).unwrap()
    }

    pub(super) fn q(name: &str) -> Destination {
        Destination::Queue(ss(name))
    }

    pub(super) fn binding(dest: Destination, key: &str, args: FieldTable) -> Binding {
        Binding {
            destination: dest,
            routing_key: ss(key),
            arguments: args,
        }
    }

    pub(super) fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::new();
        for (k, v) in entries {
            t.push(ss(k), v.clone());
        }
        t
    }

    pub(super) fn routed(
        t: &RoutingTable,
        key: &str,
        headers: Option<&FieldTable>,
    ) -> Vec<Destination> {
        let mut out = Vec::new();
        t.route(key.as_bytes(), headers, &mut out);
        out.sort();
        out
    }

    const KINDS: [ExchangeKind; 4] = [
        ExchangeKind::Direct,
        ExchangeKind::Fanout,
        ExchangeKind::Topic,
        ExchangeKind::Headers,
    ];

    #[test]
    fn kind_names_round_trip() {
        for k in KINDS {
            assert_eq!(ExchangeKind::from_name(k.name().as_bytes()), Some(k));
        }
        assert_eq!(ExchangeKind::from_name(b"Direct"), None);
        assert_eq!(ExchangeKind::from_name(b"x-consistent-hash"), None);
        assert_eq!(ExchangeKind::from_name(b""), None);
    }

    #[test]
    fn new_table_is_empty() {
        for k in KINDS {
            let t = RoutingTable::new(k);
            assert_eq!(t.kind(), k);
            assert!(t.is_empty());
            assert_eq!(t.len(), 0);
            assert_eq!(t.bindings().count(), 0);
            assert!(routed(&t, "", Some(&FieldTable::new())).is_empty());
        }
    }

    #[test]
    fn duplicate_bind_is_a_no_op_for_every_kind() {
        for k in KINDS {
            let mut t = RoutingTable::new(k);
            let b = binding(q("q"), "k", table(&[("a", 1i32.into()), ("b", "x".into())]));
            assert_eq!(t.bind(b.clone()), Ok(true), "{k:?}");
            assert_eq!(t.bind(b.clone()), Ok(false), "{k:?}");
            // The same table in another order is the same binding.
            let reordered = binding(q("q"), "k", table(&[("b", "x".into()), ("a", 1i32.into())]));
            assert_eq!(t.bind(reordered.clone()), Ok(false), "{k:?}");
            assert_eq!(t.len(), 1);
            assert!(t.unbind(&reordered), "{k:?}");
            assert!(!t.unbind(&b), "{k:?}");
            assert!(t.is_empty());
            assert!(!t.has_destination(&q("q")));
        }
    }

    #[test]
    fn argument_types_distinguish_bindings() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        let b32 = binding(q("q"), "k", table(&[("a", FieldValue::I32(1))]));
        let b64 = binding(q("q"), "k", table(&[("a", FieldValue::I64(1))]));
        assert_eq!(t.bind(b32.clone()), Ok(true));
        assert_eq!(t.bind(b64.clone()), Ok(true));
        assert_eq!(t.len(), 2);
        // Two bindings, one copy.
        assert_eq!(routed(&t, "k", None), [q("q")]);
        assert!(t.unbind(&b32));
        assert_eq!(routed(&t, "k", None), [q("q")]);
        assert!(t.unbind(&b64));
        assert!(routed(&t, "k", None).is_empty());
    }

    #[test]
    fn duplicate_keys_in_arguments_keep_their_order() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        let ab = binding(
            q("q"),
            "k",
            table(&[("a", 1i32.into()), ("a", 2i32.into())]),
        );
        let ba = binding(
            q("q"),
            "k",
            table(&[("a", 2i32.into()), ("a", 1i32.into())]),
        );
        assert_eq!(t.bind(ab.clone()), Ok(true));
        assert_eq!(t.bind(ba.clone()), Ok(true));
        assert_eq!(t.bind(ab), Ok(false));
    }

    #[test]
    fn nan_arguments_can_be_unbound() {
        let mut t = RoutingTable::new(ExchangeKind::Fanout);
        let b = binding(q("q"), "", table(&[("f", FieldValue::F64(f64::NAN))]));
        assert_eq!(t.bind(b.clone()), Ok(true));
        assert_eq!(t.bind(b.clone()), Ok(false));
        assert!(t.unbind(&b));
    }

    #[test]
    fn value_identity() {
        use FieldValue as V;
        assert!(values_identical(&V::F64(0.5), &V::F64(0.5)));
        assert!(!values_identical(&V::F64(0.0), &V::F64(-0.0)));
        assert!(!values_identical(&V::F32(0.5), &V::F64(0.5)));
        assert!(!values_identical(&V::U8(1), &V::I8(1)));
        assert!(!values_identical(
            &V::LongString("a".into()),
            &V::ByteArray("a".into())
        ));
        assert!(values_identical(
            &V::Array(vec![]),
            &V::Table(FieldTable::new())
        ));
        assert!(!values_identical(
            &V::Array(vec![V::Void]),
            &V::Table(table(&[("", V::Void)]))
        ));
        // Nested tables are not sorted by RabbitMQ: order matters inside.
        let ab = table(&[("a", V::Void), ("b", V::Void)]);
        let ba = table(&[("b", V::Void), ("a", V::Void)]);
        assert!(!values_identical(&V::Table(ab.clone()), &V::Table(ba)));
        assert!(values_identical(&V::Table(ab.clone()), &V::Table(ab)));
    }

    #[test]
    fn queue_and_exchange_of_one_name_are_different_destinations() {
        let mut t = RoutingTable::new(ExchangeKind::Direct);
        let x = Destination::Exchange(ss("d"));
        t.bind(binding(q("d"), "k", FieldTable::new())).unwrap();
        t.bind(binding(x.clone(), "k", FieldTable::new())).unwrap();
        assert_eq!(routed(&t, "k", None), [q("d"), x.clone()]);
        assert_eq!(x.name(), &ss("d"));
        assert_eq!(t.remove_destination(&q("d")).len(), 1);
        assert_eq!(routed(&t, "k", None), std::slice::from_ref(&x));
        assert!(t.has_destination(&x));
    }

    #[test]
    fn remove_destination_returns_its_bindings() {
        for k in KINDS {
            let mut t = RoutingTable::new(k);
            let b1 = binding(q("a"), "k1", FieldTable::new());
            let b2 = binding(q("a"), "k2", FieldTable::new());
            let b3 = binding(q("a"), "k2", table(&[("z", FieldValue::Void)]));
            let other = binding(q("b"), "k1", FieldTable::new());
            for b in [&b1, &b2, &b3, &other] {
                assert_eq!(t.bind(b.clone()), Ok(true));
            }
            assert_eq!(t.len(), 4);
            let mut removed = t.remove_destination(&q("a"));
            removed.sort_by(|x, y| x.routing_key.cmp(&y.routing_key));
            assert_eq!(removed.len(), 3, "{k:?}");
            assert_eq!(removed[0], b1);
            assert!(removed.contains(&b2) && removed.contains(&b3));
            assert_eq!(t.len(), 1);
            assert!(!t.has_destination(&q("a")));
            assert!(t.has_destination(&q("b")));
            assert_eq!(t.bindings().collect::<Vec<_>>(), [&other]);
            assert!(t.remove_destination(&q("a")).is_empty());
            // Nothing routes to the removed queue any more.
            for key in ["k1", "k2"] {
                let r = routed(&t, key, Some(&FieldTable::new()));
                assert!(!r.contains(&q("a")), "{k:?}");
            }
        }
    }

    #[test]
    fn route_appends_to_what_is_there() {
        let mut t = RoutingTable::new(ExchangeKind::Fanout);
        t.bind(binding(q("a"), "", FieldTable::new())).unwrap();
        let mut out = vec![q("a"), q("z")];
        t.route(b"", None, &mut out);
        // The caller's entries are left alone, duplicates included.
        assert_eq!(out, [q("a"), q("z"), q("a")]);
    }

    // --- a model of every kind, to check the indexes against -----------------------

    fn topic_words(s: &[u8]) -> Vec<&[u8]> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split(|&b| b == b'.').collect()
        }
    }

    /// Word-by-word recursive matcher: the definition, not the fast path.
    pub(super) fn topic_reference(pattern: &[&[u8]], key: &[&[u8]]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&b"#", rest)) => (0..=key.len()).any(|i| topic_reference(rest, &key[i..])),
            Some((p, rest)) => match key.split_first() {
                None => false,
                Some((k, key_rest)) => (*p == b"*" || p == k) && topic_reference(rest, key_rest),
            },
        }
    }

    pub(super) fn topic_matches(pattern: &[u8], key: &[u8]) -> bool {
        topic_reference(&topic_words(pattern), &topic_words(key))
    }

    /// A decoded value as RabbitMQ holds it in Erlang: widths of integers are gone,
    /// floats are doubles, strings and byte arrays are both binaries, arrays and tables
    /// are lists of typed tuples.
    #[derive(Debug, PartialEq)]
    enum Erl {
        Int(i128),
        Float(u64),
        Atom(&'static str),
        Bin(Vec<u8>),
        Decimal(u8, u32),
        List(Vec<(Option<ShortString>, u8, Erl)>),
    }

    fn erl(v: &FieldValue) -> Erl {
        use FieldValue as V;
        match v {
            V::Bool(b) => Erl::Atom(if *b { "true" } else { "false" }),
            V::Void => Erl::Atom("undefined"),
            V::Timestamp(t) => Erl::Int(i128::from(*t)),
            V::F32(f) => Erl::Float(f64::from(*f).to_bits()),
            V::F64(f) => Erl::Float(f.to_bits()),
            V::Decimal { scale, value } => Erl::Decimal(*scale, *value),
            V::LongString(b) | V::ByteArray(b) => Erl::Bin(b.to_vec()),
            V::Array(a) => Erl::List(a.iter().map(|x| (None, x.type_letter(), erl(x))).collect()),
            V::Table(t) => Erl::List(
                t.iter()
                    .map(|(k, x)| (Some(k.clone()), x.type_letter(), erl(x)))
                    .collect(),
            ),
            other => Erl::Int(other.as_i64().map(i128::from).unwrap_or_default()),
        }
    }

    /// RabbitMQ's headers matching, written the way its Erlang reads
    /// (`rabbit_exchange_type_headers:route/3`): the headers become a map (a later
    /// duplicate key replaces an earlier one), each argument is looked up and compared
    /// with `=:=`.
    fn headers_reference(args: &FieldTable, headers: Option<&FieldTable>) -> bool {
        let mode = match args.get("x-match") {
            Some(FieldValue::LongString(b)) => b.to_vec(),
            _ => b"all".to_vec(),
        };
        let with_x = mode.ends_with(b"-with-x");
        let any = mode.starts_with(b"any");
        let mut map: Vec<(&ShortString, &FieldValue)> = Vec::new();
        for (k, v) in headers.into_iter().flatten() {
            map.retain(|(mk, _)| *mk != k);
            map.push((k, v));
        }
        let mut results = args
            .iter()
            .filter(|(k, _)| {
                k.as_bytes() != b"x-match" && (with_x || !k.as_bytes().starts_with(b"x-"))
            })
            .map(|(k, p)| {
                let found = map.iter().find(|(mk, _)| *mk == k).map(|(_, v)| *v);
                match (p, found) {
                    (_, None) => false,
                    (FieldValue::Void, Some(_)) => true,
                    (p, Some(d)) => erl(p) == erl(d),
                }
            });
        if any {
            results.any(|r| r)
        } else {
            results.all(|r| r)
        }
    }

    fn model_route(
        kind: ExchangeKind,
        bindings: &[Binding],
        key: &[u8],
        headers: Option<&FieldTable>,
    ) -> Vec<Destination> {
        let mut out: Vec<Destination> = bindings
            .iter()
            .filter(|b| match kind {
                ExchangeKind::Direct => b.routing_key.as_bytes() == key,
                ExchangeKind::Fanout | ExchangeKind::FederationUpstream => true,
                ExchangeKind::Topic => topic_matches(b.routing_key.as_bytes(), key),
                ExchangeKind::Headers => headers_reference(&b.arguments, headers),
            })
            .map(|b| b.destination.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    #[derive(Debug, Clone)]
    enum Op {
        Bind(Binding),
        Unbind(Binding),
        RemoveDest(Destination),
    }

    fn small_key() -> impl Strategy<Value = ShortString> {
        proptest::collection::vec(
            proptest::sample::select(&["a", "b", "", "*", "#"][..]),
            0..4,
        )
        .prop_map(|w| ss(&w.join(".")))
    }

    fn dest() -> impl Strategy<Value = Destination> {
        prop_oneof![
            (0..4u8).prop_map(|i| q(&format!("q{i}"))),
            (0..2u8).prop_map(|i| Destination::Exchange(ss(&format!("q{i}")))),
        ]
    }

    fn small_value() -> impl Strategy<Value = FieldValue> {
        prop_oneof![
            Just(FieldValue::Void),
            (0..3i32).prop_map(FieldValue::I32),
            (0..3i64).prop_map(FieldValue::I64),
            (0..3u8).prop_map(FieldValue::U8),
            (0..3u64).prop_map(FieldValue::Timestamp),
            Just(FieldValue::F64(1.0)),
            Just(FieldValue::F32(1.0)),
            Just(FieldValue::Bool(true)),
            proptest::sample::select(&["x", "y"][..]).prop_map(FieldValue::from),
            Just(FieldValue::ByteArray(bytes::Bytes::from_static(b"x"))),
            Just(FieldValue::Array(vec![])),
            Just(FieldValue::Table(FieldTable::new())),
            Just(FieldValue::Array(vec![FieldValue::I32(1)])),
            Just(FieldValue::Array(vec![FieldValue::I64(1)])),
            Just(FieldValue::Table(table(&[("h1", FieldValue::I32(1))]))),
        ]
    }

    fn small_args() -> impl Strategy<Value = FieldTable> {
        let key = proptest::sample::select(&["h1", "h2", "x-h"][..]);
        let xmatch = prop_oneof![
            Just(None),
            Just(Some("all")),
            Just(Some("any")),
            Just(Some("all-with-x")),
            Just(Some("any-with-x")),
        ];
        (
            proptest::collection::vec((key, small_value()), 0..5),
            xmatch,
        )
            .prop_map(|(entries, xm)| {
                let mut t = FieldTable::new();
                if let Some(m) = xm {
                    t.push(ss("x-match"), m.into());
                }
                for (k, v) in entries {
                    t.push(ss(k), v);
                }
                t
            })
    }

    fn small_headers() -> impl Strategy<Value = Option<FieldTable>> {
        let key = proptest::sample::select(&["h1", "h2", "x-h", "other"][..]);
        proptest::option::of(
            proptest::collection::vec((key, small_value()), 0..4).prop_map(|entries| {
                let mut t = FieldTable::new();
                for (k, v) in entries {
                    t.push(ss(k), v);
                }
                t
            }),
        )
    }

    fn some_binding() -> impl Strategy<Value = Binding> {
        (dest(), small_key(), small_args()).prop_map(|(d, k, a)| Binding {
            destination: d,
            routing_key: k,
            arguments: a,
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => some_binding().prop_map(Op::Bind),
            2 => some_binding().prop_map(Op::Unbind),
            1 => dest().prop_map(Op::RemoveDest),
        ]
    }

    fn kind() -> impl Strategy<Value = ExchangeKind> {
        prop_oneof![
            Just(ExchangeKind::Direct),
            Just(ExchangeKind::Fanout),
            Just(ExchangeKind::Topic),
            Just(ExchangeKind::Headers),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Any sequence of binds and unbinds leaves the table agreeing with a list of
        /// bindings routed the slow way.
        #[test]
        fn table_agrees_with_model(
            kind in kind(),
            ops in proptest::collection::vec(op(), 0..40),
            probes in proptest::collection::vec((small_key(), small_headers()), 1..6),
        ) {
            let mut t = RoutingTable::new(kind);
            let mut model: Vec<Binding> = Vec::new();
            for op in ops {
                match op {
                    Op::Bind(b) => {
                        let exists = model.iter().any(|m| {
                            m.destination == b.destination
                                && m.routing_key == b.routing_key
                                && same_arguments(&m.arguments, &b.arguments)
                        });
                        let r = t.bind(b.clone());
                        // Generated x-match values are all valid.
                        prop_assert_eq!(r, Ok(!exists));
                        if !exists {
                            model.push(b);
                        }
                    }
                    Op::Unbind(b) => {
                        let pos = model.iter().position(|m| {
                            m.destination == b.destination
                                && m.routing_key == b.routing_key
                                && same_arguments(&m.arguments, &b.arguments)
                        });
                        prop_assert_eq!(t.unbind(&b), pos.is_some());
                        if let Some(i) = pos {
                            model.remove(i);
                        }
                    }
                    Op::RemoveDest(d) => {
                        let removed = t.remove_destination(&d);
                        let before = model.len();
                        model.retain(|m| m.destination != d);
                        prop_assert_eq!(removed.len(), before - model.len());
                        prop_assert!(removed.iter().all(|b| b.destination == d));
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert_eq!(t.is_empty(), model.is_empty());
            }
            prop_assert_eq!(t.bindings().count(), model.len());
            for b in t.bindings() {
                prop_assert!(model.iter().any(|m| m == b));
            }
            for (key, headers) in &probes {
                let mut got = Vec::new();
                t.route(key.as_bytes(), headers.as_ref(), &mut got);
                let unique = got.len();
                got.sort();
                got.dedup();
                prop_assert_eq!(unique, got.len(), "a destination was pushed twice");
                let want = model_route(kind, &model, key.as_bytes(), headers.as_ref());
                prop_assert_eq!(got, want, "key {:?} headers {:?}", key, headers);
            }
            for d in ["q0", "q1", "q2", "q3"].map(q) {
                prop_assert_eq!(t.has_destination(&d), model.iter().any(|m| m.destination == d));
            }
        }

        /// Nothing a client can send makes routing panic.
        #[test]
        fn route_never_panics(
            kind in kind(),
            bindings in proptest::collection::vec(
                (strategies::short_string(), strategies::field_table()), 0..8),
            key in proptest::collection::vec(any::<u8>(), 0..300),
            headers in proptest::option::of(strategies::field_table()),
        ) {
            let mut t = RoutingTable::new(kind);
            for (k, args) in bindings {
                let _ = t.bind(Binding { destination: q("q"), routing_key: k, arguments: args });
            }
            let mut out = Vec::new();
            t.route(&key, headers.as_ref(), &mut out);
            prop_assert!(out.len() <= 1);
        }
    }
}
