//! The API's errors, as RabbitMQ's management plugin words them: a status code and a
//! JSON body `{"error": …, "reason": …}`.
//!
//! Handlers return [`ApiError`]; the broker core's [`AmqpError`] maps onto it as
//! RabbitMQ's plugin maps a channel error (404 for NOT_FOUND, 400 for a refused
//! declaration, 401 for ACCESS_REFUSED).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::UserTableError;
use crate::broker::error::AmqpError;
use crate::broker::policy::PolicyError;
use crate::protocol::ReplyCode;

/// An error answer; `reason` is usually a string, sometimes a term RabbitMQ shows as a
/// JSON list (`["not_boolean","x"]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: Value,
    /// 401 without credentials: no body, only `WWW-Authenticate`.
    pub challenge_only: bool,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The realm RabbitMQ names in `WWW-Authenticate`.
const REALM: &str = "Basic realm=\"RabbitMQ Management\"";

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<Value>) -> ApiError {
        ApiError {
            status,
            error,
            reason: reason.into(),
            challenge_only: false,
        }
    }

    /// 404 for an object (or route) that does not exist.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    /// 404 for a vhost named in a PUT/POST path that does not exist.
    pub fn vhost_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "vhost_not_found")
    }

    pub fn bad_request(reason: impl Into<Value>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// A body that is not JSON at all.
    pub fn not_json() -> ApiError {
        ApiError::bad_request("not_json")
    }

    /// A field of the wrong type: RabbitMQ's `{not_boolean, Value}` and the like.
    pub fn wrong_type(kind: &'static str, value: &Value) -> ApiError {
        let shown = match value {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        };
        ApiError::bad_request(json!([kind, shown]))
    }

    /// Required fields missing, as RabbitMQ lists them: `[{key_missing,payload}]`,
    /// an Erlang term printed with `~p`, which puts each element on a line of its own
    /// when the list does not fit on one.
    pub fn keys_missing(keys: &[&str]) -> ApiError {
        let items: Vec<String> = keys
            .iter()
            .map(|k| format!("{{key_missing,{k}}}"))
            .collect();
        let one_line = format!("[{}]", items.join(","));
        if one_line.len() < 79 {
            ApiError::bad_request(one_line)
        } else {
            ApiError::bad_request(format!("[{}]", items.join(",\n ")))
        }
    }

    /// No or unreadable credentials.
    pub fn challenge() -> ApiError {
        ApiError {
            challenge_only: true,
            ..ApiError::new(StatusCode::UNAUTHORIZED, "not_authorized", "")
        }
    }

    /// Wrong user name or password.
    pub fn login_failed() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed")
    }

    /// A user whose tags or permissions do not allow this. RabbitMQ 3.10 answers 401
    /// here too (not 403), with the British spelling.
    pub fn not_authorised(reason: &'static str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }

    pub fn no_vhost_access() -> ApiError {
        ApiError::not_authorised("User not authorised to access virtual host")
    }

    pub fn internal(reason: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            reason.into(),
        )
    }
}

impl From<AmqpError> for ApiError {
    fn from(e: AmqpError) -> ApiError {
        match e.code {
            ReplyCode::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.text),
            ReplyCode::AccessRefused => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "not_authorised",
                "Access refused.",
            ),
            _ => ApiError::bad_request(e.text),
        }
    }
}

impl From<UserTableError> for ApiError {
    fn from(e: UserTableError) -> ApiError {
        match e {
            UserTableError::NoSuchUser(_) => ApiError::not_found(),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> ApiError {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, e.error(), e.reason())
    }
}

/// Answers axum itself gives (a path segment that is not UTF-8, a body over the limit)
/// come as plain text; this gives them RabbitMQ's JSON error body.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    let error = if status == StatusCode::BAD_REQUEST {
        "bad_request"
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        "payload_too_large"
    } else {
        "error"
    };
    ApiError::new(status, error, text).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.challenge_only {
            let mut r = self.status.into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
            return r;
        }
        let login_failed = self.error == "not_authorized";
        let mut r = (
            self.status,
            axum::Json(json!({"error": self.error, "reason": self.reason})),
        )
            .into_response();
        if login_failed {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
        }
        r
    }
}
