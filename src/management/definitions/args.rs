//! Queue, exchange and binding arguments between JSON and AMQP field tables, as
//! RabbitMQ converts them (`rabbit_misc:to_amqp_table` and the management plugin's
//! formatting): integers are `long`, other numbers `double`, strings `longstr`, lists
//! `array`, objects `table`, `null` `void`.

use bytes::Bytes;
use serde_json::{Map, Number, Value};

use crate::protocol::{FieldTable, FieldValue, ShortString};

/// A JSON object as a field table; the error names the key that cannot be one.
pub fn to_table(map: &Map<String, Value>) -> Result<FieldTable, String> {
    map.iter()
        .map(|(k, v)| {
            let key = ShortString::try_from(k.as_str())
                .map_err(|_| format!("argument name '{k}' is longer than 255 bytes"))?;
            Ok((
                key,
                to_value(v).map_err(|e| format!("argument '{k}': {e}"))?,
            ))
        })
        .collect()
}

fn to_value(v: &Value) -> Result<FieldValue, String> {
    Ok(match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => FieldValue::F64(n.as_f64().ok_or_else(|| format!("{n} is out of range"))?),
        },
        Value::String(s) => FieldValue::LongString(Bytes::from(s.clone())),
        Value::Array(items) => {
            FieldValue::Array(items.iter().map(to_value).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => FieldValue::Table(to_table(map)?),
    })
}

/// A field table as a JSON object (strings that are not UTF-8 are shown lossily).
pub fn to_json(table: &FieldTable) -> Map<String, Value> {
    table
        .iter()
        .map(|(k, v)| (k.to_string(), value_to_json(v)))
        .collect()
}

fn value_to_json(v: &FieldValue) -> Value {
    let float = |f: f64| Number::from_f64(f).map_or(Value::Null, Value::Number);
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(n) => (*n).into(),
        FieldValue::U8(n) => (*n).into(),
        FieldValue::I16(n) => (*n).into(),
        FieldValue::U16(n) => (*n).into(),
        FieldValue::I32(n) => (*n).into(),
        FieldValue::U32(n) => (*n).into(),
        FieldValue::I64(n) => (*n).into(),
        FieldValue::Timestamp(n) => (*n).into(),
        FieldValue::F32(f) => float(f64::from(*f)),
        FieldValue::F64(f) => float(*f),
        FieldValue::Decimal { scale, value } => {
            float(f64::from(*value) / 10f64.powi(i32::from(*scale)))
        }
        FieldValue::LongString(b) | FieldValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        FieldValue::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        FieldValue::Table(t) => Value::Object(to_json(t)),
        FieldValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let j = json!({"x-max-length": 10, "x-dead-letter-exchange": "dlx", "ratio": 0.5,
                       "on": true, "list": [1, "a"], "nested": {"k": null}});
        let t = to_table(j.as_object().unwrap()).unwrap();
        assert_eq!(t.get("x-max-length"), Some(&FieldValue::I64(10)));
        assert_eq!(
            t.get("x-dead-letter-exchange"),
            Some(&FieldValue::from("dlx"))
        );
        assert_eq!(Value::Object(to_json(&t)), j);
    }

    #[test]
    fn long_keys_are_refused() {
        let mut m = Map::new();
        m.insert("k".repeat(256), json!(1));
        assert!(to_table(&m).unwrap_err().contains("longer than 255"));
    }
}
