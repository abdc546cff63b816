//! What a connection tells the broker about its channels, when asked.
//!
//! A channel's state lives in its connection's task, without locks, and changes with
//! every delivery and ack. Keeping a shared copy up to date would put that work on the
//! message path, so there is none: the management API sends the connection a
//! [`ConnectionEvent::Report`](super::queue::consumer::ConnectionEvent::Report) through
//! its mailbox, and the task answers with a [`ChannelReport`] per open channel between
//! two reads. Only the count of open channels is shared ([`ChannelCount`]), because
//! overviews and Prometheus read it for every connection on every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a channel counted, as RabbitMQ's channel `message_stats`: plain integers in the
/// channel's own state, bumped where the work is done.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChannelCounters {
    /// Messages published on the channel.
    pub publish: u64,
    /// Publisher confirms (basic.ack) sent.
    pub confirm: u64,
    /// `mandatory` messages routed nowhere, returned.
    pub return_unroutable: u64,
    /// Messages routed nowhere and dropped.
    pub drop_unroutable: u64,
    /// Deliveries to consumers that ack.
    pub deliver: u64,
    /// Deliveries to `no_ack` consumers.
    pub deliver_no_ack: u64,
    /// basic.get answered with a message to acknowledge.
    pub get: u64,
    /// basic.get answered with a message, `no_ack`.
    pub get_no_ack: u64,
    /// basic.get answered with get-empty.
    pub get_empty: u64,
    /// Deliveries and gets of messages delivered before.
    pub redeliver: u64,
    /// Deliveries acknowledged.
    pub ack: u64,
}

impl ChannelCounters {
    /// Counts a delivery to a consumer (`no_ack` or not) or a basic.get's message.
    pub fn count_delivery(&mut self, no_ack: bool, redelivered: bool) {
        if no_ack {
            self.deliver_no_ack += 1;
        } else {
            self.deliver += 1;
        }
        self.redeliver += u64::from(redelivered);
    }

    pub fn count_get(&mut self, no_ack: bool, redelivered: bool) {
        if no_ack {
            self.get_no_ack += 1;
        } else {
            self.get += 1;
        }
        self.redeliver += u64::from(redelivered);
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ChannelCounters) {
        self.publish += other.publish;
        self.confirm += other.confirm;
        self.return_unroutable += other.return_unroutable;
        self.drop_unroutable += other.drop_unroutable;
        self.deliver += other.deliver;
        self.deliver_no_ack += other.deliver_no_ack;
        self.get += other.get;
        self.get_no_ack += other.get_no_ack;
        self.get_empty += other.get_empty;
        self.redeliver += other.redeliver;
        self.ack += other.ack;
    }
}

/// One open channel, as its connection's task reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelReport {
    pub number: u16,
    /// basic.qos global=false: the prefetch of consumers started from now on.
    pub prefetch_count: u32,
    /// basic.qos global=true: the channel's shared prefetch (0 = none).
    pub global_prefetch_count: u32,
    pub consumer_count: usize,
    pub messages_unacknowledged: usize,
    /// In a transaction: publishes and acks waiting for commit.
    pub messages_uncommitted: usize,
    pub acks_uncommitted: usize,
    pub confirm: bool,
    pub transactional: bool,
    /// False once the broker closed it and waits for close-ok.
    pub running: bool,
    /// False while the client paused deliveries with channel.flow.
    pub flow_active: bool,
    pub counters: ChannelCounters,
}

/// How many channels a connection has open, shared with the broker's registry.
#[derive(Debug, Default, Clone)]
pub struct ChannelCount(Arc<AtomicUsize>);

impl ChannelCount {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Set by the connection's task when a channel opens or closes.
    pub fn set(&self, n: usize) {
        self.0.store(n, Ordering::Relaxed);
    }
}
