//! Which policies apply to an object, and the queue settings that result: RabbitMQ's
//! rules for combining a user policy, an operator policy and the queue's own arguments.
//!
//! - One user policy and one operator policy per object: of those whose pattern matches
//!   and whose `apply-to` covers the object, the highest `priority`. RabbitMQ leaves a
//!   tie to the order of its parameter table (unspecified); here the name that sorts
//!   first wins, so the choice is at least stable.
//! - User and operator policy: for each key both set, the lower value
//!   (`rabbit_policy:merge_policy_value`); otherwise whichever has it.
//! - Policy and queue argument (`rabbit_amqqueue_process:process_args_policy`): for
//!   `expires`, `message-ttl`, `max-length` and `max-length-bytes` the lower of the two;
//!   for `dead-letter-exchange`, `dead-letter-routing-key` and `overflow` the argument.

use std::sync::Arc;

use super::definition::{ObjectKind, Policy, PolicySettings};
use crate::broker::queue_args::QueueArgs;
use crate::protocol::FieldTable;

/// The policies in force for one object.
#[derive(Debug, Clone, Default)]
pub struct EffectivePolicy {
    pub policy: Option<Arc<Policy>>,
    pub operator_policy: Option<Arc<Policy>>,
}

/// The best match of `kind` `name` among `policies` (see the module docs).
pub fn best<'a>(
    policies: impl IntoIterator<Item = &'a Arc<Policy>>,
    kind: ObjectKind,
    name: &[u8],
) -> Option<Arc<Policy>> {
    let mut best: Option<&Arc<Policy>> = None;
    for p in policies {
        if !p.matches(kind, name) {
            continue;
        }
        let better = best.is_none_or(|b| {
            p.priority > b.priority || (p.priority == b.priority && p.name < b.name)
        });
        if better {
            best = Some(p);
        }
    }
    best.cloned()
}

