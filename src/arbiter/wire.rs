//! The JSON of etcd's gateway for the calls the arbiter makes: requests built, answers
//! read. etcd writes 64-bit integers as strings and leaves out fields that are zero or
//! false; keys and values are base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::error::ArbiterError;

/// One key-value pair as `range` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A 64-bit integer field, written as a string or a number; absent is 0.
pub fn int(v: &Value, field: &str) -> Result<i64, ArbiterError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| ArbiterError::Protocol(format!("{field} is not an integer: {s:?}"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| ArbiterError::Protocol(format!("{field} is not an integer: {n}"))),
        Some(other) => Err(ArbiterError::Protocol(format!(
            "{field} is not an integer: {other}"
        ))),
    }
}

/// The answer's `header.revision`.
pub fn revision(answer: &Value) -> Result<i64, ArbiterError> {
    int(answer.get("header").unwrap_or(&Value::Null), "revision")
}

/// An error answer (`{"error": …, "code": N}`) as [`ArbiterError::Etcd`].
pub fn check_error(answer: &Value) -> Result<(), ArbiterError> {
    let body = answer.get("error").map(|_| answer);
    match body {
        Some(e) => Err(ArbiterError::Etcd {
            code: int(e, "code").unwrap_or(-1),
            message: e
                .get("message")
                .or_else(|| e.get("error"))
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_string(),
        }),
        None => Ok(()),
    }
}

pub fn grant(ttl_secs: u64) -> Value {
    json!({ "TTL": ttl_secs.to_string() })
}

pub fn lease_id(id: i64) -> Value {
    json!({ "ID": id.to_string() })
}

/// Puts `value` at `key` under `lease` if the key does not exist; otherwise reads it.
pub fn put_if_absent(key: &[u8], value: &[u8], lease: i64) -> Value {
    json!({
        "compare": [{ "target": "CREATE", "key": b64(key), "create_revision": "0" }],
        "success": [{ "request_put": { "key": b64(key), "value": b64(value), "lease": lease.to_string() } }],
        "failure": [{ "request_range": { "key": b64(key) } }],
    })
}

pub fn range(key: &[u8]) -> Value {
    json!({ "key": b64(key) })
}

/// Deletes `key` whatever holds it: for tests and operators, not the holder's path.
pub fn delete(key: &[u8]) -> Value {
    json!({ "key": b64(key) })
}

/// A range answer's first key-value pair, if any.
pub fn first_kv(range_answer: &Value) -> Result<Option<KeyValue>, ArbiterError> {
    let Some(kv) = range_answer
        .get("kvs")
        .and_then(Value::as_array)
        .and_then(|kvs| kvs.first())
    else {
        return Ok(None);
    };
    let value = match kv.get("value").and_then(Value::as_str) {
        Some(s) => STANDARD
            .decode(s)
            .map_err(|e| ArbiterError::Protocol(format!("value is not base64: {e}")))?,
        None => Vec::new(),
    };
    Ok(Some(KeyValue {
        value,
        create_revision: int(kv, "create_revision")?,
        mod_revision: int(kv, "mod_revision")?,
        lease: int(kv, "lease")?,
    }))
}

/// A txn answer: whether the compare held, and (when it did not) the key read by the
/// failure branch.
pub fn txn_outcome(answer: &Value) -> Result<(bool, Option<KeyValue>), ArbiterError> {
    let succeeded = answer
        .get("succeeded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if succeeded {
        return Ok((true, None));
    }
    let range = answer
        .get("responses")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(|r| r.get("response_range"))
        .ok_or_else(|| ArbiterError::Protocol("txn failed without a range answer".into()))?;
    Ok((false, first_kv(range)?))
}

/// A keepalive answer's remaining TTL in seconds; 0 when etcd no longer knows the
/// lease. The gateway wraps each streamed answer in `{"result": …}`.
pub fn keepalive_ttl(answer: &Value) -> Result<i64, ArbiterError> {
    let result = answer.get("result").unwrap_or(answer);
    check_error(result)?;
    int(result, "TTL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_etcds_answers() {
        let failed: Value = serde_json::from_str(
            r#"{"header":{"revision":"2"},"responses":[{"response_range":{"header":{"revision":"2"},
            "kvs":[{"key":"L2s=","create_revision":"2","mod_revision":"3","version":"1","value":"bWU=","lease":"41"}],"count":"1"}}]}"#,
        )
        .unwrap();
        let (ok, kv) = txn_outcome(&failed).unwrap();
        assert!(!ok);
        let kv = kv.unwrap();
        assert_eq!(kv.value, b"me");
        assert_eq!((kv.create_revision, kv.mod_revision, kv.lease), (2, 3, 41));
        assert_eq!(revision(&failed).unwrap(), 2);

        let gone: Value = serde_json::from_str(r#"{"result":{"header":{},"ID":"7"}}"#).unwrap();
        assert_eq!(keepalive_ttl(&gone).unwrap(), 0);
        let alive: Value = serde_json::from_str(r#"{"result":{"ID":"7","TTL":"5"}}"#).unwrap();
        assert_eq!(keepalive_ttl(&alive).unwrap(), 5);

        let err: Value = serde_json::from_str(
            r#"{"error":"lease not found","message":"lease not found","code":5}"#,
        )
        .unwrap();
        assert_eq!(
            check_error(&err),
            Err(ArbiterError::Etcd {
                code: 5,
                message: "lease not found".into()
            })
        );
        // Bad input is an error, never a panic.
        let bad: Value =
            serde_json::from_str(r#"{"kvs":[{"value":"***","create_revision":{}}]}"#).unwrap();
        assert!(first_kv(&bad).is_err());
        assert!(txn_outcome(&json!({})).is_err());
    }
}
