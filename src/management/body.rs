//! Request bodies: JSON objects read field by field, so that each mistake gets
//! RabbitMQ's answer (`not_json` for a body that is not JSON, `["not_boolean","x"]` for
//! a field of the wrong type, `[{key_missing,…}]` for missing required fields), or whole
//! as a serde type ([`read_json`], for definitions files and policy bodies) with the
//! path of the field at fault.

use axum::body::Bytes;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// A request's JSON object; an empty body is an empty object (RabbitMQ's PUTs accept
/// one).
#[derive(Debug, Default)]
pub struct Fields(Map<String, Value>);

impl Fields {
    pub fn parse(body: &Bytes) -> ApiResult<Fields> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields::default());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => Ok(Fields(map)),
            Ok(_) | Err(_) => Err(ApiError::not_json()),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// Fails with RabbitMQ's list of the `keys` that are absent, if any.
    pub fn require(&self, keys: &[&str]) -> ApiResult<()> {
        let missing: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| self.get(k).is_none())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ApiError::keys_missing(&missing))
        }
    }

    /// A boolean; RabbitMQ also takes the strings "true" and "false".
    pub fn bool(&self, key: &str, default: bool) -> ApiResult<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" => Ok(true),
            Some(Value::String(s)) if s == "false" => Ok(false),
            Some(other) => Err(ApiError::wrong_type("not_boolean", other)),
        }
    }

    pub fn string(&self, key: &str) -> ApiResult<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::wrong_type("not_string", other)),
        }
    }

    /// A non-negative integer; numeric strings are accepted, as RabbitMQ does.
    pub fn integer(&self, key: &str) -> ApiResult<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
            Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
            Some(other) => Err(ApiError::wrong_type("not_integer", other)),
        }
    }

    /// A JSON object (an `arguments` or `properties` table); absent is empty.
    pub fn object(&self, key: &str) -> ApiResult<Map<String, Value>> {
        match self.get(key) {
            None => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            // RabbitMQ's forms send "" for "no arguments".
            Some(Value::String(s)) if s.is_empty() => Ok(Map::new()),
            Some(other) => Err(ApiError::wrong_type("not_object", other)),
        }
    }
}

/// Reads a JSON request body as `T`; the error names the path of the field at fault
/// (`users[1].tags: invalid type: …`), or is serde's text for malformed JSON.
pub fn read_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}
