//! Which upstreams an exchange is federated to, and with what settings: RabbitMQ's
//! `federation-upstream` and `federation-upstream-set` runtime parameters, chosen by the
//! `federation-upstream` / `federation-upstream-set` key of the policy in force (the
//! set `all` being every upstream of the vhost).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::broker::vhost::VHost;
use crate::protocol::ShortString;

/// When a message taken from the upstream queue is acked there (RabbitMQ's
/// `ack-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Once the local exchange has routed it and the queues confirmed it: nothing lost.
    OnConfirm,
    /// Once it has been published locally.
    OnPublish,
    /// Never: the upstream forgets it when it sends it (fastest, may lose).
    NoAck,
}

/// OpenAMQ's federation modes, chosen by the fedamq-only upstream key `fedamq-mode`
/// (without it: subscriber, RabbitMQ's behaviour). See the module `link` for each
/// mode's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Local bindings are mirrored upstream; the upstream's matching messages come down.
    Subscriber,
    /// Local publishes are routed locally and also forwarded up.
    Publisher,
    /// Local publishes are forwarded up only when no local queue took them.
    Locator,
    /// Subscriber plus publisher: client publishes go up without local routing, and
    /// come back down through the mirrored bindings (the root fans out).
    Fanout,
    /// Subscriber plus locator, with only exclusive bindings mirrored.
    Service,
}

impl Mode {
    pub fn from_name(name: &str) -> Option<Mode> {
        Some(match name {
            "subscriber" => Mode::Subscriber,
            "publisher" => Mode::Publisher,
            "locator" => Mode::Locator,
            "fanout" => Mode::Fanout,
            "service" => Mode::Service,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Subscriber => "subscriber",
            Mode::Publisher => "publisher",
            Mode::Locator => "locator",
            Mode::Fanout => "fanout",
            Mode::Service => "service",
        }
    }

    /// Mirrors bindings and brings messages down.
    pub fn subscribes(self) -> bool {
        matches!(self, Mode::Subscriber | Mode::Fanout | Mode::Service)
    }

    /// Forwards local publishes up.
    pub fn forwards(self) -> bool {
        self != Mode::Subscriber
    }

    /// Forwards carry this node's `x-received-from` entry, so they never come back
    /// here; fanout's carry none, since they must come back down.
    pub fn marks_forwards(self) -> bool {
        self.forwards() && self != Mode::Fanout
    }
}

/// One upstream, as a link uses it: the parameter's value, with a set entry's
/// overrides applied, and RabbitMQ's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// The parameter's name.
    pub name: String,
    /// One of them is used, picked at random each time a link starts.
    pub uris: Vec<String>,
    /// The upstream exchange's name (default: the federated exchange's).
    pub exchange: Option<String>,
    pub max_hops: i64,
    pub prefetch_count: u16,
    pub reconnect_delay: Duration,
    pub ack_mode: AckMode,
    pub trust_user_id: bool,
    /// `x-expires` of the upstream queue, in ms.
    pub expires: Option<i64>,
    /// `x-message-ttl` of the upstream queue, in ms.
    pub message_ttl: Option<i64>,
    /// `x-queue-type` of the upstream queue.
    pub queue_type: Option<String>,
    /// `resource-cleanup-mode: never`: a stopped link leaves its upstream queue and
    /// exchange in place.
    pub keep_resources: bool,
    /// `fedamq-mode` (fedamq's own key; RabbitMQ ignores it).
    pub mode: Mode,
}

