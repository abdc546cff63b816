//! Headers exchanges: a binding's arguments are a predicate on the message headers.
//!
//! Semantics are those of RabbitMQ 3.13 and 4.x (`rabbit_exchange_type_headers`,
//! `mc_amqpl:routing_headers/2`):
//!
//! - `x-match` is `all` (also when absent), `any`, `all-with-x` or `any-with-x`; any
//!   other value, or a value that is not a long string, is refused at bind time with
//!   RabbitMQ's message.
//! - The argument `x-match` never takes part. With `all`/`any` no argument whose key
//!   starts with `x-` does; with the `-with-x` forms they do.
//! - An argument of type void matches when the header is present, whatever its value.
//!   Otherwise the values must be equal as Erlang's `=:=` sees RabbitMQ's decoded
//!   form: integers by value whatever their width or signedness (`I32(1)` matches
//!   `I64(1)` and `U8(1)`), floats by value but never an integer (`F64(1.0)` does not
//!   match `I32(1)`), long strings and byte arrays by their bytes (both are Erlang
//!   binaries), arrays and tables exactly (element types included).
//! - `all` needs every argument to match, so an `all` binding without arguments
//!   matches every message, headers or not; `any` needs one, so an `any` binding
//!   without arguments matches nothing. A message without headers is one with none.
//! - The headers are read as a map: if a key is repeated, the last one counts.
//!
//! One deliberate difference: RabbitMQ 4.x scales a timestamp header to milliseconds
//! before comparing (`routing_value(timestamp, V) -> V * 1000`), so a timestamp
//! argument can never match the same timestamp in a header. Here a timestamp compares
//! as its integer value, as in RabbitMQ 3.13.
//!
//! Routing costs what the message's headers reach, not what the exchange holds. Each
//! binding is compiled at bind time into typed expectations on interned key ids (an
//! entry repeated exactly is kept once) and listed in buckets, keyed by a header key
//! and the value expected of it (by the key alone for void arguments; arrays and
//! tables by a hash of their contents). An `any` binding is listed under each of its entries; an `all` binding
//! under one, the least used at bind time, since a message without that entry cannot
//! match it; `all` bindings without arguments are tested for every message. Routing
//! resolves each header with one hash lookup (the last of a repeated key wins), tests
//! only the bindings in the buckets its headers reach, and deduplicates the matches by
//! destination id. So unrelated bindings and keys cost nothing per message, and a huge
//! binding costs only the messages that reach it; there is no limit on keys per
//! binding.

use std::fmt::Write;
use std::hash::{Hash, Hasher};

use bytes::Bytes;

use super::{Destination, Interner};
use crate::broker::hash::HashMap;
use crate::protocol::arguments::{same_arguments, values_identical};
use crate::protocol::{FieldTable, FieldValue, ShortString};

#[derive(Debug, Clone, Default)]
pub(super) struct HeadersIndex {
    /// Ids for the argument keys in use, so that each message header is resolved with
    /// one hash lookup and bindings find their headers by id.
    keys: Interner<ShortString>,
    /// Ids for the destinations, so that matches are deduplicated by sorting numbers.
    dests: Interner<Destination>,
    /// The bindings by id; a removed binding leaves a hole that the next one reuses.
    bindings: Vec<Option<Compiled>>,
    holes: Vec<usize>,
    /// Each destination's bindings, to find one on unbind.
    by_dest: HashMap<Destination, Vec<usize>>,
    /// `all` bindings without arguments: they match every message.
    always: Vec<Slot>,
    /// The bindings a message header can lead to: every entry of an `any` binding, and
    /// one entry of each `all` binding (an `all` binding matches only messages having
    /// all its entries, so any one of them finds it), each under its key and, when it
    /// expects a value, that value.
    buckets: HashMap<Bucket, Vec<Slot>>,
}

/// A binding listed in `always` or a bucket: its id, and which of its places put it
/// there (for an `any` binding, also the index of the entry).
#[derive(Debug, Clone, Copy)]
struct Slot {
    binding: usize,
    place: usize,
}

/// Where a binding is listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Place {
    Always,
    Bucket(Bucket),
}

/// A header key, with the value a header needs to satisfy the entries listed here, or
/// `None` for entries that do not expect a plain value (void, arrays and tables).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bucket {
    key: usize,
    value: Option<Probe>,
}

/// A binding compiled for matching: its argument keys are replaced by small ids.
#[derive(Debug, Clone)]
struct Compiled {
    dest: usize,
    any: bool,
    entries: Box<[(usize, Expect)]>,
    /// The arguments as bound, to find the binding on unbind.
    args: FieldTable,
    /// Where the binding is listed, with its position in that list (kept up to date
    /// when another binding's removal moves it).
    places: Vec<(Place, usize)>,
}

