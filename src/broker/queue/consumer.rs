//! A consumer as a queue sees it, and the events a queue sends to the consumer's
//! connection.
//!
//! Queues never touch sockets: they hand a delivery to the connection that owns the
//! consumer through its mailbox, and that connection's task assigns the delivery tag,
//! records it as unacknowledged and writes the frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Queue;
use crate::broker::backlog::Entry;
use crate::broker::channels::ChannelReport;
use crate::broker::credit::{self, Credit, PendingBytes};
use crate::protocol::ShortString;

pub use crate::broker::owner::ConnectionId;

/// What queues (and the broker) tell a connection's task.
#[derive(Debug)]
pub enum ConnectionEvent {
    /// Deliver `entry` to the consumer `consumer_tag` on `channel`.
    Deliver {
        channel: u16,
        consumer: Arc<Consumer>,
        queue: Arc<Queue>,
        entry: Entry,
    },
    /// The queue behind a consumer went away: the client is told with basic.cancel.
    Cancelled {
        channel: u16,
        consumer_tag: ShortString,
    },
    /// A message published on `channel` that an exchange hook took, coming back
    /// undeliverable (a federation's upstream returned it): the client is told with
    /// basic.return.
    Returned {
        channel: u16,
        reply_code: u16,
        reply_text: ShortString,
        message: crate::broker::message::MessageRef,
    },
    /// The writer caught up: the connection is read again, and consumers paused on a
    /// full socket may go on.
    WriterDrained,
    /// The broker is closing this connection (shutdown: 320 CONNECTION_FORCED).
    Close {
        code: crate::protocol::ReplyCode,
        text: String,
    },
    /// The management API asks for the connection's channels (see
    /// [`crate::broker::channels`]); a receiver that has none drops the sender.
    Report(tokio::sync::oneshot::Sender<Vec<ChannelReport>>),
}

/// A connection's mailbox (see [`super::mailbox`]).
pub type Mailbox = super::mailbox::Mailbox<ConnectionEvent>;
pub type MailboxReceiver = super::mailbox::MailboxReceiver<ConnectionEvent>;
pub use super::mailbox::mailbox;

impl super::mailbox::Undelivered for ConnectionEvent {
    /// A delivery that will not be received goes back to its queue, and its consumer is
    /// dropped (its connection is gone).
    fn undelivered(self) {
        if let ConnectionEvent::Deliver {
            consumer,
            queue,
            entry,
            ..
        } = self
        {
            queue.remove_consumer(&consumer);
            queue.undelivered(&consumer, entry);
        }
    }
}

/// One `basic.consume` subscription.
#[derive(Debug)]
pub struct Consumer {
    pub tag: ShortString,
    pub channel: u16,
    pub no_ack: bool,
    pub exclusive: bool,
    /// `x-priority`: higher-priority consumers get messages first.
    pub priority: i64,
    /// Per-consumer prefetch window (basic.qos with global=false), if any.
    pub credit: Option<Arc<Credit>>,
    /// Per-channel prefetch window (basic.qos with global=true), if any.
    pub channel_credit: Option<Arc<Credit>>,
    /// False while the client has paused the channel with channel.flow.
    pub channel_active: Arc<AtomicBool>,
    /// What the connection holds that its client has not read (pauses the consumers of
    /// a client that falls behind).
    pub pending: Arc<PendingBytes>,
    pub mailbox: Mailbox,
}

impl Consumer {
    /// Takes credit for one delivery, if the consumer may receive one now.
    pub fn try_take_credit(&self) -> bool {
        // A connection holding too much its client has not read gets nothing more,
        // whatever the prefetch window (with none, this is the only bound).
        if !self.channel_active.load(Ordering::Acquire) || !self.pending.has_room() {
            return false;
        }
        if self.no_ack {
            return true;
        }
        credit::take_all(&[self.credit.as_deref(), self.channel_credit.as_deref()])
    }

    /// Returns credit for `n` deliveries (acked, rejected or never sent).
    pub fn give_back_credit(&self, n: u32) {
        if self.no_ack {
            return;
        }
        if let Some(c) = &self.credit {
            c.give_back(n);
        }
        if let Some(c) = &self.channel_credit {
            c.give_back(n);
        }
    }

    /// Notes that a delivery is on its way to the consumer's owner: its bytes count as
    /// held for that connection until it [`arrived`](Self::arrived).
    pub fn handed_out(&self, entry: &Entry) {
        self.pending.delivery_queued(&entry.message);
    }

    /// Notes that a delivery reached the consumer's owner: its bytes no longer wait in
    /// the mailbox. True when that brought the held bytes under the low mark, so that
    /// consumers paused on them may go on.
    pub fn arrived(&self, entry: &Entry) -> bool {
        self.pending.delivery_taken(&entry.message)
    }

    /// Whether the connection behind this consumer is gone.
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }
}
