//! What the pair shows: `GET /api/ha`, `fedamqctl ha status` and the Prometheus gauges.

use serde::Serialize;

/// One member's view of the pair, now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HaStatus {
    /// pending, active or passive.
    pub state: &'static str,
    /// primary or backup.
    pub role: &'static str,
    /// The last activation epoch (0: never active).
    pub epoch: u64,
    /// host:port of the other member.
    pub peer_address: String,
    /// What the peer last said (None: nothing heard since start).
    pub peer: Option<PeerStatus>,
    /// Milliseconds since the peer's last message (None: never).
    pub last_peer_heartbeat_ms: Option<u64>,
    /// Why the state last changed.
    pub reason: String,
    /// Milliseconds since the state last changed.
    pub since_change_ms: u64,
    pub timeout_ms: u64,
    /// State changes since start.
    pub transitions: u64,
    /// Client connections refused while not active.
    pub refused_clients: u64,
    /// The arbiter's fencing token, when an arbiter is configured and grants one.
    pub fencing_token: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    pub state: &'static str,
    pub role: &'static str,
    pub epoch: u64,
    pub identifier: String,
}
