//! What the upstream sees of a link. When the upstream is a fedamq, the link asks it
//! through a `broker` tunnel (src/tunnel/identity.rs) once the tunnel opens and then
//! every [`ASK_EVERY`]; the link's status shows the last answer, or why there is none
//! (`unsupported` for RabbitMQ, a 403 for an upstream user without the `peering` tag).
//! The asking runs in a task of its own, so it never holds up the link.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::status::{LinkStatus, timestamp};
use crate::broker::node::Broker;
use crate::peering::Remote;
use crate::protocol::generated::methods::{BrokerIdentify, BrokerIdentifyOk};
use crate::protocol::generated::services::{BROKER, Broker as BrokerService};
use crate::protocol::{FieldTable, FieldValue};
use crate::tunnel::identity::Answers;
use crate::tunnel::{TunnelConfig, TunnelState, Tunnels};

/// How often a link asks its upstream again.
pub const ASK_EVERY: Duration = Duration::from_secs(30);

/// The upstream's last answer, or why there is none.
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

    fn answered(ok: BrokerIdentifyOk) -> UpstreamView {
        UpstreamView::Answered {
            at: SystemTime::now(),
            identifier: ok.identifier.to_string(),
            version: ok.version.to_string(),
            uptime_ms: ok.uptime,
            links: table_json(&ok.links),
        }
    }
}

/// Asks the upstream at `remote` until the task is aborted or the link's status goes.
pub(super) async fn ask(broker: Arc<Broker>, remote: Remote, status: Weak<Mutex<LinkStatus>>) {
    let set = |view: UpstreamView| match status.upgrade() {
        Some(s) => {
            s.lock().unwrap_or_else(|e| e.into_inner()).upstream_view = view;
            true
        }
        None => false,
    };
    let (tx, mut answers) = mpsc::unbounded_channel();
    let config = TunnelConfig::new(remote);
    let tunnel = match Tunnels::of(&broker)
        .open(config, &BROKER, |_| Box::new(BrokerService(Answers(tx))))
    {
        Ok(t) => t,
        Err(e) => {
            set(UpstreamView::Unavailable(e.to_string()));
            return;
        }
    };
    let mut states = tunnel.watch_status();
    let mut every = tokio::time::interval(ASK_EVERY);
    let mut serial = 0;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            changed = states.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            Some(ok) = answers.recv() => {
                if !set(UpstreamView::answered(ok)) {
                    return;
                }
                continue;
            }
        }
        let state = states.borrow_and_update().state.clone();
        match state {
            TunnelState::Open => {
                serial += 1;
                let _ = tunnel.send(BrokerIdentify { serial }).await;
            }
            TunnelState::Failed(reason) => {
                if !set(UpstreamView::Unavailable(reason)) {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// A field table as JSON: strings, numbers, booleans, arrays and tables.
fn table_json(t: &FieldTable) -> Value {
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