impl HeadersIndex {
    pub(super) fn add(&mut self, dest: &Destination, args: &FieldTable, m: Matcher) {
        let entries: Box<[(usize, Expect)]> = m
            .entries
            .into_iter()
            .map(|(k, e)| (self.keys.intern(&k), e))
            .collect();
        let places: Vec<Place> = if m.any {
            entries
                .iter()
                .map(|(k, e)| Place::Bucket(e.bucket(*k)))
                .collect()
        } else {
            // The least used of the binding's buckets, so that a common entry (say,
            // `format=json` on every binding) does not make every message test them all.
            let rarest = entries.iter().map(|(k, e)| e.bucket(*k)).min_by_key(|b| {
                let used = self.buckets.get(b).map_or(0, Vec::len);
                (used, b.value.is_none())
            });
            vec![rarest.map_or(Place::Always, Place::Bucket)]
        };
        let id = self.holes.pop().unwrap_or(self.bindings.len());
        let mut listed = Vec::with_capacity(places.len());
        for (i, place) in places.into_iter().enumerate() {
            let list = match &place {
                Place::Always => &mut self.always,
                Place::Bucket(b) => self.buckets.entry(b.clone()).or_default(),
            };
            list.push(Slot {
                binding: id,
                place: i,
            });
            listed.push((place, list.len() - 1));
        }
        let compiled = Compiled {
            dest: self.dests.intern(dest),
            any: m.any,
            entries,
            args: args.clone(),
            places: listed,
        };
        match self.bindings.get_mut(id) {
            Some(hole) => *hole = Some(compiled),
            None => self.bindings.push(Some(compiled)),
        }
        self.by_dest.entry(dest.clone()).or_default().push(id);
    }

    /// Forgets one binding of `dest` with these arguments.
    pub(super) fn remove(&mut self, dest: &Destination, args: &FieldTable) {
        let Some(ids) = self.by_dest.get_mut(dest) else {
            return;
        };
        let bindings = &self.bindings;
        let Some(pos) = ids.iter().position(|&id| {
            bindings
                .get(id)
                .and_then(Option::as_ref)
                .is_some_and(|b| same_arguments(&b.args, args))
        }) else {
            return;
        };
        let id = ids.swap_remove(pos);
        if ids.is_empty() {
            self.by_dest.remove(dest);
        }
        let Some(b) = self.bindings.get_mut(id).and_then(Option::take) else {
            return;
        };
        self.holes.push(id);
        for (place, at) in &b.places {
            self.unlist(place, *at);
        }
        for (k, _) in b.entries.iter() {
            self.keys.release(*k);
        }
        self.dests.release(b.dest);
    }

    /// Takes the slot at `at` out of a list, telling the binding moved into its place.
    fn unlist(&mut self, place: &Place, at: usize) {
        let list = match place {
            Place::Always => &mut self.always,
            Place::Bucket(b) => match self.buckets.get_mut(b) {
                Some(list) => list,
                None => return,
            },
        };
        if at >= list.len() {
            return;
        }
        list.swap_remove(at);
        if let Some(moved) = list.get(at)
            && let Some(Some(m)) = self.bindings.get_mut(moved.binding)
            && let Some(p) = m.places.get_mut(moved.place)
        {
            p.1 = at;
        }
        if list.is_empty()
            && let Place::Bucket(b) = place
        {
            self.buckets.remove(b);
        }
    }

    pub(super) fn route(&self, headers: Option<&FieldTable>, out: &mut Vec<Destination>) {
        self.route_counting(headers, out);
    }

    /// Routes, returning how many bindings were tested: those without arguments and
    /// those a header of the message leads to, never the others.
    fn route_counting(&self, headers: Option<&FieldTable>, out: &mut Vec<Destination>) -> usize {
        let mut hits: Vec<usize> = self
            .always
            .iter()
            .filter_map(|s| self.binding(s.binding).map(|b| b.dest))
            .collect();
        let mut tested = hits.len();
        // The headers with a key some binding tests, by key id; the last of repeated
        // keys wins, as in the map RabbitMQ builds from the headers.
        let mut resolved: Vec<(usize, &FieldValue)> = headers
            .filter(|_| !self.keys.is_empty())
            .into_iter()
            .flat_map(|h| h.iter())
            .filter_map(|(k, v)| Some((self.keys.id(k.as_bytes())?, v)))
            .collect();
        resolved.reverse();
        // Stable: among equal ids, the last header stays first, and dedup keeps it.
        resolved.sort_by_key(|(id, _)| *id);
        resolved.dedup_by_key(|(id, _)| *id);
        let header = |id: usize| -> Option<&FieldValue> {
            let i = resolved.binary_search_by_key(&id, |(k, _)| *k).ok()?;
            resolved.get(i).map(|(_, v)| *v)
        };
        for &(key, v) in &resolved {
            let keyed = Bucket { key, value: None };
            let valued = Probe::of(v).map(|p| Bucket {
                key,
                value: Some(p),
            });
            for bucket in std::iter::once(keyed).chain(valued) {
                for s in self.buckets.get(&bucket).into_iter().flatten() {
                    let Some(b) = self.binding(s.binding) else {
                        continue;
                    };
                    tested += 1;
                    let matched = if b.any {
                        // Reached through this entry, which only has to match.
                        b.entries.get(s.place).is_some_and(|(_, e)| e.matches(v))
                    } else {
                        b.entries
                            .iter()
                            .all(|(k, e)| header(*k).is_some_and(|h| e.matches(h)))
                    };
                    if matched {
                        hits.push(b.dest);
                    }
                }
            }
        }
        hits.sort_unstable();
        hits.dedup();
        out.extend(hits.iter().filter_map(|&d| self.dests.get(d).cloned()));
        tested
    }