fn min_of(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl EffectivePolicy {
    /// Whether both name the same policies (the same `Arc`s: a policy set again, even
    /// unchanged, counts as a change).
    pub fn same_as(&self, other: &EffectivePolicy) -> bool {
        fn same(a: &Option<Arc<Policy>>, b: &Option<Arc<Policy>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        same(&self.policy, &other.policy) && same(&self.operator_policy, &other.operator_policy)
    }

    pub fn policy_name(&self) -> Option<&str> {
        self.policy.as_deref().map(|p| p.name.as_str())
    }

    pub fn operator_policy_name(&self) -> Option<&str> {
        self.operator_policy.as_deref().map(|p| p.name.as_str())
    }

    /// What the policies set, user and operator merged.
    pub fn settings(&self) -> PolicySettings {
        let empty = PolicySettings::default();
        let user = self
            .policy
            .as_deref()
            .map_or(&empty, |p| p.definition.settings());
        let op = self
            .operator_policy
            .as_deref()
            .map_or(&empty, |p| p.definition.settings());
        PolicySettings {
            message_ttl: min_of(user.message_ttl, op.message_ttl),
            expires: min_of(user.expires, op.expires),
            max_length: min_of(user.max_length, op.max_length),
            max_length_bytes: min_of(user.max_length_bytes, op.max_length_bytes),
            ..user.clone()
        }
    }

    /// The definition in force, as RabbitMQ reports it (`effective_policy_definition`):
    /// the user policy's keys, with the operator policy's merged in (the lower of two
    /// numbers, else the operator's value).
    pub fn definition(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = self
            .policy
            .as_deref()
            .map(|p| p.definition.json().clone())
            .unwrap_or_default();
        if let Some(op) = self.operator_policy.as_deref() {
            for (k, v) in op.definition.json() {
                let merged = match (out.get(k).and_then(|u| u.as_u64()), v.as_u64()) {
                    (Some(u), Some(o)) => serde_json::Value::from(u.min(o)),
                    _ => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
        }
        out
    }

    /// A queue's settings: its declared arguments (`declared`, parsed from
    /// `arguments`) combined with these policies.
    pub fn queue_settings(&self, declared: &QueueArgs, arguments: &FieldTable) -> QueueArgs {
        let p = self.settings();
        let mut out = declared.clone();
        out.message_ttl = min_of(declared.message_ttl, p.message_ttl);
        out.expires = min_of(declared.expires, p.expires);
        out.max_length = min_of(declared.max_length, p.max_length);
        out.max_length_bytes = min_of(declared.max_length_bytes, p.max_length_bytes);
        if declared.dead_letter_exchange.is_none() {
            out.dead_letter_exchange = p.dead_letter_exchange;
        }
        if declared.dead_letter_routing_key.is_none() {
            out.dead_letter_routing_key = p.dead_letter_routing_key;
        }
        // `overflow` has a default, so whether the client gave one is in the table.
        if arguments.get("x-overflow").is_none() {
            if let Some(o) = p.overflow {
                out.overflow = o;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::policy::definition::{ApplyTo, PolicyKind};
    use crate::broker::queue_args::Overflow;
    use crate::protocol::{FieldValue, ShortString};
    use serde_json::{Value, json};

    fn policy(
        kind: PolicyKind,
        name: &str,
        pattern: &str,
        apply: ApplyTo,
        prio: i64,
        def: Value,
    ) -> Arc<Policy> {
        Arc::new(Policy::new(kind, "/", name, pattern, apply, prio, &def).unwrap())
    }

    fn user(name: &str, pattern: &str, prio: i64, def: Value) -> Arc<Policy> {
        policy(PolicyKind::User, name, pattern, ApplyTo::All, prio, def)
    }

    #[test]
    fn highest_priority_wins_and_ties_go_to_the_first_name() {
        let ps = [
            user("b", "^q", 1, json!({"max-length": 1})),
            user("a", "^q", 1, json!({"max-length": 2})),
            user("c", "^q", 0, json!({"max-length": 3})),
            user("z", "^x", 9, json!({"max-length": 4})),
        ];
        assert_eq!(best(&ps, ObjectKind::Queue, b"q1").unwrap().name, "a");
        assert_eq!(best(&ps, ObjectKind::Queue, b"x").unwrap().name, "z");
        assert!(best(&ps, ObjectKind::Queue, b"other").is_none());
        let higher = user("d", "q", 2, json!({"max-length": 5}));
        let more: Vec<_> = ps.iter().cloned().chain([higher]).collect();
        assert_eq!(best(&more, ObjectKind::Queue, b"q1").unwrap().name, "d");
    }

    #[test]
    fn apply_to_excludes_the_other_kind() {
        let ps = [
            policy(
                PolicyKind::User,
                "ex",
                ".*",
                ApplyTo::Exchanges,
                5,
                json!({"federation-upstream": "u"}),
            ),
            policy(
                PolicyKind::User,
                "qs",
                ".*",
                ApplyTo::Queues,
                0,
                json!({"max-length": 1}),
            ),
        ];
        assert_eq!(best(&ps, ObjectKind::Queue, b"n").unwrap().name, "qs");
        assert_eq!(best(&ps, ObjectKind::Exchange, b"n").unwrap().name, "ex");
    }

    #[test]
    fn operator_policy_lower_value_wins() {
        let e = EffectivePolicy {
            policy: Some(user(
                "u",
                ".*",
                0,
                json!({"max-length": 10, "message-ttl": 100, "overflow": "reject-publish"}),
            )),
            operator_policy: Some(policy(
                PolicyKind::Operator,
                "o",
                ".*",
                ApplyTo::Queues,
                0,
                json!({"max-length": 5, "message-ttl": 1000, "expires": 7}),
            )),
        };
        let s = e.settings();
        assert_eq!(s.max_length, Some(5));
        assert_eq!(s.message_ttl, Some(100));
        assert_eq!(s.expires, Some(7));
        assert_eq!(s.overflow, Some(Overflow::RejectPublish));
        assert_eq!(
            serde_json::Value::Object(e.definition()),
            json!({"max-length": 5, "message-ttl": 100, "overflow": "reject-publish", "expires": 7})
        );
    }

    #[test]
    fn arguments_win_for_dlx_and_overflow_lower_wins_for_limits() {
        let e = EffectivePolicy {
            policy: Some(user(
                "u",
                ".*",
                0,
                json!({
                    "max-length": 10, "message-ttl": 100, "dead-letter-exchange": "pdlx",
                    "dead-letter-routing-key": "pk", "overflow": "reject-publish"
                }),
            )),
            operator_policy: None,
        };
        let mut args = FieldTable::new();
        args.insert(
            ShortString::from_static("x-max-length"),
            FieldValue::I32(20),
        );
        args.insert(
            ShortString::from_static("x-message-ttl"),
            FieldValue::I32(50),
        );
        args.insert(
            ShortString::from_static("x-dead-letter-exchange"),
            FieldValue::from("adlx"),
        );
        args.insert(
            ShortString::from_static("x-overflow"),
            FieldValue::from("drop-head"),
        );
        let declared = QueueArgs::parse(&args).unwrap();
        let s = e.queue_settings(&declared, &args);
        assert_eq!(s.max_length, Some(10));
        assert_eq!(s.message_ttl, Some(50));
        assert_eq!(s.dead_letter_exchange.unwrap(), "adlx");
        // The argument table has no routing key: the policy's applies.
        assert_eq!(s.dead_letter_routing_key.unwrap(), "pk");
        assert_eq!(s.overflow, Overflow::DropHead);
        // Without arguments, the policy's values.
        let none = e.queue_settings(&QueueArgs::default(), &FieldTable::new());
        assert_eq!(none.overflow, Overflow::RejectPublish);
        assert_eq!(none.dead_letter_exchange.unwrap(), "pdlx");
        assert_eq!(none.max_length, Some(10));
    }
}
