//! Importing definitions: everything is checked first, against the broker and the file
//! together, and only then applied, so a file with a bad entry anywhere changes nothing.
//!
//! Applying goes through the same paths as every other change: users and permissions
//! through `auth::Users`, vhosts through `Broker::add_vhost`, policies and parameters
//! through the vhost, exchanges, queues and bindings through `VHost::apply` (so binding
//! subscribers see them). As in RabbitMQ, a user that exists is updated (password hash
//! and tags), and an exchange or queue that exists is left as it is, whatever the file
//! says of it. The checks cover everything the file can get wrong; what they cannot
//! cover is a client deleting, between the check and the change, an exchange a binding
//! in the file needs: that binding then fails and the import stops there with an error.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::DefinitionsError;
use super::args::to_table;
use super::format::{Definitions, PolicyValue, definition_object};
use crate::auth::{PasswordHash, Patterns};
use crate::broker::Broker;
use crate::broker::exchange::ExchangeSpec;
use crate::broker::owner::Owner;
use crate::broker::policy::{ApplyTo, Parameter, Policy, PolicyError, PolicyKind};
use crate::broker::queue_args::QueueArgs;
use crate::broker::routing::{Destination, ExchangeKind};
use crate::broker::topology::{BindingSpec, TopologyChange};
use crate::broker::vhost::QueueDeclare;
use crate::protocol::ShortString;

/// What an import did besides applying the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Entries accepted but without effect here (topic permissions).
    pub warnings: Vec<String>,
}

/// The owner named for queues an import declares (none is exclusive).
const IMPORTER: &str = "definitions import";

/// Imports a whole broker's definitions.
pub fn import(broker: &Broker, defs: &Definitions) -> Result<ImportReport, DefinitionsError> {
    let plan = Plan::check(broker, defs, None)?;
    plan.apply(broker)
}

/// Imports one vhost's definitions into `vhost` (the objects' own `vhost` fields are
/// ignored, as RabbitMQ does; users, vhosts and permissions in the file are too).
pub fn import_vhost(
    broker: &Broker,
    vhost: &str,
    defs: &Definitions,
) -> Result<ImportReport, DefinitionsError> {
    if broker.vhost(vhost).is_none() {
        return Err(DefinitionsError::NotFound(format!("no vhost '{vhost}'")));
    }
    let scoped = Definitions {
        parameters: defs.parameters.clone(),
        policies: defs.policies.clone(),
        queues: defs.queues.clone(),
        exchanges: defs.exchanges.clone(),
        bindings: defs.bindings.clone(),
        ..Definitions::default()
    };
    let plan = Plan::check(broker, &scoped, Some(vhost))?;
    plan.apply(broker)
}

/// A file, checked: what to change, in the order to change it.
#[derive(Default)]
struct Plan {
    vhosts: Vec<String>,
    users: Vec<(String, PasswordHash, Vec<String>)>,
    /// (user, vhost, configure, write, read)
    permissions: Vec<(String, String, String, String, String)>,
    global_parameters: Vec<(String, Value)>,
    parameters: Vec<Parameter>,
    policies: Vec<Policy>,
    exchanges: Vec<(String, ExchangeSpec)>,
    queues: Vec<(String, QueueDeclare)>,
    bindings: Vec<(String, BindingSpec)>,
    warnings: Vec<String>,
}

fn invalid(what: String, reason: impl std::fmt::Display) -> DefinitionsError {
    DefinitionsError::Invalid(format!("{what}: {reason}"))
}

fn policy_reason(e: PolicyError) -> String {
    match e {
        PolicyError::Validation(text) | PolicyError::NotFound(text) => text,
    }
}

fn short(what: &str, s: &str) -> Result<ShortString, String> {
    ShortString::try_from(s).map_err(|_| format!("{what} '{s}' is longer than 255 bytes"))
}

