//! `/api/vhosts`: list, get, create (PUT) and delete virtual hosts, and a vhost's
//! permissions and connections.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use super::Api;
use super::auth::{Caller, Tag};
use super::body::Fields;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use super::{connections, stats, users};
use crate::broker::queue::QueueCounters;
use crate::broker::vhost::VHost;

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/vhosts", get(list))
        .route("/api/vhosts/{vhost}", get(show).put(put).delete(delete))
        .route("/api/vhosts/{vhost}/permissions", get(permissions))
        .route("/api/vhosts/{vhost}/connections", get(vhost_connections))
}

fn vhost_json(api: &Api, vhost: &VHost) -> Value {
    let (mut ready, mut unacked) = (0usize, 0usize);
    let mut counters = QueueCounters::default();
    for q in vhost.queues() {
        let s = q.snapshot();
        ready += s.ready;
        unacked += s.unacked;
        stats::add(&mut counters, &s.counters);
    }
    let message_stats = api
        .rates
        .message_stats(&format!("vhost {}", vhost.name), &counters);
    let description = description(&vhost.name);
    json!({
        "name": vhost.name,
        "description": description,
        "tags": [],
        "metadata": {"description": description, "tags": []},
        "default_queue_type": "undefined",
        "tracing": false,
        "cluster_state": { api.node(): "running" },
        "messages": ready + unacked,
        "messages_details": {"rate": 0.0},
        "messages_ready": ready,
        "messages_ready_details": {"rate": 0.0},
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": {"rate": 0.0},
        "message_stats": message_stats,
    })
}

async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let items = api
        .broker
        .vhost_names()
        .into_iter()
        .filter(|n| caller.sees_vhost(n))
        .filter_map(|n| api.broker.vhost(&n))
        .map(|v| vhost_json(&api, &v))
        .collect();
    q.apply(items)
}

async fn show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    if !caller.sees_vhost(&vhost) && !caller.has(Tag::Administrator) {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    let v = api.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    Ok(q.trim(vhost_json(&api, &v)))
}

async fn put(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require(Tag::Administrator)?;
    let fields = Fields::parse(&body)?;
    // Checked for type only: fedamq keeps no description or tags yet.
    fields.string("description")?;
    fields.bool("tracing", false)?;
    let existed = api.broker.vhost(&vhost).is_some();
    api.broker.add_vhost(&vhost)?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

async fn delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Tag::Administrator)?;
    if api.broker.delete_vhost(&vhost) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

async fn permissions(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Tag::Administrator)?;
    api.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    let items = api
        .broker
        .users()
        .permissions()
        .into_iter()
        .filter(|p| p.vhost == vhost)
        .map(|p| users::permission_json(&p))
        .collect();
    q.apply(items)
}

async fn vhost_connections(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.vhost(&vhost)?;
    q.apply(connections::visible(&api, &caller, Some(&vhost)))
}

/// A vhost's description: fedamq keeps none, so RabbitMQ's default for `/` and nothing
/// for the others. The definitions export uses it too, so importing it into RabbitMQ
/// leaves `/` as RabbitMQ describes it.
pub(crate) fn description(vhost: &str) -> &'static str {
    if vhost == "/" {
        "Default virtual host"
    } else {
        ""
    }
}