impl Upstream {
    /// The upstream `name` from its parameter `value`, with `overrides` (a set entry)
    /// taking precedence key by key. `Err`: why it cannot be used.
    pub fn from_json(
        name: &str,
        value: &Value,
        overrides: &Map<String, Value>,
    ) -> Result<Upstream, String> {
        let base = value.as_object().cloned().unwrap_or_default();
        let get = |key: &str| overrides.get(key).or_else(|| base.get(key));
        let int = |key: &str| -> Result<Option<i64>, String> {
            match get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| format!("{key} should be a number, got {v}")),
            }
        };
        let uris = match get("uri") {
            Some(Value::String(u)) => vec![u.clone()],
            Some(Value::Array(us)) => us
                .iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if uris.is_empty() {
            return Err(format!("upstream {name} has no uri"));
        }
        let ack_mode = match get("ack-mode").and_then(Value::as_str) {
            None | Some("on-confirm") => AckMode::OnConfirm,
            Some("on-publish") => AckMode::OnPublish,
            Some("no-ack") => AckMode::NoAck,
            Some(other) => {
                return Err(format!(
                    "ack-mode {other} is not one of on-confirm, on-publish, no-ack"
                ));
            }
        };
        let mode = match get("fedamq-mode").and_then(Value::as_str) {
            None => Mode::Subscriber,
            Some(m) => Mode::from_name(m).ok_or_else(|| {
                format!(
                    "fedamq-mode {m} is not one of subscriber, publisher, locator, fanout, service"
                )
            })?,
        };
        let prefetch = int("prefetch-count")?.unwrap_or(1000);
        let delay = match get("reconnect-delay") {
            Some(v) => v
                .as_f64()
                .filter(|s| *s >= 0.0)
                .ok_or_else(|| format!("reconnect-delay should be a number, got {v}"))?,
            None => 5.0,
        };
        Ok(Upstream {
            name: name.to_owned(),
            uris,
            exchange: get("exchange").and_then(Value::as_str).map(str::to_owned),
            max_hops: int("max-hops")?.unwrap_or(1).max(1),
            prefetch_count: u16::try_from(prefetch.max(0)).unwrap_or(u16::MAX),
            reconnect_delay: Duration::from_secs_f64(delay),
            ack_mode,
            trust_user_id: get("trust-user-id")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            expires: int("expires")?,
            message_ttl: int("message-ttl")?,
            queue_type: get("queue-type").and_then(Value::as_str).map(str::to_owned),
            keep_resources: get("resource-cleanup-mode").and_then(Value::as_str) == Some("never"),
            mode,
        })
    }

    /// The upstream exchange for the local exchange `local`.
    pub fn exchange_for(&self, local: &ShortString) -> String {
        self.exchange
            .clone()
            .unwrap_or_else(|| String::from_utf8_lossy(local.as_bytes()).into_owned())
    }
}

/// The upstreams the policy in force federates exchange `name` to. Upstreams named
/// but not defined, or that cannot be used, are left out (and logged).
pub fn upstreams_for(vhost: &VHost, name: &ShortString) -> Vec<Upstream> {
    let settings = vhost.exchange_policy(name).settings();
    let entries: Vec<Map<String, Value>> = if let Some(one) = settings.federation_upstream {
        vec![entry(&one)]
    } else if let Some(set) = settings.federation_upstream_set {
        if set == "all" {
            vhost
                .parameters(Some("federation-upstream"))
                .into_iter()
                .map(|p| entry(&p.name))
                .collect()
        } else {
            match vhost.parameter("federation-upstream-set", &set) {
                Some(p) => p
                    .value
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| i.as_object().cloned())
                            .collect()
                    })
                    .unwrap_or_default(),
                None => Vec::new(),
            }
        }
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for e in entries {
        let Some(upstream) = e.get("upstream").and_then(Value::as_str) else {
            continue;
        };
        let Some(p) = vhost.parameter("federation-upstream", upstream) else {
            continue;
        };
        match Upstream::from_json(upstream, &p.value, &e) {
            Ok(u) => out.push(u),
            Err(e) => tracing::warn!(upstream, "federation upstream not used: {e}"),
        }
    }
    out
}

fn entry(upstream: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("upstream".into(), Value::String(upstream.to_owned()));
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_overrides_are_rabbitmqs() {
        let u = Upstream::from_json("u", &json!({"uri": "amqp://h"}), &Map::new()).unwrap();
        assert_eq!(u.uris, ["amqp://h"]);
        assert_eq!((u.max_hops, u.prefetch_count), (1, 1000));
        assert_eq!(u.ack_mode, AckMode::OnConfirm);
        assert_eq!(u.mode, Mode::Subscriber);
        assert_eq!(u.reconnect_delay, Duration::from_secs(5));
        assert!(!u.trust_user_id && !u.keep_resources);
        assert_eq!(u.exchange_for(&ShortString::from_static("x")), "x");

        let set_entry = json!({"upstream": "u", "max-hops": 3, "exchange": "y"});
        let u = Upstream::from_json(
            "u",
            &json!({"uri": ["amqp://a", "amqp://b"], "max-hops": 2, "expires": 60000,
                    "ack-mode": "no-ack", "resource-cleanup-mode": "never"}),
            set_entry.as_object().unwrap(),
        )
        .unwrap();
        assert_eq!((u.max_hops, u.expires), (3, Some(60000)));
        assert_eq!(u.exchange_for(&ShortString::from_static("x")), "y");
        assert_eq!(u.ack_mode, AckMode::NoAck);
        assert!(u.keep_resources);

        let u = Upstream::from_json(
            "u",
            &json!({"uri": "amqp://h", "fedamq-mode": "locator"}),
            &Map::new(),
        )
        .unwrap();
        assert_eq!(u.mode, Mode::Locator);
        for bad in [
            json!({}),
            json!({"uri": "amqp://h", "ack-mode": "later"}),
            json!({"uri": "amqp://h", "fedamq-mode": "push"}),
        ] {
            assert!(Upstream::from_json("u", &bad, &Map::new()).is_err());
        }
    }
}