impl Plan {
    fn check(
        broker: &Broker,
        defs: &Definitions,
        target: Option<&str>,
    ) -> Result<Plan, DefinitionsError> {
        let mut plan = Plan::default();
        let mut new_vhosts = BTreeSet::new();
        for (i, v) in defs.vhosts.iter().enumerate() {
            if v.name.is_empty() || v.name.len() > 255 {
                return Err(invalid(
                    format!("vhosts[{i}]"),
                    format!("invalid vhost name '{}'", v.name),
                ));
            }
            if broker.vhost(&v.name).is_none() && new_vhosts.insert(v.name.clone()) {
                plan.vhosts.push(v.name.clone());
            }
        }
        let vhost_exists = |name: &str| broker.vhost(name).is_some() || new_vhosts.contains(name);
        // The vhost an object goes to: the target of a per-vhost import, else its own.
        let vhost_of = |field: &Option<String>, what: &str| -> Result<String, DefinitionsError> {
            let name = match (target, field) {
                (Some(t), _) => t.to_owned(),
                (None, Some(v)) => v.clone(),
                (None, None) => return Err(invalid(what.to_owned(), "missing field `vhost`")),
            };
            if !vhost_exists(&name) {
                return Err(invalid(what.to_owned(), format!("no vhost '{name}'")));
            }
            Ok(name)
        };

        let mut user_names: BTreeSet<String> =
            broker.users().users().into_iter().map(|u| u.name).collect();
        for (i, u) in defs.users.iter().enumerate() {
            let what = format!("users[{i}] ('{}')", u.name);
            if u.name.is_empty() {
                return Err(invalid(what, "user name must not be empty"));
            }
            let hash = match (&u.password_hash, &u.password) {
                (Some(h), _) => match &u.hashing_algorithm {
                    Some(alg) => PasswordHash::parse_with_algorithm(h, alg),
                    None => PasswordHash::parse(h),
                }
                .map_err(|e| invalid(format!("{what} password_hash"), e))?,
                (None, Some(p)) if !p.is_empty() => PasswordHash::new(p),
                _ => PasswordHash::locked(),
            };
            user_names.insert(u.name.clone());
            plan.users.push((u.name.clone(), hash, u.tags.clone()));
        }
        for (i, p) in defs.permissions.iter().enumerate() {
            let what = format!("permissions[{i}] ('{}' on '{}')", p.user, p.vhost);
            if !user_names.contains(&p.user) {
                return Err(invalid(what, format!("no user '{}'", p.user)));
            }
            vhost_of(&Some(p.vhost.clone()), &what)?;
            Patterns::new(&p.configure, &p.write, &p.read).map_err(|e| invalid(what, e))?;
            plan.permissions.push((
                p.user.clone(),
                p.vhost.clone(),
                p.configure.clone(),
                p.write.clone(),
                p.read.clone(),
            ));
        }
        if !defs.topic_permissions.is_empty() {
            plan.warnings.push(format!(
                "{} topic permission entries were not imported: fedamq does not enforce topic permissions",
                defs.topic_permissions.len()
            ));
        }
        for g in &defs.global_parameters {
            plan.global_parameters
                .push((g.name.clone(), g.value.clone()));
        }
        for (i, p) in defs.parameters.iter().enumerate() {
            let what = format!(
                "parameters[{i}] ('{}' of component '{}')",
                p.name, p.component
            );
            let vhost = vhost_of(&p.vhost, &what)?;
            let kind = match p.component.as_str() {
                "operator_policy" => Some(PolicyKind::Operator),
                "policy" => Some(PolicyKind::User),
                _ => None,
            };
            match kind {
                Some(kind) => {
                    let v: PolicyValue = serde_json::from_value(p.value.clone())
                        .map_err(|e| invalid(format!("{what} value"), e))?;
                    plan.policies
                        .push(policy(kind, &vhost, &p.name, &v, &what)?);
                }
                None => plan.parameters.push(
                    Parameter::new(&p.component, &vhost, &p.name, p.value.clone())
                        .map_err(|e| invalid(what, policy_reason(e)))?,
                ),
            }
        }
        for (i, p) in defs.policies.iter().enumerate() {
            let what = format!("policies[{i}] ('{}')", p.name);
            let vhost = vhost_of(&p.vhost, &what)?;
            let v = PolicyValue {
                pattern: p.pattern.clone(),
                apply_to: p.apply_to.clone(),
                definition: p.definition.clone(),
                priority: p.priority,
            };
            plan.policies
                .push(policy(PolicyKind::User, &vhost, &p.name, &v, &what)?);
        }

        // Exchanges, queues: what the file adds to each vhost, to check bindings and
        // limits against.
        let mut new_exchanges: BTreeMap<String, BTreeSet<ShortString>> = BTreeMap::new();
        for (i, x) in defs.exchanges.iter().enumerate() {
            let what = format!("exchanges[{i}] ('{}')", x.name);
            let vhost = vhost_of(&x.vhost, &what)?;
            let name = short("exchange name", &x.name).map_err(|e| invalid(what.clone(), e))?;
            if name.is_empty() {
                return Err(invalid(what, "the default exchange cannot be declared"));
            }
            let kind = ExchangeKind::from_name(x.kind.as_bytes()).ok_or_else(|| {
                invalid(what.clone(), format!("invalid exchange type '{}'", x.kind))
            })?;
            let arguments = to_table(&x.arguments).map_err(|e| invalid(what.clone(), e))?;
            if exists_exchange(broker, &vhost, &name) {
                continue;
            }
            if !new_exchanges
                .entry(vhost.clone())
                .or_default()
                .insert(name.clone())
            {
                continue;
            }
            let spec = ExchangeSpec {
                name,
                kind,
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments,
            };
            plan.exchanges.push((vhost, spec));
        }
        let mut new_queues: BTreeMap<String, BTreeSet<ShortString>> = BTreeMap::new();
        for (i, q) in defs.queues.iter().enumerate() {
            let what = format!("queues[{i}] ('{}')", q.name);
            let vhost = vhost_of(&q.vhost, &what)?;
            let name = short("queue name", &q.name).map_err(|e| invalid(what.clone(), e))?;
            if name.is_empty() {
                return Err(invalid(what, "a queue name must not be empty"));
            }
            let arguments = to_table(&q.arguments).map_err(|e| invalid(what.clone(), e))?;
            QueueArgs::parse(&arguments)
                .map_err(|e| invalid(what.clone(), e.text_for(&q.name, &vhost)))?;
            let exists = broker
                .vhost(&vhost)
                .is_some_and(|v| v.queue(&name).is_some());
            if exists
                || !new_queues
                    .entry(vhost.clone())
                    .or_default()
                    .insert(name.clone())
            {
                continue;
            }
            plan.queues.push((
                vhost,
                QueueDeclare {
                    name,
                    passive: false,
                    durable: q.durable,
                    exclusive: false,
                    auto_delete: q.auto_delete,
                    arguments,
                },
            ));
        }
        check_limits(broker, &new_exchanges, &new_queues)?;

        for (i, b) in defs.bindings.iter().enumerate() {
            let what = format!("bindings[{i}] ('{}' -> '{}')", b.source, b.destination);
            let vhost = vhost_of(&b.vhost, &what)?;
            let source = short("exchange name", &b.source).map_err(|e| invalid(what.clone(), e))?;
            let dest =
                short("destination", &b.destination).map_err(|e| invalid(what.clone(), e))?;
            let has_exchange = |n: &ShortString| {
                exists_exchange(broker, &vhost, n)
                    || new_exchanges.get(&vhost).is_some_and(|s| s.contains(n))
            };
            if source.is_empty() {
                return Err(invalid(
                    what,
                    "operation not permitted on the default exchange",
                ));
            }
            if !has_exchange(&source) {
                return Err(invalid(
                    what,
                    format!("no exchange '{source}' in vhost '{vhost}'"),
                ));
            }
            let destination = match b.destination_type.as_str() {
                "queue" => {
                    let exists = broker
                        .vhost(&vhost)
                        .is_some_and(|v| v.queue(&dest).is_some())
                        || new_queues.get(&vhost).is_some_and(|s| s.contains(&dest));
                    if !exists {
                        return Err(invalid(
                            what,
                            format!("no queue '{dest}' in vhost '{vhost}'"),
                        ));
                    }
                    Destination::Queue(dest)
                }
                "exchange" => {
                    if dest.is_empty() || !has_exchange(&dest) {
                        return Err(invalid(
                            what,
                            format!("no exchange '{dest}' in vhost '{vhost}'"),
                        ));
                    }
                    Destination::Exchange(dest)
                }
                other => {
                    return Err(invalid(
                        format!("{what} destination_type"),
                        format!("'{other}' is neither 'queue' nor 'exchange'"),
                    ));
                }
            };
            let routing_key =
                short("routing key", &b.routing_key).map_err(|e| invalid(what.clone(), e))?;
            let arguments = to_table(&b.arguments).map_err(|e| invalid(what.clone(), e))?;
            plan.bindings.push((
                vhost,
                BindingSpec {
                    source,
                    destination,
                    routing_key,
                    arguments,
                },
            ));
        }
        Ok(plan)
    }

