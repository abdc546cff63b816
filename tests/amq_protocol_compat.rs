//! Our generated wire encoding is byte-identical to an independent implementation, the
//! `amq-protocol` crate (lapin's protocol layer, 10.6), and each side decodes what the
//! other wrote.
//!
//! For every method of `METHODS`, for `BasicProperties` and for field tables and values, a
//! random value from our strategies (`support::arbitrary`, `support::prims`) is converted
//! field by field into amq-protocol's value, both are serialised, and the bytes must be
//! equal. Then amq-protocol's bytes are decoded by us (`Method::decode`,
//! `BasicProperties::decode_bytes`, `Decoder::table`) and must give back our value, and our
//! bytes are parsed by amq-protocol (`parse_class`, ...) and must give back theirs.
//! Methods are compared as whole method payloads: class id, method id, arguments (our
//! `Method::encode` against their `gen_class`).
//!
//! # Methods not compared
//!
//! Only fedamq's own tunnel methods (`spec/tunnel.xml`, `spec/tunnel-*.xml`: the
//! `tunnel` class and the tunnel services), which no other implementation has.
//! amq-protocol 10.6 knows the other 66 methods of our spec (the 0-9-1 ones plus
//! RabbitMQ's `connection.blocked`/`unblocked`/`update-secret(-ok)`, `access.request(-ok)`,
//! `basic.nack`, `confirm.*`, `exchange.bind`/`unbind(-ok)`). [`NOT_COMPARED`] lists each
//! method amq-protocol lacks, with its reason; `every_method_is_compared_or_excused` fails
//! until a new method is either compared or listed there.
//!
//! # Differences between the two implementations
//!
//! None in the bytes either writes for the values both can represent. What differs is
//! what each can represent or accepts; the comparisons are restricted accordingly, and
//! `documented_differences_hold` pins each point down so this list cannot go stale:
//!
//! - **Field-value type letters.** amq-protocol writes exactly RabbitMQ's letters for
//!   all 17 types we have: `t b B s u I i l f d D S x A T F V` (`s` = i16, `u` = u16,
//!   `I` = i32, `i` = u32, `l` = i64, `x` = byte array). So field tables and values are
//!   compared over every type. The differences are at the edges:
//!   - their parser also accepts `U` (as i16, the 0-9-1 spec table's letter) and `L` (as
//!     i64, the spec's "long-long-uint", read as signed); we refuse both with
//!     `BadFieldType`, as RabbitMQ's parser does;
//!   - their `AMQPValue::ShortString` is written with the letter `_`, which is no wire
//!     type at all (their docs: "internal usage"); we have no short-string field value
//!     (`s` is the i16 in RabbitMQ's table) and refuse `_`. Never generated here.
//! - **Short strings.** Theirs are Rust `String`s: UTF-8 only; a non-UTF-8 shortstr
//!   fails their parser. Ours are octets, as in the spec and RabbitMQ. Our short strings
//!   are therefore made UTF-8 before comparing ([`Agree`]: UTF-8 ones are kept, others
//!   get U+FFFD for invalid octets and are cut back to 255 octets).
//! - **Field tables.** Theirs are a `BTreeMap`: keys sorted byte-wise, no duplicates,
//!   UTF-8 keys, so re-encoding reorders. Ours keep wire order and duplicates. Tables
//!   here are generated with unique keys in sorted order, at every nesting level
//!   ([`agreed_table`]), or sorted before comparing ([`sorted`]).
//! - **`basic.qos` `prefetch-size`.** Their `Qos` has no such field: they write 0 and
//!   drop whatever arrives. Ours carries the long as the spec defines it. Compared with
//!   `prefetch_size = 0`, the only value RabbitMQ accepts.
//! - **`access.request-ok` `ticket`.** Their `RequestOk` has no field: they write 1 (the
//!   0-8 ticket RabbitMQ grants) and drop whatever arrives. Ours carries the short
//!   (RabbitMQ's name for it). Compared with `ticket = 1`, what RabbitMQ and fedamq send.
//! - **Floats.** NaN is never generated: the bytes would match, but NaN != NaN, so the
//!   decode direction could not be checked by equality.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::basic::{gen_properties, parse_properties};
use amq_protocol::protocol::{
    AMQPClass, BasicProperties as TheirProperties, access, basic, channel, confirm, connection,
    exchange, gen_class, parse_class, queue, tx,
};
use amq_protocol::types::generation::{SerializeFn, gen_field_table, gen_value};
use amq_protocol::types::parsing::{parse_field_table, parse_value};
use amq_protocol::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable as TheirTable, LongString,
    ShortString as TheirShortString,
};
use bytes::{Bytes, BytesMut};
use fedamq::protocol::generated::methods::*;
use fedamq::protocol::generated::properties::BasicProperties;
use fedamq::protocol::wire::{Decoder, encode};
use fedamq::protocol::{DecodeError, FieldTable, FieldValue, ShortString};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use support::{arbitrary, prims};

