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
//! Every binding has to be tested, but each is compiled at bind time into typed
//! expectations, and the bindings are grouped by destination, so a destination is
//! pushed once, when its first binding matches, with no deduplication pass.

use std::fmt::Write;

use bytes::Bytes;

use super::{Destination, Interner};
use crate::broker::hash::HashMap;
use crate::protocol::arguments::{same_arguments, values_identical};
use crate::protocol::{FieldTable, FieldValue, ShortString};

#[derive(Debug, Clone, Default)]
pub(super) struct HeadersIndex {
    groups: Vec<Group>,
    /// Position of each destination's group in `groups`.
    slots: HashMap<Destination, usize>,
    /// Ids for the argument keys in use. Bindings of one exchange tend to test the
    /// same few keys, so routing looks each message header up once, by hash, and fills
    /// a stack array indexed by id; every binding then reads its headers from that
    /// array instead of searching the table again.
    keys: Interner<ShortString>,
}

#[derive(Debug, Clone)]
struct Group {
    dest: Destination,
    /// The compiled bindings, kept apart from their arguments so the routing loop
    /// reads dense data.
    matchers: Vec<Compiled>,
    /// Each binding's arguments, in the order of `matchers`, to find it on unbind.
    args: Vec<FieldTable>,
}

/// A matcher whose argument keys are replaced by small ids.
#[derive(Debug, Clone)]
struct Compiled {
    any: bool,
    entries: Box<[(usize, Expect)]>,
}

/// Keys with ids below this are resolved up front; others (an exchange testing more
/// distinct keys) are searched for in the headers when a binding needs them.
const RESOLVED: usize = 64;

impl HeadersIndex {
    pub(super) fn add(&mut self, dest: &Destination, args: &FieldTable, m: Matcher) {
        let compiled = Compiled {
            any: m.any,
            entries: m
                .entries
                .into_iter()
                .map(|(k, e)| (self.keys.intern(&k), e))
                .collect(),
        };
        if let Some(g) = self.slots.get(dest).and_then(|&i| self.groups.get_mut(i)) {
            g.matchers.push(compiled);
            g.args.push(args.clone());
            return;
        }
        self.slots.insert(dest.clone(), self.groups.len());
        self.groups.push(Group {
            dest: dest.clone(),
            matchers: vec![compiled],
            args: vec![args.clone()],
        });
    }

    /// Forgets one binding of `dest` with these arguments.
    pub(super) fn remove(&mut self, dest: &Destination, args: &FieldTable) {
        let Some(&i) = self.slots.get(dest) else {
            return;
        };
        let Some(g) = self.groups.get_mut(i) else {
            return;
        };
        if let Some(j) = g.args.iter().position(|a| same_arguments(a, args)) {
            g.args.swap_remove(j);
            if j < g.matchers.len() {
                for (id, _) in g.matchers.swap_remove(j).entries.iter() {
                    self.keys.release(*id);
                }
            }
        }
        if g.matchers.is_empty() {
            self.slots.remove(dest);
            self.groups.swap_remove(i);
            // The last group moved into the freed slot.
            if let Some(moved) = self.groups.get(i)
                && let Some(s) = self.slots.get_mut(&moved.dest)
            {
                *s = i;
            }
        }
    }

    pub(super) fn route(&self, headers: Option<&FieldTable>, out: &mut Vec<Destination>) {
        let mut resolved: [Option<&FieldValue>; RESOLVED] = [None; RESOLVED];
        if let Some(h) = headers
            && !self.keys.is_empty()
        {
            // In table order, so that the last of repeated keys wins, as in the map
            // RabbitMQ builds from the headers.
            for (k, v) in h.iter() {
                if let Some(slot) = self
                    .keys
                    .id(k.as_bytes())
                    .and_then(|id| resolved.get_mut(id))
                {
                    *slot = Some(v);
                }
            }
        }
        let header = |id: usize| -> Option<&FieldValue> {
            if id < RESOLVED {
                return resolved.get(id).copied().flatten();
            }
            let name = self.keys.get(id)?;
            headers?
                .into_iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v)
        };
        for g in &self.groups {
            if g.matchers.iter().any(|m| m.matches(&header)) {
                out.push(g.dest.clone());
            }
        }
    }
}

