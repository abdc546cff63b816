//! What the upstream sees of a link. When the upstream is a fedamq, the link asks it
//! through a `broker` tunnel (src/tunnel/identity.rs) once the tunnel opens and then
//! every [`ASK_EVERY`]; the link's status shows the last answer, or why there is none
//! (`unsupported` for RabbitMQ, a 403 for an upstream user without the `peering` tag).
//! The asking runs in a task of its own, so it never holds up the link.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::status::{LinkStatus, UpstreamView, table_json};
use crate::broker::node::Broker;
use crate::peering::Remote;
use crate::protocol::generated::methods::{BrokerIdentify, BrokerIdentifyOk};
use crate::protocol::generated::services::{BROKER, Broker as BrokerService};
use crate::tunnel::identity::Answers;
use crate::tunnel::{TunnelConfig, TunnelState, Tunnels};

/// How often a link asks its upstream again.
pub const ASK_EVERY: Duration = Duration::from_secs(30);

fn answered(ok: BrokerIdentifyOk) -> UpstreamView {
    UpstreamView::Answered {
        at: SystemTime::now(),
        identifier: ok.identifier.to_string(),
        version: ok.version.to_string(),
        uptime_ms: ok.uptime,
        links: table_json(&ok.links),
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
                if !set(answered(ok)) {
                    return;
                }
                continue;
            }
        }
        let state = states.borrow_and_update().state.clone();
        let link_lives = match state {
            TunnelState::Open => {
                serial += 1;
                let _ = tunnel.send(BrokerIdentify { serial }).await;
                true
            }
            TunnelState::Failed(reason) => set(UpstreamView::Unavailable(reason)),
            _ => true,
        };
        if !link_lives {
            return;
        }
    }
}
