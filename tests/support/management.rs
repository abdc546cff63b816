//! An HTTP client for the management API (reqwest), for fedamq's and RabbitMQ's alike.

use fedamq::BrokerHandle;
use serde_json::Value;

/// What a request got back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The body as JSON; `Value::Null` when empty, a string when not JSON.
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

/// A management API at `base` (`http://127.0.0.1:15672`), called as one user.
#[derive(Debug, Clone)]
pub struct Http {
    pub base: String,
    pub user: Option<(String, String)>,
    client: reqwest::Client,
}

impl Http {
    pub fn new(base: &str, user: &str, password: &str) -> Http {
        Http {
            base: base.trim_end_matches('/').to_string(),
            user: Some((user.into(), password.into())),
            client: reqwest::Client::new(),
        }
    }

    /// The API of an in-process broker, as guest.
    pub fn of(broker: &BrokerHandle) -> Http {
        let addr = broker.management_addr().expect("management API is on");
        Http::new(&format!("http://{addr}"), "guest", "guest")
    }

    /// The same API as another user (`None`: no credentials).
    pub fn as_user(&self, user: Option<(&str, &str)>) -> Http {
        Http {
            user: user.map(|(u, p)| (u.to_string(), p.to_string())),
            ..self.clone()
        }
    }

    /// `method` on `path` (which starts `/api/`), with a raw body if given.
    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some((u, p)) = &self.user {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            // JSON unless the caller names another content type.
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            {
                req = req.header("content-type", "application/json");
            }
            req = req.body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }

    pub async fn put(&self, path: &str, body: &str) -> Reply {
        self.call("PUT", path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        self.call("POST", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, None).await
    }
}

/// A name as one path segment (`/` `%` space `>` and the like percent-encoded), as
/// RabbitMQ's connection and channel names need.
pub fn segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