    fn binding(&self, id: usize) -> Option<&Compiled> {
        self.bindings.get(id).and_then(Option::as_ref)
    }
}

/// A binding's arguments compiled for matching.
#[derive(Debug, Clone)]
pub(super) struct Matcher {
    /// `any`/`any-with-x` rather than `all`/`all-with-x`.
    any: bool,
    /// The arguments that take part, in their order, each once.
    entries: Vec<(ShortString, Expect)>,
}

/// What a header must be, in the form cheapest to compare against.
#[derive(Debug, Clone)]
enum Expect {
    /// A void argument: the header only has to be there.
    Present,
    /// A value that has a [`Probe`]: the header's probe must be equal.
    Value(Probe),
    /// An array or table, compared exactly, with its [`Probe::List`] hash.
    List(FieldValue, u64),
}

/// A header value as RabbitMQ compares it, for the types whose equality is a hash key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Probe {
    /// Any integer type, timestamps included (i128 holds every u64 timestamp).
    Int(i128),
    /// `f32` or `f64`, as the bits of the `f64` (Erlang has one float type, and
    /// compares floats with `=:=` bit for bit: -0.0 is not 0.0 since OTP 27).
    Float(u64),
    Bool(bool),
    /// Long string or byte array (both are Erlang binaries).
    Bin(Bytes),
    Decimal {
        scale: u8,
        value: u32,
    },
    /// An array or table, by a hash of what [`values_identical`] compares (identical
    /// values hash alike), only to find its bucket: [`Expect::List`] then compares
    /// exactly.
    List(u64),
}

impl Probe {
    /// `None` for void.
    fn of(v: &FieldValue) -> Option<Probe> {
        use FieldValue as V;
        Some(match v {
            V::Void => return None,
            V::Array(_) | V::Table(_) => Probe::List(list_hash(v)),
            V::Bool(b) => Probe::Bool(*b),
            V::F32(_) | V::F64(_) => Probe::Float(float_bits(v)?),
            V::Decimal { scale, value } => Probe::Decimal {
                scale: *scale,
                value: *value,
            },
            V::LongString(b) | V::ByteArray(b) => Probe::Bin(b.clone()),
            _ => Probe::Int(int_value(v)?),
        })
    }

    /// `Probe::of(v) == Some(self)`, without building the probe.
    fn is(&self, v: &FieldValue) -> bool {
        match self {
            Probe::Int(i) => int_value(v) == Some(*i),
            Probe::Float(bits) => float_bits(v) == Some(*bits),
            Probe::Bool(b) => v.as_bool() == Some(*b),
            Probe::Bin(b) => v.as_bytes() == Some(&b[..]),
            Probe::Decimal { scale, value } => {
                matches!(v, FieldValue::Decimal { scale: s, value: x } if s == scale && x == value)
            }
            // Never an expectation of its own: lists are compared by `Expect::List`.
            Probe::List(_) => false,
        }
    }
}

/// A hash of an array or table under [`values_identical`]: the type letters and values
/// of the elements, table keys in order, an empty array as an empty table.
fn list_hash(v: &FieldValue) -> u64 {
    fn feed(v: &FieldValue, h: &mut impl Hasher) {
        match v {
            FieldValue::Array(items) if !items.is_empty() => {
                h.write_u8(b'A');
                h.write_usize(items.len());
                for x in items {
                    feed(x, h);
                }
            }
            FieldValue::Array(_) | FieldValue::Table(_) => {
                let t = v.as_table();
                h.write_u8(b'F');
                h.write_usize(t.map_or(0, FieldTable::len));
                for (k, x) in t.into_iter().flat_map(FieldTable::iter) {
                    h.write(k.as_bytes());
                    feed(x, h);
                }
            }
            other => {
                h.write_u8(other.type_letter());
                Probe::of(other).hash(h);
            }
        }
    }
    let mut h = std::hash::DefaultHasher::new();
    feed(v, &mut h);
    h.finish()
}