const CASES: u32 = 512;

/// Methods of our spec with no comparison here, with the reason. See the top of the file.
const NOT_COMPARED: &[(&str, &str)] = &[
    ("tunnel.open", TUNNEL),
    ("tunnel.open-ok", TUNNEL),
    ("tunnel.flow", TUNNEL),
    ("tunnel.close", TUNNEL),
    ("tunnel.close-ok", TUNNEL),
    ("greeting.hello", SERVICE),
    ("greeting.hello-ok", SERVICE),
    ("broker.identify", SERVICE),
    ("broker.identify-ok", SERVICE),
    ("ha.state", SERVICE),
    ("replica.snapshot", SERVICE),
    ("replica.change", SERVICE),
    ("replica.resync", SERVICE),
];
const TUNNEL: &str = "fedamq's tunnel protocol (spec/tunnel.xml); only fedamq brokers speak it";
const SERVICE: &str = "a fedamq tunnel service (spec/tunnel-*.xml); only fedamq brokers speak it";

// ---------------------------------------------------------------------------------------
// Running amq-protocol

/// Runs one of amq-protocol's serialisers into a fresh buffer.
fn serialize<F: SerializeFn<Vec<u8>>>(f: F) -> Vec<u8> {
    match f(WriteContext::from(Vec::new())) {
        Ok(ctx) => ctx.write,
        Err(e) => panic!("amq-protocol could not serialise: {e:?}"),
    }
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

// ---------------------------------------------------------------------------------------
// Our values -> theirs

/// Converts one of our values into amq-protocol's. Panics on what they cannot represent
/// (non-UTF-8 short strings): the strategies never produce it.
trait Theirs {
    type Out;
    fn theirs(&self) -> Self::Out;
}

macro_rules! theirs_is_the_same {
    ($($t:ty),*) => {
        $(impl Theirs for $t {
            type Out = $t;
            fn theirs(&self) -> $t {
                *self
            }
        })*
    };
}

theirs_is_the_same!(bool, u8, u16, u32, u64);

impl Theirs for ShortString {
    type Out = TheirShortString;
    fn theirs(&self) -> TheirShortString {
        let s = self.as_str().expect("short strings are made UTF-8 first");
        TheirShortString::try_new(s).expect("at most 255 octets")
    }
}

impl Theirs for Bytes {
    type Out = LongString;
    fn theirs(&self) -> LongString {
        LongString::from(self.to_vec())
    }
}

impl Theirs for FieldTable {
    type Out = TheirTable;
    fn theirs(&self) -> TheirTable {
        let map: BTreeMap<TheirShortString, AMQPValue> =
            self.iter().map(|(k, v)| (k.theirs(), v.theirs())).collect();
        TheirTable::from(map)
    }
}

impl Theirs for FieldValue {
    type Out = AMQPValue;
    fn theirs(&self) -> AMQPValue {
        match self {
            FieldValue::Bool(v) => AMQPValue::Boolean(*v),
            FieldValue::I8(v) => AMQPValue::ShortShortInt(*v),
            FieldValue::U8(v) => AMQPValue::ShortShortUInt(*v),
            FieldValue::I16(v) => AMQPValue::ShortInt(*v),
            FieldValue::U16(v) => AMQPValue::ShortUInt(*v),
            FieldValue::I32(v) => AMQPValue::LongInt(*v),
            FieldValue::U32(v) => AMQPValue::LongUInt(*v),
            FieldValue::I64(v) => AMQPValue::LongLongInt(*v),
            FieldValue::F32(v) => AMQPValue::Float(*v),
            FieldValue::F64(v) => AMQPValue::Double(*v),
            FieldValue::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
                scale: *scale,
                value: *value,
            }),
            FieldValue::LongString(b) => AMQPValue::LongString(b.theirs()),
            FieldValue::ByteArray(b) => AMQPValue::ByteArray(ByteArray::from(b.to_vec())),
            FieldValue::Array(a) => AMQPValue::FieldArray(FieldArray::from(
                a.iter().map(Theirs::theirs).collect::<Vec<_>>(),
            )),
            FieldValue::Timestamp(t) => AMQPValue::Timestamp(*t),
            FieldValue::Table(t) => AMQPValue::FieldTable(t.theirs()),
            FieldValue::Void => AMQPValue::Void,
        }
    }
}

