//! What a peering reports about itself: its state, counters, and the last error. The
//! state is what the link is really doing (a link that says `running` moves messages),
//! and every change is reported with its reason, in order, to the status handler.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::protocol::FieldTable;

/// Where a peering is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeeringState {
    /// Made, not started: nothing connects before `start()`.
    Idle,
    /// Connecting, logging in, or replaying its declarations.
    Connecting,
    /// Connected, declarations replayed, outbox flowing.
    Running,
    /// Connected, but the remote has blocked publishing (connection.blocked).
    Blocked,
    /// Waiting to reconnect after a failure.
    BackingOff { until: Instant, attempt: u32 },
    /// Given up: reconnection is off, or retrying cannot help (peering to itself).
    Failed { code: Option<u16>, text: String },
    /// Stopped by its owner.
    Stopped,
}

impl fmt::Display for PeeringState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Idle => f.write_str("idle"),
            Self::Connecting => f.write_str("connecting"),
            Self::Running => f.write_str("running"),
            Self::Blocked => f.write_str("blocked"),
            Self::BackingOff { until, attempt } => write!(
                f,
                "backing-off (attempt {attempt}, {} ms left)",
                until.saturating_duration_since(Instant::now()).as_millis()
            ),
            Self::Failed {
                code: Some(code),
                text,
            } => write!(f, "failed ({code}, {text})"),
            Self::Failed { code: None, text } => write!(f, "failed ({text})"),
            Self::Stopped => f.write_str("stopped"),
        }
    }
}

/// A failure, as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// The AMQP reply code, when the remote gave one (connection.close, channel.close).
    pub code: Option<u16>,
    pub text: String,
    pub at: SystemTime,
}

/// Running totals since the peering was made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections that reached `running`.
    pub connects: u64,
    /// Connections lost or closed after reaching `running`.
    pub disconnects: u64,
    /// Publishes written to the remote (a resend after a reconnect counts again).
    pub sent: u64,
    /// Of those, resends: publishes in flight when a connection or channel was lost.
    pub resent: u64,
    /// Publishes the remote confirmed.
    pub confirmed: u64,
    /// Deliveries handed to the owner.
    pub delivered: u64,
    /// Publishes waiting to be confirmed (queued or in flight).
    pub outbox_depth: u64,
}

/// A snapshot of a peering's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeeringStatus {
    pub state: PeeringState,
    pub counters: Counters,
    pub last_error: Option<LastError>,
}

/// One state change and why it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub state: PeeringState,
    pub reason: String,
}

pub(crate) type StatusHandler = Arc<dyn Fn(&StatusChange) + Send + Sync>;

/// The peering task's side: publishes snapshots and calls the handler on changes.
pub(crate) struct StatusBoard {
    tx: watch::Sender<PeeringStatus>,
    handler: Arc<Mutex<Option<StatusHandler>>>,
    /// The last connection's server properties, for [`crate::peering::Peering::server_properties`].
    pub(crate) properties: Arc<Mutex<Option<FieldTable>>>,
}

impl StatusBoard {
    pub(crate) fn new() -> (
        StatusBoard,
        watch::Receiver<PeeringStatus>,
        Arc<Mutex<Option<StatusHandler>>>,
    ) {
        let (tx, rx) = watch::channel(PeeringStatus {
            state: PeeringState::Idle,
            counters: Counters::default(),
            last_error: None,
        });
        let handler = Arc::new(Mutex::new(None));
        (
            StatusBoard {
                tx,
                handler: handler.clone(),
                properties: Arc::default(),
            },
            rx,
            handler,
        )
    }

    /// Moves to `state` (reported even when it equals the current one: a reconnect
    /// attempt is news).
    pub(crate) fn set(&self, state: PeeringState, reason: impl Into<String>) {
        let change = StatusChange {
            state: state.clone(),
            reason: reason.into(),
        };
        tracing::info!(state = %change.state, reason = %change.reason, "peering");
        self.tx.send_modify(|s| s.state = state);
        let handler = self.handler.lock().ok().and_then(|h| h.clone());
        if let Some(h) = handler {
            h(&change);
        }
    }

    pub(crate) fn error(&self, code: Option<u16>, text: impl Into<String>) {
        let text = text.into();
        tracing::warn!(?code, %text, "peering error");
        self.tx.send_modify(|s| {
            s.last_error = Some(LastError {
                code,
                text,
                at: SystemTime::now(),
            })
        });
    }

    /// Notes the server properties of the connection just made.
    pub(crate) fn server_properties(&self, properties: &FieldTable) {
        if let Ok(mut p) = self.properties.lock() {
            *p = Some(properties.clone());
        }
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut Counters)) {
        self.tx.send_modify(|s| f(&mut s.counters));
    }
}
