//! One definition as replication carries it, and a broker's whole state as a set of
//! them, so that a snapshot and a change are the same thing: the difference between two
//! sets ([`diff`]).
//!
//! Left out, as a definitions export leaves them out: exclusive queues and their
//! bindings (they die with their connection), the default exchange, the `amq.*`
//! exchanges and the default exchange's implicit bindings. Arguments travel as the
//! AMQP-encoded table (base64), so their types arrive unchanged.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::base64;
use crate::broker::Broker;
use crate::broker::policy::PolicyKind;
use crate::broker::routing::Destination;
use crate::protocol::FieldTable;
use crate::protocol::wire::{Decoder, encode};

/// One object of a broker's definitions, with everything needed to recreate it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Def {
    Vhost {
        name: String,
    },
    User {
        name: String,
        /// `PasswordHash::encoded`, empty for a locked account.
        hash: String,
        algorithm: String,
        tags: Vec<String>,
    },
    Permission {
        user: String,
        vhost: String,
        configure: String,
        write: String,
        read: String,
    },
    GlobalParameter {
        name: String,
        value: Value,
    },
    Parameter {
        vhost: String,
        component: String,
        name: String,
        value: Value,
    },
    Policy {
        vhost: String,
        operator: bool,
        name: String,
        pattern: String,
        apply_to: String,
        priority: i64,
        definition: Value,
    },
    Exchange {
        vhost: String,
        name: String,
        #[serde(rename = "type")]
        kind: String,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: String,
    },
    Queue {
        vhost: String,
        name: String,
        durable: bool,
        auto_delete: bool,
        arguments: String,
    },
    Binding {
        vhost: String,
        source: String,
        /// `queue` or `exchange`.
        destination_type: String,
        destination: String,
        routing_key: String,
        arguments: String,
    },
}

/// What identifies a definition; ordered so that a thing comes after what it needs
/// (a vhost before its queues, a queue before its bindings).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Vhost(String),
    User(String),
    Permission(String, String),
    GlobalParameter(String),
    Parameter(String, String, String),
    Policy(String, bool, String),
    Exchange(String, String),
    Queue(String, String),
    Binding(String, String, String, String, String, String),
}

impl Def {
    pub fn key(&self) -> Key {
        match self {
            Def::Vhost { name } => Key::Vhost(name.clone()),
            Def::User { name, .. } => Key::User(name.clone()),
            Def::Permission { user, vhost, .. } => Key::Permission(user.clone(), vhost.clone()),
            Def::GlobalParameter { name, .. } => Key::GlobalParameter(name.clone()),
            Def::Parameter {
                vhost,
                component,
                name,
                ..
            } => Key::Parameter(vhost.clone(), component.clone(), name.clone()),
            Def::Policy {
                vhost,
                operator,
                name,
                ..
            } => Key::Policy(vhost.clone(), *operator, name.clone()),
            Def::Exchange { vhost, name, .. } => Key::Exchange(vhost.clone(), name.clone()),
            Def::Queue { vhost, name, .. } => Key::Queue(vhost.clone(), name.clone()),
            Def::Binding {
                vhost,
                source,
                destination_type,
                destination,
                routing_key,
                arguments,
            } => Key::Binding(
                vhost.clone(),
                source.clone(),
                destination_type.clone(),
                destination.clone(),
                routing_key.clone(),
                arguments.clone(),
            ),
        }
    }
}

/// A change to one definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Make it exist as given (create, or replace one that differs).
    Put { def: Def },
    /// Remove it.
    Delete { def: Def },
}

/// A broker's definitions, by key.
pub type State = BTreeMap<Key, Def>;

/// The changes that turn `from` into `to`, in an order that can be applied: removals
/// first, the dependants before what they depend on, then additions, in key order.
pub fn diff(from: &State, to: &State) -> Vec<Change> {
    let mut out: Vec<Change> = from
        .iter()
        .rev()
        .filter(|(k, _)| !to.contains_key(*k))
        .map(|(_, d)| Change::Delete { def: d.clone() })
        .collect();
    out.extend(
        to.iter()
            .filter(|(k, d)| from.get(*k) != Some(*d))
            .map(|(_, d)| Change::Put { def: d.clone() }),
    );
    out
}

