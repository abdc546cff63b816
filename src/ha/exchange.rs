//! The state exchange over the `ha` tunnel service (spec/tunnel-ha.xml): what arrives
//! from the peer goes to the [`Node`]; the accepting side answers each state with its
//! own, so a member learns its peer's state even while its own tunnel reconnects.
//!
//! Both tunnels ride peerings logged in as a user with the `peering` tag: no client
//! can read or spoof the exchange.

use std::sync::{Arc, Weak};

use super::node::Node;
use crate::protocol::generated::methods::HaState;
use crate::protocol::generated::services::{HA, Ha, HaService, ServiceHandler};
use crate::tunnel::{TunnelSender, Tunnels};

/// One side of one tunnel: hands the peer's states to the node, and answers them when
/// `answer_with` is set (the accepting side).
pub(super) struct Receiver {
    pub node: Weak<Node>,
    pub answer_with: Option<TunnelSender>,
}

impl HaService for Receiver {
    fn state(&mut self, method: HaState) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        node.on_peer_state(&method);
        if let (false, Some(sender)) = (method.answer, &self.answer_with) {
            // A full window means the peer is not reading: its next state asks again.
            let _ = sender.try_send(node.state_message(true));
        }
    }
}

/// Accepts the peer's tunnel to the `ha` service on this broker.
pub(super) fn register(tunnels: &Tunnels, node: &Arc<Node>) {
    let node = Arc::downgrade(node);
    tunnels.register(&HA, move |sender| -> Box<dyn ServiceHandler> {
        Box::new(Ha(Receiver {
            node: node.clone(),
            answer_with: Some(sender),
        }))
    });
}
