//! AMQP values as the API shows them, and back: argument and header tables as JSON
//! objects, binding property keys.

use bytes::Bytes;
use serde_json::{Map, Number, Value};

use super::error::{ApiError, ApiResult};
use crate::protocol::arguments::arguments_key;
use crate::protocol::generated::properties::BasicProperties;
use crate::protocol::{FieldTable, FieldValue, ShortString};

/// A field table as a JSON object (RabbitMQ shows long strings as strings, numbers as
/// numbers, tables as objects, arrays as lists).
pub fn table_json(table: &FieldTable) -> Value {
    let mut map = Map::new();
    for (k, v) in table.sorted_by_key() {
        map.insert(k.to_string(), value_json(v));
    }
    Value::Object(map)
}

fn value_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(i) => (*i).into(),
        FieldValue::U8(i) => (*i).into(),
        FieldValue::I16(i) => (*i).into(),
        FieldValue::U16(i) => (*i).into(),
        FieldValue::I32(i) => (*i).into(),
        FieldValue::U32(i) => (*i).into(),
        FieldValue::I64(i) => (*i).into(),
        FieldValue::F32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        FieldValue::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        FieldValue::Decimal { scale, value } => {
            Number::from_f64(f64::from(*value) / 10f64.powi(i32::from(*scale)))
                .map_or(Value::Null, Value::Number)
        }
        FieldValue::LongString(b) | FieldValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        FieldValue::Array(items) => Value::Array(items.iter().map(value_json).collect()),
        FieldValue::Timestamp(t) => (*t).into(),
        FieldValue::Table(t) => table_json(t),
        FieldValue::Void => Value::Null,
    }
}

/// A JSON object as a field table, typed as RabbitMQ types it: integers as signed
/// 64-bit (`l`), strings as long strings, floats as doubles.
pub fn json_table(map: &Map<String, Value>) -> ApiResult<FieldTable> {
    let mut table = FieldTable::new();
    for (k, v) in map {
        let key = ShortString::try_from(k.as_str())
            .map_err(|_| ApiError::bad_request(format!("argument name too long: {k}")))?;
        table.insert(key, json_value(v)?);
    }
    Ok(table)
}

fn json_value(v: &Value) -> ApiResult<FieldValue> {
    Ok(match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => FieldValue::F64(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => FieldValue::LongString(Bytes::from(s.clone())),
        Value::Array(items) => {
            FieldValue::Array(items.iter().map(json_value).collect::<ApiResult<_>>()?)
        }
        Value::Object(m) => FieldValue::Table(json_table(m)?),
    })
}

/// The default exchange is `amq.default` in paths, as in RabbitMQ.
pub fn exchange_name(path: &str) -> &str {
    if path == "amq.default" { "" } else { path }
}

/// A name from a path or body as a short string (255 bytes at most).
pub fn short(name: &str) -> ApiResult<ShortString> {
    ShortString::try_from(name).map_err(|_| ApiError::bad_request("name too long"))
}

/// What identifies a binding among those between the same source and destination:
/// the routing key, percent-encoded, then `~` and a hash of the arguments when there
/// are any (RabbitMQ's shape; its hash is of Erlang terms, so clients take the key
/// from a listing, never compute it).
pub fn properties_key(routing_key: &str, arguments: &FieldTable) -> String {
    let key = percent_encode(routing_key);
    if arguments.is_empty() {
        if key.is_empty() { "~".into() } else { key }
    } else {
        let digest = foldhash::fast::FixedState::with_seed(0x6d67_6d74);
        let h = std::hash::BuildHasher::hash_one(&digest, arguments_key(arguments));
        format!(
            "{key}~{}",
            crate::auth::base64::encode(&h.to_be_bytes()[..6])
        )
        .replace('+', "-")
        .replace('/', "_")
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A name as one path segment (for `Location` headers).
pub fn segment(s: &str) -> String {
    percent_encode(s).replace("%7E", "~")
}

/// Message properties as RabbitMQ's API shows them: only those that are set.
pub fn properties_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut text = |k: &str, v: &Option<ShortString>| {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.to_string()));
        }
    };
    text("content_type", &p.content_type);
    text("content_encoding", &p.content_encoding);
    text("correlation_id", &p.correlation_id);
    text("reply_to", &p.reply_to);
    text("expiration", &p.expiration);
    text("message_id", &p.message_id);
    text("type", &p.r#type);
    text("user_id", &p.user_id);
    text("app_id", &p.app_id);
    text("cluster_id", &p.cluster_id);
    if let Some(d) = p.delivery_mode {
        m.insert("delivery_mode".into(), d.into());
    }
    if let Some(d) = p.priority {
        m.insert("priority".into(), d.into());
    }
    if let Some(t) = p.timestamp {
        m.insert("timestamp".into(), t.into());
    }
    if let Some(h) = &p.headers {
        m.insert("headers".into(), table_json(h));
    }
    Value::Object(m)
}
