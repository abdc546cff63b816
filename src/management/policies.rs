//! Policies, operator policies and runtime parameters in the management API's shapes:
//! what `/api/policies`, `/api/operator-policies`, `/api/parameters` and
//! `/api/global-parameters` take and answer, as RabbitMQ's management plugin does.
//! Routes hand over the path's parts and the request body, and answer with the JSON or
//! the [`PolicyError`]'s status and `{"error", "reason"}` body.
//!
//! - list: a JSON array; a vhost given that does not exist is 404;
//! - get: the object, or 404;
//! - put: the body checked, then [`Put::Created`] (201) or [`Put::Updated`] (204); a
//!   body that is not JSON, lacks a field or fails validation is 400;
//! - delete: 204, or 404 if there was nothing.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::broker::Broker;
use crate::broker::policy::{ApplyTo, Parameter, Policy, PolicyError, PolicyKind};
use crate::broker::vhost::VHost;

/// What a PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// 201 Created.
    Created,
    /// 204 No Content.
    Updated,
}

impl Put {
    pub fn status(self) -> u16 {
        match self {
            Put::Created => 201,
            Put::Updated => 204,
        }
    }
}

fn vhost(broker: &Broker, name: &str) -> Result<std::sync::Arc<VHost>, PolicyError> {
    broker
        .vhost(name)
        .ok_or_else(|| PolicyError::vhost_not_found(name))
}

/// The vhosts a list covers: one (which must exist) or all.
fn vhosts(broker: &Broker, only: Option<&str>) -> Result<Vec<std::sync::Arc<VHost>>, PolicyError> {
    match only {
        Some(name) => Ok(vec![vhost(broker, name)?]),
        None => Ok(broker
            .vhost_names()
            .iter()
            .filter_map(|n| broker.vhost(n))
            .collect()),
    }
}

fn body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, PolicyError> {
    super::read_json(bytes).map_err(PolicyError::validation)
}

/// A policy as the API shows it.
pub fn policy_json(p: &Policy) -> Value {
    json!({
        "vhost": p.vhost,
        "name": p.name,
        "pattern": p.pattern,
        "apply-to": p.apply_to.as_str(),
        "definition": p.definition.json(),
        "priority": p.priority,
    })
}

/// `GET /api/policies[/{vhost}]` (or operator-policies): by vhost, then name.
pub fn list_policies(
    broker: &Broker,
    kind: PolicyKind,
    vhost: Option<&str>,
) -> Result<Value, PolicyError> {
    let mut out = Vec::new();
    for v in vhosts(broker, vhost)? {
        out.extend(v.policies(kind).iter().map(|p| policy_json(p)));
    }
    Ok(Value::Array(out))
}

/// `GET /api/policies/{vhost}/{name}`.
pub fn get_policy(
    broker: &Broker,
    kind: PolicyKind,
    vhost_name: &str,
    name: &str,
) -> Result<Value, PolicyError> {
    vhost(broker, vhost_name)?
        .policy(kind, name)
        .map(|p| policy_json(&p))
        .ok_or_else(|| PolicyError::NotFound(format!("no policy '{name}' in vhost '{vhost_name}'")))
}

#[derive(Deserialize)]
struct PolicyBody {
    pattern: String,
    definition: Value,
    #[serde(default)]
    priority: i64,
    #[serde(rename = "apply-to", default)]
    apply_to: Option<String>,
}

/// `PUT /api/policies/{vhost}/{name}` with `{"pattern", "definition", "priority",
/// "apply-to"}` (priority 0 and apply-to `all` when absent).
pub fn put_policy(
    broker: &Broker,
    kind: PolicyKind,
    vhost_name: &str,
    name: &str,
    request: &[u8],
) -> Result<Put, PolicyError> {
    let v = vhost(broker, vhost_name)?;
    let b: PolicyBody = body(request)?;
    let apply_to = match &b.apply_to {
        Some(a) => ApplyTo::parse(a)?,
        None => ApplyTo::All,
    };
    let policy = Policy::new(
        kind,
        vhost_name,
        name,
        &b.pattern,
        apply_to,
        b.priority,
        &b.definition,
    )?;
    let existed = v.policy(kind, name).is_some();
    v.set_policy(policy);
    Ok(if existed { Put::Updated } else { Put::Created })
}

