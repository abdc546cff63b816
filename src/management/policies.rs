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
//!
//! [`routes`] puts them on HTTP with RabbitMQ 3.10's rules: anyone may list policies
//! and operator policies of the vhosts they have permissions on; changing or reading one
//! policy, and all of parameters and global parameters, needs `policymaker` (in a vhost
//! the user has permissions on) or `administrator`; one operator policy needs
//! `administrator`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use super::auth::{Caller, Tag};
use super::body::Fields;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;

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
    super::body::read_json(bytes).map_err(PolicyError::validation)
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

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .merge(policy_routes("/api/policies", PolicyKind::User))
        .merge(policy_routes(
            "/api/operator-policies",
            PolicyKind::Operator,
        ))
        .route("/api/parameters", get(parameters_all))
        .route("/api/parameters/{component}", get(parameters_of_component))
        .route(
            "/api/parameters/{component}/{vhost}",
            get(parameters_in_vhost),
        )
        .route(
            "/api/parameters/{component}/{vhost}/{name}",
            get(parameter_show)
                .put(parameter_put)
                .delete(parameter_delete),
        )
        .route("/api/global-parameters", get(global_list))
        .route(
            "/api/global-parameters/{name}",
            get(global_show).put(global_put).delete(global_delete),
        )
}

/// The same four routes for policies and operator policies.
fn policy_routes(prefix: &str, kind: PolicyKind) -> Router<Arc<Api>> {
    Router::new()
        .route(
            prefix,
            get(move |api, caller, q| policy_list(api, caller, q, kind, None)),
        )
        .route(
            &format!("{prefix}/{{vhost}}"),
            get(move |api, caller, q, Path(vhost): Path<String>| {
                policy_list(api, caller, q, kind, Some(vhost))
            }),
        )
        .route(
            &format!("{prefix}/{{vhost}}/{{name}}"),
            get(move |api, caller, path| policy_show(api, caller, path, kind))
                .put(move |api, caller, path, body| policy_put(api, caller, path, body, kind))
                .delete(move |api, caller, path| policy_delete(api, caller, path, kind)),
        )
}

/// The caller may read or change one policy of `kind` in `vhost`.
fn may_manage(caller: &Caller, kind: PolicyKind, vhost: &str) -> ApiResult<()> {
    match kind {
        PolicyKind::User => caller.policymaker_for(Some(vhost)),
        PolicyKind::Operator => caller.require(Tag::Administrator),
    }
}

/// A PUT's answer: 201 or 204.
fn put_status(put: Put) -> StatusCode {
    StatusCode::from_u16(put.status()).unwrap_or(StatusCode::NO_CONTENT)
}

/// Keeps the entries of `list` (objects with a `vhost` field) the caller may see.
fn visible(caller: &Caller, list: Value, q: &ListQuery) -> ApiResult<Json<Value>> {
    let items = match list {
        Value::Array(items) => items,
        other => vec![other],
    };
    q.apply(
        items
            .into_iter()
            .filter(|item| {
                item["vhost"]
                    .as_str()
                    .is_some_and(|v| caller.lists_policies_of(v))
            })
            .collect(),
    )
}

async fn policy_list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    kind: PolicyKind,
    vhost: Option<String>,
) -> ApiResult<Json<Value>> {
    if let Some(v) = &vhost {
        caller.vhost(v)?;
    }
    visible(
        &caller,
        list_policies(&api.broker, kind, vhost.as_deref())?,
        &q,
    )
}

async fn policy_show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    kind: PolicyKind,
) -> ApiResult<Json<Value>> {
    may_manage(&caller, kind, &vhost)?;
    Ok(Json(get_policy(&api.broker, kind, &vhost, &name)?))
}

async fn policy_put(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
    kind: PolicyKind,
) -> ApiResult<StatusCode> {
    may_manage(&caller, kind, &vhost)?;
    api.broker
        .vhost(&vhost)
        .ok_or_else(ApiError::vhost_not_found)?;
    // RabbitMQ's answers for a body that is not JSON or lacks a field, before the
    // policy's own checks.
    Fields::parse(&body)?.require(&["pattern", "definition"])?;
    Ok(put_status(put_policy(
        &api.broker,
        kind,
        &vhost,
        &name,
        &body,
    )?))
}

async fn policy_delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    kind: PolicyKind,
) -> ApiResult<StatusCode> {
    may_manage(&caller, kind, &vhost)?;
    delete_policy(&api.broker, kind, &vhost, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn parameters_all(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.policymaker_for(None)?;
    visible(&caller, list_parameters(&api.broker, None, None)?, &q)
}

async fn parameters_of_component(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    Path(component): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.policymaker_for(None)?;
    visible(
        &caller,
        list_parameters(&api.broker, Some(&component), None)?,
        &q,
    )
}

async fn parameters_in_vhost(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    Path((component, vhost)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.policymaker_for(Some(&vhost))?;
    visible(
        &caller,
        list_parameters(&api.broker, Some(&component), Some(&vhost))?,
        &q,
    )
}

async fn parameter_show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    caller.policymaker_for(Some(&vhost))?;
    Ok(Json(get_parameter(&api.broker, &component, &vhost, &name)?))
}

async fn parameter_put(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((component, vhost, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.policymaker_for(Some(&vhost))?;
    api.broker
        .vhost(&vhost)
        .ok_or_else(ApiError::vhost_not_found)?;
    Fields::parse(&body)?.require(&["value"])?;
    Ok(put_status(put_parameter(
        &api.broker,
        &component,
        &vhost,
        &name,
        &body,
    )?))
}

async fn parameter_delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    caller.policymaker_for(Some(&vhost))?;
    delete_parameter(&api.broker, &component, &vhost, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn global_list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.policymaker_for(None)?;
    match list_global_parameters(&api.broker) {
        Value::Array(items) => q.apply(items),
        other => Ok(Json(other)),
    }
}

async fn global_show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.policymaker_for(None)?;
    api.broker
        .global_parameters()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(name, value)| Json(json!({"name": name, "value": value})))
        .ok_or_else(ApiError::not_found)
}

async fn global_put(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.policymaker_for(None)?;
    Fields::parse(&body)?.require(&["value"])?;
    Ok(put_status(put_global_parameter(&api.broker, &name, &body)?))
}

async fn global_delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller.policymaker_for(None)?;
    delete_global_parameter(&api.broker, &name)?;
    Ok(StatusCode::NO_CONTENT)
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