impl Expect {
    fn of(v: &FieldValue) -> Expect {
        match v {
            FieldValue::Void => Expect::Present,
            FieldValue::Array(_) | FieldValue::Table(_) => Expect::List(v.clone(), list_hash(v)),
            _ => Probe::of(v).map_or(Expect::Present, Expect::Value),
        }
    }

    fn matches(&self, v: &FieldValue) -> bool {
        match self {
            Expect::Present => true,
            Expect::Value(p) => p.is(v),
            Expect::List(p, _) => values_identical(p, v),
        }
    }

    /// Where an entry with this expectation on key `key` is listed: a header reaches
    /// it only if it has that key and, unless void is expected, that value's probe.
    fn bucket(&self, key: usize) -> Bucket {
        Bucket {
            key,
            value: match self {
                Expect::Present => None,
                Expect::Value(p) => Some(p.clone()),
                Expect::List(_, h) => Some(Probe::List(*h)),
            },
        }
    }
}

/// An integer of any width, as Erlang sees it.
fn int_value(v: &FieldValue) -> Option<i128> {
    match v {
        FieldValue::Timestamp(t) => Some(i128::from(*t)),
        _ => v.as_i64().map(i128::from),
    }
}

fn float_bits(v: &FieldValue) -> Option<u64> {
    match v {
        FieldValue::F32(f) => Some(f64::from(*f).to_bits()),
        FieldValue::F64(f) => Some(f.to_bits()),
        _ => None,
    }
}

impl Matcher {
    /// Compiles a binding's arguments, refusing an invalid `x-match` with the message
    /// RabbitMQ's `validate_binding/2` gives (it formats values with `~tp`).
    pub(super) fn compile(args: &FieldTable) -> Result<Matcher, String> {
        let (any, with_x) = match args.get("x-match") {
            None => (false, false),
            Some(FieldValue::LongString(b)) => match &b[..] {
                b"all" => (false, false),
                b"any" => (true, false),
                b"all-with-x" => (false, true),
                b"any-with-x" => (true, true),
                other => {
                    return Err(format!(
                        "Invalid x-match field value {}; expected all, any, all-with-x, or any-with-x",
                        erl_binary(other)
                    ));
                }
            },
            Some(v) => {
                return Err(format!(
                    "Invalid x-match field type {} (value {}); expected longstr",
                    erl_type(v),
                    erl_term(v)
                ));
            }
        };
        let mut seen: HashMap<(ShortString, Option<Probe>), ()> = HashMap::default();
        // Lists with one hash may still differ, so each is compared with those kept.
        let mut lists: HashMap<(ShortString, u64), Vec<FieldValue>> = HashMap::default();
        let entries = args
            .iter()
            .filter(|(k, _)| {
                let k = k.as_bytes();
                k != b"x-match" && (with_x || !k.starts_with(b"x-"))
            })
            .map(|(k, v)| (k.clone(), Expect::of(v)))
            // An entry repeated exactly is kept once (all or any of several equal
            // tests is that test), so that repeating one costs nothing at routing.
            .filter(|(k, e)| match e {
                Expect::List(v, h) => {
                    let kept = lists.entry((k.clone(), *h)).or_default();
                    let new = !kept.iter().any(|x| values_identical(x, v));
                    if new {
                        kept.push(v.clone());
                    }
                    new
                }
                Expect::Present => seen.insert((k.clone(), None), ()).is_none(),
                Expect::Value(p) => seen.insert((k.clone(), Some(p.clone())), ()).is_none(),
            })
            .collect();
        Ok(Matcher { any, entries })
    }
}

/// RabbitMQ's name for a value's type, as in its error messages.
fn erl_type(v: &FieldValue) -> &'static str {
    use FieldValue as V;
    match v {
        V::Bool(_) => "bool",
        V::I8(_) => "byte",
        V::U8(_) => "unsignedbyte",
        V::I16(_) => "short",
        V::U16(_) => "unsignedshort",
        V::I32(_) => "signedint",
        V::U32(_) => "unsignedint",
        V::I64(_) => "long",
        V::F32(_) => "float",
        V::F64(_) => "double",
        V::Decimal { .. } => "decimal",
        V::LongString(_) => "longstr",
        V::ByteArray(_) => "binary",
        V::Array(_) => "array",
        V::Timestamp(_) => "timestamp",
        V::Table(_) => "table",
        V::Void => "void",
    }
}

/// A value printed as Erlang's `~tp` prints RabbitMQ's decoded form (close enough for
/// an error message: floats use Rust's shortest form, and long terms are not wrapped).
fn erl_term(v: &FieldValue) -> String {
    let mut s = String::new();
    write_term(&mut s, v);
    s
}

