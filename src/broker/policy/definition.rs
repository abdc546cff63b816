//! One policy as RabbitMQ stores it (`pattern`, `apply-to`, `priority`, `definition`),
//! checked when it is set so that nothing later has to handle a bad value.
//!
//! The definition keeps its JSON as given (that is what listing and export show) beside
//! the typed settings the broker acts on. Keys fedamq acts on are checked as RabbitMQ's
//! validators check them, with their texts; keys RabbitMQ knows but fedamq has no
//! behaviour for (mirroring, queue modes, …) are kept and shown, so that a definitions
//! file exported from RabbitMQ imports; any other key is refused, as RabbitMQ refuses it.

use regex::bytes::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::PolicyError;
use crate::broker::queue_args::{MAX_EXPIRY_MS, Overflow};
use crate::protocol::ShortString;

/// A user policy (`set_policy`) or an operator policy (`set_operator_policy`): the two
/// are separate namespaces with separate rules for which keys they may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    User,
    Operator,
}

impl PolicyKind {
    /// The runtime-parameter component RabbitMQ stores this kind under (definitions
    /// exports list operator policies among the parameters with this component).
    pub fn component(self) -> &'static str {
        match self {
            PolicyKind::User => "policy",
            PolicyKind::Operator => "operator_policy",
        }
    }
}

/// What a policy applies to (`apply-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyTo {
    Queues,
    Exchanges,
    #[default]
    All,
}

impl ApplyTo {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }

    pub fn parse(s: &str) -> Result<ApplyTo, PolicyError> {
        match s {
            "queues" => Ok(ApplyTo::Queues),
            "exchanges" => Ok(ApplyTo::Exchanges),
            "all" => Ok(ApplyTo::All),
            other => Err(PolicyError::validation(format!(
                "\"{other}\" is not a valid apply-to value"
            ))),
        }
    }

    /// Whether it covers objects of `kind`.
    pub fn covers(self, kind: ObjectKind) -> bool {
        matches!(
            (self, kind),
            (ApplyTo::All, _)
                | (ApplyTo::Queues, ObjectKind::Queue)
                | (ApplyTo::Exchanges, ObjectKind::Exchange)
        )
    }
}

/// The two kinds of object a policy can apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Queue,
    Exchange,
}

/// The settings of a definition that fedamq acts on or reports, typed. Each is `None`
/// when the definition does not have the key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySettings {
    pub message_ttl: Option<u64>,
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Option<Overflow>,
    pub dead_letter_exchange: Option<ShortString>,
    pub dead_letter_routing_key: Option<ShortString>,
    /// Stored and reported for federation (no behaviour yet).
    pub federation_upstream: Option<String>,
    pub federation_upstream_set: Option<String>,
}

/// Keys RabbitMQ 3.10 accepts in a user policy that fedamq keeps without acting on.
const KEPT_USER_KEYS: &[&str] = &[
    "alternate-exchange",
    "consumer-timeout",
    "dead-letter-strategy",
    "delivery-limit",
    "ha-mode",
    "ha-params",
    "ha-promote-on-failure",
    "ha-promote-on-shutdown",
    "ha-sync-batch-size",
    "ha-sync-mode",
    "initial-cluster-size",
    "max-age",
    "max-in-memory-bytes",
    "max-in-memory-length",
    "queue-leader-locator",
    "queue-master-locator",
    "queue-mode",
    "queue-version",
    "stream-max-segment-size-bytes",
];

/// Keys RabbitMQ 3.10 accepts in an operator policy that fedamq keeps without acting on.
const KEPT_OPERATOR_KEYS: &[&str] = &[
    "delivery-limit",
    "max-in-memory-bytes",
    "max-in-memory-length",
];

/// The keys an operator policy may set and fedamq acts on (RabbitMQ's
/// `operator_policy_validator`s): the numeric limits, merged with a user policy's by
/// taking the lower value.
const OPERATOR_KEYS: &[&str] = &["expires", "message-ttl", "max-length", "max-length-bytes"];

/// A policy's `definition`: the JSON as given and the typed settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDefinition {
    json: Map<String, Value>,
    settings: PolicySettings,
}