fn properties_theirs(p: &BasicProperties) -> TheirProperties {
    // Destructured in full, so a property added to the spec fails to compile here.
    let BasicProperties {
        content_type,
        content_encoding,
        headers,
        delivery_mode,
        priority,
        correlation_id,
        reply_to,
        expiration,
        message_id,
        timestamp,
        r#type,
        user_id,
        app_id,
        cluster_id,
    } = p;
    let mut t = TheirProperties::default();
    macro_rules! set {
        ($($field:ident => $with:ident),* $(,)?) => {
            $(if let Some(v) = $field {
                t = t.$with(v.theirs());
            })*
        };
    }
    set! {
        content_type => with_content_type,
        content_encoding => with_content_encoding,
        headers => with_headers,
        delivery_mode => with_delivery_mode,
        priority => with_priority,
        correlation_id => with_correlation_id,
        reply_to => with_reply_to,
        expiration => with_expiration,
        message_id => with_message_id,
        timestamp => with_timestamp,
        r#type => with_type,
        user_id => with_user_id,
        app_id => with_app_id,
        cluster_id => with_cluster_id,
    }
    t
}

// ---------------------------------------------------------------------------------------
// Restricting our random values to what amq-protocol can represent

/// Maps one of our values onto one amq-protocol can represent, changing as little as
/// possible. Only short strings that are not UTF-8 change: invalid octets become U+FFFD,
/// cut back to 255 octets if that made them longer.
/// Tables are not touched here; table fields are drawn from [`agreed_table`] instead.
trait Agree {
    fn agree(self) -> Self;
}

macro_rules! agrees_already {
    ($($t:ty),*) => {
        $(impl Agree for $t {
            fn agree(self) -> Self {
                self
            }
        })*
    };
}

agrees_already!(bool, u8, u16, u32, u64, Bytes, FieldTable);

impl Agree for ShortString {
    fn agree(self) -> Self {
        if self.as_str().is_some() {
            return self;
        }
        let mut s = String::from_utf8_lossy(self.as_bytes()).into_owned();
        while s.len() > ShortString::MAX_LEN {
            s.pop();
        }
        ShortString::try_from(s).expect("at most 255 octets")
    }
}

impl<T: Agree> Agree for Option<T> {
    fn agree(self) -> Self {
        self.map(Agree::agree)
    }
}

/// Table keys: plain ASCII names like real arguments, and any printable UTF-8 (at most
/// 12 chars, so at most 48 octets).
fn agreed_key() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z][a-z0-9-]{0,12}", "\\PC{0,12}"]
}

fn not_nan_f32() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN never equals itself", |f| !f.is_nan())
}

fn not_nan_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN never equals itself", |f| !f.is_nan())
}

/// A table from keys already in sorted order, as amq-protocol's `BTreeMap` holds them.
fn table_of(entries: BTreeMap<String, FieldValue>) -> FieldTable {
    entries
        .into_iter()
        .map(|(k, v)| (ShortString::try_from(k).expect("short key"), v))
        .collect()
}

/// Values of every type letter both implementations agree on (all 17 of RabbitMQ's),
/// with nested arrays and tables whose keys are sorted.
fn agreed_value() -> impl Strategy<Value = FieldValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        not_nan_f32().prop_map(FieldValue::F32),
        not_nan_f64().prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        prims::longstr().prop_map(FieldValue::LongString),
        prims::longstr().prop_map(FieldValue::ByteArray),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
            btree_map(agreed_key(), inner, 0..6).prop_map(|m| FieldValue::Table(table_of(m))),
        ]
    })
}

/// Field tables amq-protocol represents exactly: unique keys in sorted order at every
/// level, values of the agreed types.
fn agreed_table() -> impl Strategy<Value = FieldTable> {
    btree_map(agreed_key(), agreed_value(), 0..8).prop_map(table_of)
}

/// A method strategy with one of its table fields drawn from [`agreed_table`].
fn with_table<T: Debug + Clone + 'static>(
    methods: BoxedStrategy<T>,
    set: fn(&mut T, FieldTable),
) -> BoxedStrategy<T> {
    (methods, agreed_table())
        .prop_map(move |(mut m, table)| {
            set(&mut m, table);
            m
        })
        .boxed()
}

/// Our table with its entries sorted by key at every level (keys assumed unique).
fn sorted(table: FieldTable) -> FieldTable {
    let mut entries: Vec<(ShortString, FieldValue)> = table
        .into_iter()
        .map(|(k, v)| (k, sorted_value(v)))
        .collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    entries.into_iter().collect()
}

fn sorted_value(v: FieldValue) -> FieldValue {
    match v {
        FieldValue::Table(t) => FieldValue::Table(sorted(t)),
        FieldValue::Array(a) => FieldValue::Array(a.into_iter().map(sorted_value).collect()),
        other => other,
    }
}

// ---------------------------------------------------------------------------------------
// The comparisons