    fn apply(self, broker: &Broker) -> Result<ImportReport, DefinitionsError> {
        let failed = |what: String, e: String| DefinitionsError::Failed(format!("{what}: {e}"));
        for v in &self.vhosts {
            broker
                .add_vhost(v)
                .map_err(|e| failed(format!("vhost '{v}'"), e.to_string()))?;
        }
        let users = broker.users();
        for (name, hash, tags) in self.users {
            let result = if users.user(&name).is_some() {
                users
                    .change_password(&name, hash)
                    .and_then(|()| users.set_tags(&name, tags))
            } else {
                users.add_user(&name, hash, tags)
            };
            result.map_err(|e| failed(format!("user '{name}'"), e.to_string()))?;
        }
        for (user, vhost, c, w, r) in &self.permissions {
            users.set_permissions(user, vhost, c, w, r).map_err(|e| {
                failed(
                    format!("permissions of '{user}' on '{vhost}'"),
                    e.to_string(),
                )
            })?;
        }
        for (name, value) in self.global_parameters {
            broker.set_global_parameter(&name, value);
        }
        let vhost = |name: &str| {
            broker
                .vhost(name)
                .ok_or_else(|| DefinitionsError::Failed(format!("vhost '{name}' was deleted")))
        };
        for p in self.parameters {
            vhost(&p.vhost)?.set_parameter(p);
        }
        for p in self.policies {
            vhost(&p.vhost)?.set_policy(p);
        }
        for (v, spec) in self.exchanges {
            let name = spec.name.clone();
            vhost(&v)?
                .apply(TopologyChange::DeclareExchange {
                    spec,
                    passive: false,
                })
                .map_err(|e| failed(format!("exchange '{name}' in vhost '{v}'"), e.to_string()))?;
        }
        for (v, declare) in self.queues {
            let name = declare.name.clone();
            vhost(&v)?
                .declare_queue(declare, Owner::object(IMPORTER))
                .map_err(|e| failed(format!("queue '{name}' in vhost '{v}'"), e.to_string()))?;
        }
        for (v, binding) in self.bindings {
            let what = format!("binding of '{}' in vhost '{v}'", binding.source);
            vhost(&v)?
                .apply(TopologyChange::Bind {
                    binding,
                    by: Owner::object(IMPORTER),
                })
                .map_err(|e| failed(what, e.to_string()))?;
        }
        Ok(ImportReport {
            warnings: self.warnings,
        })
    }
}

