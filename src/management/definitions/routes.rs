//! `GET/POST /api/definitions[/{vhost}]`: export and import over HTTP, for
//! administrators only (as RabbitMQ 3.10). An import answers 204 once everything is
//! applied, or the [`DefinitionsError`]'s status with nothing changed.
//!
//! The body is the JSON file itself (what rabbitmqadmin's `import` sends) or a
//! multipart form with the file in its `file` field (RabbitMQ's web page upload; a form
//! without one is `failed_to_parse_json`, as RabbitMQ answers). `?download=name` on a
//! GET asks for the file as an attachment, as RabbitMQ's web page does.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;

use super::{DefinitionsError, export, export_vhost, import, import_vhost, parse};
use crate::management::Api;
use crate::management::auth::{Caller, Tag};
use crate::management::error::{ApiError, ApiResult};

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/definitions", get(get_all).post(post_all))
        .route("/api/definitions/{vhost}", get(get_vhost).post(post_vhost))
}

#[derive(Debug, Default, Deserialize)]
struct Download {
    download: Option<String>,
}

/// The JSON, as an attachment named `download` if asked.
fn file(json: impl serde::Serialize, download: Download) -> Response {
    let mut r = Json(json).into_response();
    if let Some(name) = download.download {
        let value = format!(
            "attachment; filename={}",
            name.replace(['"', '\r', '\n'], "")
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    r
}

/// The error's status and body (a function here rather than a `From` in `error`, which
/// the definitions module sits above).
fn refused(e: DefinitionsError) -> ApiError {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, e.error(), e.reason())
}

/// The definitions file: the body, or the `file` field of a multipart form.
async fn file_body(req: Request) -> ApiResult<Bytes> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    if !multipart {
        // As the `Bytes` extractor of other routes, under the router's body limit.
        return Bytes::from_request(req, &()).await.map_err(|e| {
            let error = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "bad_request"
            };
            ApiError::new(e.status(), error, e.body_text())
        });
    }
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
    {
        if field.name() == Some("file") {
            return field
                .bytes()
                .await
                .map_err(|e| ApiError::bad_request(e.body_text()));
        }
    }
    Ok(Bytes::new())
}

/// The body as definitions; a body that is not JSON at all gets RabbitMQ's
/// `failed_to_parse_json`, a field of the wrong type the path of that field.
fn read(body: &Bytes) -> ApiResult<super::Definitions> {
    if serde_json::from_slice::<serde_json::Value>(body).is_err() {
        return Err(ApiError::bad_request("failed_to_parse_json"));
    }
    parse(body).map_err(refused)
}

async fn get_all(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(download): Query<Download>,
) -> ApiResult<Response> {
    caller.require(Tag::Administrator)?;
    Ok(file(export(&api.broker), download))
}

async fn get_vhost(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(download): Query<Download>,
) -> ApiResult<Response> {
    caller.require(Tag::Administrator)?;
    // RabbitMQ 3.10 answers a GET for a missing vhost with 400, not 404.
    let defs = export_vhost(&api.broker, &vhost)
        .ok_or_else(|| ApiError::bad_request("vhost_not_found"))?;
    Ok(file(defs, download))
}

async fn post_all(
    State(api): State<Arc<Api>>,
    caller: Caller,
    req: Request,
) -> ApiResult<StatusCode> {
    caller.require(Tag::Administrator)?;
    let body = file_body(req).await?;
    import(&api.broker, &read(&body)?).map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn post_vhost(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(vhost): Path<String>,
    req: Request,
) -> ApiResult<StatusCode> {
    caller.require(Tag::Administrator)?;
    let body = file_body(req).await?;
    api.broker
        .vhost(&vhost)
        .ok_or_else(ApiError::vhost_not_found)?;
    import_vhost(&api.broker, &vhost, &read(&body)?).map_err(|e| match e {
        DefinitionsError::NotFound(_) => ApiError::vhost_not_found(),
        other => refused(other),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