/// Everything in `broker` that replication carries.
pub fn collect(broker: &Broker) -> State {
    let mut out = State::new();
    let mut add = |d: Def| {
        out.insert(d.key(), d);
    };
    let users = broker.users();
    for u in users.users() {
        add(Def::User {
            name: u.name,
            hash: u.password_hash.encoded(),
            algorithm: u.password_hash.algorithm_name().to_owned(),
            tags: u.tags,
        });
    }
    for p in users.permissions() {
        add(Def::Permission {
            user: p.user,
            vhost: p.vhost,
            configure: p.configure,
            write: p.write,
            read: p.read,
        });
    }
    for (name, value) in broker.global_parameters() {
        add(Def::GlobalParameter { name, value });
    }
    for name in broker.vhost_names() {
        add(Def::Vhost { name: name.clone() });
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        for p in vhost.parameters(None) {
            add(Def::Parameter {
                vhost: name.clone(),
                component: p.component,
                name: p.name,
                value: p.value,
            });
        }
        for kind in [PolicyKind::User, PolicyKind::Operator] {
            for p in vhost.policies(kind) {
                add(Def::Policy {
                    vhost: name.clone(),
                    operator: kind == PolicyKind::Operator,
                    name: p.name.clone(),
                    pattern: p.pattern.clone(),
                    apply_to: p.apply_to.as_str().to_owned(),
                    priority: p.priority,
                    definition: Value::Object(p.definition.json().clone()),
                });
            }
        }
        for q in vhost.queues() {
            if q.spec.exclusive_owner.is_some() {
                continue;
            }
            add(Def::Queue {
                vhost: name.clone(),
                name: q.name().to_string(),
                durable: q.spec.durable,
                auto_delete: q.spec.auto_delete,
                arguments: table_text(&q.spec.arguments),
            });
        }
        for x in vhost.exchanges() {
            if x.is_default() {
                continue;
            }
            if !is_reserved_exchange(x.name().as_bytes()) {
                add(Def::Exchange {
                    vhost: name.clone(),
                    name: x.name().to_string(),
                    kind: x.spec.kind.name().to_owned(),
                    durable: x.spec.durable,
                    auto_delete: x.spec.auto_delete,
                    internal: x.spec.internal,
                    arguments: table_text(&x.spec.arguments),
                });
            }
            for b in x.table().bindings() {
                let destination_type = match &b.destination {
                    Destination::Queue(q) => {
                        if vhost
                            .queue(q)
                            .is_none_or(|q| q.spec.exclusive_owner.is_some())
                        {
                            continue;
                        }
                        "queue"
                    }
                    Destination::Exchange(_) => "exchange",
                };
                add(Def::Binding {
                    vhost: name.clone(),
                    source: x.name().to_string(),
                    destination_type: destination_type.to_owned(),
                    destination: b.destination.name().to_string(),
                    routing_key: b.routing_key.to_string(),
                    arguments: table_text(&b.arguments),
                });
            }
        }
    }
    out
}

/// The default exchange and `amq.*`: every vhost has them, nobody replicates them.
pub fn is_reserved_exchange(name: &[u8]) -> bool {
    name.is_empty() || name.starts_with(b"amq.")
}

/// A field table as text: its AMQP encoding in base64.
pub fn table_text(table: &FieldTable) -> String {
    let mut buf = BytesMut::new();
    encode::table(&mut buf, table);
    base64::encode(&buf)
}

/// The field table [`table_text`] wrote; `None` if the text is not one.
pub fn table_from_text(text: &str) -> Option<FieldTable> {
    let bytes = Bytes::from(base64::decode(text)?);
    Decoder::new(&bytes).table().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{FieldValue, ShortString};

    #[test]
    fn a_table_survives_the_text_form_with_its_types() {
        let mut t = FieldTable::new();
        t.insert(
            ShortString::from_static("x-max-length"),
            FieldValue::I64(10),
        );
        t.insert(ShortString::from_static("x"), FieldValue::Bool(true));
        assert_eq!(table_from_text(&table_text(&t)), Some(t));
        assert_eq!(table_from_text("not base64!"), None);
    }

    #[test]
    fn a_diff_removes_dependants_first_and_adds_them_last() {
        let v = Def::Vhost { name: "v".into() };
        let q = Def::Queue {
            vhost: "v".into(),
            name: "q".into(),
            durable: true,
            auto_delete: false,
            arguments: String::new(),
        };
        let full: State = [(v.key(), v.clone()), (q.key(), q.clone())].into();
        let kinds = |cs: Vec<Change>| {
            cs.into_iter()
                .map(|c| match c {
                    Change::Put { def } => ("put", def.key()),
                    Change::Delete { def } => ("delete", def.key()),
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            kinds(diff(&State::new(), &full)),
            [("put", v.key()), ("put", q.key())]
        );
        assert_eq!(
            kinds(diff(&full, &State::new())),
            [("delete", q.key()), ("delete", v.key())]
        );
        assert!(diff(&full, &full).is_empty());
    }
}