/// Same bytes from both encoders; each side decodes the other's bytes to its own value.
fn check_method(ours: Method, theirs: AMQPClass) -> Result<(), TestCaseError> {
    let name = ours.name();
    let mut buf = BytesMut::new();
    ours.encode(&mut buf);
    let our_bytes = buf.freeze();
    let their_bytes = serialize(gen_class(&theirs));
    prop_assert_eq!(
        &our_bytes[..],
        &their_bytes[..],
        "{} encodes differently",
        name
    );

    let decoded = Method::decode(&their_bytes)
        .map_err(|e| fail(format!("we cannot decode amq-protocol's {name}: {e}")))?;
    prop_assert_eq!(&decoded, &ours);

    let (rest, parsed) = parse_class(&our_bytes[..])
        .map_err(|e| fail(format!("amq-protocol cannot parse our {name}: {e:?}")))?;
    prop_assert!(
        rest.is_empty(),
        "amq-protocol left {} octets of our {}",
        rest.len(),
        name
    );
    prop_assert_eq!(parsed, theirs);
    Ok(())
}

fn check_table(ours: &FieldTable) -> Result<(), TestCaseError> {
    let theirs = ours.theirs();
    let mut buf = BytesMut::new();
    encode::table(&mut buf, ours);
    let our_bytes = buf.freeze();
    let their_bytes = serialize(gen_field_table(&theirs));
    prop_assert_eq!(&our_bytes[..], &their_bytes[..]);

    let mut d = Decoder::from_slice(&their_bytes);
    let decoded = d.table().map_err(fail)?;
    d.finish().map_err(fail)?;
    prop_assert_eq!(&decoded, ours);

    let (rest, parsed) = parse_field_table(&our_bytes[..]).map_err(|e| fail(format!("{e:?}")))?;
    prop_assert!(rest.is_empty());
    prop_assert_eq!(parsed, theirs);
    Ok(())
}

/// One comparison per method. Each entry: the proptest's name, our strategy, our struct
/// with all its fields (so a field added to the spec fails to compile here), then the
/// amq-protocol class, module and struct with all of theirs, each either `same_name` or
/// `their_name: our_name`. Every strategy is first passed through [`Agree`].
macro_rules! compare_methods {
    ($(
        $test:ident: $strategy:expr,
        $Ours:ident { $($of:ident),* $(,)? }
            => $Class:ident $module:ident :: $Theirs:ident { $($tf:ident $(: $src:ident)?),* $(,)? };
    )*) => {
        /// The spec names of the methods compared below.
        const COMPARED: &[&str] = &[$($Ours::NAME),*];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(CASES))]
            $(
                #[test]
                // `basic.qos` `prefetch_size`, `access.request-ok` `ticket`: see the top
                #[allow(unused_variables)]
                fn $test(
                    m in ($strategy).prop_map(|$Ours { $($of),* }| $Ours { $($of: Agree::agree($of)),* })
                ) {
                    let $Ours { $($of),* } = m.clone();
                    let theirs = AMQPClass::$Class($module::AMQPMethod::$Theirs($module::$Theirs {
                        $($tf: pick!($tf $(: $src)?).theirs()),*
                    }));
                    check_method(Method::from(m), theirs)?;
                }
            )*
        }
    };
}

macro_rules! pick {
    ($f:ident) => {
        $f
    };
    ($f:ident : $src:ident) => {
        $src
    };
}