impl Compiled {
    fn matches<'h>(&self, header: &impl Fn(usize) -> Option<&'h FieldValue>) -> bool {
        let ok = |(id, expect): &(usize, Expect)| header(*id).is_some_and(|v| expect.matches(v));
        if self.any {
            self.entries.iter().any(ok)
        } else {
            self.entries.iter().all(ok)
        }
    }
}

/// A binding's arguments compiled for matching.
#[derive(Debug, Clone)]
pub(super) struct Matcher {
    /// `any`/`any-with-x` rather than `all`/`all-with-x`.
    any: bool,
    /// The arguments that take part, in their order.
    entries: Vec<(ShortString, Expect)>,
}

/// What a header must be, in the form cheapest to compare against.
#[derive(Debug, Clone)]
enum Expect {
    /// A void argument: the header only has to be there.
    Present,
    /// Any integer type, timestamps included.
    Int(i128),
    /// `f32` or `f64`, as the bits of the `f64` (Erlang has one float type).
    Float(u64),
    Bool(bool),
    /// Long string or byte array.
    Bin(Bytes),
    Decimal {
        scale: u8,
        value: u32,
    },
    /// An array or table, compared exactly.
    List(FieldValue),
}

impl Expect {
    fn of(v: &FieldValue) -> Expect {
        use FieldValue as V;
        match v {
            V::Void => Expect::Present,
            V::Bool(b) => Expect::Bool(*b),
            V::F32(_) | V::F64(_) => Expect::Float(float_bits(v).unwrap_or_default()),
            V::Decimal { scale, value } => Expect::Decimal {
                scale: *scale,
                value: *value,
            },
            V::LongString(b) | V::ByteArray(b) => Expect::Bin(b.clone()),
            V::Array(_) | V::Table(_) => Expect::List(v.clone()),
            V::I8(_)
            | V::U8(_)
            | V::I16(_)
            | V::U16(_)
            | V::I32(_)
            | V::U32(_)
            | V::I64(_)
            | V::Timestamp(_) => Expect::Int(int_value(v).unwrap_or_default()),
        }
    }

    fn matches(&self, v: &FieldValue) -> bool {
        match self {
            Expect::Present => true,
            Expect::Int(i) => int_value(v) == Some(*i),
            Expect::Float(bits) => float_bits(v) == Some(*bits),
            Expect::Bool(b) => v.as_bool() == Some(*b),
            Expect::Bin(b) => v.as_bytes() == Some(&b[..]),
            Expect::Decimal { scale, value } => {
                matches!(v, FieldValue::Decimal { scale: s, value: x } if s == scale && x == value)
            }
            Expect::List(p) => values_identical(p, v),
        }
    }
}

/// An integer of any width, as Erlang sees it (i128 holds every u64 timestamp).
fn int_value(v: &FieldValue) -> Option<i128> {
    match v {
        FieldValue::Timestamp(t) => Some(i128::from(*t)),
        _ => v.as_i64().map(i128::from),
    }
}

/// Erlang compares floats with `=:=` bit for bit (-0.0 is not 0.0 since OTP 27).
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
        let entries = args
            .iter()
            .filter(|(k, _)| {
                let k = k.as_bytes();
                k != b"x-match" && (with_x || !k.starts_with(b"x-"))
            })
            .map(|(k, v)| (k.clone(), Expect::of(v)))
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
    fn more_distinct_keys_than_resolved_up_front() {
        let mut t = RoutingTable::new(ExchangeKind::Headers);
        let n = RESOLVED + 20;
        let bindings: Vec<_> = (0..n)
            .map(|i| {
                let key = format!("k{i}");
                binding(q(&key), "", table(&[(&key, V::I32(i as i32))]))
            })
            .collect();
        for b in &bindings {
            assert_eq!(t.bind(b.clone()), Ok(true));
        }
        for i in [0, RESOLVED - 1, RESOLVED, n - 1] {
            let key = format!("k{i}");
            // Repeated: the last one counts, for searched keys as for resolved ones.
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
        // Ids are reused: a new key takes a low id and is resolved up front.
        t.bind(binding(q("z"), "", table(&[("new", V::Void)])))
            .unwrap();
        assert!(
            index(&t)
                .keys
                .id(&b"new"[..])
                .is_some_and(|id| id < RESOLVED)
        );
        assert_eq!(
            routed(&t, "", Some(&table(&[("new", V::Bool(true))]))),
            [q("z")]
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
