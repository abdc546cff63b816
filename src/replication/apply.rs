//! Applying definition changes to the local broker through the paths a client or the
//! management API uses: `VHost::apply` and `declare_queue` for exchanges, queues and
//! bindings, the vhost's policy and parameter setters, the user table, the broker's
//! vhosts. A change that fails is logged and skipped; the next snapshot repairs it.
//!
//! What the broker's own configuration made (its vhosts, users and permissions) and the
//! `amq.*` exchanges are never deleted: a sink must stay reachable, whatever the source
//! has.

use crate::auth::PasswordHash;
use crate::broker::Broker;
use crate::broker::exchange::ExchangeSpec;
use crate::broker::owner::Owner;
use crate::broker::policy::{ApplyTo, Parameter, Policy, PolicyKind};
use crate::broker::routing::{Destination, ExchangeKind};
use crate::broker::topology::{BindingSpec, TopologyChange};
use crate::broker::vhost::QueueDeclare;
use crate::protocol::ShortString;

use super::definition::{Change, Def, collect, diff, is_reserved_exchange, table_from_text};

/// Who the sink's changes are made by (an exclusive queue is never replicated).
const BY: &str = "replication";

/// Makes the broker's definitions equal to `state` (a snapshot): what differs is put,
/// what the source does not have is removed. Returns the number of changes made.
pub fn apply_snapshot(broker: &Broker, state: &super::definition::State) -> usize {
    let changes = diff(&collect(broker), state);
    let n = changes.len();
    apply_changes(broker, changes);
    n
}

/// Applies `changes` in order.
pub fn apply_changes(broker: &Broker, changes: Vec<Change>) {
    for c in changes {
        let result = match c {
            Change::Put { def } => put(broker, def),
            Change::Delete { def } => delete(broker, def),
        };
        if let Err(e) = result {
            tracing::warn!("replication: a change was not applied: {e}");
        }
    }
}

fn short(s: &str) -> Result<ShortString, String> {
    ShortString::try_from(s).map_err(|_| format!("'{s}' is longer than 255 bytes"))
}

fn table(text: &str) -> Result<crate::protocol::FieldTable, String> {
    table_from_text(text).ok_or_else(|| "arguments are not an encoded table".to_owned())
}

fn vhost(
    broker: &Broker,
    name: &str,
) -> Result<std::sync::Arc<crate::broker::vhost::VHost>, String> {
    broker
        .vhost(name)
        .ok_or_else(|| format!("no vhost '{name}'"))
}

fn binding(def: &Def) -> Result<Option<(String, BindingSpec)>, String> {
    let Def::Binding {
        vhost,
        source,
        destination_type,
        destination,
        routing_key,
        arguments,
    } = def
    else {
        return Ok(None);
    };
    let dest = short(destination)?;
    let destination = match destination_type.as_str() {
        "queue" => Destination::Queue(dest),
        "exchange" => Destination::Exchange(dest),
        other => return Err(format!("unknown destination type '{other}'")),
    };
    Ok(Some((
        vhost.clone(),
        BindingSpec {
            source: short(source)?,
            destination,
            routing_key: short(routing_key)?,
            arguments: table(arguments)?,
        },
    )))
}

