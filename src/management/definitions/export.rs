//! The broker's definitions as RabbitMQ exports them: what a RabbitMQ node needs to
//! recreate the users, vhosts, permissions, parameters, policies, queues, exchanges and
//! bindings. As RabbitMQ does, it leaves out exclusive queues and their bindings, the
//! default exchange and the `amq.*` exchanges, and the default exchange's implicit
//! bindings. Lists are sorted, so two exports of the same state are identical.

use serde_json::{Value, json};

use super::args::to_json;
use super::format::{
    BindingDef, Definitions, ExchangeDef, GlobalParameterDef, ParameterDef, PermissionDef,
    PolicyDef, QueueDef, UserDef, VHostDef, VHostDefinitions,
};
use super::{FORMAT_VERSION, PRODUCT_NAME};
use crate::auth::password::SHA256_NAME;
use crate::broker::Broker;
use crate::broker::policy::{Policy, PolicyKind};
use crate::broker::routing::Destination;
use crate::broker::vhost::VHost;

/// Everything in the broker.
pub fn export(broker: &Broker) -> Definitions {
    let users = broker.users();
    let mut out = Definitions {
        rabbit_version: Some(FORMAT_VERSION.into()),
        rabbitmq_version: Some(FORMAT_VERSION.into()),
        product_name: Some(PRODUCT_NAME.into()),
        product_version: Some(env!("CARGO_PKG_VERSION").into()),
        users: users
            .users()
            .into_iter()
            .map(|u| UserDef {
                name: u.name,
                password_hash: Some(u.password_hash.encoded()),
                password: None,
                // A locked account's empty hash is read back as locked whatever the name.
                hashing_algorithm: Some(match u.password_hash.algorithm_name() {
                    "locked" => SHA256_NAME.into(),
                    name => name.into(),
                }),
                tags: u.tags,
                limits: json!({}),
            })
            .collect(),
        permissions: users
            .permissions()
            .into_iter()
            .map(|p| PermissionDef {
                user: p.user,
                vhost: p.vhost,
                configure: p.configure,
                write: p.write,
                read: p.read,
            })
            .collect(),
        global_parameters: broker
            .global_parameters()
            .into_iter()
            .map(|(name, value)| GlobalParameterDef { name, value })
            .collect(),
        ..Definitions::default()
    };
    for name in broker.vhost_names() {
        out.vhosts.push(VHostDef {
            name: name.clone(),
            limits: json!([]),
            metadata: json!({"description": crate::management::vhosts::description(&name), "tags": []}),
        });
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        let v = objects(&vhost, Some(&name));
        out.parameters.extend(v.parameters);
        out.policies.extend(v.policies);
        out.queues.extend(v.queues);
        out.exchanges.extend(v.exchanges);
        out.bindings.extend(v.bindings);
    }
    out
}

/// One vhost's objects, without `vhost` fields; `None` if there is no such vhost.
pub fn export_vhost(broker: &Broker, vhost: &str) -> Option<VHostDefinitions> {
    let v = broker.vhost(vhost)?;
    Some(objects(&v, None))
}

/// The objects of one vhost, each with `vhost` set to `name`.
fn objects(vhost: &VHost, name: Option<&String>) -> VHostDefinitions {
    let mut out = VHostDefinitions {
        rabbit_version: FORMAT_VERSION.into(),
        rabbitmq_version: FORMAT_VERSION.into(),
        product_name: PRODUCT_NAME.into(),
        product_version: env!("CARGO_PKG_VERSION").into(),
        ..VHostDefinitions::default()
    };
    out.parameters = vhost
        .parameters(None)
        .into_iter()
        .map(|p| ParameterDef {
            value: p.value,
            vhost: name.cloned(),
            component: p.component,
            name: p.name,
        })
        .collect();
    // Operator policies are parameters of component `operator_policy`. RabbitMQ 3.10
    // exports their definition as `[key, value]` pairs but imports only an object.
    out.parameters.extend(
        vhost
            .policies(PolicyKind::Operator)
            .into_iter()
            .map(|p| ParameterDef {
                value: json!({
                    "pattern": p.pattern,
                    "apply-to": p.apply_to.as_str(),
                    "priority": p.priority,
                    "definition": p.definition.json(),
                }),
                vhost: name.cloned(),
                component: PolicyKind::Operator.component().into(),
                name: p.name.clone(),
            }),
    );
    out.policies = vhost
        .policies(PolicyKind::User)
        .iter()
        .map(|p| policy_def(p, name))
        .collect();
    let mut queues = vhost.queues();
    queues.retain(|q| q.spec.exclusive_owner.is_none());
    queues.sort_by(|a, b| a.name().cmp(b.name()));
    out.queues = queues
        .iter()
        .map(|q| QueueDef {
            name: q.name().to_string(),
            vhost: name.cloned(),
            durable: q.spec.durable,
            auto_delete: q.spec.auto_delete,
            arguments: to_json(&q.spec.arguments),
        })
        .collect();
    let exclusive = |d: &Destination| match d {
        Destination::Queue(q) => vhost
            .queue(q)
            .is_none_or(|q| q.spec.exclusive_owner.is_some()),
        Destination::Exchange(_) => false,
    };
    let mut exchanges = vhost.exchanges();
    exchanges.sort_by(|a, b| a.name().cmp(b.name()));
    for x in &exchanges {
        if x.is_default() {
            continue;
        }
        if !x.name().as_bytes().starts_with(b"amq.") {
            out.exchanges.push(ExchangeDef {
                name: x.name().to_string(),
                vhost: name.cloned(),
                kind: x.spec.kind.name().into(),
                durable: x.spec.durable,
                auto_delete: x.spec.auto_delete,
                internal: x.spec.internal,
                arguments: to_json(&x.spec.arguments),
            });
        }
        let mut bindings: Vec<BindingDef> = x
            .table()
            .bindings()
            .filter(|b| !exclusive(&b.destination))
            .map(|b| BindingDef {
                source: x.name().to_string(),
                vhost: name.cloned(),
                destination: b.destination.name().to_string(),
                destination_type: match b.destination {
                    Destination::Queue(_) => "queue".into(),
                    Destination::Exchange(_) => "exchange".into(),
                },
                routing_key: b.routing_key.to_string(),
                arguments: to_json(&b.arguments),
            })
            .collect();
        bindings.sort_by(|a, b| {
            (&a.destination_type, &a.destination, &a.routing_key).cmp(&(
                &b.destination_type,
                &b.destination,
                &b.routing_key,
            ))
        });
        out.bindings.extend(bindings);
    }
    out
}

fn policy_def(p: &Policy, vhost: Option<&String>) -> PolicyDef {
    PolicyDef {
        vhost: vhost.cloned(),
        name: p.name.clone(),
        pattern: p.pattern.clone(),
        apply_to: p.apply_to.as_str().into(),
        definition: Value::Object(p.definition.json().clone()),
        priority: p.priority,
    }
}
