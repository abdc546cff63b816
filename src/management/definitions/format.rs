//! RabbitMQ's definitions JSON, as serde types.
//!
//! Field names are RabbitMQ's. Reading is lenient where RabbitMQ versions differ: user
//! `tags` is a list (3.10 and later) or a comma-separated string (earlier); a policy's
//! `definition` held in an `operator_policy` parameter is an object or, as 3.10 exports
//! it, a list of `[key, value]` pairs; fields RabbitMQ added later or that fedamq has no
//! use for are ignored. The `vhost` of an object is absent in a per-vhost file.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A whole broker's definitions (`rabbitmqctl export_definitions`, `GET /api/definitions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbit_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rabbitmq_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    #[serde(default)]
    pub users: Vec<UserDef>,
    #[serde(default)]
    pub vhosts: Vec<VHostDef>,
    #[serde(default)]
    pub permissions: Vec<PermissionDef>,
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermissionDef>,
    #[serde(default)]
    pub parameters: Vec<ParameterDef>,
    #[serde(default)]
    pub global_parameters: Vec<GlobalParameterDef>,
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    #[serde(default)]
    pub exchanges: Vec<ExchangeDef>,
    #[serde(default)]
    pub bindings: Vec<BindingDef>,
}

/// One vhost's definitions (`GET /api/definitions/{vhost}`): no users, vhosts or
/// permissions, and no `vhost` field in the objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VHostDefinitions {
    pub rabbit_version: String,
    pub rabbitmq_version: String,
    pub product_name: String,
    pub product_version: String,
    pub parameters: Vec<ParameterDef>,
    pub policies: Vec<PolicyDef>,
    pub queues: Vec<QueueDef>,
    pub exchanges: Vec<ExchangeDef>,
    pub bindings: Vec<BindingDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// A password in clear, which RabbitMQ's import also takes; never exported.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashing_algorithm: Option<String>,
    #[serde(default, deserialize_with = "tags")]
    pub tags: Vec<String>,
    #[serde(default = "empty_object")]
    pub limits: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VHostDef {
    pub name: String,
    #[serde(default)]
    pub limits: Value,
    #[serde(default)]
    pub metadata: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermissionDef {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicPermissionDef {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterDef {
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    pub component: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalParameterDef {
    pub name: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to", default = "all")]
    pub apply_to: String,
    pub definition: Value,
    #[serde(default)]
    pub priority: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    #[serde(default = "yes")]
    pub durable: bool,
    #[serde(default)]
    pub auto_delete: bool,
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "yes")]
    pub durable: bool,
    #[serde(default)]
    pub auto_delete: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    pub destination: String,
    pub destination_type: String,
    #[serde(default)]
    pub routing_key: String,
    #[serde(default)]
    pub arguments: Map<String, Value>,
}

/// The value of an `operator_policy` (or `policy`) parameter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PolicyValue {
    pub pattern: String,
    #[serde(rename = "apply-to", default = "all")]
    pub apply_to: String,
    pub definition: Value,
    #[serde(default)]
    pub priority: i64,
}

fn yes() -> bool {
    true
}

fn all() -> String {
    "all".into()
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// A policy definition as an object, whether written as one or as `[key, value]` pairs.
pub fn definition_object(v: &Value) -> Option<Value> {
    match v {
        Value::Object(_) => Some(v.clone()),
        Value::Array(pairs) => {
            let mut map = Map::new();
            for pair in pairs {
                match pair.as_array().map(Vec::as_slice) {
                    Some([Value::String(k), v]) => {
                        map.insert(k.clone(), v.clone());
                    }
                    _ => return None,
                }
            }
            Some(Value::Object(map))
        }
        _ => None,
    }
}

/// User tags: a list, or a comma-separated string (RabbitMQ before 3.10).
fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Tags;
    impl<'de> Visitor<'de> for Tags {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of tags or a comma-separated string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            Ok(s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(t) = seq.next_element::<String>()? {
                out.push(t);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(Tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_as_list_or_string() {
        let u: UserDef = serde_json::from_value(json!({
            "name": "a", "password_hash": "", "tags": "administrator, monitoring"
        }))
        .unwrap();
        assert_eq!(u.tags, ["administrator", "monitoring"]);
        let u: UserDef =
            serde_json::from_value(json!({"name": "a", "tags": ["management"]})).unwrap();
        assert_eq!(u.tags, ["management"]);
        let u: UserDef = serde_json::from_value(json!({"name": "a", "tags": ""})).unwrap();
        assert!(u.tags.is_empty());
        assert!(serde_json::from_value::<UserDef>(json!({"name": "a", "tags": 1})).is_err());
    }

    #[test]
    fn definitions_as_pairs() {
        assert_eq!(
            definition_object(&json!([["max-length", 3], ["message-ttl", 5]])),
            Some(json!({"max-length": 3, "message-ttl": 5}))
        );
        assert_eq!(definition_object(&json!([["max-length"]])), None);
        assert_eq!(definition_object(&json!(1)), None);
    }
}