fn exists_exchange(broker: &Broker, vhost: &str, name: &ShortString) -> bool {
    broker
        .vhost(vhost)
        .is_some_and(|v| v.exchange(name).is_some())
}

fn policy(
    kind: PolicyKind,
    vhost: &str,
    name: &str,
    v: &PolicyValue,
    what: &str,
) -> Result<Policy, DefinitionsError> {
    let apply_to =
        ApplyTo::parse(&v.apply_to).map_err(|e| invalid(what.to_owned(), policy_reason(e)))?;
    let definition = definition_object(&v.definition).ok_or_else(|| {
        invalid(
            format!("{what} definition"),
            "must be an object or a list of [key, value] pairs",
        )
    })?;
    Policy::new(
        kind,
        vhost,
        name,
        &v.pattern,
        apply_to,
        v.priority,
        &definition,
    )
    .map_err(|e| invalid(what.to_owned(), policy_reason(e)))
}

/// The per-vhost limits on queues and exchanges hold after the import.
fn check_limits(
    broker: &Broker,
    exchanges: &BTreeMap<String, BTreeSet<ShortString>>,
    queues: &BTreeMap<String, BTreeSet<ShortString>>,
) -> Result<(), DefinitionsError> {
    let limits = &broker.config().limits;
    for (vhost, new) in queues {
        let have = broker.vhost(vhost).map_or(0, |v| v.queue_count());
        if have + new.len() > limits.max_queues {
            return Err(DefinitionsError::Invalid(format!(
                "queues: {} new queues would pass the queue limit of vhost '{vhost}' ({})",
                new.len(),
                limits.max_queues
            )));
        }
    }
    for (vhost, new) in exchanges {
        // A new vhost starts with its 6 predeclared exchanges.
        let have = broker.vhost(vhost).map_or(6, |v| v.exchange_count());
        if have + new.len() > limits.max_exchanges {
            return Err(DefinitionsError::Invalid(format!(
                "exchanges: {} new exchanges would pass the exchange limit of vhost '{vhost}' ({})",
                new.len(),
                limits.max_exchanges
            )));
        }
    }
    Ok(())
}
