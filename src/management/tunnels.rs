//! `/api/tunnels`: the tunnels this node opened (`direction: outgoing`, with their
//! state, its reason, counters and last error) and those other brokers opened to it
//! (`incoming`). fedamq's own: RabbitMQ has no tunnels. Node-wide, so monitoring (or
//! administrator) users only, as RabbitMQ's node-wide lists.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Api;
use super::auth::{Caller, Tag};
use super::error::ApiResult;
use crate::tunnel::Tunnels;

pub fn routes() -> Router<Arc<Api>> {
    Router::new().route("/api/tunnels", get(list))
}

async fn list(caller: Caller, State(api): State<Arc<Api>>) -> ApiResult<Json<Value>> {
    caller.require(Tag::Monitoring)?;
    let tunnels = Tunnels::of(&api.broker);
    let mut out = Vec::new();
    for t in tunnels.list() {
        let mut v = serde_json::to_value(&t).unwrap_or_default();
        v["direction"] = json!("outgoing");
        out.push(v);
    }
    for t in tunnels.list_accepted() {
        let mut v = serde_json::to_value(&t).unwrap_or_default();
        v["direction"] = json!("incoming");
        out.push(v);
    }
    Ok(Json(Value::Array(out)))
}
