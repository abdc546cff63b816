//! `/api/ha`: this broker's member of an HA pair (state, role, epoch, the peer as last
//! heard, the reason for the last change), and the operator's two verbs: `POST
//! /api/ha/failback` (control back to the primary) and `POST /api/ha/promote` (make
//! this member active without an active peer). fedamq's own: RabbitMQ has no pair.
//! Reading needs monitoring, acting administrator. 404 on a broker with no `[ha]`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use super::Api;
use super::auth::{Caller, Tag};
use super::error::{ApiError, ApiResult};
use crate::ha::Ha;

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/ha", get(show))
        .route("/api/ha/failback", post(failback))
        .route("/api/ha/promote", post(promote))
}

fn pair(api: &Api) -> ApiResult<Arc<Ha>> {
    Ha::of(&api.broker).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this broker is not a member of an HA pair (no [ha] in its configuration)",
        )
    })
}

async fn show(caller: Caller, State(api): State<Arc<Api>>) -> ApiResult<Json<Value>> {
    caller.require(Tag::Monitoring)?;
    Ok(Json(
        serde_json::to_value(pair(&api)?.status()).unwrap_or_default(),
    ))
}

async fn failback(caller: Caller, State(api): State<Arc<Api>>) -> ApiResult<Json<Value>> {
    caller.require(Tag::Administrator)?;
    act(pair(&api)?.failback())
}

async fn promote(caller: Caller, State(api): State<Arc<Api>>) -> ApiResult<Json<Value>> {
    caller.require(Tag::Administrator)?;
    act(pair(&api)?.promote())
}

fn act(result: Result<crate::ha::HaStatus, String>) -> ApiResult<Json<Value>> {
    match result {
        Ok(status) => Ok(Json(serde_json::to_value(status).unwrap_or_default())),
        Err(why) => Err(ApiError::new(StatusCode::CONFLICT, "conflict", why)),
    }
}