impl PolicyDefinition {
    /// Checks a definition (a JSON object) for a policy of `kind`.
    pub fn parse(kind: PolicyKind, value: &Value) -> Result<PolicyDefinition, PolicyError> {
        let Value::Object(json) = value else {
            return Err(PolicyError::validation(format!(
                "definition must be a JSON object, got {value}"
            )));
        };
        if json.is_empty() {
            return Err(PolicyError::validation("no policy provided"));
        }
        let mut s = PolicySettings::default();
        let mut unknown = Vec::new();
        for (key, v) in json {
            let acted_on = match kind {
                PolicyKind::User => true,
                PolicyKind::Operator => OPERATOR_KEYS.contains(&key.as_str()),
            };
            let kept = match kind {
                PolicyKind::User => KEPT_USER_KEYS,
                PolicyKind::Operator => KEPT_OPERATOR_KEYS,
            };
            if kept.contains(&key.as_str()) {
                continue;
            }
            if !acted_on || !set_key(&mut s, key, v)? {
                unknown.push(key.as_str());
            }
        }
        if !unknown.is_empty() {
            let list: Vec<String> = unknown.iter().map(|k| format!("<<\"{k}\">>")).collect();
            return Err(PolicyError::validation(format!(
                "[{}] are not recognised policy settings",
                list.join(",")
            )));
        }
        if s.federation_upstream.is_some() && s.federation_upstream_set.is_some() {
            return Err(PolicyError::validation(
                "cannot specify federation-upstream and federation-upstream-set together",
            ));
        }
        Ok(PolicyDefinition {
            json: json.clone(),
            settings: s,
        })
    }

    /// The definition as given.
    pub fn json(&self) -> &Map<String, Value> {
        &self.json
    }

    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }
}

