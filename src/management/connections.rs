//! `/api/connections` (list, get, close with a reason), and `/api/channels`.
//!
//! Connections come from the broker's registry (`broker::connections`); closing one
//! goes through its mailbox, so the connection's own task sends `connection.close`
//! (320, with the `X-Reason` header's text) as at shutdown. Their channels are in
//! `channels.rs`.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use crate::broker::connections::ConnectionInfo;

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/connections", get(list))
        .route("/api/connections/{name}", get(show).delete(close))
}

/// RabbitMQ's connection name: `client address -> server address`.
pub fn name(api: &Api, c: &ConnectionInfo) -> String {
    match c.peer {
        Some(peer) => format!("{peer} -> {}", api.amqp),
        None => format!("connection {}", c.id),
    }
}

fn connection_json(api: &Api, c: &ConnectionInfo) -> Value {
    let connected_at = c
        .connected_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "name": name(api, c),
        "node": api.node(),
        "type": "network",
        "state": "running",
        "protocol": "AMQP 0-9-1",
        "user": c.user,
        "user_who_performed_action": c.user,
        "vhost": c.vhost,
        "host": api.amqp.ip().to_string(),
        "port": api.amqp.port(),
        "peer_host": c.peer.map(|p| p.ip().to_string()),
        "peer_port": c.peer.map(|p| p.port()),
        "ssl": false,
        "auth_mechanism": "PLAIN",
        "connected_at": connected_at,
        "client_properties": match &c.client {
            Some(product) => json!({ "product": product }),
            None => json!({}),
        },
        "channels": c.channel_count(),
    })
}

/// The connections `caller` may see, optionally only those to `vhost`.
pub fn visible_connections(
    api: &Api,
    caller: &Caller,
    vhost: Option<&str>,
) -> Vec<Arc<ConnectionInfo>> {
    api.broker
        .connections()
        .list()
        .into_iter()
        .filter(|c| caller.sees_all() || c.user == caller.name)
        .filter(|c| vhost.is_none_or(|v| c.vhost == v))
        .collect()
}

/// The connections `caller` may see (monitoring and administrators: all; others:
/// their own), optionally only those to `vhost`.
pub fn visible(api: &Api, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    visible_connections(api, caller, vhost)
        .iter()
        .map(|c| connection_json(api, c))
        .collect()
}

async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    q.apply(visible(&api, &caller, None))
}

pub fn find(api: &Api, caller: &Caller, wanted: &str) -> ApiResult<Arc<ConnectionInfo>> {
    visible_connections(api, caller, None)
        .into_iter()
        .find(|c| name(api, c) == wanted)
        .ok_or_else(ApiError::not_found)
}

async fn show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(wanted): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = find(&api, &caller, &wanted)?;
    Ok(Json(connection_json(&api, &c)))
}

/// Closes the connection with 320 CONNECTION_FORCED and the `X-Reason` header's text
/// (RabbitMQ's default text without one).
async fn close(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(wanted): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let c = find(&api, &caller, &wanted)?;
    if !caller.has(super::auth::Tag::Administrator) && c.user != caller.name {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin");
    api.broker.connections().close(c.id, reason);
    Ok(StatusCode::NO_CONTENT)
}