fn put(broker: &Broker, def: Def) -> Result<(), String> {
    let by = Owner::object(BY);
    match &def {
        Def::Vhost { name } => broker.add_vhost(name).map(drop).map_err(|e| e.to_string()),
        Def::User {
            name,
            hash,
            algorithm,
            tags,
        } => {
            let hash = if hash.is_empty() {
                PasswordHash::locked()
            } else {
                PasswordHash::parse_with_algorithm(hash, algorithm).map_err(|e| e.to_string())?
            };
            let users = broker.users();
            let r = if users.user(name).is_some() {
                users
                    .change_password(name, hash)
                    .and_then(|()| users.set_tags(name, tags.clone()))
            } else {
                users.add_user(name, hash, tags.clone())
            };
            r.map_err(|e| e.to_string())
        }
        Def::Permission {
            user,
            vhost,
            configure,
            write,
            read,
        } => broker
            .users()
            .set_permissions(user, vhost, configure, write, read)
            .map_err(|e| e.to_string()),
        Def::GlobalParameter { name, value } => {
            broker.set_global_parameter(name, value.clone());
            Ok(())
        }
        Def::Parameter {
            vhost: v,
            component,
            name,
            value,
        } => {
            let p =
                Parameter::new(component, v, name, value.clone()).map_err(|e| format!("{e:?}"))?;
            vhost(broker, v)?.set_parameter(p);
            Ok(())
        }
        Def::Policy {
            vhost: v,
            operator,
            name,
            pattern,
            apply_to,
            priority,
            definition,
        } => {
            let kind = if *operator {
                PolicyKind::Operator
            } else {
                PolicyKind::User
            };
            let apply_to = ApplyTo::parse(apply_to).map_err(|e| format!("{e:?}"))?;
            let p = Policy::new(kind, v, name, pattern, apply_to, *priority, definition)
                .map_err(|e| format!("{e:?}"))?;
            vhost(broker, v)?.set_policy(p);
            Ok(())
        }
        Def::Exchange {
            vhost: v,
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
        } => {
            if is_reserved_exchange(name.as_bytes()) {
                return Ok(());
            }
            let vh = vhost(broker, v)?;
            let spec = ExchangeSpec {
                name: short(name)?,
                kind: ExchangeKind::from_name(kind.as_bytes())
                    .ok_or_else(|| format!("unknown exchange type '{kind}'"))?,
                durable: *durable,
                auto_delete: *auto_delete,
                internal: *internal,
                arguments: table(arguments)?,
            };
            // One that differs is replaced (its bindings go with it and come back
            // with the changes that follow).
            if vh.exchange(&spec.name).is_some_and(|x| x.spec != spec) {
                let _ = vh.apply(TopologyChange::DeleteExchange {
                    name: spec.name.clone(),
                    if_unused: false,
                });
            }
            vh.apply(TopologyChange::DeclareExchange {
                spec,
                passive: false,
            })
            .map(drop)
            .map_err(|e| e.to_string())
        }
        Def::Queue {
            vhost: v,
            name,
            durable,
            auto_delete,
            arguments,
        } => {
            let vh = vhost(broker, v)?;
            let declare = QueueDeclare {
                name: short(name)?,
                passive: false,
                durable: *durable,
                exclusive: false,
                auto_delete: *auto_delete,
                arguments: table(arguments)?,
            };
            if let Some(q) = vh.queue(&declare.name) {
                let same = q.spec.durable == declare.durable
                    && q.spec.auto_delete == declare.auto_delete
                    && q.spec.exclusive_owner.is_none()
                    && crate::protocol::arguments::same_arguments(
                        &q.spec.arguments,
                        &declare.arguments,
                    );
                if same {
                    return Ok(());
                }
                let _ = vh.apply(TopologyChange::DeleteQueue {
                    name: declare.name.clone(),
                    if_unused: false,
                    if_empty: false,
                    by: by.clone(),
                });
            }
            vh.declare_queue(declare, by)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Def::Binding { .. } => {
            let Some((v, b)) = binding(&def)? else {
                return Ok(());
            };
            vhost(broker, &v)?
                .apply(TopologyChange::Bind { binding: b, by })
                .map(drop)
                .map_err(|e| e.to_string())
        }
    }
}

fn delete(broker: &Broker, def: Def) -> Result<(), String> {
    let config = broker.config();
    let by = Owner::object(BY);
    match &def {
        Def::Vhost { name } => {
            if !config.vhosts.contains(name) {
                broker.delete_vhost(name);
            }
            Ok(())
        }
        Def::User { name, .. } => {
            if config.users.iter().any(|u| &u.name == name) {
                return Ok(());
            }
            let _ = broker.users().delete_user(name);
            Ok(())
        }
        Def::Permission { user, vhost, .. } => {
            // A configured permission may be what lets the source's login in.
            if config
                .permissions
                .iter()
                .any(|p| &p.user == user && &p.vhost == vhost)
            {
                return Ok(());
            }
            let _ = broker.users().clear_permissions(user, vhost);
            Ok(())
        }
        Def::GlobalParameter { name, .. } => {
            broker.clear_global_parameter(name);
            Ok(())
        }
        Def::Parameter {
            vhost: v,
            component,
            name,
            ..
        } => {
            if let Some(vh) = broker.vhost(v) {
                let _ = vh.clear_parameter(component, name);
            }
            Ok(())
        }
        Def::Policy {
            vhost: v,
            operator,
            name,
            ..
        } => {
            let kind = if *operator {
                PolicyKind::Operator
            } else {
                PolicyKind::User
            };
            if let Some(vh) = broker.vhost(v) {
                let _ = vh.clear_policy(kind, name);
            }
            Ok(())
        }
        Def::Exchange { vhost: v, name, .. } => {
            if is_reserved_exchange(name.as_bytes()) {
                return Ok(());
            }
            if let Some(vh) = broker.vhost(v) {
                vh.apply(TopologyChange::DeleteExchange {
                    name: short(name)?,
                    if_unused: false,
                })
                .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Def::Queue { vhost: v, name, .. } => {
            let Some(vh) = broker.vhost(v) else {
                return Ok(());
            };
            let name = short(name)?;
            // A client's exclusive queue of the same name is not the source's to delete.
            if vh
                .queue(&name)
                .is_some_and(|q| q.spec.exclusive_owner.is_some())
            {
                return Ok(());
            }
            vh.apply(TopologyChange::DeleteQueue {
                name,
                if_unused: false,
                if_empty: false,
                by,
            })
            .map(drop)
            .map_err(|e| e.to_string())
        }
        Def::Binding { .. } => {
            let Some((v, b)) = binding(&def)? else {
                return Ok(());
            };
            if let Some(vh) = broker.vhost(&v) {
                vh.apply(TopologyChange::Unbind { binding: b, by })
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}
