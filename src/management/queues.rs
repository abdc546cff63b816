//! `/api/queues`: list, get, declare (PUT), delete, purge (`DELETE …/contents`),
//! a queue's bindings, and getting messages (`POST …/get`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete as delete_route, get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::bindings;
use super::body::Fields;
use super::channels::consumer_json;
use super::error::{ApiError, ApiResult};
use super::format::{json_table, properties_json, short, table_json};
use super::listing::ListQuery;
use crate::auth::{Permission, base64};
use crate::broker::connections::ConnectionInfo;
use crate::broker::error::AmqpError;
use crate::broker::owner::Owner;
use crate::broker::queue::Queue;
use crate::broker::vhost::{QueueDeclare, VHost};

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/queues", get(list_all))
        .route("/api/queues/{vhost}", get(list_vhost))
        .route("/api/queues/{vhost}/", get(list_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(show).put(put).delete(delete),
        )
        .route("/api/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route("/api/queues/{vhost}/{name}/contents", delete_route(purge))
        .route("/api/queues/{vhost}/{name}/get", post(get_messages))
        .route("/api/consumers", get(consumers_all))
        .route("/api/consumers/{vhost}", get(consumers_vhost))
}

/// The owner the API declares and deletes queues as: a broker object, so it never
/// owns exclusive queues and cannot use another connection's.
fn owner() -> Owner {
    Owner::object("management")
}

/// What identifies a queue's rate samples.
fn rates_key(vhost: &VHost, q: &Queue) -> String {
    format!("queue {} {}", vhost.name, q.name())
}

fn queue_json(api: &Api, vhost: &VHost, q: &Queue, details: bool) -> Value {
    let s = q.snapshot();
    let key = rates_key(vhost, q);
    let messages = s.ready + s.unacked;
    let policy = q.policy();
    let mut item = json!({
        "name": q.name().to_string(),
        "vhost": vhost.name,
        "durable": q.spec.durable,
        "auto_delete": q.spec.auto_delete,
        "exclusive": q.spec.exclusive_owner.is_some(),
        "arguments": table_json(&q.spec.arguments),
        "node": api.node(),
        "state": "running",
        "type": "classic",
        "policy": policy.policy_name(),
        "operator_policy": policy.operator_policy_name(),
        "effective_policy_definition": policy.definition(),
        "exclusive_consumer_tag": null,
        "single_active_consumer_tag": null,
        "consumers": s.consumers.len(),
        "consumer_capacity": if s.consumers.is_empty() { 0.0 } else { 1.0 },
        "consumer_utilisation": if s.consumers.is_empty() { 0.0 } else { 1.0 },
        "messages": messages,
        "messages_details": {"rate": 0.0},
        "messages_ready": s.ready,
        "messages_ready_details": {"rate": 0.0},
        "messages_unacknowledged": s.unacked,
        "messages_unacknowledged_details": {"rate": 0.0},
        "message_stats": api.rates.message_stats(&key, &s.counters),
    });
    if details {
        let connections = api.broker.connections().list();
        item["consumer_details"] = Value::Array(
            s.consumers
                .iter()
                .map(|c| consumer_json(api, &connections, vhost, q, c))
                .collect(),
        );
        item["incoming"] = json!([]);
        item["deliveries"] = json!([]);
    }
    item
}

fn sorted(vhost: &VHost) -> Vec<Arc<Queue>> {
    let mut all = vhost.queues();
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all
}

async fn list_all(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let mut items = Vec::new();
    let mut live = std::collections::HashSet::new();
    for name in api.broker.vhost_names() {
        let Some(v) = api.broker.vhost(&name) else {
            continue;
        };
        let queues = sorted(&v);
        live.extend(queues.iter().map(|x| rates_key(&v, x)));
        if caller.sees_vhost(&name) {
            items.extend(queues.iter().map(|x| queue_json(&api, &v, x, false)));
        }
    }
    // Deleted queues' samples go when all queues are listed.
    api.rates
        .retain(|k| !k.starts_with("queue ") || live.contains(k));
    q.apply(items)
}

async fn list_vhost(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    q.apply(
        sorted(&v)
            .iter()
            .map(|x| queue_json(&api, &v, x, false))
            .collect(),
    )
}

fn find(v: &VHost, name: &str) -> ApiResult<Arc<Queue>> {
    v.queue(&short(name)?).ok_or_else(ApiError::not_found)
}

async fn show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let queue = find(&v, &name)?;
    Ok(q.trim(queue_json(&api, &v, &queue, true)))
}

