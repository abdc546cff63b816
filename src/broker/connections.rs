//! The broker's registry of open client connections: what the management API lists and
//! closes, and what a vhost deletion closes.
//!
//! A connection registers itself once its handshake is done and is removed when its
//! [`Registration`] drops, however the connection ends. Closing goes through the
//! connection's mailbox, so the connection's own task sends connection.close and
//! releases what it holds, exactly as at shutdown. Asking for its channels goes the
//! same way (see [`crate::broker::channels`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use super::channels::{ChannelCount, ChannelReport};
use super::credit::PendingBytes;
use super::hash::HashMap;
use super::message::MessageRef;
use super::queue::consumer::{ConnectionEvent, ConnectionId, Mailbox};
use crate::protocol::{ReplyCode, ShortString};

/// What the broker knows of one open connection.
#[derive(Debug)]
pub struct ConnectionInfo {
    pub id: ConnectionId,
    /// Where it came from (None for a stream that is not a socket).
    pub peer: Option<SocketAddr>,
    pub user: String,
    pub vhost: String,
    /// The client's `product` property, if it sent one.
    pub client: Option<String>,
    /// The client's `identifier` property: set by another fedamq's peering, so the
    /// broker can tell which connections come from which broker.
    pub identifier: Option<String>,
    pub connected_at: SystemTime,
    /// How the broker reaches the connection's task.
    pub(crate) mailbox: Mailbox,
    /// What the connection holds that its client has not read.
    pub(crate) pending: Arc<PendingBytes>,
    /// How many channels it has open.
    pub(crate) channel_count: ChannelCount,
}

/// How long [`ConnectionInfo::channels`] waits for a connection's task: one busy with a
/// long read answers late, and a listing should not wait for it.
const REPORT_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<HashMap<ConnectionId, Arc<ConnectionInfo>>>,
}

/// Keeps a connection listed while it lives.
#[derive(Debug)]
pub struct Registration {
    id: ConnectionId,
    registry: Weak<Connections>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, HashMap<ConnectionId, Arc<ConnectionInfo>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists a connection until the returned registration drops.
    pub fn register(self: &Arc<Self>, info: ConnectionInfo) -> Registration {
        let id = info.id;
        self.lock().insert(id, Arc::new(info));
        Registration {
            id,
            registry: Arc::downgrade(self),
        }
    }

    /// The open connections, by id.
    pub fn list(&self) -> Vec<Arc<ConnectionInfo>> {
        let mut all: Vec<_> = self.lock().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn get(&self, id: ConnectionId) -> Option<Arc<ConnectionInfo>> {
        self.lock().get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Closes a connection with 320 CONNECTION_FORCED and `reason`, as RabbitMQ's
    /// management API does. False if no such connection is open.
    pub fn close(&self, id: ConnectionId, reason: &str) -> bool {
        match self.get(id) {
            Some(c) => {
                c.close(reason);
                true
            }
            None => false,
        }
    }

    /// Returns `message` to the client that published it on connection `id`'s
    /// `channel` (basic.return). False if that connection is gone.
    pub fn send_return(
        &self,
        id: ConnectionId,
        channel: u16,
        reply_code: u16,
        reply_text: ShortString,
        message: MessageRef,
    ) -> bool {
        self.get(id).is_some_and(|c| {
            c.mailbox
                .send(ConnectionEvent::Returned {
                    channel,
                    reply_code,
                    reply_text,
                    message,
                })
                .is_ok()
        })
    }

    /// Closes every connection to `vhost`; returns how many.
    pub fn close_vhost(&self, vhost: &str, reason: &str) -> usize {
        let on: Vec<_> = self
            .lock()
            .values()
            .filter(|c| c.vhost == vhost)
            .cloned()
            .collect();
        for c in &on {
            c.close(reason);
        }
        on.len()
    }
}

impl ConnectionInfo {
    /// Bytes held for this connection that its client has not read yet (see
    /// [`PendingBytes`]).
    pub fn pending_bytes(&self) -> usize {
        self.pending.get()
    }

    /// How many channels it has open.
    pub fn channel_count(&self) -> usize {
        self.channel_count.get()
    }

    /// Its open channels, as its task reports them between two reads; `None` if the
    /// connection ended or did not answer in time.
    pub async fn channels(&self) -> Option<Vec<ChannelReport>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.mailbox.send(ConnectionEvent::Report(tx)).ok()?;
        tokio::time::timeout(REPORT_WAIT, rx).await.ok()?.ok()
    }

    /// Whether `mailbox` is this connection's (a consumer's, say).
    pub fn owns(&self, mailbox: &Mailbox) -> bool {
        self.mailbox.same_mailbox(mailbox)
    }

    fn close(&self, reason: &str) {
        let _ = self.mailbox.send(ConnectionEvent::Close {
            code: ReplyCode::ConnectionForced,
            text: reason.to_string(),
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.lock().remove(&self.id);
        }
    }
}
