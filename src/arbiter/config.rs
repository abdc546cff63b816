//! `[ha.arbiter]`: where the etcd cluster is, which key the pair contends for, and how
//! long a lease lasts. Read from the `[ha]` table's `arbiter` value by the
//! configuration loader; errors name the key below `ha.arbiter`.
//!
//! ```toml
//! [ha.arbiter]
//! endpoints = ["127.0.0.1:2379", "http://etcd-2:2379"]  # one etcd cluster
//! key = "/fedamq/ha/orders/active"   # default: /fedamq/ha/<pair name>/active
//! ttl = 10                           # seconds a lease outlives its last renewal
//! ```

use std::time::Duration;

use super::client::endpoint_url;
use super::election::EtcdArbiter;
use super::error::ArbiterError;

/// LavinMQ's lease TTL (raised there from 5 s because busy nodes missed renewals).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// The longest TTL accepted: a holder that dies keeps its key this long.
pub const MAX_TTL: Duration = Duration::from_secs(300);

/// The arbiter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArbiterConfig {
    /// `host:port` or `http://host:port`, members of one etcd cluster.
    pub endpoints: Vec<String>,
    /// The key; `None` is [`default_key`] of the pair's name.
    pub key: Option<String>,
    /// Whole seconds, at least 1 (etcd grants its minimum, about 2 s, if asked less).
    pub ttl: Duration,
}

/// The key a pair contends for when none is configured.
pub fn default_key(pair: &str) -> String {
    format!("/fedamq/ha/{pair}/active")
}

/// A bad `[ha.arbiter]` value: the key (below `ha.arbiter`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl ArbiterConfig {
    /// Reads the `[ha.arbiter]` table.
    pub fn from_toml(value: &toml::Value) -> Result<ArbiterConfig, ConfigProblem> {
        let problem = |key: &str, message: String| ConfigProblem {
            key: key.into(),
            message,
        };
        let table = value
            .as_table()
            .ok_or_else(|| problem("", "expected a table".into()))?;
        if let Some(unknown) = table
            .keys()
            .find(|k| !["endpoints", "key", "ttl"].contains(&k.as_str()))
        {
            return Err(problem(
                unknown,
                "unknown key, expected one of endpoints, key, ttl".into(),
            ));
        }
        let endpoints = match table.get("endpoints") {
            None => return Err(problem("endpoints", "missing".into())),
            Some(toml::Value::Array(items)) if !items.is_empty() => items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => endpoint_url(s).map(|_| s.clone()),
                    other => Err(format!("expected strings, got {other}")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| problem("endpoints", m))?,
            Some(_) => {
                return Err(problem(
                    "endpoints",
                    "expected a non-empty array of host:port strings".into(),
                ));
            }
        };
        let key = match table.get("key") {
            None => None,
            Some(toml::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(problem("key", "expected a non-empty string".into())),
        };
        let ttl = match table.get("ttl") {
            None => DEFAULT_TTL,
            Some(toml::Value::Integer(i))
                if *i >= 1 && Duration::from_secs(*i as u64) <= MAX_TTL =>
            {
                Duration::from_secs(*i as u64)
            }
            Some(other) => {
                return Err(problem(
                    "ttl",
                    format!(
                        "expected whole seconds from 1 to {}, got {other}",
                        MAX_TTL.as_secs()
                    ),
                ));
            }
        };
        Ok(ArbiterConfig {
            endpoints,
            key,
            ttl,
        })
    }

    /// The key for the pair named `pair`.
    pub fn key_for(&self, pair: &str) -> String {
        self.key.clone().unwrap_or_else(|| default_key(pair))
    }

    /// The arbiter these settings describe, for the pair named `pair`.
    pub fn arbiter(&self, pair: &str) -> Result<EtcdArbiter, ArbiterError> {
        EtcdArbiter::new(self.endpoints.clone(), self.key_for(pair), self.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ArbiterConfig, ConfigProblem> {
        ArbiterConfig::from_toml(&toml::from_str::<toml::Value>(text).unwrap())
    }

    #[test]
    fn reads_the_table() {
        let c = read(r#"endpoints = ["127.0.0.1:2379", "http://b:2379"]"#).unwrap();
        assert_eq!(c.endpoints, ["127.0.0.1:2379", "http://b:2379"]);
        assert_eq!(c.ttl, DEFAULT_TTL);
        assert_eq!(c.key_for("orders"), "/fedamq/ha/orders/active");
        let c = read("endpoints = [\"e:1\"]\nkey = \"/k\"\nttl = 3").unwrap();
        assert_eq!(
            (c.key_for("x"), c.ttl),
            ("/k".into(), Duration::from_secs(3))
        );
        assert!(c.arbiter("x").is_ok());
    }

    #[test]
    fn names_the_bad_key() {
        let key = |text: &str| read(text).unwrap_err().key;
        assert_eq!(key("ttl = 3"), "endpoints");
        assert_eq!(key("endpoints = []"), "endpoints");
        assert_eq!(key("endpoints = [\"https://e:1\"]"), "endpoints");
        assert_eq!(key("endpoints = [\"e:1\"]\nttl = 0"), "ttl");
        assert_eq!(key("endpoints = [\"e:1\"]\nttl = 1.5"), "ttl");
        assert_eq!(key("endpoints = [\"e:1\"]\nttl = 100000"), "ttl");
        assert_eq!(key("endpoints = [\"e:1\"]\nkey = \"\""), "key");
        assert_eq!(key("endpoints = [\"e:1\"]\nttls = 3"), "ttls");
    }
}
