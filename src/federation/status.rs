//! What a link reports: RabbitMQ's federation status fields (`/api/federation-links`,
//! `rabbitmqctl federation_status`) plus fedamq's counters. The state is what the link
//! really does: `running` only once it consumes from the upstream with its bindings
//! mirrored, `blocked` while the upstream blocks it, `backoff` between reconnects.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::protocol::{FieldTable, FieldValue};

/// Where a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting, declaring, mirroring bindings.
    Starting,
    Running,
    /// Forwarding up cannot keep pace: the local publishers are held back.
    Flow,
    /// The upstream has blocked the connection (connection.blocked).
    Blocked,
    /// Waiting to reconnect after a failure.
    Backoff,
    /// Failed; the reason is in `error` (the link retries after `reconnect-delay`).
    Error,
    Stopped,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Starting => "starting",
            LinkState::Running => "running",
            LinkState::Flow => "flow",
            LinkState::Blocked => "blocked",
            LinkState::Backoff => "backoff",
            LinkState::Error => "error",
            LinkState::Stopped => "stopped",
        }
    }
}

/// Running totals since the link started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Deliveries taken from the upstream queue.
    pub received: u64,
    /// Of those, published to the local exchange.
    pub published: u64,
    /// Acked upstream.
    pub acked: u64,
    /// Dropped by the loop rule (max-hops, or back at its origin), acked.
    pub dropped: u64,
    /// Deliveries of a connection that had already ended, skipped unsettled (the
    /// upstream requeued them and delivers them again).
    pub stale: u64,
    /// Received with the redelivered flag (possible duplicates, flagged in
    /// `x-received-from`).
    pub redelivered: u64,
    /// Connections made to the upstream (the first, then one per reconnect).
    pub connects: u64,
    /// Binding changes sent upstream and not yet answered.
    pub bindings_pending: u64,
    /// Bindings mirrored upstream now.
    pub bindings: u64,
    /// Local publishes forwarded up and confirmed there (publisher, locator, fanout,
    /// service).
    pub forwarded: u64,
    /// Forwards the upstream refused (nacked, or closed the channel over).
    pub forward_failed: u64,
    /// Forwards sent again because the upstream connection was lost before their
    /// confirm (each may reach the upstream twice, the copy flagged `redelivered` in
    /// its `x-received-from` entry).
    pub resent: u64,
    /// Forwards the upstream returned (mandatory, unroutable there), handed back to
    /// their publisher.
    pub returned: u64,
    /// Of those, whose publisher had gone (counted and logged).
    pub returns_lost: u64,
    /// Publishes after which the publisher was held back (flow) for a full forwarding
    /// backlog.
    pub held_back: u64,
}

/// One link's status.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub vhost: String,
    pub exchange: String,
    pub upstream_exchange: String,
    /// The upstream parameter's name.
    pub upstream: String,
    pub id: String,
    /// The URI in use, without credentials.
    pub uri: String,
    pub state: LinkState,
    /// Why it is in this state (the error, for `error` and `backoff`).
    pub reason: String,
    pub since: SystemTime,
    /// The upstream connection's name, as the upstream lists it.
    pub local_connection: String,
    /// The upstream's `fedamq-mode`.
    pub mode: &'static str,
    pub counters: LinkCounters,
    /// What the upstream (a fedamq) says it sees of this broker.
    pub upstream_view: UpstreamView,
}

impl LinkStatus {
    /// Moves to `state` for `reason` (the time is kept only when the state changes).
    pub fn set(&mut self, state: LinkState, reason: impl Into<String>) {
        if self.state != state {
            self.since = SystemTime::now();
        }
        self.state = state;
        self.reason = reason.into();
    }

    /// As `/api/federation-links` lists it.
    pub fn json(&self, node: &str) -> Value {
        let c = &self.counters;
        let mut v = json!({
            "node": node,
            "exchange": self.exchange,
            "upstream_exchange": self.upstream_exchange,
            "type": "exchange",
            "vhost": self.vhost,
            "upstream": self.upstream,
            "id": self.id,
            "status": self.state.as_str(),
            "uri": self.uri,
            "timestamp": timestamp(self.since),
            "reason": self.reason,
            "fedamq_mode": self.mode,
            "messages_received": c.received,
            "messages_published": c.published,
            "messages_acked": c.acked,
            "messages_dropped": c.dropped,
            "messages_in_flight": c.received.saturating_sub(c.acked + c.dropped),
            "messages_redelivered": c.redelivered,
            "messages_stale_skipped": c.stale,
            "reconnects": c.connects.saturating_sub(1),
            "bindings": c.bindings,
            "bindings_pending": c.bindings_pending,
            "messages_forwarded": c.forwarded,
            "messages_forward_failed": c.forward_failed,
            "messages_forward_resent": c.resent,
            "messages_returned": c.returned,
            "messages_returns_lost": c.returns_lost,
            "publishes_held_back": c.held_back,
            "upstream_view": self.upstream_view.json(),
        });
        if let Some(m) = v.as_object_mut() {
            match self.state {
                LinkState::Running => {
                    m.insert("local_connection".into(), json!(self.local_connection));
                }
                LinkState::Error | LinkState::Backoff | LinkState::Blocked | LinkState::Flow => {
                    m.insert("error".into(), json!(self.reason));
                }
                _ => {}
            }
        }
        v
    }
}

/// What the upstream (a fedamq, asked through a `broker` tunnel by
/// `upstream_view.rs`) last said it sees of this broker, or why it said nothing.
#[derive(Debug, Clone, Default)]
pub enum UpstreamView {
    #[default]
    NotAsked,
    /// No answer, and why.
    Unavailable(String),
    Answered {
        at: SystemTime,
        identifier: String,
        version: String,
        uptime_ms: u64,
        /// `identify-ok.links`, as JSON.
        links: Value,
    },
}

impl UpstreamView {
    /// As `/api/federation-links` shows it in `upstream_view`.
    pub fn json(&self) -> Value {
        match self {
            UpstreamView::NotAsked => json!({ "state": "not asked" }),
            UpstreamView::Unavailable(reason) => {
                json!({ "state": "unavailable", "reason": reason })
            }
            UpstreamView::Answered {
                at,
                identifier,
                version,
                uptime_ms,
                links,
            } => json!({
                "state": "answered",
                "timestamp": timestamp(*at),
                "identifier": identifier,
                "version": version,
                "uptime_ms": uptime_ms,
                "links": links,
            }),
        }
    }
}

/// A field table as JSON: strings, numbers, booleans, arrays and tables.
pub(super) fn table_json(t: &FieldTable) -> Value {
    Value::Object(
        t.iter()
            .map(|(k, v)| (k.to_string(), value_json(v)))
            .collect(),
    )
}

fn value_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Table(t) => table_json(t),
        FieldValue::Array(a) => Value::Array(a.iter().map(value_json).collect()),
        FieldValue::Bool(b) => json!(b),
        v => match (v.as_i64(), v.as_bytes()) {
            (Some(n), _) => json!(n),
            (None, Some(b)) => json!(String::from_utf8_lossy(b)),
            (None, None) => Value::Null,
        },
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, as RabbitMQ formats a link's timestamp.
pub fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(timestamp(t), "2024-02-29 12:34:56");
    }
}