compare_methods! {
    connection_start: with_table(arbitrary::connection_start(), |m, t| m.server_properties = t),
        ConnectionStart { version_major, version_minor, server_properties, mechanisms, locales }
        => Connection connection::Start { version_major, version_minor, server_properties, mechanisms, locales };
    connection_start_ok: with_table(arbitrary::connection_start_ok(), |m, t| m.client_properties = t),
        ConnectionStartOk { client_properties, mechanism, response, locale }
        => Connection connection::StartOk { client_properties, mechanism, response, locale };
    connection_secure: arbitrary::connection_secure(),
        ConnectionSecure { challenge } => Connection connection::Secure { challenge };
    connection_secure_ok: arbitrary::connection_secure_ok(),
        ConnectionSecureOk { response } => Connection connection::SecureOk { response };
    connection_tune: arbitrary::connection_tune(),
        ConnectionTune { channel_max, frame_max, heartbeat }
        => Connection connection::Tune { channel_max, frame_max, heartbeat };
    connection_tune_ok: arbitrary::connection_tune_ok(),
        ConnectionTuneOk { channel_max, frame_max, heartbeat }
        => Connection connection::TuneOk { channel_max, frame_max, heartbeat };
    connection_open: arbitrary::connection_open(),
        ConnectionOpen { virtual_host } => Connection connection::Open { virtual_host };
    connection_open_ok: arbitrary::connection_open_ok(),
        ConnectionOpenOk {} => Connection connection::OpenOk {};
    connection_close: arbitrary::connection_close(),
        ConnectionClose { reply_code, reply_text, class_id, method_id }
        => Connection connection::Close { reply_code, reply_text, class_id, method_id };
    connection_close_ok: arbitrary::connection_close_ok(),
        ConnectionCloseOk {} => Connection connection::CloseOk {};
    connection_blocked: arbitrary::connection_blocked(),
        ConnectionBlocked { reason } => Connection connection::Blocked { reason };
    connection_unblocked: arbitrary::connection_unblocked(),
        ConnectionUnblocked {} => Connection connection::Unblocked {};
    connection_update_secret: arbitrary::connection_update_secret(),
        ConnectionUpdateSecret { new_secret, reason }
        => Connection connection::UpdateSecret { new_secret, reason };
    connection_update_secret_ok: arbitrary::connection_update_secret_ok(),
        ConnectionUpdateSecretOk {} => Connection connection::UpdateSecretOk {};

    channel_open: arbitrary::channel_open(),
        ChannelOpen {} => Channel channel::Open {};
    channel_open_ok: arbitrary::channel_open_ok(),
        ChannelOpenOk {} => Channel channel::OpenOk {};
    channel_flow: arbitrary::channel_flow(),
        ChannelFlow { active } => Channel channel::Flow { active };
    channel_flow_ok: arbitrary::channel_flow_ok(),
        ChannelFlowOk { active } => Channel channel::FlowOk { active };
    channel_close: arbitrary::channel_close(),
        ChannelClose { reply_code, reply_text, class_id, method_id }
        => Channel channel::Close { reply_code, reply_text, class_id, method_id };
    channel_close_ok: arbitrary::channel_close_ok(),
        ChannelCloseOk {} => Channel channel::CloseOk {};

    access_request: arbitrary::access_request(),
        AccessRequest { realm, exclusive, passive, active, write, read }
        => Access access::Request { realm, exclusive, passive, active, write, read };
    access_request_ok: arbitrary::access_request_ok().prop_map(|_| AccessRequestOk { ticket: 1 }),
        AccessRequestOk { ticket } => Access access::RequestOk {};

    exchange_declare: with_table(arbitrary::exchange_declare(), |m, t| m.arguments = t),
        ExchangeDeclare { exchange, r#type, passive, durable, auto_delete, internal, no_wait, arguments }
        => Exchange exchange::Declare {
            exchange, kind: r#type, passive, durable, auto_delete, internal, nowait: no_wait, arguments
        };
    exchange_declare_ok: arbitrary::exchange_declare_ok(),
        ExchangeDeclareOk {} => Exchange exchange::DeclareOk {};
    exchange_delete: arbitrary::exchange_delete(),
        ExchangeDelete { exchange, if_unused, no_wait }
        => Exchange exchange::Delete { exchange, if_unused, nowait: no_wait };
    exchange_delete_ok: arbitrary::exchange_delete_ok(),
        ExchangeDeleteOk {} => Exchange exchange::DeleteOk {};
    exchange_bind: with_table(arbitrary::exchange_bind(), |m, t| m.arguments = t),
        ExchangeBind { destination, source, routing_key, no_wait, arguments }
        => Exchange exchange::Bind { destination, source, routing_key, nowait: no_wait, arguments };
    exchange_bind_ok: arbitrary::exchange_bind_ok(),
        ExchangeBindOk {} => Exchange exchange::BindOk {};
    exchange_unbind: with_table(arbitrary::exchange_unbind(), |m, t| m.arguments = t),
        ExchangeUnbind { destination, source, routing_key, no_wait, arguments }
        => Exchange exchange::Unbind { destination, source, routing_key, nowait: no_wait, arguments };
    exchange_unbind_ok: arbitrary::exchange_unbind_ok(),
        ExchangeUnbindOk {} => Exchange exchange::UnbindOk {};

    queue_declare: with_table(arbitrary::queue_declare(), |m, t| m.arguments = t),
        QueueDeclare { queue, passive, durable, exclusive, auto_delete, no_wait, arguments }
        => Queue queue::Declare { queue, passive, durable, exclusive, auto_delete, nowait: no_wait, arguments };
    queue_declare_ok: arbitrary::queue_declare_ok(),
        QueueDeclareOk { queue, message_count, consumer_count }
        => Queue queue::DeclareOk { queue, message_count, consumer_count };
    queue_bind: with_table(arbitrary::queue_bind(), |m, t| m.arguments = t),
        QueueBind { queue, exchange, routing_key, no_wait, arguments }
        => Queue queue::Bind { queue, exchange, routing_key, nowait: no_wait, arguments };
    queue_bind_ok: arbitrary::queue_bind_ok(),
        QueueBindOk {} => Queue queue::BindOk {};
    queue_purge: arbitrary::queue_purge(),
        QueuePurge { queue, no_wait } => Queue queue::Purge { queue, nowait: no_wait };
    queue_purge_ok: arbitrary::queue_purge_ok(),
        QueuePurgeOk { message_count } => Queue queue::PurgeOk { message_count };
    queue_delete: arbitrary::queue_delete(),
        QueueDelete { queue, if_unused, if_empty, no_wait }
        => Queue queue::Delete { queue, if_unused, if_empty, nowait: no_wait };
    queue_delete_ok: arbitrary::queue_delete_ok(),
        QueueDeleteOk { message_count } => Queue queue::DeleteOk { message_count };
    queue_unbind: with_table(arbitrary::queue_unbind(), |m, t| m.arguments = t),
        QueueUnbind { queue, exchange, routing_key, arguments }
        => Queue queue::Unbind { queue, exchange, routing_key, arguments };
    queue_unbind_ok: arbitrary::queue_unbind_ok(),
        QueueUnbindOk {} => Queue queue::UnbindOk {};

    // amq-protocol has no prefetch-size (it writes 0): compared at 0. See the top.
    basic_qos: arbitrary::basic_qos().prop_map(|m| BasicQos { prefetch_size: 0, ..m }),
        BasicQos { prefetch_size, prefetch_count, global }
        => Basic basic::Qos { prefetch_count, global };
    basic_qos_ok: arbitrary::basic_qos_ok(),
        BasicQosOk {} => Basic basic::QosOk {};
    basic_consume: with_table(arbitrary::basic_consume(), |m, t| m.arguments = t),
        BasicConsume { queue, consumer_tag, no_local, no_ack, exclusive, no_wait, arguments }
        => Basic basic::Consume {
            queue, consumer_tag, no_local, no_ack, exclusive, nowait: no_wait, arguments
        };
    basic_consume_ok: arbitrary::basic_consume_ok(),
        BasicConsumeOk { consumer_tag } => Basic basic::ConsumeOk { consumer_tag };
    basic_cancel: arbitrary::basic_cancel(),
        BasicCancel { consumer_tag, no_wait } => Basic basic::Cancel { consumer_tag, nowait: no_wait };
    basic_cancel_ok: arbitrary::basic_cancel_ok(),
        BasicCancelOk { consumer_tag } => Basic basic::CancelOk { consumer_tag };
    basic_publish: arbitrary::basic_publish(),
        BasicPublish { exchange, routing_key, mandatory, immediate }
        => Basic basic::Publish { exchange, routing_key, mandatory, immediate };
    basic_return: arbitrary::basic_return(),
        BasicReturn { reply_code, reply_text, exchange, routing_key }
        => Basic basic::Return { reply_code, reply_text, exchange, routing_key };
    basic_deliver: arbitrary::basic_deliver(),
        BasicDeliver { consumer_tag, delivery_tag, redelivered, exchange, routing_key }
        => Basic basic::Deliver { consumer_tag, delivery_tag, redelivered, exchange, routing_key };
    basic_get: arbitrary::basic_get(),
        BasicGet { queue, no_ack } => Basic basic::Get { queue, no_ack };
    basic_get_ok: arbitrary::basic_get_ok(),
        BasicGetOk { delivery_tag, redelivered, exchange, routing_key, message_count }
        => Basic basic::GetOk { delivery_tag, redelivered, exchange, routing_key, message_count };
    basic_get_empty: arbitrary::basic_get_empty(),
        BasicGetEmpty {} => Basic basic::GetEmpty {};
    basic_ack: arbitrary::basic_ack(),
        BasicAck { delivery_tag, multiple } => Basic basic::Ack { delivery_tag, multiple };
    basic_reject: arbitrary::basic_reject(),
        BasicReject { delivery_tag, requeue } => Basic basic::Reject { delivery_tag, requeue };
    basic_recover_async: arbitrary::basic_recover_async(),
        BasicRecoverAsync { requeue } => Basic basic::RecoverAsync { requeue };
    basic_recover: arbitrary::basic_recover(),
        BasicRecover { requeue } => Basic basic::Recover { requeue };
    basic_recover_ok: arbitrary::basic_recover_ok(),
        BasicRecoverOk {} => Basic basic::RecoverOk {};
    basic_nack: arbitrary::basic_nack(),
        BasicNack { delivery_tag, multiple, requeue } => Basic basic::Nack { delivery_tag, multiple, requeue };

    confirm_select: arbitrary::confirm_select(),
        ConfirmSelect { nowait } => Confirm confirm::Select { nowait };
    confirm_select_ok: arbitrary::confirm_select_ok(),
        ConfirmSelectOk {} => Confirm confirm::SelectOk {};

    tx_select: arbitrary::tx_select(), TxSelect {} => Tx tx::Select {};
    tx_select_ok: arbitrary::tx_select_ok(), TxSelectOk {} => Tx tx::SelectOk {};
    tx_commit: arbitrary::tx_commit(), TxCommit {} => Tx tx::Commit {};
    tx_commit_ok: arbitrary::tx_commit_ok(), TxCommitOk {} => Tx tx::CommitOk {};
    tx_rollback: arbitrary::tx_rollback(), TxRollback {} => Tx tx::Rollback {};
    tx_rollback_ok: arbitrary::tx_rollback_ok(), TxRollbackOk {} => Tx tx::RollbackOk {};
}

/// `arbitrary::basic_properties()` with UTF-8 short strings and, when headers are present,
/// headers from [`agreed_table`].
fn agreed_properties() -> impl Strategy<Value = BasicProperties> {
    (arbitrary::basic_properties(), agreed_table()).prop_map(|(p, table)| {
        let BasicProperties {
            content_type,
            content_encoding,
            headers,
            delivery_mode,
            priority,
            correlation_id,
            reply_to,
            expiration,
            message_id,
            timestamp,
            r#type,
            user_id,
            app_id,
            cluster_id,
        } = p;
        BasicProperties {
            content_type: content_type.agree(),
            content_encoding: content_encoding.agree(),
            headers: headers.map(|_| table),
            delivery_mode,
            priority,
            correlation_id: correlation_id.agree(),
            reply_to: reply_to.agree(),
            expiration: expiration.agree(),
            message_id: message_id.agree(),
            timestamp,
            r#type: r#type.agree(),
            user_id: user_id.agree(),
            app_id: app_id.agree(),
            cluster_id: cluster_id.agree(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Property flags and property list: our `BasicProperties::encode` against their
    /// `gen_properties`, both directions.
    #[test]
    fn basic_properties(ours in agreed_properties()) {
        let theirs = properties_theirs(&ours);
        let mut buf = BytesMut::new();
        ours.encode(&mut buf);
        let our_bytes = buf.freeze();
        let their_bytes = serialize(gen_properties(&theirs));
        prop_assert_eq!(&our_bytes[..], &their_bytes[..]);

        let decoded = BasicProperties::decode_bytes(&Bytes::from(their_bytes)).map_err(fail)?;
        prop_assert_eq!(&decoded, &ours);

        let (rest, parsed) = parse_properties(&our_bytes[..]).map_err(|e| fail(format!("{e:?}")))?;
        prop_assert!(rest.is_empty());
        prop_assert_eq!(parsed, theirs);
    }

    /// Tables generated in amq-protocol's order.
    #[test]
    fn field_tables(ours in agreed_table()) {
        check_table(&ours)?;
    }

    /// The shared table strategy, sorted before comparing.
    #[test]
    fn field_tables_from_prims_sorted(table in prims::table()) {
        check_table(&sorted(table))?;
    }

    /// One value with its type letter, outside any table.
    #[test]
    fn field_values(ours in agreed_value()) {
        let theirs = ours.theirs();
        let mut buf = BytesMut::new();
        encode::field_value(&mut buf, &ours);
        let our_bytes = buf.freeze();
        let their_bytes = serialize(gen_value(&theirs));
        prop_assert_eq!(&our_bytes[..], &their_bytes[..]);

        let mut d = Decoder::from_slice(&their_bytes);
        let decoded = d.field_value().map_err(fail)?;
        d.finish().map_err(fail)?;
        prop_assert_eq!(&decoded, &ours);

        let (rest, parsed) = parse_value(&our_bytes[..]).map_err(|e| fail(format!("{e:?}")))?;
        prop_assert!(rest.is_empty());
        prop_assert_eq!(parsed, theirs);
    }
}

// ---------------------------------------------------------------------------------------
// Coverage and the documented differences

#[test]
fn every_method_is_compared_or_excused() {
    let ours: BTreeSet<&str> = METHODS.iter().map(|m| m.name).collect();
    let compared: BTreeSet<&str> = COMPARED.iter().copied().collect();
    let excused: BTreeSet<&str> = NOT_COMPARED.iter().map(|(name, _)| *name).collect();
    assert_eq!(compared.len(), COMPARED.len(), "a method is compared twice");
    assert_eq!(
        excused.len(),
        NOT_COMPARED.len(),
        "a method is excused twice"
    );
    assert!(
        compared.is_disjoint(&excused),
        "compared and excused: {:?}",
        compared.intersection(&excused).collect::<Vec<_>>()
    );
    assert!(
        excused.is_subset(&ours),
        "excused but not in the spec: {:?}",
        excused.difference(&ours).collect::<Vec<_>>()
    );
    let covered: BTreeSet<&str> = compared.union(&excused).copied().collect();
    let missing: Vec<&&str> = ours.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "methods with no amq-protocol comparison (add one to compare_methods!, or list \
         them in NOT_COMPARED and the top doc comment with the reason): {missing:?}"
    );
    assert_eq!(COMPARED.len() + NOT_COMPARED.len(), METHODS.len());
}

/// The first octet each side writes for one value of every type: RabbitMQ's letters.
#[test]
fn type_letters_are_rabbitmq_s_on_both_sides() {
    let values = [
        FieldValue::Bool(true),
        FieldValue::I8(-1),
        FieldValue::U8(1),
        FieldValue::I16(-1),
        FieldValue::U16(1),
        FieldValue::I32(-1),
        FieldValue::U32(1),
        FieldValue::I64(-1),
        FieldValue::F32(1.5),
        FieldValue::F64(1.5),
        FieldValue::Decimal { scale: 2, value: 1 },
        FieldValue::LongString(Bytes::from_static(b"s")),
        FieldValue::ByteArray(Bytes::from_static(b"\xff")),
        FieldValue::Array(vec![FieldValue::Void]),
        FieldValue::Timestamp(1),
        FieldValue::Table(FieldTable::new()),
        FieldValue::Void,
    ];
    let ours: Vec<u8> = values
        .iter()
        .map(|v| {
            let mut buf = BytesMut::new();
            encode::field_value(&mut buf, v);
            buf[0]
        })
        .collect();
    let theirs: Vec<u8> = values
        .iter()
        .map(|v| serialize(gen_value(&v.theirs()))[0])
        .collect();
    assert_eq!(ours, b"tbBsuIilfdDSxATFV");
    assert_eq!(theirs, ours);
}

/// Each point of "Differences between the two implementations" at the top, checked.
#[test]
fn documented_differences_hold() {
    // `U` and `L`: their parser reads them (as i16 and i64); ours, like RabbitMQ's, refuses.
    for (letter, value) in [
        (b'U', AMQPValue::ShortInt(-2)),
        (b'L', AMQPValue::LongLongInt(-2)),
    ] {
        let mut raw = vec![letter];
        let width = if letter == b'U' { 2 } else { 8 };
        raw.extend(std::iter::repeat_n(0xff, width - 1));
        raw.push(0xfe);
        let (rest, parsed) = parse_value(&raw[..]).expect("amq-protocol reads it");
        assert!(rest.is_empty());
        assert_eq!(parsed, value);
        assert_eq!(
            Decoder::from_slice(&raw).field_value(),
            Err(DecodeError::BadFieldType(letter))
        );
    }

    // Their short-string field value is written with `_`, which we refuse.
    let raw = serialize(gen_value(&AMQPValue::ShortString("a".into())));
    assert_eq!(raw, b"_\x01a");
    assert_eq!(
        Decoder::from_slice(&raw).field_value(),
        Err(DecodeError::BadFieldType(b'_'))
    );

    // Short strings: octets for us, UTF-8 only for them.
    let blocked = Method::from(ConnectionBlocked {
        reason: ShortString::new(&b"\xff"[..]).unwrap(),
    });
    let mut buf = BytesMut::new();
    blocked.encode(&mut buf);
    assert_eq!(Method::decode(&buf).unwrap(), blocked);
    assert!(parse_class(&buf[..]).is_err());

    // Tables: ours keep wire order; theirs come back sorted.
    let table: FieldTable = [
        (ShortString::from_static("b"), FieldValue::Void),
        (ShortString::from_static("a"), FieldValue::Void),
    ]
    .into_iter()
    .collect();
    let mut buf = BytesMut::new();
    encode::table(&mut buf, &table);
    assert_eq!(&buf[..], b"\0\0\0\x06\x01bV\x01aV");
    let (_, parsed) = parse_field_table(&buf[..]).unwrap();
    assert_eq!(
        serialize(gen_field_table(&parsed)),
        b"\0\0\0\x06\x01aV\x01bV"
    );

    // basic.qos prefetch-size: carried by us, written as 0 and dropped by them.
    let qos = BasicQos {
        prefetch_size: 7,
        prefetch_count: 3,
        global: true,
    };
    let mut buf = BytesMut::new();
    qos.encode(&mut buf);
    assert_eq!(&buf[..], b"\0\x3c\0\x0a\0\0\0\x07\0\x03\x01");
    let (_, parsed) = parse_class(&buf[..]).unwrap();
    assert_eq!(
        parsed,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 3,
            global: true,
        }))
    );
    assert_eq!(
        serialize(gen_class(&parsed)),
        b"\0\x3c\0\x0a\0\0\0\0\0\x03\x01"
    );

    // access.request-ok ticket: carried by us, written as 1 and dropped by them.
    let mut buf = BytesMut::new();
    AccessRequestOk { ticket: 7 }.encode(&mut buf);
    assert_eq!(&buf[..], b"\0\x1e\0\x0b\0\x07");
    let (_, parsed) = parse_class(&buf[..]).unwrap();
    assert_eq!(
        parsed,
        AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {}))
    );
    assert_eq!(serialize(gen_class(&parsed)), b"\0\x1e\0\x0b\0\x01");
}
