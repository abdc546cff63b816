//! The etcd calls the arbiter makes, over etcd's JSON gateway (`POST /v3/...`), with
//! failover between endpoints: a call that cannot reach one endpoint is tried on the
//! next, and the one that answered is tried first next time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::error::ArbiterError;
use super::wire::{self, KeyValue};

/// A client for a list of endpoints of one etcd cluster. Cheap to clone.
#[derive(Clone)]
pub struct EtcdClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// Base URLs, `http://host:port`.
    endpoints: Vec<String>,
    http: reqwest::Client,
    /// The endpoint that answered last.
    current: AtomicUsize,
}

/// `host:port` or `http://host:port` as a base URL; `https` is refused (no TLS stack).
pub fn endpoint_url(endpoint: &str) -> Result<String, String> {
    let e = endpoint.trim().trim_end_matches('/');
    if e.is_empty() {
        return Err("an endpoint must not be empty".into());
    }
    if e.starts_with("https://") {
        return Err(format!(
            "{endpoint:?}: TLS to etcd is not supported; use http://"
        ));
    }
    let url = if e.starts_with("http://") {
        e.to_string()
    } else if e.contains("://") {
        return Err(format!(
            "{endpoint:?}: expected host:port or http://host:port"
        ));
    } else {
        format!("http://{e}")
    };
    reqwest::Url::parse(&url).map_err(|err| format!("{endpoint:?}: {err}"))?;
    Ok(url)
}

impl EtcdClient {
    /// A client for `endpoints`; each request is given up after `timeout`.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<EtcdClient, ArbiterError> {
        if endpoints.is_empty() {
            return Err(ArbiterError::Settings("no etcd endpoints".into()));
        }
        let endpoints = endpoints
            .iter()
            .map(|e| endpoint_url(e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ArbiterError::Settings)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ArbiterError::Settings(format!("HTTP client: {e}")))?;
        Ok(EtcdClient {
            inner: Arc::new(Inner {
                endpoints,
                http,
                current: AtomicUsize::new(0),
            }),
        })
    }

    /// POSTs `body` to `path` on the current endpoint, then on each other one while
    /// they cannot be reached. An error etcd itself returns is final.
    pub async fn call(&self, path: &str, body: &Value) -> Result<Value, ArbiterError> {
        let n = self.inner.endpoints.len();
        let first = self.inner.current.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let url = format!("{}{path}", self.inner.endpoints[at]);
            match self.post(&url, body).await {
                Ok(answer) => {
                    self.inner.current.store(at, Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(Unreached(why)) => failures.push(format!("{url}: {why}")),
            }
        }
        Err(ArbiterError::Unreachable(failures.join("; ")))
    }

    async fn post(&self, url: &str, body: &Value) -> Result<Value, Unreached> {
        let reply = self
            .inner
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| Unreached(error_chain(&e)))?;
        let status = reply.status();
        // 503: that member has no leader (or is stopping); another may.
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(Unreached(format!("HTTP {status}")));
        }
        let bytes = reply
            .bytes()
            .await
            .map_err(|e| Unreached(error_chain(&e)))?;
        // The keepalive answer is a stream of JSON objects, one per line; one was asked.
        let first = bytes.split(|b| *b == b'\n').next().unwrap_or(&[]);
        serde_json::from_slice(first).map_err(|e| {
            Unreached(format!(
                "HTTP {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1): its id and the TTL etcd
    /// granted, which may be longer (etcd's minimum).
    pub async fn grant(&self, ttl: Duration) -> Result<(i64, Duration), ArbiterError> {
        let answer = self
            .call("/v3/lease/grant", &wire::grant(ttl.as_secs().max(1)))
            .await?;
        wire::check_error(&answer)?;
        let id = wire::int(&answer, "ID")?;
        let granted = wire::int(&answer, "TTL")?;
        if id == 0 || granted <= 0 {
            return Err(ArbiterError::Protocol(format!("lease grant: {answer}")));
        }
        Ok((id, trusted_ttl(granted)))
    }

    /// Renews lease `id`: its remaining TTL, or `None` when etcd no longer has it.
    pub async fn keepalive(&self, id: i64) -> Result<Option<Duration>, ArbiterError> {
        let answer = self
            .call("/v3/lease/keepalive", &wire::lease_id(id))
            .await?;
        let ttl = wire::keepalive_ttl(&answer)?;
        Ok((ttl > 0).then(|| trusted_ttl(ttl)))
    }

    /// Revokes lease `id`, deleting the keys under it. A lease already gone is fine.
    pub async fn revoke(&self, id: i64) -> Result<(), ArbiterError> {
        let answer = self.call("/v3/lease/revoke", &wire::lease_id(id)).await?;
        match wire::check_error(&answer) {
            Err(ArbiterError::Etcd { code: 5, .. }) => Ok(()), // NotFound
            other => other,
        }
    }

    /// Creates `key` = `value` under `lease` if the key does not exist: `Ok(revision)`
    /// of the put, or `Err` with the key as it is (`None` if it vanished meanwhile).
    pub async fn put_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        lease: i64,
    ) -> Result<Result<i64, Option<KeyValue>>, ArbiterError> {
        let answer = self
            .call("/v3/kv/txn", &wire::put_if_absent(key, value, lease))
            .await?;
        wire::check_error(&answer)?;
        match wire::txn_outcome(&answer)? {
            (true, _) => Ok(Ok(wire::revision(&answer)?)),
            (false, kv) => Ok(Err(kv)),
        }
    }

    /// The key's current value and revisions.
    pub async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, ArbiterError> {
        let answer = self.call("/v3/kv/range", &wire::range(key)).await?;
        wire::check_error(&answer)?;
        wire::first_kv(&answer)
    }

    /// Deletes the key whoever holds it (an operator's reset; tests).
    pub async fn delete(&self, key: &[u8]) -> Result<(), ArbiterError> {
        let answer = self.call("/v3/kv/deleterange", &wire::delete(key)).await?;
        wire::check_error(&answer)
    }
}

/// A TTL etcd stated, in seconds (positive), at most an hour: counting a lease as
/// shorter than etcd keeps it is always safe, and an absurd figure cannot overflow the
/// deadline arithmetic.
fn trusted_ttl(secs: i64) -> Duration {
    Duration::from_secs(secs.clamp(1, 3600) as u64)
}

/// A request that did not get an answer from etcd: the next endpoint is tried.
struct Unreached(String);

/// An error with its sources ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{endpoint_url, trusted_ttl};

    #[test]
    fn stated_ttls_are_clamped() {
        assert_eq!(trusted_ttl(5), Duration::from_secs(5));
        assert_eq!(trusted_ttl(i64::MAX), Duration::from_secs(3600));
    }

    #[test]
    fn endpoints_are_base_urls() {
        assert_eq!(
            endpoint_url("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            endpoint_url("http://etcd-1:2379/").unwrap(),
            "http://etcd-1:2379"
        );
        assert!(
            endpoint_url("https://etcd:2379")
                .unwrap_err()
                .contains("TLS")
        );
        assert!(endpoint_url("").is_err());
        assert!(endpoint_url("unix://x").is_err());
        assert!(endpoint_url("a b:c").is_err());
    }
}
