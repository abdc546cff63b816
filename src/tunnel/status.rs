//! A tunnel's status as its owner, the management API and the tests see it: the state
//! (modelled on IBM MQ's channel states and Qpid Dispatch's auto-link states), why it
//! is in it, the counters, and every transition in order.

use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::watch;

use super::endpoint::TunnelCounters;

/// Where a tunnel is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "reason")]
pub enum TunnelState {
    /// Created, not started.
    Inactive,
    /// Connected; opening the tunnel.
    Opening,
    Open,
    /// The connection went; the peering reconnects (short, then long waits).
    Retrying,
    /// The reason says why. `unsupported` (the remote lacks the capability) is final;
    /// a refusal (of the user, the service or its version) is asked again slowly.
    Failed(String),
    /// Closed by either side.
    Closed,
}

/// A tunnel's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelStatus {
    pub service: &'static str,
    /// The remote, as `host:port/vhost`.
    pub remote: String,
    #[serde(flatten)]
    pub state: TunnelState,
    /// Why it entered its state.
    pub why: String,
    pub counters: TunnelCounters,
    pub last_error: Option<String>,
}

/// The one place a tunnel's status changes.
pub(crate) struct StatusBoard {
    tx: watch::Sender<TunnelStatus>,
    transitions: Mutex<Vec<(TunnelState, String)>>,
}

/// Transitions kept per tunnel (the oldest go first).
const KEPT: usize = 256;

impl StatusBoard {
    pub(crate) fn new(service: &'static str, remote: String) -> StatusBoard {
        let status = TunnelStatus {
            service,
            remote,
            state: TunnelState::Inactive,
            why: "created".into(),
            counters: TunnelCounters::default(),
            last_error: None,
        };
        StatusBoard {
            tx: watch::channel(status).0,
            transitions: Mutex::new(vec![(TunnelState::Inactive, "created".into())]),
        }
    }

    pub(crate) fn set(&self, state: TunnelState, why: impl Into<String>) {
        let why = why.into();
        let is_error = matches!(state, TunnelState::Failed(_) | TunnelState::Retrying);
        self.tx.send_modify(|s| {
            s.state = state.clone();
            s.why = why.clone();
            if is_error {
                s.last_error = Some(why.clone());
            }
        });
        let mut t = self.transitions.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == KEPT {
            t.remove(0);
        }
        t.push((state, why));
    }

    pub(crate) fn get(&self, counters: TunnelCounters) -> TunnelStatus {
        let mut s = self.tx.borrow().clone();
        s.counters = counters;
        s
    }

    pub(crate) fn watch(&self) -> watch::Receiver<TunnelStatus> {
        self.tx.subscribe()
    }

    pub(crate) fn transitions(&self) -> Vec<(TunnelState, String)> {
        self.transitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