fn write_term(s: &mut String, v: &FieldValue) {
    use FieldValue as V;
    match v {
        V::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        V::Void => s.push_str("undefined"),
        V::F32(_) | V::F64(_) => {
            let f = f64::from_bits(float_bits(v).unwrap_or_default());
            let text = format!("{f:?}");
            // Erlang always writes a fraction: 1.0e20, not 1e20.
            match text.split_once('e') {
                Some((m, e)) if !m.contains('.') => {
                    let _ = write!(s, "{m}.0e{e}");
                }
                _ => s.push_str(&text),
            }
        }
        V::Decimal { scale, value } => {
            let _ = write!(s, "{{{scale},{value}}}");
        }
        V::LongString(b) | V::ByteArray(b) => s.push_str(&erl_binary(b)),
        V::Array(items) => {
            s.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{{{},", erl_type(x));
                write_term(s, x);
                s.push('}');
            }
            s.push(']');
        }
        V::Table(t) => {
            s.push('[');
            for (i, (k, x)) in t.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{{{},{},", erl_binary(k.as_bytes()), erl_type(x));
                write_term(s, x);
                s.push('}');
            }
            s.push(']');
        }
        _ => {
            let _ = write!(s, "{}", int_value(v).unwrap_or_default());
        }
    }
}

/// A binary as `~tp` prints it: `<<"text">>` when it is printable UTF-8, else its
/// octets, `<<1,2,3>>`.
fn erl_binary(b: &[u8]) -> String {
    let printable = |c: char| {
        matches!(
            c,
            ' '..='~' | '\n' | '\r' | '\t' | '\x0b' | '\x08' | '\x0c' | '\x1b'
        ) || u32::from(c) >= 0xa0
    };
    match std::str::from_utf8(b) {
        Ok("") => "<<>>".to_owned(),
        Ok(text) if text.chars().all(printable) => {
            let mut s = String::from("<<\"");
            for c in text.chars() {
                match c {
                    '"' => s.push_str("\\\""),
                    '\\' => s.push_str("\\\\"),
                    '\n' => s.push_str("\\n"),
                    '\r' => s.push_str("\\r"),
                    '\t' => s.push_str("\\t"),
                    '\x0b' => s.push_str("\\v"),
                    '\x08' => s.push_str("\\b"),
                    '\x0c' => s.push_str("\\f"),
                    '\x1b' => s.push_str("\\e"),
                    c => s.push(c),
                }
            }
            s.push_str("\">>");
            s
        }
        _ => {
            let octets: Vec<String> = b.iter().map(u8::to_string).collect();
            format!("<<{}>>", octets.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{binding, q, routed, table};
    use super::super::{ExchangeKind, RoutingTable};
    use super::*;
    use FieldValue as V;

    /// Whether a binding with `args` takes a message with `headers`.
    fn matches(args: &[(&str, V)], headers: Option<&[(&str, V)]>) -> bool {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        assert_eq!(t.bind(binding(q("q"), "", table(args))), Ok(true));
        let h = headers.map(table);
        !routed(&t, "", h.as_ref()).is_empty()
    }

    fn s(text: &str) -> V {
        V::from(text)
    }

    #[test]
    fn all_needs_every_argument() {
        let args = [("a", s("1")), ("b", s("2"))];
        assert!(matches(&args, Some(&[("a", s("1")), ("b", s("2"))])));
        assert!(matches(
            &args,
            Some(&[("b", s("2")), ("c", s("3")), ("a", s("1"))])
        ));
        assert!(!matches(&args, Some(&[("a", s("1"))])));
        assert!(!matches(&args, Some(&[("a", s("1")), ("b", s("3"))])));
        assert!(!matches(&args, None));
        // x-match all is the default.
        let explicit = [("x-match", s("all")), ("a", s("1")), ("b", s("2"))];
        assert!(matches(&explicit, Some(&[("a", s("1")), ("b", s("2"))])));
        assert!(!matches(&explicit, Some(&[("a", s("1"))])));
    }

    #[test]
    fn any_needs_one_argument() {
        let args = [("x-match", s("any")), ("a", s("1")), ("b", s("2"))];
        assert!(matches(&args, Some(&[("a", s("1"))])));
        assert!(matches(&args, Some(&[("a", s("0")), ("b", s("2"))])));
        assert!(!matches(&args, Some(&[("a", s("0")), ("c", s("1"))])));
        assert!(!matches(&args, Some(&[])));
        assert!(!matches(&args, None));
    }

    #[test]
    fn bindings_without_arguments() {
        // all of nothing is true, for every message; any of nothing is false.
        assert!(matches(&[], None));
        assert!(matches(&[], Some(&[("a", s("1"))])));
        assert!(matches(&[("x-match", s("all"))], None));
        assert!(!matches(&[("x-match", s("any"))], None));
        assert!(!matches(&[("x-match", s("any"))], Some(&[("a", s("1"))])));
        // x- arguments do not count for all/any, so these have no arguments either.
        assert!(matches(&[("x-foo", s("1"))], None));
        assert!(!matches(
            &[("x-match", s("any")), ("x-foo", s("1"))],
            Some(&[("x-foo", s("1"))])
        ));
    }

    #[test]
    fn x_arguments_count_only_with_x() {
        let all = [("x-match", s("all")), ("x-k", s("1")), ("a", s("1"))];
        assert!(matches(&all, Some(&[("a", s("1"))])));
        let all_x = [("x-match", s("all-with-x")), ("x-k", s("1")), ("a", s("1"))];
        assert!(!matches(&all_x, Some(&[("a", s("1"))])));
        assert!(matches(&all_x, Some(&[("a", s("1")), ("x-k", s("1"))])));
        let any_x = [("x-match", s("any-with-x")), ("x-k", s("1"))];
        assert!(matches(&any_x, Some(&[("x-k", s("1"))])));
        assert!(!matches(&any_x, Some(&[("x-k", s("2"))])));
        // x-match itself is never compared, even with -with-x.
        assert!(matches(&[("x-match", s("all-with-x"))], None));
        assert!(!matches(
            &[("x-match", s("any-with-x"))],
            Some(&[("x-match", s("any-with-x"))])
        ));
        // Header keys starting with x- are ordinary keys for a plain argument.
        assert!(matches(
            &[("a", s("1"))],
            Some(&[("x-a", s("0")), ("a", s("1"))])
        ));
    }

    #[test]
    fn void_means_present() {
        let args = [("a", V::Void)];
        assert!(matches(&args, Some(&[("a", s("anything"))])));
        assert!(matches(&args, Some(&[("a", V::Void)])));
        assert!(matches(&args, Some(&[("a", V::Table(FieldTable::new()))])));
        assert!(!matches(&args, Some(&[("b", s("1"))])));
        assert!(!matches(&args, None));
        // A void header does not match a value.
        assert!(!matches(&[("a", s(""))], Some(&[("a", V::Void)])));
    }

    #[test]
    fn values_compare_like_erlang() {
        let one = |v: V, h: V| matches(&[("k", v)], Some(&[("k", h)]));
        // Integers: width and sign do not matter, the value does.
        assert!(one(V::I32(1), V::I64(1)));
        assert!(one(V::U8(1), V::I16(1)));
        assert!(one(V::U32(u32::MAX), V::I64(i64::from(u32::MAX))));
        assert!(one(V::I8(-1), V::I64(-1)));
        assert!(!one(V::I8(-1), V::U8(255)));
        assert!(one(V::Timestamp(5), V::I32(5)));
        assert!(one(V::Timestamp(u64::MAX), V::Timestamp(u64::MAX)));
        assert!(!one(V::Timestamp(u64::MAX), V::I64(-1)));
        // Floats are not integers; f32 and f64 are one float type.
        assert!(!one(V::F64(1.0), V::I32(1)));
        assert!(!one(V::I32(1), V::F64(1.0)));
        assert!(one(V::F32(0.5), V::F64(0.5)));
        assert!(!one(V::F64(0.0), V::F64(-0.0)));
        assert!(!one(V::F64(f64::NAN), V::I32(0)));
        // Booleans are atoms, not numbers.
        assert!(one(V::Bool(true), V::Bool(true)));
        assert!(!one(V::Bool(true), V::I8(1)));
        assert!(!one(V::Bool(false), V::Bool(true)));
        // Strings and byte arrays are both binaries.
        assert!(one(s("abc"), V::ByteArray(Bytes::from_static(b"abc"))));
        assert!(!one(s("abc"), s("abd")));
        assert!(!one(s("1"), V::I32(1)));
        assert!(one(
            V::Decimal {
                scale: 2,
                value: 150
            },
            V::Decimal {
                scale: 2,
                value: 150
            }
        ));
        assert!(!one(
            V::Decimal {
                scale: 1,
                value: 15
            },
            V::Decimal {
                scale: 2,
                value: 150
            }
        ));
        // Arrays and tables: element types count.
        assert!(one(V::Array(vec![V::I32(1)]), V::Array(vec![V::I32(1)])));
        assert!(!one(V::Array(vec![V::I32(1)]), V::Array(vec![V::I64(1)])));
        assert!(!one(V::Array(vec![V::I32(1)]), V::I32(1)));
        let t = table(&[("a", V::I32(1))]);
        assert!(one(V::Table(t.clone()), V::Table(t)));
        // Both decode to [] in RabbitMQ.
        assert!(one(V::Array(vec![]), V::Table(FieldTable::new())));
    }

    #[test]
    fn repeated_header_keys_last_wins() {
        let headers = [("a", s("1")), ("a", s("2"))];
        assert!(matches(&[("a", s("2"))], Some(&headers)));
        assert!(!matches(&[("a", s("1"))], Some(&headers)));
        // Repeated argument keys are each checked.
        let twice = [("a", s("1")), ("a", s("2"))];
        assert!(!matches(&twice, Some(&[("a", s("1"))])));
        let any_twice = [("x-match", s("any")), ("a", s("1")), ("a", s("2"))];
        assert!(matches(&any_twice, Some(&[("a", s("1"))])));
    }

    #[test]
    fn routing_key_is_ignored() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        t.bind(binding(q("q"), "some.key", table(&[("a", s("1"))])))
            .unwrap();
        let h = table(&[("a", s("1"))]);
        assert_eq!(routed(&t, "", Some(&h)), [q("q")]);
        assert_eq!(routed(&t, "other", Some(&h)), [q("q")]);
    }

    #[test]
    fn one_copy_per_destination() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        let b1 = binding(q("q"), "", table(&[("a", s("1"))]));
        let b2 = binding(q("q"), "", table(&[("b", s("2"))]));
        let b3 = binding(q("r"), "", table(&[("x-match", s("any")), ("a", s("1"))]));
        for b in [&b1, &b2, &b3] {
            assert_eq!(t.bind(b.clone()), Ok(true));
        }
        let h = table(&[("a", s("1")), ("b", s("2"))]);
        assert_eq!(routed(&t, "", Some(&h)), [q("q"), q("r")]);
        assert!(t.unbind(&b1));
        assert_eq!(routed(&t, "", Some(&h)), [q("q"), q("r")]);
        assert_eq!(routed(&t, "", Some(&table(&[("a", s("1"))]))), [q("r")]);
        assert!(t.unbind(&b2));
        assert_eq!(routed(&t, "", Some(&h)), [q("r")]);
        // The group of "r" moved; it must still be found.
        assert!(t.unbind(&b3));
        assert!(routed(&t, "", Some(&h)).is_empty());
        assert!(t.is_empty());
    }

    fn index(t: &RoutingTable) -> &HeadersIndex {
        match &t.index {
            super::super::Index::Headers(i) => i,
            _ => unreachable!("a headers table"),
        }
    }

    #[test]
    fn many_distinct_keys() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        let n = 200;
        let bindings: Vec<_> = (0..n)
            .map(|i| {
                let key = format!("k{i}");
                binding(q(&key), "", table(&[(&key, V::I32(i as i32))]))
            })
            .collect();
        for b in &bindings {
            assert_eq!(t.bind(b.clone()), Ok(true));
        }
        for i in [0, 63, 64, n - 1] {
            let key = format!("k{i}");
            // Repeated: the last one counts.
            let h = table(&[
                (&key, V::I32(-1)),
                (&key, V::I64(i as i64)),
                ("k1", V::Void),
            ]);
            assert_eq!(routed(&t, "", Some(&h)), [q(&key)], "{i}");
        }
        assert_eq!(index(&t).keys.live(), n);
        for b in &bindings {
            assert!(t.unbind(b));
        }
        assert_eq!(index(&t).keys.live(), 0, "key ids are released");
        assert!(index(&t).buckets.is_empty(), "empty buckets are dropped");
        t.bind(binding(q("z"), "", table(&[("new", V::Void)])))
            .unwrap();
        assert_eq!(
            routed(&t, "", Some(&table(&[("new", V::Bool(true))]))),
            [q("z")]
        );
    }

    /// How many bindings routing `headers` tests.
    fn tested(t: &RoutingTable, headers: &FieldTable) -> usize {
        index(t).route_counting(Some(headers), &mut Vec::new())
    }

    #[test]
    fn routing_tests_only_the_bindings_its_headers_lead_to() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        let related = [
            binding(q("json"), "", table(&[("format", s("json"))])),
            binding(
                q("eu"),
                "",
                table(&[
                    ("x-match", s("any")),
                    ("region", s("eu")),
                    ("zone", V::I8(1)),
                ]),
            ),
            binding(q("every"), "", FieldTable::new()),
        ];
        for b in &related {
            t.bind(b.clone()).unwrap();
        }
        let h = table(&[
            ("format", s("json")),
            ("region", s("eu")),
            ("trace", s("abc")),
        ]);
        let want = [q("eu"), q("every"), q("json")];
        assert_eq!(routed(&t, "", Some(&h)), want);
        let alone = tested(&t, &h);
        assert_eq!(alone, 3);
        for i in 0..2_000 {
            let key = format!("k{i}");
            // Keys the message does not have, and values of its keys it does not have.
            let unrelated = [
                table(&[(&key, V::I32(i))]),
                table(&[("x-match", s("any")), (&key, V::Void), ("zone", V::I32(i))]),
                table(&[("format", s(&format!("xml{i}"))), ("region", s("eu"))]),
                table(&[("x-match", s("any")), ("region", s(&key))]),
                table(&[("region", V::Array(vec![V::I32(i)])), ("zone", V::Void)]),
                table(&[("x-match", s("any")), ("region", V::Array(vec![s(&key)]))]),
            ];
            for args in unrelated {
                t.bind(binding(q(&key), "", args)).unwrap();
            }
        }
        let hostile: Vec<(String, V)> = (0..25_000).map(|i| (format!("h{i}"), V::I32(i))).collect();
        let hostile: Vec<(&str, V)> = hostile
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        t.bind(binding(q("hostile"), "", table(&hostile))).unwrap();
        let mut any_hostile = vec![("x-match", s("any"))];
        any_hostile.extend(hostile.iter().cloned());
        t.bind(binding(q("hostile"), "", table(&any_hostile)))
            .unwrap();
        assert_eq!(routed(&t, "", Some(&h)), want);
        assert_eq!(tested(&t, &h), alone, "unrelated bindings are not tested");
        // A binding repeating one entry is tested once.
        let mut repeated = vec![("x-match", s("any"))];
        repeated.extend(std::iter::repeat_n(("trace", s("abc")), 1_000));
        t.bind(binding(q("trace"), "", table(&repeated))).unwrap();
        assert_eq!(tested(&t, &h), alone + 1);
        assert_eq!(
            routed(&t, "", Some(&h)),
            [q("eu"), q("every"), q("json"), q("trace")]
        );
    }

    #[test]
    fn invalid_x_match_is_refused_with_rabbitmq_s_message() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        let bad = |v: V| binding(q("q"), "", table(&[("x-match", v), ("a", s("1"))]));
        assert_eq!(
            t.bind(bad(s("some"))),
            Err(
                "Invalid x-match field value <<\"some\">>; expected all, any, all-with-x, \
                 or any-with-x"
                    .to_owned()
            )
        );
        // Case-sensitive, as in RabbitMQ.
        assert!(t.bind(bad(s("ALL"))).is_err());
        assert_eq!(
            t.bind(bad(V::ByteArray(Bytes::from_static(b"all")))),
            Err(
                "Invalid x-match field type binary (value <<\"all\">>); expected longstr"
                    .to_owned()
            )
        );
        assert_eq!(
            t.bind(bad(V::I32(1))),
            Err("Invalid x-match field type signedint (value 1); expected longstr".to_owned())
        );
        assert_eq!(
            t.bind(bad(V::Void)),
            Err("Invalid x-match field type void (value undefined); expected longstr".to_owned())
        );
        assert!(t.is_empty(), "refused bindings are not added");
        // Other exchange kinds do not look at x-match.
        let mut d = RoutingTable::new(ExchangeKind::Direct);
        assert_eq!(d.bind(bad(s("some"))), Ok(true));
    }

    #[test]
    fn erlang_formatting() {
        assert_eq!(erl_binary(b""), "<<>>");
        assert_eq!(erl_binary(b"a\"b\\c\n"), "<<\"a\\\"b\\\\c\\n\">>");
        assert_eq!(erl_binary("é".as_bytes()), "<<\"é\">>");
        assert_eq!(erl_binary(&[0xff, 1]), "<<255,1>>");
        assert_eq!(erl_binary(&[0]), "<<0>>");
        assert_eq!(erl_term(&V::F64(1.5)), "1.5");
        assert_eq!(erl_term(&V::F64(1e20)), "1.0e20");
        assert_eq!(erl_term(&V::F32(2.0)), "2.0");
        assert_eq!(erl_term(&V::Bool(false)), "false");
        assert_eq!(erl_term(&V::Timestamp(7)), "7");
        assert_eq!(
            erl_term(&V::Decimal {
                scale: 2,
                value: 150
            }),
            "{2,150}"
        );
        assert_eq!(
            erl_term(&V::Array(vec![s("a"), V::I8(-1)])),
            "[{longstr,<<\"a\">>},{byte,-1}]"
        );
        assert_eq!(
            erl_term(&V::Table(table(&[("k", V::U16(3))]))),
            "[{<<\"k\">>,unsignedshort,3}]"
        );
        let all = [
            V::Bool(true),
            V::I8(0),
            V::U8(0),
            V::I16(0),
            V::U16(0),
            V::I32(0),
            V::U32(0),
            V::I64(0),
            V::F32(0.0),
            V::F64(0.0),
            V::Decimal { scale: 0, value: 0 },
            V::LongString(Bytes::new()),
            V::ByteArray(Bytes::new()),
            V::Array(vec![]),
            V::Timestamp(0),
            V::Table(FieldTable::new()),
            V::Void,
        ];
        let names: Vec<&str> = all.iter().map(erl_type).collect();
        assert_eq!(
            names,
            [
                "bool",
                "byte",
                "unsignedbyte",
                "short",
                "unsignedshort",
                "signedint",
                "unsignedint",
                "long",
                "float",
                "double",
                "decimal",
                "longstr",
                "binary",
                "array",
                "timestamp",
                "table",
                "void"
            ]
        );
    }
}
