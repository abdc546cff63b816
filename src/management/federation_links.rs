//! `/api/federation-links[/{vhost}]`: the federation links running on this node, with
//! the fields RabbitMQ's federation plugin lists (`node`, `exchange`,
//! `upstream_exchange`, `type`, `vhost`, `upstream`, `id`, `status`,
//! `local_connection` or `error`, `uri`, `timestamp`) and fedamq's counters. A vhost
//! named in the path must exist and be accessible, as for other per-vhost lists.
//! `DELETE /api/federation-links/{vhost}/{id}/restart` restarts one link.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::Value;

use super::Api;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/federation-links", get(list))
        .route("/api/federation-links/{vhost}", get(list_vhost))
        .route(
            "/api/federation-links/{vhost}/{id}/restart",
            delete(restart),
        )
}

fn links(api: &Api, caller: &Caller, vhost: Option<&str>) -> Vec<Value> {
    api.federation
        .links()
        .into_iter()
        .filter(|l| vhost.is_none_or(|v| l.vhost == v))
        .filter(|l| caller.vhost(&l.vhost).is_ok())
        .map(|l| l.json(api.node()))
        .collect()
}

async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Json<Value> {
    Json(Value::Array(links(&api, &caller, None)))
}

async fn list_vhost(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.vhost(&vhost)?;
    Ok(Json(Value::Array(links(&api, &caller, Some(&vhost)))))
}

async fn restart(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.vhost(&vhost)?;
    let ours = api
        .federation
        .links()
        .iter()
        .any(|l| l.vhost == vhost && l.id == id);
    if ours && api.federation.restart_link(&id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
