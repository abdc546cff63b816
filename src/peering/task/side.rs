//! Side channels: more channels on a peering's connection, each owned by another
//! object (a tunnel) that speaks its own methods on it.
//!
//! The peering keeps channel 1 for itself. A side channel gets a channel number of its
//! own for the peering's life; the peering tells its owner when a connection is up
//! (with the remote's server properties, so the owner can check a capability) and
//! when it is gone, forwards every method the remote sends on that channel, and
//! writes what the owner sends for the connection that is up (each connection has a
//! number, given with `Up`; anything sent for an earlier one is dropped, so nothing
//! meant for a channel of the last connection lands on a fresh one before its owner
//! opened it there).
//! Side channels carry methods only, no content. A tunnel service's methods (class ids
//! in [`crate::protocol::generated::services::SERVICE_CLASS_IDS`]) pass undecoded both ways, as their frames'
//! payloads: the service may be one the broker's spec does not define.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::protocol::FieldTable;
use crate::protocol::generated::methods::Method;

use super::Command;

/// What the peering tells a side channel's owner.
#[derive(Debug)]
pub enum SideEvent {
    /// A connection is up: open the channel and go on. `session` numbers the
    /// connection for [`SideChannel::send`]; the remote's server properties.
    Up {
        session: u64,
        server_properties: FieldTable,
    },
    /// A method the remote sent on the channel.
    Method(Method),
    /// A tunnel service's method the remote sent on the channel: its frame's payload.
    Service(Bytes),
    /// The connection is gone; nothing sent meanwhile reaches the remote.
    Down,
}

/// One side channel, as its owner holds it.
#[derive(Debug)]
pub struct SideChannel {
    pub channel: u16,
    pub events: mpsc::UnboundedReceiver<SideEvent>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
}

impl SideChannel {
    /// Sends `method` on this channel if connection `session` is still the one up;
    /// false once the peering has ended.
    pub fn send(&self, session: u64, method: Method) -> bool {
        self.commands
            .send(Command::SideSend(self.channel, session, method))
            .is_ok()
    }

    /// A sender for this channel that can be shared.
    pub fn sender(&self) -> SideSender {
        SideSender {
            channel: self.channel,
            commands: self.commands.clone(),
        }
    }
}

/// Sends on a side channel (see [`SideChannel::send`]).
#[derive(Debug, Clone)]
pub struct SideSender {
    channel: u16,
    commands: mpsc::UnboundedSender<Command>,
}

impl SideSender {
    /// As [`SideChannel::send`].
    pub fn send(&self, session: u64, method: Method) -> bool {
        self.commands
            .send(Command::SideSend(self.channel, session, method))
            .is_ok()
    }

    /// Sends a method already encoded (its frame's payload), as [`SideChannel::send`].
    pub fn send_payload(&self, session: u64, payload: Bytes) -> bool {
        self.commands
            .send(Command::SidePayload(self.channel, session, payload))
            .is_ok()
    }
}

/// The side channels of one peering, in its task.
#[derive(Debug, Default)]
pub(crate) struct Sides {
    owners: HashMap<u16, mpsc::UnboundedSender<SideEvent>>,
    /// The number and server properties of the connection that is up, if one is.
    up: Option<(u64, FieldTable)>,
    sessions: u64,
}

impl Sides {
    pub(crate) fn attach(&mut self, channel: u16, owner: mpsc::UnboundedSender<SideEvent>) {
        if let Some((session, props)) = &self.up {
            let _ = owner.send(SideEvent::Up {
                session: *session,
                server_properties: props.clone(),
            });
        }
        self.owners.insert(channel, owner);
    }

    pub(crate) fn up(&mut self, server_properties: &FieldTable) {
        self.sessions += 1;
        let session = self.sessions;
        self.up = Some((session, server_properties.clone()));
        self.owners.retain(|_, o| {
            o.send(SideEvent::Up {
                session,
                server_properties: server_properties.clone(),
            })
            .is_ok()
        });
    }

    pub(crate) fn down(&mut self) {
        if self.up.take().is_some() {
            self.owners.retain(|_, o| o.send(SideEvent::Down).is_ok());
        }
    }

    /// Whether `channel` is a side channel that may be written for connection
    /// `session` (it is the one up).
    pub(crate) fn writable(&self, channel: u16, session: u64) -> bool {
        self.up.as_ref().is_some_and(|(s, _)| *s == session) && self.owners.contains_key(&channel)
    }

    pub(crate) fn owns(&self, channel: u16) -> bool {
        self.owners.contains_key(&channel)
    }

    /// Hands a method from the remote to the channel's owner.
    pub(crate) fn deliver(&mut self, channel: u16, method: Method) {
        if let Some(o) = self.owners.get(&channel) {
            let _ = o.send(SideEvent::Method(method));
        }
    }

    /// Hands a tunnel service's method (its frame's payload) to the channel's owner.
    pub(crate) fn deliver_service(&mut self, channel: u16, payload: Bytes) {
        if let Some(o) = self.owners.get(&channel) {
            let _ = o.send(SideEvent::Service(payload));
        }
    }
}