/// `DELETE /api/policies/{vhost}/{name}`.
pub fn delete_policy(
    broker: &Broker,
    kind: PolicyKind,
    vhost_name: &str,
    name: &str,
) -> Result<(), PolicyError> {
    vhost(broker, vhost_name)?.clear_policy(kind, name)
}

/// A runtime parameter as the API shows it.
pub fn parameter_json(p: &Parameter) -> Value {
    json!({"vhost": p.vhost, "component": p.component, "name": p.name, "value": p.value})
}

/// `GET /api/parameters[/{component}[/{vhost}]]`.
pub fn list_parameters(
    broker: &Broker,
    component: Option<&str>,
    vhost: Option<&str>,
) -> Result<Value, PolicyError> {
    let mut out = Vec::new();
    for v in vhosts(broker, vhost)? {
        out.extend(v.parameters(component).iter().map(parameter_json));
    }
    Ok(Value::Array(out))
}

/// `GET /api/parameters/{component}/{vhost}/{name}`.
pub fn get_parameter(
    broker: &Broker,
    component: &str,
    vhost_name: &str,
    name: &str,
) -> Result<Value, PolicyError> {
    vhost(broker, vhost_name)?
        .parameter(component, name)
        .map(|p| parameter_json(&p))
        .ok_or_else(|| {
            PolicyError::NotFound(format!("no parameter '{name}' of component '{component}'"))
        })
}

#[derive(Deserialize)]
struct ParameterBody {
    value: Value,
}

/// `PUT /api/parameters/{component}/{vhost}/{name}` with `{"value": …}` (RabbitMQ's
/// clients also send `vhost`, `component` and `name`; the path's win).
pub fn put_parameter(
    broker: &Broker,
    component: &str,
    vhost_name: &str,
    name: &str,
    request: &[u8],
) -> Result<Put, PolicyError> {
    let v = vhost(broker, vhost_name)?;
    let b: ParameterBody = body(request)?;
    let parameter = Parameter::new(component, vhost_name, name, b.value)?;
    let existed = v.parameter(component, name).is_some();
    v.set_parameter(parameter);
    Ok(if existed { Put::Updated } else { Put::Created })
}

/// `DELETE /api/parameters/{component}/{vhost}/{name}`.
pub fn delete_parameter(
    broker: &Broker,
    component: &str,
    vhost_name: &str,
    name: &str,
) -> Result<(), PolicyError> {
    vhost(broker, vhost_name)?.clear_parameter(component, name)
}

/// `GET /api/global-parameters`.
pub fn list_global_parameters(broker: &Broker) -> Value {
    Value::Array(
        broker
            .global_parameters()
            .into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect(),
    )
}

/// `PUT /api/global-parameters/{name}` with `{"value": …}`.
pub fn put_global_parameter(
    broker: &Broker,
    name: &str,
    request: &[u8],
) -> Result<Put, PolicyError> {
    let b: ParameterBody = body(request)?;
    let existed = broker.global_parameters().iter().any(|(n, _)| n == name);
    broker.set_global_parameter(name, b.value);
    Ok(if existed { Put::Updated } else { Put::Created })
}