async fn put(
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let v = caller.vhost_for_change(&vhost)?;
    let fields = Fields::parse(&body)?;
    let declare = QueueDeclare {
        name: short(&name)?,
        passive: false,
        durable: fields.bool("durable", false)?,
        exclusive: false,
        auto_delete: fields.bool("auto_delete", false)?,
        arguments: json_table(&fields.object("arguments")?)?,
    };
    if name.is_empty() {
        return Err(ApiError::not_found());
    }
    caller.check(&vhost, Permission::Configure, &name)?;
    super::exchanges::reserved(&name, v.queue(&declare.name).is_some())?;
    let (_, created) = v.declare_queue(declare, owner())?;
    Ok(if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

#[derive(Debug, Deserialize)]
struct DeleteQuery {
    #[serde(rename = "if-unused")]
    if_unused: Option<String>,
    #[serde(rename = "if-empty")]
    if_empty: Option<String>,
}

async fn delete(
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let v = caller.vhost(&vhost)?;
    let queue = find(&v, &name)?;
    caller.check(&vhost, Permission::Configure, &name)?;
    // The API may delete any queue, an exclusive one included (as RabbitMQ's).
    let by = queue.spec.exclusive_owner.clone().unwrap_or_else(owner);
    v.delete_queue(
        queue.name(),
        q.if_unused.as_deref() == Some("true"),
        q.if_empty.as_deref() == Some("true"),
        &by,
    )?;
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let v = caller.vhost(&vhost)?;
    let queue = find(&v, &name)?;
    caller.check(&vhost, Permission::Read, &name)?;
    queue.purge();
    Ok(StatusCode::NO_CONTENT)
}

async fn queue_bindings(
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let queue = find(&v, &name)?;
    let name = queue.name().to_string();
    q.apply(
        bindings::of_vhost(&v)
            .into_iter()
            .filter(|b| b["destination_type"] == "queue" && b["destination"] == name)
            .collect(),
    )
}

/// `POST /api/queues/{vhost}/{name}/get`: up to `count` messages, then acked,
/// requeued or rejected as `ackmode` says. Requeued ones go back after all are taken,
/// so one request never sees a message twice.
async fn get_messages(
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let fields = Fields::parse(&body)?;
    fields.require(&["count", "ackmode", "encoding"])?;
    let count = fields.integer("count")?.unwrap_or(1);
    let (requeue, reject) = match fields.string("ackmode")?.as_deref() {
        Some("ack_requeue_true") => (true, false),
        Some("ack_requeue_false") => (false, false),
        Some("reject_requeue_true") => (true, true),
        Some("reject_requeue_false") => (false, true),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown ackmode {}",
                other.unwrap_or_default()
            )));
        }
    };
    let base64_always = match fields.string("encoding")?.as_deref() {
        Some("auto") => false,
        Some("base64") => true,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown encoding {}",
                other.unwrap_or_default()
            )));
        }
    };
    let truncate = fields.integer("truncate")?.map(|t| t as usize);
    // Here RabbitMQ answers as basic.get would, with the AMQP reply text.
    let queue = v.queue(&short(&name)?).ok_or_else(|| {
        let e = AmqpError::not_found(format!("no queue '{name}' in vhost '{vhost}'"));
        ApiError::new(StatusCode::NOT_FOUND, "not_found", e.reply_text())
    })?;
    caller.check(&vhost, Permission::Read, &name)?;
    v.queue_for(queue.name(), &owner())?;
    let mut taken = Vec::new();
    let mut out = Vec::new();
    for _ in 0..count {
        let Some((entry, remaining)) = queue.get(false) else {
            break;
        };
        let m = &entry.message;
        let payload = match truncate {
            Some(n) if n < m.body().len() => &m.body()[..n],
            _ => m.body(),
        };
        let (payload, encoding) = match std::str::from_utf8(payload) {
            Ok(s) if !base64_always => (s.to_string(), "string"),
            _ => (base64::encode(payload), "base64"),
        };
        out.push(json!({
            "payload_bytes": m.body().len(),
            "redelivered": entry.redelivered,
            "exchange": m.exchange().to_string(),
            "routing_key": m.routing_key().to_string(),
            "message_count": remaining,
            "properties": properties_json(&m.properties().to_properties()),
            "payload": payload,
            "payload_encoding": encoding,
        }));
        taken.push(entry);
    }
    if !taken.is_empty() {
        if requeue || reject {
            queue.returned(taken, requeue);
        } else {
            queue.acked(taken.len());
        }
    }
    Ok(Json(Value::Array(out)))
}

async fn consumers_all(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let connections = api.broker.connections().list();
    let mut items = Vec::new();
    for name in api.broker.vhost_names() {
        if let Some(v) = api.broker.vhost(&name).filter(|_| caller.sees_vhost(&name)) {
            items.extend(consumers_of(&api, &connections, &v));
        }
    }
    q.apply(items)
}

async fn consumers_vhost(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&vhost)?;
    let connections = api.broker.connections().list();
    q.apply(consumers_of(&api, &connections, &v))
}

fn consumers_of(api: &Api, connections: &[Arc<ConnectionInfo>], v: &VHost) -> Vec<Value> {
    sorted(v)
        .iter()
        .flat_map(|q| {
            q.snapshot()
                .consumers
                .iter()
                .map(|c| consumer_json(api, connections, v, q, c))
                .collect::<Vec<_>>()
        })
        .collect()
}