/// Sets one known key from its JSON value; false if `key` is not one fedamq acts on.
fn set_key(s: &mut PolicySettings, key: &str, v: &Value) -> Result<bool, PolicyError> {
    let int = |min: u64, max: u64, what: &str| -> Result<u64, PolicyError> {
        v.as_u64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| PolicyError::validation(format!("{v} is not a valid {what}")))
    };
    let name = |what: &str| -> Result<ShortString, PolicyError> {
        v.as_str()
            .and_then(|t| ShortString::try_from(t).ok())
            .ok_or_else(|| PolicyError::validation(format!("{v} is not a valid {what}")))
    };
    let text = |what: &str| -> Result<String, PolicyError> {
        v.as_str().map(str::to_owned).ok_or_else(|| {
            PolicyError::validation(format!("{what} should be a string, actually was {v}"))
        })
    };
    let max_expiry = MAX_EXPIRY_MS as u64;
    match key {
        "message-ttl" => s.message_ttl = Some(int(0, max_expiry, "message TTL")?),
        "expires" => s.expires = Some(int(1, max_expiry, "queue expiry")?),
        "max-length" => s.max_length = Some(int(0, u64::MAX, "maximum length")?),
        "max-length-bytes" => {
            s.max_length_bytes = Some(int(0, u64::MAX, "maximum length in bytes")?)
        }
        "overflow" => {
            s.overflow = Some(match v.as_str() {
                Some("drop-head") => Overflow::DropHead,
                Some("reject-publish") => Overflow::RejectPublish,
                Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
                _ => {
                    return Err(PolicyError::validation(format!(
                        "{v} is not a valid overflow value"
                    )));
                }
            })
        }
        "dead-letter-exchange" => s.dead_letter_exchange = Some(name("dead letter exchange")?),
        "dead-letter-routing-key" => {
            s.dead_letter_routing_key = Some(name("dead letter routing key")?)
        }
        "federation-upstream" => s.federation_upstream = Some(text("federation-upstream")?),
        "federation-upstream-set" => {
            s.federation_upstream_set = Some(text("federation-upstream-set")?)
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// A policy, checked.
#[derive(Debug, Clone)]
pub struct Policy {
    pub vhost: String,
    pub name: String,
    pub kind: PolicyKind,
    pub pattern: String,
    regex: Regex,
    pub apply_to: ApplyTo,
    pub priority: i64,
    pub definition: PolicyDefinition,
}

impl Policy {
    /// Checks a policy as RabbitMQ's `set_policy` does: the pattern compiles, the
    /// definition holds only keys this kind of policy may have, with valid values.
    pub fn new(
        kind: PolicyKind,
        vhost: &str,
        name: &str,
        pattern: &str,
        apply_to: ApplyTo,
        priority: i64,
        definition: &Value,
    ) -> Result<Policy, PolicyError> {
        if name.is_empty() {
            return Err(PolicyError::validation("policy name must not be empty"));
        }
        // Unanchored and on bytes, as `re:run(Name, Pattern)`; unlike permissions, an
        // empty pattern matches every name.
        let regex = RegexBuilder::new(pattern)
            .unicode(false)
            .build()
            .map_err(|e| {
                PolicyError::validation(format!(
                    "\"{pattern}\" is not a valid regular expression: {e}"
                ))
            })?;
        Ok(Policy {
            vhost: vhost.to_owned(),
            name: name.to_owned(),
            kind,
            pattern: pattern.to_owned(),
            regex,
            apply_to,
            priority,
            definition: PolicyDefinition::parse(kind, definition)?,
        })
    }

    /// Whether it applies to the object `name` of `kind`.
    pub fn matches(&self, kind: ObjectKind, name: &[u8]) -> bool {
        self.apply_to.covers(kind) && self.regex.is_match(name)
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Policy) -> bool {
        (&self.vhost, &self.name, self.kind, &self.pattern)
            == (&other.vhost, &other.name, other.kind, &other.pattern)
            && (self.apply_to, self.priority) == (other.apply_to, other.priority)
            && self.definition == other.definition
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(def: Value) -> Result<Policy, PolicyError> {
        Policy::new(PolicyKind::User, "/", "p", "^q", ApplyTo::Queues, 0, &def)
    }

    #[test]
    fn known_keys_are_typed() {
        let p = user(json!({
            "message-ttl": 1000, "expires": 5000, "max-length": 3, "max-length-bytes": 100,
            "overflow": "reject-publish", "dead-letter-exchange": "dlx",
            "dead-letter-routing-key": "dead", "federation-upstream": "up"
        }))
        .unwrap();
        let s = p.definition.settings();
        assert_eq!(s.message_ttl, Some(1000));
        assert_eq!(s.expires, Some(5000));
        assert_eq!(s.max_length, Some(3));
        assert_eq!(s.max_length_bytes, Some(100));
        assert_eq!(s.overflow, Some(Overflow::RejectPublish));
        assert_eq!(s.dead_letter_exchange.as_ref().unwrap(), "dlx");
        assert_eq!(s.dead_letter_routing_key.as_ref().unwrap(), "dead");
        assert_eq!(s.federation_upstream.as_deref(), Some("up"));
        assert_eq!(p.definition.json().len(), 8);
    }

    #[test]
    fn bad_values_are_refused_with_rabbitmq_texts() {
        for (def, text) in [
            (json!({"message-ttl": -1}), "-1 is not a valid message TTL"),
            (
                json!({"message-ttl": "1"}),
                "\"1\" is not a valid message TTL",
            ),
            (json!({"expires": 0}), "0 is not a valid queue expiry"),
            (
                json!({"max-length": 1.5}),
                "1.5 is not a valid maximum length",
            ),
            (
                json!({"overflow": "drop"}),
                "\"drop\" is not a valid overflow value",
            ),
            (
                json!({"dead-letter-exchange": 1}),
                "1 is not a valid dead letter exchange",
            ),
            (
                json!({"foo": 1}),
                "[<<\"foo\">>] are not recognised policy settings",
            ),
            (json!({}), "no policy provided"),
            (json!([1]), "definition must be a JSON object, got [1]"),
            (
                json!({"federation-upstream": "a", "federation-upstream-set": "all"}),
                "cannot specify federation-upstream and federation-upstream-set together",
            ),
        ] {
            let e = user(def.clone()).unwrap_err();
            assert_eq!(e.status(), 400, "{def}");
            assert!(e.reason().contains(text), "{def}: {}", e.reason());
        }
    }

    #[test]
    fn rabbitmq_keys_without_behaviour_are_kept() {
        let p = user(json!({"ha-mode": "all", "queue-mode": "lazy", "max-length": 1})).unwrap();
        assert_eq!(p.definition.json()["ha-mode"], "all");
        assert_eq!(p.definition.settings().max_length, Some(1));
    }

    #[test]
    fn operator_policies_take_only_limits() {
        let op = |def| {
            Policy::new(
                PolicyKind::Operator,
                "/",
                "o",
                ".*",
                ApplyTo::Queues,
                0,
                &def,
            )
        };
        assert!(op(json!({"max-length": 1, "message-ttl": 5, "expires": 9})).is_ok());
        let e = op(json!({"dead-letter-exchange": "x"})).unwrap_err();
        assert!(e.reason().contains("not recognised"), "{}", e.reason());
    }

    #[test]
    fn pattern_is_unanchored_and_apply_to_filters() {
        let p = Policy::new(
            PolicyKind::User,
            "/",
            "p",
            "ab",
            ApplyTo::Exchanges,
            0,
            &json!({"max-length": 1}),
        )
        .unwrap();
        assert!(p.matches(ObjectKind::Exchange, b"xaby"));
        assert!(!p.matches(ObjectKind::Queue, b"xaby"));
        assert!(!p.matches(ObjectKind::Exchange, b"ba"));
        let all = Policy::new(
            PolicyKind::User,
            "/",
            "p",
            "",
            ApplyTo::All,
            0,
            &json!({"max-length": 1}),
        )
        .unwrap();
        assert!(all.matches(ObjectKind::Queue, b"anything"));
        let bad = Policy::new(
            PolicyKind::User,
            "/",
            "p",
            "(",
            ApplyTo::All,
            0,
            &json!({"max-length": 1}),
        );
        assert!(
            bad.unwrap_err()
                .reason()
                .contains("not a valid regular expression")
        );
        assert!(ApplyTo::parse("both").is_err());
    }
}
