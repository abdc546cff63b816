//! `/api/users` and `/api/permissions`: the broker's user table (administrators only),
//! and `/api/users/{user}/permissions`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

use super::Api;
use super::auth::{Caller, Tag};
use super::body::Fields;
use super::error::{ApiError, ApiResult};
use super::listing::ListQuery;
use crate::auth::{PasswordHash, PermissionInfo, UserInfo, UserTableError};

pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/api/users", get(list))
        .route("/api/users/without-permissions", get(without_permissions))
        .route("/api/users/bulk-delete", post(bulk_delete))
        .route("/api/users/{user}", get(show).put(put).delete(delete))
        .route("/api/users/{user}/permissions", get(user_permissions))
        .route("/api/permissions", get(all_permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(show_permission)
                .put(put_permission)
                .delete(delete_permission),
        )
}

fn user_json(u: &UserInfo) -> Value {
    let locked = u.password_hash.algorithm_name() == "locked";
    json!({
        "name": u.name,
        "password_hash": if locked { String::new() } else { u.password_hash.encoded() },
        "hashing_algorithm": if locked { "rabbit_password_hashing_sha256" } else { u.password_hash.algorithm_name() },
        "tags": u.tags,
        "limits": {},
    })
}

pub fn permission_json(p: &PermissionInfo) -> Value {
    json!({
        "user": p.user,
        "vhost": p.vhost,
        "configure": p.configure,
        "write": p.write,
        "read": p.read,
    })
}

async fn list(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Tag::Administrator)?;
    q.apply(api.broker.users().users().iter().map(user_json).collect())
}

async fn without_permissions(
    State(api): State<Arc<Api>>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require(Tag::Administrator)?;
    let users = api.broker.users();
    let with: Vec<String> = users.permissions().into_iter().map(|p| p.user).collect();
    Ok(Json(Value::Array(
        users
            .users()
            .iter()
            .filter(|u| !with.contains(&u.name))
            .map(user_json)
            .collect(),
    )))
}

async fn show(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require(Tag::Administrator)?;
    let u = api
        .broker
        .users()
        .user(&user)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(user_json(&u)))
}

/// `tags` as RabbitMQ takes them: a comma-separated string or a list.
fn tags(fields: &Fields) -> ApiResult<Option<Vec<String>>> {
    match fields.get("tags") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(
            s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
        )),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| match t {
                Value::String(s) => Ok(s.trim().to_string()),
                other => Err(ApiError::wrong_type("not_string", other)),
            })
            .collect::<ApiResult<Vec<_>>>()
            .map(Some),
        Some(other) => Err(ApiError::wrong_type("not_string", other)),
    }
}

async fn put(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(user): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require(Tag::Administrator)?;
    let fields = Fields::parse(&body)?;
    let tags = tags(&fields)?;
    let hash = match (fields.string("password")?, fields.string("password_hash")?) {
        (Some(p), _) => Some(PasswordHash::new(p)),
        (None, Some(h)) => {
            if let Some(algorithm) = fields.string("hashing_algorithm")? {
                if !matches!(
                    algorithm.as_str(),
                    "rabbit_password_hashing_sha256" | "rabbit_password_hashing_sha512"
                ) {
                    return Err(ApiError::bad_request(format!(
                        "unsupported hashing_algorithm {algorithm}"
                    )));
                }
            }
            Some(PasswordHash::parse(&h).map_err(|e| ApiError::bad_request(e.to_string()))?)
        }
        (None, None) => None,
    };
    let users = api.broker.users();
    if users.user(&user).is_some() {
        if let Some(hash) = hash {
            users.change_password(&user, hash)?;
        }
        if let Some(tags) = tags {
            users.set_tags(&user, tags)?;
        }
        return Ok(StatusCode::NO_CONTENT);
    }
    if user.is_empty() {
        return Err(ApiError::bad_request("user name must not be empty"));
    }
    match users.add_user(
        &user,
        hash.unwrap_or_else(PasswordHash::locked),
        tags.unwrap_or_default(),
    ) {
        Ok(()) => Ok(StatusCode::CREATED),
        // Created meanwhile by another request: this one updated nothing.
        Err(UserTableError::UserExists(_)) => Ok(StatusCode::NO_CONTENT),
        Err(e) => Err(e.into()),
    }
}

fn delete_user(api: &Api, user: &str) -> ApiResult<()> {
    api.broker.users().delete_user(user)?;
    // RabbitMQ closes the deleted user's connections.
    for c in api.broker.connections().list() {
        if c.user == user {
            api.broker
                .connections()
                .close(c.id, &format!("user '{user}' is deleted"));
        }
    }
    Ok(())
}

async fn delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(Tag::Administrator)?;
    delete_user(&api, &user)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn bulk_delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require(Tag::Administrator)?;
    let fields = Fields::parse(&body)?;
    fields.require(&["users"])?;
    let Some(Value::Array(names)) = fields.get("users") else {
        return Err(ApiError::wrong_type(
            "not_list",
            fields.get("users").unwrap_or(&Value::Null),
        ));
    };
    for name in names {
        if let Value::String(name) = name {
            // Unknown users are skipped, as RabbitMQ does.
            let _ = delete_user(&api, name);
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn user_permissions(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(user): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Tag::Administrator)?;
    let users = api.broker.users();
    users.user(&user).ok_or_else(ApiError::not_found)?;
    let items = users
        .permissions()
        .into_iter()
        .filter(|p| p.user == user)
        .map(|p| permission_json(&p))
        .collect();
    q.apply(items)
}

async fn all_permissions(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require(Tag::Administrator)?;
    let items = api
        .broker
        .users()
        .permissions()
        .iter()
        .map(permission_json)
        .collect();
    q.apply(items)
}

fn find_permission(api: &Api, vhost: &str, user: &str) -> Option<PermissionInfo> {
    api.broker
        .users()
        .permissions()
        .into_iter()
        .find(|p| p.vhost == vhost && p.user == user)
}

async fn show_permission(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require(Tag::Administrator)?;
    let p = find_permission(&api, &vhost, &user).ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_json(&p)))
}

async fn put_permission(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    caller.require(Tag::Administrator)?;
    let fields = Fields::parse(&body)?;
    fields.require(&["configure", "write", "read"])?;
    let pattern = |k: &str| -> ApiResult<String> { Ok(fields.string(k)?.unwrap_or_default()) };
    let (configure, write, read) = (pattern("configure")?, pattern("write")?, pattern("read")?);
    let users = api.broker.users();
    if api.broker.vhost(&vhost).is_none() || users.user(&user).is_none() {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    let existed = find_permission(&api, &vhost, &user).is_some();
    match users.set_permissions(&user, &vhost, &configure, &write, &read) {
        Ok(()) => {}
        Err(UserTableError::BadPattern(e)) => {
            return Err(ApiError::bad_request(json!([
                "invalid_regexp",
                e.pattern,
                e.reason
            ])));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

async fn delete_permission(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    caller.require(Tag::Administrator)?;
    if find_permission(&api, &vhost, &user).is_none() {
        return Err(ApiError::not_found());
    }
    api.broker.users().clear_permissions(&user, &vhost)?;
    Ok(StatusCode::NO_CONTENT)
}
