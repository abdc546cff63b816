//! The management HTTP API as fedamqctl calls it: basic auth, path segments encoded
//! (a vhost `/` is `%2F`), RabbitMQ's `{"error", "reason"}` bodies turned into
//! [`CtlError`]s.

use reqwest::{Method, Url};
use serde_json::Value;

use crate::CtlError;

pub struct Client {
    base: Url,
    user: String,
    password: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(host: &str, port: u16, user: &str, password: &str) -> Result<Client, CtlError> {
        let base = Url::parse(&format!("http://{host}:{port}/"))
            .map_err(|e| CtlError::Usage(format!("bad host '{host}': {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CtlError::Unavailable(e.to_string()))?;
        Ok(Client {
            base,
            user: user.into(),
            password: password.into(),
            http: reqwest::Client::new(),
            runtime,
        })
    }

    /// `/api/` followed by `segments`, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().push("api").extend(segments);
        }
        url
    }

    /// A request; a 2xx answer's body as JSON (`Null` when empty).
    pub fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Value, CtlError> {
        let url = self.url(segments);
        let mut req = self
            .http
            .request(method, url.clone())
            .basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.runtime.block_on(async move {
            let resp = req.send().await.map_err(|e| {
                CtlError::Unavailable(format!(
                    "could not reach the management API at {}: {}",
                    self.base,
                    source_text(&e)
                ))
            })?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .map_err(|e| CtlError::Unavailable(e.to_string()))?;
            let json = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            };
            if status.is_success() {
                return Ok(json);
            }
            let reason = match &json["reason"] {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Null => status.to_string(),
                other => other.to_string(),
            };
            Err(match status.as_u16() {
                401 | 403 => CtlError::NotAuthorised(format!(
                    "{reason} (user '{}' at {})",
                    self.user, self.base
                )),
                404 => CtlError::NotFound(reason),
                400..=499 => CtlError::Refused(reason),
                _ => CtlError::Unavailable(format!("{status}: {reason}")),
            })
        })
    }

    pub fn get(&self, segments: &[&str]) -> Result<Value, CtlError> {
        self.call(Method::GET, segments, None, &[])
    }

    pub fn put(&self, segments: &[&str], body: &Value) -> Result<Value, CtlError> {
        self.call(Method::PUT, segments, Some(body), &[])
    }

    pub fn post(&self, segments: &[&str], body: &Value) -> Result<Value, CtlError> {
        self.call(Method::POST, segments, Some(body), &[])
    }

    pub fn delete(&self, segments: &[&str]) -> Result<Value, CtlError> {
        self.call(Method::DELETE, segments, None, &[])
    }
}

/// The innermost cause (reqwest's own text is only "error sending request").
fn source_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}
