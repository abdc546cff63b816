//! `/api/federation-links[/{vhost}]`: the federation links running on this node, as
//! RabbitMQ's federation plugin lists them. fedamq runs none yet, so the list is empty;
//! the federation issue fills it in. A vhost named in the path must exist and be
//! accessible, as for other per-vhost lists.

use std::sync::Arc;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::Api;
use super::auth::Caller;
use super::error::ApiResult;

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/federation-links", get(list))
        .route("/api/federation-links/{vhost}", get(list_vhost))
}

async fn list(_caller: Caller) -> Json<Value> {
    Json(json!([]))
}

async fn list_vhost(caller: Caller, Path(vhost): Path<String>) -> ApiResult<Json<Value>> {
    caller.vhost(&vhost)?;
    Ok(Json(json!([])))
}