/// `DELETE /api/global-parameters/{name}`.
pub fn delete_global_parameter(broker: &Broker, name: &str) -> Result<(), PolicyError> {
    if broker.clear_global_parameter(name) {
        Ok(())
    } else {
        Err(PolicyError::NotFound(format!(
            "no global parameter '{name}'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn policies_put_get_list_delete_with_rabbitmqs_statuses() {
        let b = Broker::new(Config::default());
        let body = br#"{"pattern": "^q", "definition": {"max-length": 5}, "priority": 2, "apply-to": "queues"}"#;
        assert_eq!(
            put_policy(&b, PolicyKind::User, "/", "p", body),
            Ok(Put::Created)
        );
        assert_eq!(
            put_policy(&b, PolicyKind::User, "/", "p", body)
                .unwrap()
                .status(),
            204
        );
        let got = get_policy(&b, PolicyKind::User, "/", "p").unwrap();
        assert_eq!(
            got,
            json!({"vhost": "/", "name": "p", "pattern": "^q", "apply-to": "queues",
                   "definition": {"max-length": 5}, "priority": 2})
        );
        assert_eq!(
            list_policies(&b, PolicyKind::User, None).unwrap(),
            json!([got])
        );
        assert_eq!(
            list_policies(&b, PolicyKind::Operator, Some("/")).unwrap(),
            json!([])
        );
        assert_eq!(
            list_policies(&b, PolicyKind::User, Some("nope"))
                .unwrap_err()
                .status(),
            404
        );
        delete_policy(&b, PolicyKind::User, "/", "p").unwrap();
        let e = delete_policy(&b, PolicyKind::User, "/", "p").unwrap_err();
        assert_eq!(
            (e.status(), e.error(), e.reason().as_str()),
            (404, "Object Not Found", "Not Found")
        );
        assert_eq!(
            get_policy(&b, PolicyKind::User, "/", "p")
                .unwrap_err()
                .status(),
            404
        );
    }

    #[test]
    fn bad_policy_bodies_are_400_and_unknown_vhosts_404() {
        let b = Broker::new(Config::default());
        for (body, text) in [
            (&b"not json"[..], "expected"),
            (
                br#"{"definition": {"max-length": 1}}"#,
                "missing field `pattern`",
            ),
            (
                br#"{"pattern": ".*", "definition": {"max-length": "x"}}"#,
                "not a valid maximum length",
            ),
            (
                br#"{"pattern": ".*", "definition": {"max-length": 1}, "priority": "high"}"#,
                "priority",
            ),
            (
                br#"{"pattern": ".*", "definition": {"max-length": 1}, "apply-to": "both"}"#,
                "apply-to",
            ),
        ] {
            let e = put_policy(&b, PolicyKind::User, "/", "p", body).unwrap_err();
            assert_eq!((e.status(), e.error()), (400, "bad_request"));
            assert!(e.reason().contains(text), "{text} not in {}", e.reason());
        }
        let ok = br#"{"pattern": ".*", "definition": {"max-length": 1}}"#;
        assert_eq!(
            put_policy(&b, PolicyKind::Operator, "nope", "p", ok)
                .unwrap_err()
                .status(),
            404
        );
        assert!(
            list_policies(&b, PolicyKind::User, None)
                .unwrap()
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn parameters_put_get_list_delete() {
        let b = Broker::new(Config::default());
        let body = br#"{"vhost": "/", "component": "federation-upstream", "name": "up", "value": {"uri": "amqp://h"}}"#;
        assert_eq!(
            put_parameter(&b, "federation-upstream", "/", "up", body),
            Ok(Put::Created)
        );
        assert_eq!(
            get_parameter(&b, "federation-upstream", "/", "up").unwrap(),
            json!({"vhost": "/", "component": "federation-upstream", "name": "up", "value": {"uri": "amqp://h"}})
        );
        assert_eq!(
            list_parameters(&b, Some("federation-upstream"), None)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            list_parameters(&b, Some("federation-upstream-set"), Some("/")).unwrap(),
            json!([])
        );
        let e = put_parameter(&b, "shovel", "/", "s", br#"{"value": {}}"#).unwrap_err();
        assert_eq!(e.status(), 400);
        delete_parameter(&b, "federation-upstream", "/", "up").unwrap();
        assert_eq!(
            delete_parameter(&b, "federation-upstream", "/", "up")
                .unwrap_err()
                .status(),
            404
        );

        assert_eq!(
            put_global_parameter(&b, "cluster_name", br#"{"value": "c"}"#),
            Ok(Put::Created)
        );
        assert_eq!(
            list_global_parameters(&b),
            json!([{"name": "cluster_name", "value": "c"}])
        );
        delete_global_parameter(&b, "cluster_name").unwrap();
        assert_eq!(
            delete_global_parameter(&b, "cluster_name")
                .unwrap_err()
                .status(),
            404
        );
    }
}
